"""What the WebSocket taps (Twilio, L16, chat) share: close codes, the protocol error that closes
a socket, admission (service ready, token allowed), size-capped receiving, and how a tap's socket
closes and its call ends (``TapSession``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from fastapi import WebSocket

from sidecar.calls.access import TapCalls
from sidecar.calls.errors import CallNotLiveError, TooManyCallsError
from sidecar.calls.live_call import CallMeta, LiveCall
from sidecar.kernel.errors import InputError
from sidecar.kernel.events import Channel
from sidecar.taps.access import WS_POLICY_VIOLATION, installed_access, socket_caller

log = logging.getLogger(__name__)

# close codes (RFC 6455)
NORMAL, GOING_AWAY, UNSUPPORTED, INVALID, POLICY, TOO_BIG, INTERNAL, TRY_LATER = (
    1000, 1001, 1003, 1007, WS_POLICY_VIOLATION, 1009, 1011, 1013,
)  # fmt: skip
LANGS = ("en", "zh", "auto")
CALL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


class TapProtocolError(Exception):
    """Close the socket with ``code`` and ``reason`` (and end the call, if there is one)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason[:120]  # a close frame's reason must fit in 123 bytes


@dataclass(frozen=True, slots=True)
class Closed:
    """The client has gone, with this close code (1005: none given, 1006: no close frame)."""

    code: int

    @property
    def reason(self) -> str:
        """The call's end reason: ``completed`` for a normal close or going away, else ``dropped``."""
        return "completed" if self.code in (NORMAL, GOING_AWAY) else "dropped"


async def admit(websocket: WebSocket, subprotocol: str | None = None) -> TapCalls | None:
    """The service's calls, if it is ready and the caller may connect taps: the socket is accepted
    (with ``subprotocol``). Otherwise the socket is closed (1013 while starting, 1008 for a
    missing, unknown or unauthorised token: the handshake is answered with HTTP 403) and None."""
    access = installed_access(websocket.app)
    if access is None:
        await websocket.close(TRY_LATER, "the service is starting")
        return None
    if socket_caller(access, websocket, "taps.connect") is None:
        await websocket.close(POLICY, "missing or unknown token, or not allowed to connect taps")
        return None
    await websocket.accept(subprotocol=subprotocol)
    return access.calls


async def receive_frame(
    websocket: WebSocket, timeout_s: float, *, max_text: int, max_binary: int | None
) -> str | bytes | Closed:
    """The next frame (text, or bytes when ``max_binary`` is given) within the size limits, or
    how the client went. Silence longer than ``timeout_s`` is a protocol error."""
    try:
        message = await asyncio.wait_for(websocket.receive(), timeout_s)
    except TimeoutError:
        raise TapProtocolError(POLICY, f"nothing received for {timeout_s:.0f} s") from None
    if message["type"] == "websocket.disconnect":
        return Closed(int(message.get("code", 1005)))
    data = message.get("bytes")
    if data is not None:
        if max_binary is None:
            raise TapProtocolError(UNSUPPORTED, "binary frames are not part of this protocol")
        if len(data) > max_binary:
            raise TapProtocolError(TOO_BIG, f"a binary frame over {max_binary} bytes")
        return bytes(data)
    text = message.get("text") or ""
    if len(text) > max_text or len(text.encode()) > max_text:
        raise TapProtocolError(TOO_BIG, f"a text frame over {max_text} bytes")
    return str(text)


async def open_tap_call(
    calls: TapCalls, meta: CallMeta, channels: tuple[Channel, ...], *, kind: type[LiveCall] = LiveCall
) -> LiveCall:
    """Start the tap's call; a full service is "try later" (1013), a call id in use 1008."""
    try:
        return await calls.open_call(meta, channels, kind=kind)
    except TooManyCallsError as exc:
        raise TapProtocolError(TRY_LATER, str(exc)) from None
    except InputError as exc:
        raise TapProtocolError(POLICY, str(exc)) from None


async def close_quietly(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):  # the client may be gone already
        await websocket.close(code, reason)


async def end_call(call: LiveCall, reason: str) -> None:
    try:
        await call.end(reason)
    except Exception:
        log.exception("tap: ending call %s failed", call.call_id)


class TapSession:
    """How a tap's accepted socket closes and its call ends, around the tap's conversation::

        async with TapSession(websocket, log, "l16", lambda: call) as session:
            ...  # open the call, feed it; set session.reason when the client goes

    ``call`` is read at the end: the tap's call, if it has opened one. On the way out a
    ``TapProtocolError`` closes the socket with its code (reason ``protocol_error``), a
    ``CallNotLiveError`` (the service ended the call) with 1001, any other error with 1011
    (reason ``error``, logged); these are not raised further. Then the call, if any, ends with
    ``reason`` (``dropped`` unless the tap set another)."""

    def __init__(
        self, websocket: WebSocket, logger: logging.Logger, name: str, call: Callable[[], LiveCall | None]
    ) -> None:
        self.websocket = websocket
        self.log = logger  # the tap's own logger, and its name in the messages
        self.name = name
        self.call = call
        self.reason = "dropped"

    async def __aenter__(self) -> TapSession:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        try:
            if isinstance(exc, TapProtocolError):
                self.reason = "protocol_error"
                call = self.call()
                self.log.warning("%s tap: closing", self.name, extra={"code": exc.code, "reason": exc.reason,
                                 "call_id": call.call_id if call else None})  # fmt: skip
                await close_quietly(self.websocket, exc.code, exc.reason)
                return True
            if isinstance(exc, CallNotLiveError):  # the service ended the call (shutting down)
                await close_quietly(self.websocket, GOING_AWAY, "the call has ended")
                return True
            if isinstance(exc, Exception):
                self.reason = "error"
                self.log.error("%s tap: failed", self.name, exc_info=exc)
                await close_quietly(self.websocket, INTERNAL, "the call failed")
                return True
            return False
        finally:
            if (ended := self.call()) is not None:
                await end_call(ended, self.reason)
