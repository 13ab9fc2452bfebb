"""How the taps reach the service: what the service hands in when it installs them (``TapAccess``:
its calls and its token check, on ``app.state``), the routes' dependencies over it (the calls,
503 while the service starts; the caller, 401 / 403), and a socket's caller (``socket_caller``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, HTTPException, Request, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sidecar.calls.access import AccessDeniedError, Authorize, Caller, TapCalls, TapPermission

WS_POLICY_VIOLATION = 1008  # RFC 6455: the close code for "not allowed"


@dataclass(frozen=True, slots=True)
class TapAccess:
    """What the service hands the taps: its calls, and who a token belongs to."""

    calls: TapCalls
    authorize: Authorize


def install_access(app: Any, access: TapAccess) -> None:
    """The service, once it is ready: from now on the taps take calls."""
    app.state.tap_access = access


def installed_access(app: Any) -> TapAccess | None:
    """The service's access for the taps; None while it starts."""
    access: TapAccess | None = getattr(app.state, "tap_access", None)
    return access


def get_access(request: Request) -> TapAccess:
    access = installed_access(request.app)
    if access is None:
        raise HTTPException(503, "the service is starting")
    return access


def get_calls(request: Request) -> TapCalls:
    return get_access(request).calls


_bearer = HTTPBearer(auto_error=False, description="a token from the tokens file (see docs/api.md)")


def allowed(permission: TapPermission) -> Callable[..., Caller]:
    """A tap route's caller, who must hold ``permission`` (bearer token; 401 / 403 as everywhere)."""

    def dependency(
        access: TapAccess = Depends(get_access),  # noqa: B008
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> Caller:
        try:
            return access.authorize(credentials.credentials if credentials else None, permission)
        except AccessDeniedError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            raise HTTPException(exc.status, str(exc), headers=headers) from None

    return dependency


def _socket_token(header: str) -> str | None:
    """Bearer, or Basic with the token as the password (all jambonz ``wsAuth`` and FreeSWITCH
    mod_audio_fork can send); the user name is ignored."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            _, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return password or None
    return None


def socket_caller(access: TapAccess, websocket: WebSocket, permission: TapPermission) -> Caller | None:
    """A media tap's caller: ``Authorization: Bearer``, ``Basic`` (token as the password), or
    ``?access_token=`` (platforms such as Twilio cannot set headers on their WebSocket). None when
    not allowed: the tap then closes the socket with 1008 before accepting anything."""
    token = _socket_token(websocket.headers.get("authorization", "")) or websocket.query_params.get(
        "access_token"
    )
    try:
        return access.authorize(token, permission)
    except AccessDeniedError:
        return None
