"""LiveKit tap: the service joins a LiveKit room as a participant of its own (hidden, subscribe
only) and transcribes the agent's and the customer's audio tracks. Built on the ``livekit`` rtc
SDK (1.2.0). **Untested against a LiveKit server**: none could be run where this was built; the
tests cover everything up to the SDK's boundary (routing, frames, the call, the REST control,
the SDK's own connect failing against 127.0.0.1). See ``docs/taps/livekit.md``.

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

Channel mapping, per participant when its audio track is subscribed (``auto_subscribe`` is
off: the tap subscribes to every remote audio track as it is published, never to video): our
own participant is skipped; then its identity equal to ``agent_identity`` /
``customer_identity``; else the longest matching ``*_identity_prefix``; else the value
(``agent`` | ``customer``) of its attribute ``channel_attribute`` (or of that key in its
metadata, when the metadata is a JSON object). Video tracks, participants that map to no
channel, and a second track for a channel another track already feeds are ignored (listed, with
why, in the session's ``ignored``). A track unsubscribed and subscribed again (or another track
of that channel) continues the same channel of the call.

Auth: ``taps.connect`` (integrators, admins), bearer token; 401 / 403 as everywhere.

Drop policy: each subscribed audio track has an ``rtc.AudioStream`` (16 kHz mono, the SDK
resamples and downmixes) holding at most ``STREAM_CAPACITY`` frames, oldest dropped, read by its
own task that never waits on ASR: ``LiveCall.push`` only resamples and queues, and the call's
pipeline drops its oldest audio when ASR falls behind. Room events (not audio) go through an
unbounded queue: a handful per call.

Ending: the call starts (``call.started``) once the room is joined, and ends (``call.ended``) when
a participant of the customer channel leaves (``completed``), when the room disconnects us
(``completed`` for a deleted or closed room or our removal, ``dropped`` otherwise), on DELETE
(``completed``), or with the service (``aborted``); the pumps stop, the call ends and the room is
left, in that order, in a ``finally``. A join that fails leaves the session ``failed`` with the
SDK's error and no call.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol, TypeAlias
from urllib.parse import urlsplit

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from livekit import rtc
from pydantic import BaseModel, Field, field_validator, model_validator

from sidecar.audio import PIPELINE_RATE, Pcm16, split_channels
from sidecar.errors import InputError
from sidecar.events import CHANNELS, Channel
from sidecar.service.auth import Principal
from sidecar.service.context import AppContext, authorize, get_ctx
from sidecar.service.live import CallMeta, CallNotLiveError, LiveCall, TooManyCallsError

log = logging.getLogger("assist.taps.livekit")
router = APIRouter(prefix="/v1/taps", tags=["taps"])

MAX_SESSIONS = 20  # sessions joining or live at once, per service
KEPT_FINISHED = 200  # ended / failed sessions kept for GET (oldest forgotten first)
CONNECT_TIMEOUT_S = 5.0  # the SDK's per-attempt signalling timeout (it retries a few times)
JOIN_TIMEOUT_S = 60.0  # the whole join, retries included: past this the session fails
LEAVE_TIMEOUT_S = 5.0
STOP_WAIT_S = 10.0  # DELETE waits this long for the room to be left and the call ended
POLL_S = 0.5  # how often a live session checks that its call has not been ended elsewhere
STREAM_CAPACITY = 50  # frames per track the SDK holds for a late reader (0.5 s at 10 ms)
MAX_IGNORED = 20  # ignored tracks listed per session
URL_SCHEMES = ("ws", "wss", "http", "https")
CALL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
ATTRIBUTE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"

SessionState: TypeAlias = Literal["connecting", "live", "ended", "failed"]


# -- the join token ---------------------------------------------------------------------------


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


# -- who is who -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Party:
    """A participant as the router sees it."""

    identity: str
    attributes: tuple[tuple[str, str], ...] = ()
    metadata: str = ""

    @classmethod
    def of(cls, participant: rtc.Participant) -> Party:
        return cls(participant.identity, tuple(sorted(participant.attributes.items())), participant.metadata)

    def attribute(self, key: str) -> str | None:
        """``key`` in the attributes, else in the metadata when it is a JSON object."""
        value = dict(self.attributes).get(key)
        if value is not None:
            return value
        if self.metadata.lstrip().startswith("{"):
            with contextlib.suppress(ValueError):
                meta = json.loads(self.metadata)
                found = meta.get(key) if isinstance(meta, dict) else None
                return found if isinstance(found, str) else None
        return None


@dataclass(frozen=True, slots=True)
class ChannelMapping:
    """How participants map to the call's channels (see the module docstring for the order)."""

    agent_identity: str | None = None
    customer_identity: str | None = None
    agent_prefix: str | None = None
    customer_prefix: str | None = None
    attribute: str | None = None  # e.g. "assist.channel" = "agent" | "customer"

    def __post_init__(self) -> None:
        for channel, identity, prefix in (("agent", self.agent_identity, self.agent_prefix),
                                          ("customer", self.customer_identity, self.customer_prefix)):  # fmt: skip
            if not identity and not prefix and not self.attribute:
                raise ValueError(
                    f"nothing maps the {channel}: give {channel}_identity, {channel}_identity_prefix "
                    "or channel_attribute"
                )
        if self.agent_identity and self.agent_identity == self.customer_identity:
            raise ValueError("agent_identity and customer_identity must differ")
        if self.agent_prefix and self.agent_prefix == self.customer_prefix:
            raise ValueError("agent_identity_prefix and customer_identity_prefix must differ")

    def identities(self) -> tuple[str, ...]:
        return tuple(i for i in (self.agent_identity, self.customer_identity) if i)

    def channel_of(self, party: Party) -> Channel | None:
        if party.identity == self.agent_identity:
            return "agent"
        if party.identity == self.customer_identity:
            return "customer"
        best: tuple[int, Channel] | None = None
        prefixes: tuple[tuple[str | None, Channel], ...] = (
            (self.agent_prefix, "agent"),
            (self.customer_prefix, "customer"),
        )
        for prefix, channel in prefixes:
            if prefix and party.identity.startswith(prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), channel)  # the longest matching prefix wins
        if best is not None:
            return best[1]
        if self.attribute:
            value = party.attribute(self.attribute)
            for channel in CHANNELS:
                if value == channel:
                    return channel
        return None


