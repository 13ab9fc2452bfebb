"""One call through the media pipeline: per-channel queues and transcribers, call events.

Drop policy. Each channel has a bounded queue (``queue_s`` of audio). A *live* tap must never
block the network reader, so on overflow the oldest frame is dropped and counted
(``frames_dropped`` in ``call.ended``) — the transcriber keeps call time right across the hole.
A *replay* blocks instead (``overflow="block"``): the file waits, nothing is lost.
Transcripts are never dropped: they go straight to the bus, which does not drop. Partials are
skipped (and counted) while a live call is behind: more than half a second of its audio waiting,
or every speech worker busy with a decode (the recogniser is saturated: finals first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

from sidecar.engine import SpeechEngine
from sidecar.frames import AudioFrame
from sidecar.kernel.bus import Bus
from sidecar.kernel.events import CallEnded, CallStarted, Channel, Event
from sidecar.transcriber import CallLanguage, ChannelTranscriber

log = logging.getLogger(__name__)
Overflow = Literal["block", "drop_oldest"]
_TYPICAL_FRAME_S = 0.02
BEHIND_S = 1.0  # the backlog a channel reports while every speech worker is busy: partials skipped


class CallPipeline:
    def __init__(
        self,
        call_id: str,
        *,
        bus: Bus,
        engine: SpeechEngine,
        lang: str = "en",
        channels: Sequence[Channel] = ("agent", "customer"),
        overflow: Overflow = "drop_oldest",
        catch_up: bool = True,
        emit: Callable[[Event], Awaitable[Event]] | None = None,
    ) -> None:
        self.call_id = call_id
        self.bus = bus
        # where events go: the bus, or a stage in front of it (the coach redacts and adds to them)
        self.emit = emit or bus.publish
        self.language = CallLanguage(lang)
        self.overflow = overflow
        # live (and --realtime) audio: skip partial decodes while behind; a fast replay never is
        self.catch_up = catch_up
        self.frames_dropped = 0
        settings = engine.settings.stream
        maxsize = max(1, int(settings.queue_s / _TYPICAL_FRAME_S))
        if overflow == "block" and not catch_up:
            # a fast replay: the channels advance together, a frame apart at most, so each
            # channel's events come in call-time order as they would live (the coach reads the
            # agent's turn before the customer's reply to it), however the decodes interleave
            maxsize = 1
        self._queues: dict[Channel, asyncio.Queue[AudioFrame | None]] = {
            ch: asyncio.Queue(maxsize) for ch in channels
        }
        self._engine = engine
        decode = engine.decoder(lang)
        self.transcribers: dict[Channel, ChannelTranscriber] = {
            ch: ChannelTranscriber(
                call_id=call_id,
                channel=ch,
                vad=engine.vad_stream(),
                decode=decode,
                run_blocking=engine.run,
                emit=self.emit,
                language=self.language,
                settings=settings,
            )
            for ch in channels
        }
        self._tasks: dict[Channel, asyncio.Task[None]] = {}
        self._last_t = 0.0
        self._ended = False

    async def start(self, source: str, *, realtime: bool, meta: dict[str, str] | None = None) -> None:
        payload = CallStarted(source, self.language.requested, tuple(self._queues), realtime, meta or {})
        await self.emit(Event("call.started", self.call_id, None, 0.0, 0.0, payload))
        for ch in self._queues:
            self._tasks[ch] = asyncio.create_task(self._run_channel(ch), name=f"{self.call_id}:{ch}")

    async def push(self, frame: AudioFrame) -> None:
        task = self._tasks[frame.channel]
        if task.done():  # the channel failed: surface its error to the feeder
            task.result()
            raise RuntimeError(f"channel {frame.channel} of call {self.call_id} has stopped")
        queue = self._queues[frame.channel]
        self._last_t = max(self._last_t, frame.t0 + frame.duration_s)
        if self.overflow == "block":
            await queue.put(frame)
            return
        if queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
                self.frames_dropped += 1
        queue.put_nowait(frame)

    async def _run_channel(self, channel: Channel) -> None:
        queue, transcriber = self._queues[channel], self.transcribers[channel]
        while (frame := await queue.get()) is not None:
            backlog = 0.0
            if self.catch_up:  # behind: input waiting here, or every speech worker busy
                backlog = queue.qsize() * frame.duration_s
                if self._engine.saturated:
                    backlog = max(backlog, BEHIND_S)
            await transcriber.feed(frame, backlog_s=backlog)
        await transcriber.finish()

    async def end(self, reason: str = "completed") -> None:
        """End of input: drain every channel, finalise open segments, publish ``call.ended``."""
        if self._ended:
            return
        self._ended = True
        for ch, queue in self._queues.items():
            if not self._tasks[ch].done():
                await queue.put(None)
        results = await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        error = next((r for r in results if isinstance(r, BaseException)), None)
        await self.emit(
            Event(
                "call.ended", self.call_id, None, 0.0, self._last_t,
                CallEnded("error" if error else reason, self._last_t, self.stats()),
            )
        )  # fmt: skip
        if error is not None:
            raise error

    async def abort(self) -> None:
        """Stop at once (the process is shutting down): cancel channels, still end the call."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if not self._ended:
            self._ended = True
            payload = CallEnded("aborted", self._last_t, self.stats())
            await self.emit(Event("call.ended", self.call_id, None, 0.0, self._last_t, payload))

    @property
    def last_t(self) -> float:
        """The call time of the latest audio pushed (seconds)."""
        return self._last_t

    def stats(self) -> dict[str, float]:
        out: dict[str, float] = {"frames_dropped": float(self.frames_dropped)}
        for ch, tr in self.transcribers.items():
            s = tr.stats
            out[f"{ch}_segments"] = float(s.segments)
            out[f"{ch}_finals"] = float(s.finals)
            out[f"{ch}_partials"] = float(s.partials)
            out[f"{ch}_skipped_partials"] = float(s.skipped_partials)
            out[f"{ch}_decode_s"] = round(sum(s.decode_s), 3)
        return out
