"""LiveKit tap: feeding the call from the room's tracks: each room event routed, one pump per
routed audio track reading its frames into ``LiveCall.push``.

Drop policy: each subscribed audio track has an ``rtc.AudioStream`` (``sidecar.taps.livekit_room``:
16 kHz mono, at most ``STREAM_CAPACITY`` frames, oldest dropped), read by its own task that never
waits on ASR: ``LiveCall.push`` only resamples and queues, and the call's pipeline drops its oldest
audio when ASR falls behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, Protocol, TypeAlias

import numpy as np
from livekit import rtc

from sidecar.audio import Pcm16, split_channels
from sidecar.calls.errors import CallNotLiveError
from sidecar.kernel.events import Channel
from sidecar.taps.livekit_room import (
    LEAVE_TIMEOUT_S,
    ParticipantLeft,
    RoomEvent,
    RoomLeft,
    StopRequested,
    TrackSubscribed,
    TrackUnsubscribed,
)
from sidecar.taps.livekit_routing import Ignored, TrackRouter

log = logging.getLogger("assist.taps.livekit")

MAX_IGNORED = 20  # ignored tracks listed per session


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


OpenFrames: TypeAlias = Callable[[Any], FrameStream]


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