@dataclass(frozen=True, slots=True)
class Routed:
    channel: Channel


@dataclass(frozen=True, slots=True)
class Ignored:
    reason: str


TrackKind: TypeAlias = Literal["audio", "video", "other"]


class TrackRouter:
    """Which subscribed track feeds which channel: at most one track per channel at a time."""

    def __init__(self, mapping: ChannelMapping, own_identity: str = "") -> None:
        self.mapping = mapping
        self.own_identity = own_identity
        self._feeding: dict[Channel, tuple[str, str]] = {}  # channel → (identity, track sid)

    def channel_of(self, party: Party) -> Channel | None:
        if self.own_identity and party.identity == self.own_identity:
            return None
        return self.mapping.channel_of(party)

    def route(self, party: Party, track_sid: str, kind: TrackKind) -> Routed | Ignored:
        if kind != "audio":
            return Ignored(f"a {kind} track (only audio is transcribed)")
        if self.own_identity and party.identity == self.own_identity:
            return Ignored("our own participant")
        channel = self.mapping.channel_of(party)
        if channel is None:
            return Ignored("the participant maps to no channel")
        feeding = self._feeding.get(channel)
        if feeding is not None and feeding[1] != track_sid:
            return Ignored(f"the {channel} channel is already fed by another track")
        self._feeding[channel] = (party.identity, track_sid)
        return Routed(channel)

    def release(self, track_sid: str) -> Channel | None:
        """The track no longer feeds its channel (unsubscribed, ended): another track may."""
        for channel, (_, sid) in list(self._feeding.items()):
            if sid == track_sid:
                del self._feeding[channel]
                return channel
        return None

    def feeders(self) -> dict[Channel, str]:
        """channel → the identity whose track feeds it now."""
        return {channel: identity for channel, (identity, _) in self._feeding.items()}


# -- audio ------------------------------------------------------------------------------------


class CallInput(Protocol):
    """What a pump feeds: ``LiveCall`` (or a test's recorder)."""

    call_id: str

    async def push(self, channel: Channel, pcm: Pcm16, rate: int) -> None: ...


FrameItem: TypeAlias = rtc.AudioFrameEvent | rtc.AudioFrame


def frame_pcm(frame: rtc.AudioFrame) -> Pcm16:
    """A frame's samples as int16 mono (the first channel of a multi-channel frame: the tap asks
    the SDK for mono, so this is only for other sources)."""
    n = frame.samples_per_channel * frame.num_channels
    pcm = np.frombuffer(frame.data, dtype=np.int16, count=n).copy()
    return split_channels(pcm, frame.num_channels)[0] if frame.num_channels > 1 else pcm


