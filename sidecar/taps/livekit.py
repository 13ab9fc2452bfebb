"""LiveKit tap: the REST control of the tap's sessions (the request, its checks, the routes) and
its wiring into the app. The service joins a LiveKit room as a participant of its own (hidden,
subscribe only) and transcribes the agent's and the customer's audio tracks. Built on the
``livekit`` rtc SDK (1.2.0). **Untested against a LiveKit server**: none could be run where this
was built; the tests cover everything up to the SDK's boundary (routing, frames, the call, the REST
control, the SDK's own connect failing against 127.0.0.1). See ``docs/taps/livekit.md``.

Protocol (REST control, JSON): ``POST /v1/taps/livekit/sessions`` ``{url, token, room?,
agent_identity?, customer_identity?, agent_identity_prefix?, customer_identity_prefix?,
channel_attribute?, lang?, agent_id?, queue?, call_id?}`` → 202 ``{call_id, state: "connecting",
room}``; the room is joined in the background. ``GET /v1/taps/livekit/sessions/{call_id}`` →
``{call_id, state: connecting|live|ended|failed, room, error, ended_reason, channels, ignored}``.
``DELETE /v1/taps/livekit/sessions/{call_id}`` → 204: leaves the room, ends the call. ``token``
is a LiveKit join token the integrator mints (roomJoin, canSubscribe; hidden recommended): it is
read (never verified, never logged) for its room (``video.room``) and identity (``sub``); the
default call id is ``livekit-<room>``. 422: a URL that is not ws/wss/http/https, a token that is
not a LiveKit join token (no JWT, no roomJoin, canSubscribe false, expired, another room than
``room``), identities that clash; 409: a call id in use; 503: ``MAX_SESSIONS`` sessions joining
or live, or the service runs as many calls as it may (``TooManyCallsError``).

Auth: ``taps.connect`` (integrators, admins), bearer token; 401 / 403 as everywhere.

The tap's other modules, each with one job (their names are importable from here too):
``livekit_token`` (reading the join token), ``livekit_routing`` (channel mapping: which track
feeds which channel), ``livekit_room`` (the SDK: the room, its events, the audio streams; drop
policy), ``livekit_feed`` (the routed tracks' audio into the call), ``livekit_session`` (a
session's join, life and end; the service's sessions).
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field, field_validator, model_validator

from sidecar.calls.access import Caller
from sidecar.calls.errors import TooManyCallsError
from sidecar.kernel.events import Channel
from sidecar.taps.access import allowed, get_calls
from sidecar.taps.livekit_feed import (
    MAX_IGNORED,
    AudioPump,
    CallFeed,
    CallInput,
    FrameItem,
    FrameStream,
    OpenFrames,
    frame_pcm,
)
from sidecar.taps.livekit_room import (
    COMPLETED_DISCONNECTS,
    CONNECT_TIMEOUT_S,
    LEAVE_TIMEOUT_S,
    STREAM_CAPACITY,
    ParticipantLeft,
    RoomEvent,
    RoomLeft,
    RoomLink,
    StopRequested,
    TrackSubscribed,
    TrackUnsubscribed,
    disconnect_reason,
)
from sidecar.taps.livekit_routing import ChannelMapping, Ignored, Party, Routed, TrackKind, TrackRouter
from sidecar.taps.livekit_session import (
    JOIN_TIMEOUT_S,
    KEPT_FINISHED,
    MAX_SESSIONS,
    POLL_S,
    STOP_WAIT_S,
    LiveKitSession,
    LiveKitTap,
    SessionConflictError,
    SessionRequest,
    SessionState,
)
from sidecar.taps.livekit_token import JoinToken, TokenError, read_join_token

__all__ = [
    "ATTRIBUTE_PATTERN",
    "CALL_ID_PATTERN",
    "COMPLETED_DISCONNECTS",
    "CONNECT_TIMEOUT_S",
    "JOIN_TIMEOUT_S",
    "KEPT_FINISHED",
    "LEAVE_TIMEOUT_S",
    "MAX_IGNORED",
    "MAX_SESSIONS",
    "POLL_S",
    "STOP_WAIT_S",
    "STREAM_CAPACITY",
    "URL_SCHEMES",
    "AudioPump",
    "CallFeed",
    "CallInput",
    "ChannelMapping",
    "FrameItem",
    "FrameStream",
    "Ignored",
    "IgnoredTrack",
    "Integrator",
    "JoinToken",
    "LiveKitSession",
    "LiveKitTap",
    "OpenFrames",
    "ParticipantLeft",
    "Party",
    "RoomEvent",
    "RoomLeft",
    "RoomLink",
    "Routed",
    "SessionConflictError",
    "SessionIn",
    "SessionOut",
    "SessionRequest",
    "SessionStarted",
    "SessionState",
    "StopRequested",
    "Tap",
    "TokenError",
    "TrackKind",
    "TrackRouter",
    "TrackSubscribed",
    "TrackUnsubscribed",
    "call_id_for",
    "close_livekit_tap",
    "disconnect_reason",
    "frame_pcm",
    "get_session",
    "get_tap",
    "read_join_token",
    "router",
    "session_request",
    "start_session",
    "stop_session",
]

log = logging.getLogger("assist.taps.livekit")
router = APIRouter(prefix="/v1/taps", tags=["taps"])

URL_SCHEMES = ("ws", "wss", "http", "https")
CALL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
ATTRIBUTE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"


def get_tap(request: Request) -> LiveKitTap:
    tap: LiveKitTap | None = getattr(request.app.state, "livekit_tap", None)
    if tap is None:
        tap = request.app.state.livekit_tap = LiveKitTap(get_calls(request))
    return tap


async def close_livekit_tap(app: Any) -> None:
    """For the service's shutdown (optional: without it, ``LiveCalls.close`` ending the calls is
    enough, each session then leaves its room within ``POLL_S``)."""
    tap: LiveKitTap | None = getattr(app.state, "livekit_tap", None)
    if tap is not None:
        await tap.close()


Tap = Annotated[LiveKitTap, Depends(get_tap)]
Integrator = Annotated[Caller, Depends(allowed("taps.connect"))]


# -- the wire ---------------------------------------------------------------------------------


class SessionIn(BaseModel):
    url: str = Field(
        min_length=1, max_length=2048, description="the LiveKit server: wss://, ws://, https:// or http://"
    )
    token: str = Field(min_length=1, max_length=16_384,
                       description="a join token for the tap's own participant (roomJoin, canSubscribe; hidden recommended)")  # fmt: skip
    room: str | None = Field(None, min_length=1, max_length=256,
                             description="the room; must be the token's (default: the token's)")  # fmt: skip
    agent_identity: str | None = Field(None, min_length=1, max_length=256)
    customer_identity: str | None = Field(None, min_length=1, max_length=256)
    agent_identity_prefix: str | None = Field(None, min_length=1, max_length=256)
    customer_identity_prefix: str | None = Field(None, min_length=1, max_length=256)
    channel_attribute: str | None = Field(None, pattern=ATTRIBUTE_PATTERN,
                                          description='a participant attribute (or metadata JSON key) whose value is "agent" or "customer"')  # fmt: skip
    lang: Literal["en", "zh", "auto"] = "en"
    agent_id: str = Field("", max_length=128)
    queue: str = Field("", max_length=128)
    call_id: str | None = Field(None, pattern=CALL_ID_PATTERN, description="default: livekit-<room>")

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in URL_SCHEMES:
            raise ValueError(f"the LiveKit URL must be {', '.join(s + '://' for s in URL_SCHEMES)}")
        if not parts.hostname:
            raise ValueError("the LiveKit URL has no host")
        return url

    @model_validator(mode="after")
    def _mapping(self) -> SessionIn:
        self.mapping()  # ValueError → 422
        return self

    def mapping(self) -> ChannelMapping:
        return ChannelMapping(self.agent_identity, self.customer_identity, self.agent_identity_prefix,
                              self.customer_identity_prefix, self.channel_attribute)  # fmt: skip


class SessionStarted(BaseModel):
    call_id: str
    state: SessionState
    room: str


class IgnoredTrack(BaseModel):
    identity: str
    track_sid: str
    reason: str


class SessionOut(BaseModel):
    call_id: str
    state: SessionState
    room: str
    error: str | None = None
    ended_reason: str | None = None
    channels: dict[Channel, str] = Field(
        default_factory=dict, description="channel → the identity feeding it"
    )
    ignored: list[IgnoredTrack] = Field(default_factory=list)


def call_id_for(room: str) -> str:
    """``livekit-<room>``, the room name made safe for a call id (letters, digits, ``._:-``)."""
    return "livekit-" + re.sub(r"[^A-Za-z0-9._:-]", "_", room)[:119]


def session_request(body: SessionIn) -> SessionRequest:
    try:
        token = read_join_token(body.token)
    except TokenError as exc:
        raise HTTPException(422, f"token: {exc}") from None
    if body.room is not None and body.room != token.room:
        raise HTTPException(422, "room: the token grants another room")
    mapping = body.mapping()
    if token.identity in mapping.identities():
        raise HTTPException(422, "the token's identity (the tap's own) is the agent's or the customer's")
    if not token.hidden:
        log.info("livekit: the tap's token is not hidden: the other participants will see it")
    return SessionRequest(body.url, body.token, token.room, token.identity, body.call_id or call_id_for(token.room),
                          mapping, body.lang, body.agent_id, body.queue)  # fmt: skip


# -- routes -----------------------------------------------------------------------------------


@router.post("/livekit/sessions", status_code=202, response_model=SessionStarted,
             responses={401: {}, 403: {}, 409: {}, 422: {}, 503: {}})  # fmt: skip
async def start_session(body: SessionIn, tap: Tap, principal: Integrator) -> dict[str, str]:
    """Join a LiveKit room (in the background) and transcribe its agent and customer as a call.
    Follow the join with GET; the call's events are at ``/v1/calls/{call_id}/events``."""
    request = session_request(body)
    try:
        session = tap.start(request)
    except SessionConflictError as exc:
        raise HTTPException(409, str(exc)) from None
    except TooManyCallsError as exc:
        raise HTTPException(503, str(exc)) from None
    host = urlsplit(request.url).hostname or ""
    log.info(
        "livekit session started",
        extra={"call_id": session.call_id, "by": principal.name, "host": host[:100]},
    )
    return {"call_id": session.call_id, "state": session.state, "room": request.room}


def _session(tap: LiveKitTap, call_id: str) -> LiveKitSession:
    session = tap.sessions.get(call_id)
    if session is None:
        raise HTTPException(404, f"no LiveKit session {call_id}")
    return session


@router.get("/livekit/sessions/{call_id}", response_model=SessionOut, responses={401: {}, 403: {}, 404: {}})
async def get_session(call_id: str, tap: Tap, principal: Integrator) -> dict[str, Any]:
    """A session's state: ``connecting``, ``live``, ``ended`` or ``failed`` (with ``error``)."""
    return _session(tap, call_id).describe()


@router.delete("/livekit/sessions/{call_id}", status_code=204, responses={401: {}, 403: {}, 404: {}})
async def stop_session(call_id: str, tap: Tap, principal: Integrator) -> Response:
    """Leave the room and end the call (``call.ended`` with reason ``completed``)."""
    session = _session(tap, call_id)
    if session.active:
        await tap.stop(session)
    return Response(status_code=204)
