"""Request limits, applied before a body is parsed and before a route's auth runs.

- ``RequestGate`` (ASGI middleware): a body larger than its route's limit is refused with 413,
  from ``Content-Length`` before a byte is read, or while it streams in (chunked uploads) without
  buffering more than the limit; a request with a body to a ``/v1`` route needs a known token
  before its body is read (401 otherwise: a stranger's 50 MB JSON is never parsed).
- ``validation_error``: 422 answers name the field and the problem, never the input (a 10 MB body
  is not echoed back, and a NaN in it cannot break the answer's serialisation).
- ``StrictJsonRoute``: JSON bodies with ``NaN``/``Infinity`` (not JSON, but Python's parser takes
  them) are refused with 422.
- Timeouts: a connection must complete a request's headers within ``HEADER_TIMEOUT_S`` of opening
  (or of the request's first byte), else it is closed (slow-header clients cannot hold
  connections); a body that stops arriving for ``BODY_IDLE_TIMEOUT_S`` is answered 408. Idle
  keep-alive connections close after uvicorn's ``timeout_keep_alive``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

KIB = 1024
MIB = 1024 * KIB
DEFAULT_BODY_LIMIT = 64 * KIB
# (method, path pattern, the largest body it takes); the first match wins, else DEFAULT_BODY_LIMIT
BODY_LIMITS: tuple[tuple[str, re.Pattern[str], int], ...] = (
    ("POST", re.compile(r"/v1/rules/(validate|publish)"), 24 * MIB),  # up to 200 files of 1 MB: whole packs
    ("POST", re.compile(r"/v1/kb/try"), 24 * MIB),  # draft snippets to dry-run
    ("PUT", re.compile(r"/v1/kb/snippets/[^/]+"), 512 * KIB),  # a snippet: body up to 20,000 characters
    ("POST", re.compile(r"/v1/kb/feedback"), 4 * KIB),
    ("POST", re.compile(r"/v1/taps/.*"), 256 * KIB),  # WebRTC offers (SDP), LiveKit sessions
)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HEADER_TIMEOUT_S = 10.0  # from a connection's opening (or a request's first byte) to its last header
BODY_IDLE_TIMEOUT_S = 15.0  # the longest pause inside a request body


def body_limit(method: str, path: str) -> int:
    for m, pattern, limit in BODY_LIMITS:
        if m == method and pattern.fullmatch(path):
            return limit
    return DEFAULT_BODY_LIMIT


class _BodyStalledError(HTTPException):
    def __init__(self) -> None:
        super().__init__(408, f"the body stopped arriving for {BODY_IDLE_TIMEOUT_S:.0f} s")


class _BodyTooLargeError(HTTPException):
    """Raised by the body stream past the limit: the route's body parsing re-raises an HTTPException
    and the exception middleware answers it (413); the gate answers it if nothing else did."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is larger than this route takes ({limit} bytes)")


def _json_answer(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _token(scope: Scope) -> str | None:
    """The bearer token of a request, as ``authorize`` reads it (header, or ``?access_token=``)."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = bytes(value).decode("latin-1").partition(" ")
            token = token.strip()
            return token if token and scheme.lower() == "bearer" else None
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == "access_token" and value:
            return value
    return None


class RequestGate:
    """Body-size limits per route and a token check, before the body is read (see module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        limit = body_limit(method, path)
        length = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await _json_answer(400, "Content-Length is not a number")(scope, receive, send)
                    return
        if length is not None and length > limit:
            await _json_answer(413, f"the body is larger than this route takes ({limit} bytes)")(
                scope, receive, send
            )
            return
        if path.startswith("/v1/") and not self._known(scope):
            await _json_answer(401, "missing or unknown bearer token", {"WWW-Authenticate": "Bearer"})(
                scope, receive, send
            )
            return
        received = 0
        started = False

        body_done = False

        async def limited() -> Message:
            nonlocal received, body_done
            if body_done:  # after the body, receive() waits for a disconnect: no time limit
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), BODY_IDLE_TIMEOUT_S)
            except TimeoutError:
                raise _BodyStalledError from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLargeError(limit)
                body_done = not message.get("more_body", False)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except (_BodyTooLargeError, _BodyStalledError) as exc:
            if started:
                raise
            await _json_answer(exc.status_code, str(exc.detail))(scope, receive, send)

    @staticmethod
    def _known(scope: Scope) -> bool:
        """A token the service knows (the route still checks the role); True while starting."""
        ctx = getattr(getattr(scope.get("app"), "state", None), "ctx", None)
        if ctx is None:
            return True  # the route answers 503 itself
        token = _token(scope)
        if token is not None and ctx.services.tokens.lookup(token) is not None:
            return True
        ctx.metrics.auth_failures.labels("401").inc()
        return False


async def validation_error(request: Request, exc: Exception) -> Response:
    """422 with where and what for each problem, never the input that was sent."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"type": e.get("type", ""), "loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


def _not_json(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), parse_constant=_not_json)
        return self._json


class StrictJsonRoute(APIRoute):
    """A route whose JSON body may not hold ``NaN``, ``Infinity`` or ``-Infinity`` (422)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict


def header_timeout_protocol() -> type[asyncio.Protocol] | str:
    """uvicorn's httptools protocol, closing a connection whose request headers are not complete
    within ``HEADER_TIMEOUT_S`` (uvicorn itself only times out idle keep-alive connections)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools missing: uvicorn's h11 protocol, without a header timeout
        return "auto"

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm_header_timer()

        def on_headers_complete(self) -> None:
            self._disarm_header_timer()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            self._disarm_header_timer()
            self._header_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._headers_too_slow)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


def websocket_protocol() -> type[asyncio.Protocol] | str:
    """uvicorn's WebSocket protocol (what "auto" picks), taking a refused upgrade (an HTTP denial
    response, e.g. AudioHook's 401) as a complete answer: uvicorn would otherwise log "ASGI
    callable returned without completing handshake" at error level for every refusal."""
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    except ImportError:
        return "auto"

    class DenialCompletesProtocol(WebSocketsSansIOProtocol):
        async def send(self, message: Any) -> None:
            await super().send(message)
            if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
                self.handshake_complete = True  # the upgrade was answered: with a refusal

    return DenialCompletesProtocol