class AudioPump:
    """Frames of one track → ``call.push(channel, pcm, rate)``, until the frames end or the call
    has ended. Takes any async iterable of ``rtc.AudioFrameEvent`` (what ``rtc.AudioStream``
    yields) or ``rtc.AudioFrame``."""

    def __init__(self, call: CallInput, channel: Channel, frames: AsyncIterable[FrameItem]) -> None:
        self.call = call
        self.channel = channel
        self.frames = frames
        self.frames_in = 0
        self.samples_in = 0

    async def run(self) -> None:
        try:
            async for item in self.frames:
                frame = item.frame if isinstance(item, rtc.AudioFrameEvent) else item
                if frame.sample_rate <= 0 or frame.num_channels <= 0:
                    continue  # nothing a resampler can take
                pcm = frame_pcm(frame)
                self.frames_in += 1
                self.samples_in += pcm.size
                if pcm.size:
                    await self.call.push(self.channel, pcm, frame.sample_rate)
        except CallNotLiveError:
            return


class FrameStream(Protocol):
    """An ``rtc.AudioStream``, or any async iterator of frames that can be closed."""

    def __aiter__(self) -> AsyncIterator[FrameItem]: ...

    async def aclose(self) -> None: ...


# -- room events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrackSubscribed:
    party: Party
    track_sid: str
    kind: TrackKind
    track: Any  # the SDK's track: handed back to ``open_frames``


@dataclass(frozen=True, slots=True)
class TrackUnsubscribed:
    identity: str
    track_sid: str


@dataclass(frozen=True, slots=True)
class ParticipantLeft:
    party: Party


@dataclass(frozen=True, slots=True)
class RoomLeft:
    reason: str  # the call's end reason
    detail: str  # the SDK's DisconnectReason name


@dataclass(frozen=True, slots=True)
class StopRequested:
    reason: str


RoomEvent: TypeAlias = TrackSubscribed | TrackUnsubscribed | ParticipantLeft | RoomLeft | StopRequested
OpenFrames: TypeAlias = Callable[[Any], FrameStream]

COMPLETED_DISCONNECTS = frozenset({
    rtc.DisconnectReason.CLIENT_INITIATED,
    rtc.DisconnectReason.ROOM_DELETED,
    rtc.DisconnectReason.ROOM_CLOSED,
    rtc.DisconnectReason.PARTICIPANT_REMOVED,
})  # fmt: skip


def disconnect_reason(reason: int) -> RoomLeft:
    """The SDK's ``DisconnectReason`` as the call's end: the room's own end is ``completed``,
    a lost connection (signal closed, timeout, server shutdown, ...) ``dropped``."""
    try:
        name = rtc.DisconnectReason.Name(reason)  # type: ignore[arg-type]
    except ValueError:
        name = f"reason {reason}"
    return RoomLeft("completed" if reason in COMPLETED_DISCONNECTS else "dropped", name)


