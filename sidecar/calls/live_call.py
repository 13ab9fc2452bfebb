"""One call fed by a tap (``LiveCall``): PCM of a channel in at its own rate, resampled and framed
onto the call's time line, into the call's pipeline (VAD, ASR) and its coach sink; and what a tap
knows about a call when it starts (``CallMeta``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from coach.sink import CoachSink
from sidecar.audio import PIPELINE_RATE, Pcm16, StreamResampler
from sidecar.call import CallPipeline
from sidecar.calls.errors import CallNotLiveError
from sidecar.frames import AudioFrame
from sidecar.kernel.bus import BusUnavailableError
from sidecar.kernel.clock import RealtimeClock
from sidecar.kernel.events import Channel

if TYPE_CHECKING:
    from sidecar.calls.registry import LiveCalls

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CallMeta:
    """What a tap knows about a call when it starts."""

    source: str  # the tap: "twilio", "audiohook", "webrtc", ...
    call_id: str | None = None
    lang: str = "en"
    agent_id: str = ""
    queue: str = ""
    extra: tuple[tuple[str, str], ...] = ()  # the platform's own ids (stream sid, session id, ...)

    def as_meta(self) -> dict[str, str]:
        return {"tap": self.source, "agent_id": self.agent_id, "queue": self.queue, **dict(self.extra)}


GAP_JUMP_S = 1.0  # a channel this far behind the wall clock had a hole (DTX, a stalled leg): skip it


class LiveCall:
    """One call fed by a tap: ``push`` PCM of a channel at its own rate; ``end`` once.

    Each channel's call time counts its own samples, from the wall-clock moment its first audio
    arrived (legs that join late, e.g. AudioSocket, line up), and jumps forward over holes longer
    than ``GAP_JUMP_S`` (a source that sends nothing in silence stays in step with the call).
    """

    FRAME = 320  # 20 ms at 16 kHz
    speech: ClassVar[bool] = True  # needs the speech models (a text chat, ``sidecar.taps.chat``, does not)

    def __init__(self, live: LiveCalls, call_id: str, meta: CallMeta, channels: tuple[Channel, ...]) -> None:
        self.live = live
        self.call_id = call_id
        self.meta = meta
        self.channels = channels
        self.clock = RealtimeClock()
        # coaching in the call's own worker: the call's transcripts never wait for it
        self.sink = CoachSink(live.coach, live.bus, knowledge=live.knowledge, background=True)
        self.pipeline = CallPipeline(call_id, bus=live.bus, engine=live.engine, lang=meta.lang,
                                     channels=channels, overflow="drop_oldest", catch_up=True,
                                     emit=self.sink)  # fmt: skip
        self._resamplers: dict[Channel, StreamResampler] = {}
        self._pending: dict[Channel, Pcm16] = {}
        self._t: dict[Channel, float] = {}
        self.ended = False
        self.listeners: list[Callable[[Channel, Pcm16], None]] = []  # e.g. a supervisor listening in

    async def start(self) -> None:
        await self.pipeline.start(self.meta.source, realtime=True, meta=self.meta.as_meta())
        self.sink.start_ticking(self.clock.elapsed)

    async def push(self, channel: Channel, pcm: Pcm16, rate: int) -> None:
        if self.ended:
            raise CallNotLiveError(f"call {self.call_id} has ended")
        if channel not in self.channels:
            raise ValueError(f"call {self.call_id} has no {channel} channel")
        resampler = self._resamplers.get(channel)
        if resampler is None or resampler.src_rate != rate:
            resampler = self._resamplers[channel] = StreamResampler(rate)
        audio = resampler.process(pcm)
        for listener in list(self.listeners):
            try:
                listener(channel, audio)
            except Exception:  # a listener (e.g. a supervisor's listen-in) never breaks the call
                log.exception("call %s: a listener failed and was removed", self.call_id)
                self.listeners.remove(listener)
        now = self.clock.elapsed()
        pending = self._pending.get(channel)
        if pending is not None and pending.size:
            audio = np.concatenate([pending, audio])
        t = self._t.get(channel)
        if t is None or now - (t + audio.size / PIPELINE_RATE) > GAP_JUMP_S:
            t = max(t or 0.0, now - audio.size / PIPELINE_RATE)
            t = round(t / 0.02) * 0.02  # on the frame grid
        usable = audio.size - audio.size % self.FRAME
        for start in range(0, usable, self.FRAME):
            await self.pipeline.push(AudioFrame(self.call_id, channel, audio[start : start + self.FRAME], t))
            t += self.FRAME / PIPELINE_RATE
        self._t[channel] = t
        self._pending[channel] = audio[usable:]

    async def end(self, reason: str = "completed") -> None:
        """The far side went away (or hung up): finish every channel and publish ``call.ended``."""
        if self.ended:
            return
        self.ended = True
        try:
            await self.pipeline.end(reason)
        except BusUnavailableError:
            await self.end_without_bus(self.pipeline.last_t, reason, self.pipeline.stats())
        finally:
            await self.sink.stop_ticking()
            self.live.forget(self.call_id)

    async def end_without_bus(self, t: float, reason: str, stats: dict[str, float]) -> None:
        """The bus gave up on this call's ``call.ended`` (Redis away past its wait): the coach
        stops, and the end goes out once the bus is back (``bus_unavailable`` in its stats)."""
        await self.sink.abandon(self.call_id)
        self.live.end_when_bus_back(self.call_id, t, reason, stats)
        log.warning(
            "call ended while the bus is away: its end waits for the bus", extra={"call_id": self.call_id}
        )
