"""LiveKit tap: reading the join token the integrator mints for the tap's own participant.

The token is read (never verified, never logged: only the LiveKit server can verify it) for its room
(``video.room``), identity (``sub``), ``hidden`` flag and expiry; a token the server would refuse to
let the tap join with, or that could not subscribe to anything, is a ``TokenError`` (422).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass
from typing import Any


class TokenError(ValueError):
    """Not a LiveKit join token this tap can use (422)."""


@dataclass(frozen=True, slots=True)
class JoinToken:
    """What a LiveKit access token says (read, not verified: only the LiveKit server can)."""

    identity: str  # ``sub``: the tap's own participant identity
    room: str  # ``video.room``
    hidden: bool  # ``video.hidden``: the other participants do not see the tap
    expires_at: float | None  # ``exp``


def _b64url_json(part: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError):
        raise TokenError("not a LiveKit access token (a JWT)") from None


def read_join_token(token: str, now: float | None = None) -> JoinToken:
    """The token's identity and room; ``TokenError`` for a token the server would refuse to let
    us join with, or that could not subscribe to anything."""
    parts = token.strip().split(".")
    if len(parts) != 3 or not all(parts):
        raise TokenError("not a LiveKit access token (a JWT: header.payload.signature)")
    claims = _b64url_json(parts[1])
    if not isinstance(claims, dict):
        raise TokenError("not a LiveKit access token (its payload is not a JSON object)")
    video = claims.get("video")
    if not isinstance(video, dict) or video.get("roomJoin") is not True:
        raise TokenError("the token does not grant roomJoin (video.roomJoin)")
    room = video.get("room")
    if not isinstance(room, str) or not room:
        raise TokenError("the token names no room (video.room)")
    if video.get("canSubscribe") is False:
        raise TokenError("the token forbids subscribing (video.canSubscribe is false)")
    identity = claims.get("sub")
    if not isinstance(identity, str) or not identity:
        raise TokenError("the token has no identity (sub)")
    exp = claims.get("exp")
    expires_at = float(exp) if isinstance(exp, int | float) else None
    if expires_at is not None and expires_at <= (time.time() if now is None else now):
        raise TokenError("the token has expired (exp)")
    return JoinToken(identity, room, video.get("hidden") is True, expires_at)