class CallFeed:
    """A live call fed by a room: routes each room event, runs one pump per routed track.

    ``handle`` answers the call's end reason when the event ends the call, else None."""

    def __init__(self, call: CallInput, router: TrackRouter, open_frames: OpenFrames) -> None:
        self.call = call
        self.router = router
        self.open_frames = open_frames
        self.pumps: dict[str, tuple[Channel, asyncio.Task[None]]] = {}  # by track sid
        self.ignored: deque[dict[str, str]] = deque(maxlen=MAX_IGNORED)
        self.subscriptions: dict[Channel, int] = {}  # tracks routed to each channel so far

    async def handle(self, event: RoomEvent) -> str | None:
        if isinstance(event, TrackSubscribed):
            self._subscribed(event)
        elif isinstance(event, TrackUnsubscribed):
            await self._stop_pump(event.track_sid)
        elif isinstance(event, ParticipantLeft):
            feeders = self.router.feeders()
            for sid, (channel, _) in list(self.pumps.items()):
                if feeders.get(channel) == event.party.identity:
                    await self._stop_pump(sid)
            if self.router.channel_of(event.party) == "customer":
                return "completed"  # the customer hung up
        elif isinstance(event, RoomLeft | StopRequested):
            return event.reason
        return None

    def _subscribed(self, event: TrackSubscribed) -> None:
        if event.track_sid in self.pumps:
            return  # already pumping (a repeated event)
        decision = self.router.route(event.party, event.track_sid, event.kind)
        if isinstance(decision, Ignored):
            self.ignored.append({"identity": event.party.identity[:128], "track_sid": event.track_sid[:64],
                                 "reason": decision.reason})  # fmt: skip
            log.info("livekit track ignored", extra={"call_id": self.call.call_id, "reason": decision.reason})
            return
        try:
            stream = self.open_frames(event.track)
        except Exception:
            self.router.release(event.track_sid)
            log.exception("livekit call %s: could not open the %s track", self.call.call_id, decision.channel)
            return
        channel = decision.channel
        self.subscriptions[channel] = self.subscriptions.get(channel, 0) + 1
        task = asyncio.create_task(self._pump(event.track_sid, channel, stream),
                                   name=f"livekit:{self.call.call_id}:{channel}")  # fmt: skip
        self.pumps[event.track_sid] = (channel, task)
        log.info("livekit track feeds a channel", extra={"call_id": self.call.call_id, "channel": channel})

    async def _pump(self, track_sid: str, channel: Channel, stream: FrameStream) -> None:
        try:
            await AudioPump(self.call, channel, stream).run()
        except Exception:
            log.exception("livekit call %s: the %s track failed", self.call.call_id, channel)
        finally:
            self.router.release(track_sid)
            entry = self.pumps.get(track_sid)
            if entry is not None and entry[1] is asyncio.current_task():
                del self.pumps[track_sid]
            with contextlib.suppress(Exception):
                await asyncio.wait_for(stream.aclose(), LEAVE_TIMEOUT_S)

    async def _stop_pump(self, track_sid: str) -> None:
        entry = self.pumps.pop(track_sid, None)
        if entry is None:
            self.router.release(track_sid)
            return
        entry[1].cancel()
        await asyncio.gather(entry[1], return_exceptions=True)

    async def close(self) -> None:
        for sid in list(self.pumps):
            await self._stop_pump(sid)


# -- the SDK ----------------------------------------------------------------------------------


