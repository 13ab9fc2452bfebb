"""LiveKit tap: the SDK side, kept thin: joining and leaving the room, its events as typed
``RoomEvent`` values, and an ``rtc.AudioStream`` per routed track.

The tap subscribes to every remote audio track as it is published (``auto_subscribe`` is off;
video is never subscribed to). Each stream is 16 kHz mono (the SDK resamples and downmixes) and
holds at most ``STREAM_CAPACITY`` frames, oldest dropped. Room events (not audio) go through an
unbounded queue: a handful per call. The room disconnecting us is ``completed`` for a deleted or
closed room or our removal, ``dropped`` otherwise (``disconnect_reason``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, TypeAlias

from livekit import rtc

from sidecar.audio import PIPELINE_RATE
from sidecar.taps.livekit_routing import Party, TrackKind

log = logging.getLogger("assist.taps.livekit")

CONNECT_TIMEOUT_S = 5.0  # the SDK's per-attempt signalling timeout (it retries a few times)
LEAVE_TIMEOUT_S = 5.0
STREAM_CAPACITY = 50  # frames per track the SDK holds for a late reader (0.5 s at 10 ms)


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