class RoomLink:
    """The SDK side, kept thin: one ``rtc.Room`` subscribed to every remote audio track (and
    nothing else), its events as ``RoomEvent``s on ``events``, and an ``rtc.AudioStream`` per
    routed track."""

    def __init__(self, events: asyncio.Queue[RoomEvent]) -> None:
        self.events = events
        self.room = rtc.Room()
        self.room.on("track_published", self._track_published)
        self.room.on("track_subscribed", self._track_subscribed)
        self.room.on("track_unsubscribed", self._track_unsubscribed)
        self.room.on("participant_disconnected", self._participant_disconnected)
        self.room.on("disconnected", self._disconnected)

    async def connect(self, url: str, token: str) -> None:
        """Join; then subscribe to the audio already published (video is never subscribed to)."""
        options = rtc.RoomOptions(auto_subscribe=False, connect_timeout=CONNECT_TIMEOUT_S)
        await self.room.connect(url, token, options)
        for participant in self.room.remote_participants.values():
            for publication in participant.track_publications.values():
                self._subscribe_audio(publication)

    def _subscribe_audio(self, publication: rtc.RemoteTrackPublication) -> None:
        if publication.kind != rtc.TrackKind.KIND_AUDIO:
            return
        try:
            publication.set_subscribed(True)
        except Exception as exc:  # the SDK refusing one track must not end the call
            log.warning("livekit: subscribing to an audio track failed: %s", type(exc).__name__)

    @property
    def own_identity(self) -> str:
        return self.room.local_participant.identity

    @property
    def room_name(self) -> str:
        return self.room.name

    def open_frames(self, track: Any) -> rtc.AudioStream:
        return rtc.AudioStream(track, capacity=STREAM_CAPACITY, sample_rate=PIPELINE_RATE, num_channels=1)

    async def leave(self) -> None:
        try:
            await asyncio.wait_for(self.room.disconnect(), LEAVE_TIMEOUT_S)
        except Exception as exc:
            log.warning("livekit: leaving the room failed: %s", type(exc).__name__)

    def _track_published(
        self, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        self._subscribe_audio(publication)

    def _track_subscribed(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        kind: TrackKind = (
            "audio" if isinstance(track, rtc.RemoteAudioTrack)
            else "video" if isinstance(track, rtc.RemoteVideoTrack) else "other"
        )  # fmt: skip
        self.events.put_nowait(TrackSubscribed(Party.of(participant), publication.sid, kind, track))

    def _track_unsubscribed(
        self,
        track: rtc.Track | None,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        self.events.put_nowait(TrackUnsubscribed(participant.identity, publication.sid))

    def _participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        self.events.put_nowait(ParticipantLeft(Party.of(participant)))

    def _disconnected(self, reason: int) -> None:
        self.events.put_nowait(disconnect_reason(reason))


# -- sessions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionRequest:
    url: str
    token: str
    room: str
    identity: str  # the tap's own, from the token
    call_id: str
    mapping: ChannelMapping
    lang: str = "en"
    agent_id: str = ""
    queue: str = ""

    def meta(self) -> CallMeta:
        return CallMeta("livekit", self.call_id, self.lang, self.agent_id, self.queue, (("room", self.room),))


class LiveKitSession:
    """One room joined for one call: connecting → live → ended, or failed."""

    def __init__(self, tap: LiveKitTap, request: SessionRequest) -> None:
        self.tap = tap
        self.request = request
        self.state: SessionState = "connecting"
        self.error: str | None = None
        self.ended_reason: str | None = None
        self.events: asyncio.Queue[RoomEvent] = asyncio.Queue()
        self.feed: CallFeed | None = None
        self.call: LiveCall | None = None
        self.finished_at: float | None = None
        self._stop = asyncio.Event()
        self.done = asyncio.Event()

    @property
    def call_id(self) -> str:
        return self.request.call_id

    @property
    def active(self) -> bool:
        return self.state in ("connecting", "live")

    def stop(self, reason: str = "completed") -> None:
        if not self._stop.is_set():
            self._stop.set()
            self.events.put_nowait(StopRequested(reason))

    def describe(self) -> dict[str, Any]:
        feed = self.feed
        return {
            "call_id": self.call_id,
            "state": self.state,
            "room": self.request.room,
            "error": self.error,
            "ended_reason": self.ended_reason,
            "channels": feed.router.feeders() if feed and self.state == "live" else {},
            "ignored": list(feed.ignored) if feed else [],
        }

    def _fail(self, error: str) -> None:
        self.state = "failed"
        self.error = error
        log.warning("livekit session failed", extra={"call_id": self.call_id, "error": error[:300]})

    async def run(self) -> None:
        link: RoomLink | None = None
        try:
            link = RoomLink(self.events)
            if await self._join(link):
                try:
                    await self._serve(link)
                finally:
                    await link.leave()
        except Exception as exc:
            log.exception("livekit session %s failed", self.call_id)
            if self.state != "ended":
                self._fail(f"the tap failed: {type(exc).__name__}")
        finally:
            if self.active:  # cancelled (the service is stopping)
                self.state = "ended"
                self.ended_reason = self.ended_reason or "aborted"
            self.finished_at = time.monotonic()
            self.done.set()

    async def _join(self, link: RoomLink) -> bool:
        """True once the room is joined; False (state set) when it could not be, or DELETE came."""
        connect = asyncio.create_task(link.connect(self.request.url, self.request.token),
                                      name=f"livekit:{self.call_id}:connect")  # fmt: skip
        stopped = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait(
                {connect, stopped}, timeout=JOIN_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopped.cancel()
            if not connect.done():  # given up on: should it join after all, leave at once
                connect.add_done_callback(lambda t: self._late_join(t, link))
        if not connect.done():
            if self._stop.is_set():
                self.state, self.ended_reason = "ended", "stopped before the room was joined"
            else:
                self._fail(f"no answer from the LiveKit server within {JOIN_TIMEOUT_S:.0f} s")
            return False
        exc = connect.exception()
        if isinstance(exc, rtc.ConnectError):
            self._fail(f"could not join the LiveKit room: {exc.message}")
            return False
        if exc is not None:
            self._fail(f"could not join the LiveKit room: {type(exc).__name__}: {exc}")
            return False
        if self._stop.is_set():
            await link.leave()
            self.state, self.ended_reason = "ended", "stopped before the room was joined"
            return False
        return True

    def _late_join(self, task: asyncio.Task[None], link: RoomLink) -> None:
        if not task.cancelled() and task.exception() is None:
            self.tap.spawn(link.leave(), f"livekit:{self.call_id}:late-leave")

    async def _serve(self, link: RoomLink) -> None:
        ctx = self.tap.ctx
        if ctx.closing.is_set():
            self._fail("the service is stopping")
            return
        if link.room_name and link.room_name != self.request.room:
            log.warning("livekit: joined another room than the token names", extra={"call_id": self.call_id})
        router = TrackRouter(self.request.mapping, own_identity=link.own_identity or self.request.identity)
        try:
            call = await ctx.live.open_call(self.request.meta())
        except (TooManyCallsError, InputError) as exc:
            self._fail(str(exc))
            return
        self.call = call
        feed = self.feed = CallFeed(call, router, link.open_frames)
        self.state = "live"
        log.info("livekit call started", extra={"call_id": self.call_id})
        reason = "error"
        try:
            reason = await self._follow(feed, call)
        except asyncio.CancelledError:
            reason = "aborted"
            raise
        finally:
            await feed.close()
            try:
                await call.end(reason)
            except Exception:
                log.exception("livekit: ending call %s failed", self.call_id)
            self.state, self.ended_reason = "ended", reason
            log.info("livekit call ended", extra={"call_id": self.call_id, "reason": reason})

    async def _follow(self, feed: CallFeed, call: LiveCall) -> str:
        while True:
            if call.ended:
                return "aborted"  # ended by the service (shutting down)
            try:
                event = await asyncio.wait_for(self.events.get(), POLL_S)
            except TimeoutError:
                continue
            reason = await feed.handle(event)
            if reason is not None:
                return reason


class SessionConflictError(Exception):
    """The call id is in use (409)."""


class LiveKitTap:
    """The service's LiveKit sessions by call id: at most ``max_sessions`` joining or live."""

    def __init__(self, ctx: AppContext, max_sessions: int = MAX_SESSIONS) -> None:
        self.ctx = ctx
        self.max_sessions = max_sessions
        self.sessions: dict[str, LiveKitSession] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def active(self) -> list[LiveKitSession]:
        return [s for s in self.sessions.values() if s.active]

    def start(self, request: SessionRequest) -> LiveKitSession:
        """A new session, joining in the background. ``SessionConflictError``: the call id is in
        use; ``TooManyCallsError``: no room for another session or call."""
        existing = self.sessions.get(request.call_id)
        if existing is not None and existing.active:
            raise SessionConflictError(f"a LiveKit session for call {request.call_id} is running")
        if request.call_id in self.ctx.live.calls or self.ctx.board.get(request.call_id) is not None:
            raise SessionConflictError(f"call id {request.call_id} is already in use")
        active = self.active()
        if len(active) >= self.max_sessions:
            raise TooManyCallsError(f"this service runs at most {self.max_sessions} LiveKit sessions at once")
        connecting = sum(1 for s in active if s.state == "connecting")
        if self.ctx.live.running + connecting >= self.ctx.live.max_calls:
            raise TooManyCallsError(f"this service runs at most {self.ctx.live.max_calls} calls at once")
        session = LiveKitSession(self, request)
        self.sessions.pop(request.call_id, None)
        self.sessions[request.call_id] = session
        self._prune()
        self.spawn(session.run(), f"livekit:{request.call_id}")
        return session

    def _prune(self) -> None:
        finished = sorted((s for s in self.sessions.values() if not s.active and s.finished_at is not None),
                          key=lambda s: s.finished_at or 0.0)  # fmt: skip
        for session in finished[: max(0, len(finished) - KEPT_FINISHED)]:
            self.sessions.pop(session.call_id, None)

    async def stop(self, session: LiveKitSession, timeout_s: float = STOP_WAIT_S) -> None:
        session.stop("completed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.done.wait(), timeout_s)

    async def close(self) -> None:
        """Shutdown: every session leaves its room and ends its call (``aborted``)."""
        for session in self.active():
            session.stop("aborted")
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=STOP_WAIT_S)


def get_tap(request: Request) -> LiveKitTap:
    tap: LiveKitTap | None = getattr(request.app.state, "livekit_tap", None)
    if tap is None:
        tap = request.app.state.livekit_tap = LiveKitTap(get_ctx(request))
    return tap


async def close_livekit_tap(app: Any) -> None:
    """For the service's shutdown (optional: without it, ``LiveCalls.close`` ending the calls is
    enough, each session then leaves its room within ``POLL_S``)."""
    tap: LiveKitTap | None = getattr(app.state, "livekit_tap", None)
    if tap is not None:
        await tap.close()


Tap = Annotated[LiveKitTap, Depends(get_tap)]
Integrator = Annotated[Principal, Depends(authorize("taps.connect"))]


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
