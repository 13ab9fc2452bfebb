"""WebRTC tap: audio frames in and out: decoded frames as mono int16, and ``PacedAudioTrack``,
the outgoing track (listen-in, the barge relay) that mixes what it is fed and paces it in real time.

Drop policy (outgoing): a ``PacedAudioTrack`` holds at most ``MAX_BUFFER_S`` per source and drops
the oldest audio beyond that (a slow or stalled consumer costs latency up to that bound, never
memory).
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from sidecar.audio import Pcm16

MAX_BUFFER_S = 0.5  # per source of an outgoing track: the most latency a slow consumer can build up
PRIME_S = 0.04  # an outgoing source starts (and restarts after running dry) with this much buffered
FRAME_S = 0.02


def mono_int16(frame: av.AudioFrame, downmix: av.AudioResampler) -> list[tuple[Pcm16, int]]:
    """A decoded frame as int16 mono PCM at its own rate (FFmpeg downmixes stereo)."""
    return [(f.to_ndarray().reshape(-1).astype(np.int16, copy=False), f.sample_rate)
            for f in downmix.resample(frame)]  # fmt: skip


def mono_downmixer() -> av.AudioResampler:
    return av.AudioResampler(format="s16", layout="mono")


class _Source:
    """One source's bounded FIFO of samples (drop oldest beyond ``limit``), primed before playing."""

    def __init__(self, limit: int, prime: int) -> None:
        self.chunks: deque[Pcm16] = deque()
        self.size = 0
        self.limit = limit
        self.prime = prime
        self.playing = False
        self.dropped = 0

    def feed(self, pcm: Pcm16) -> None:
        if pcm.size == 0:
            return
        self.chunks.append(pcm)
        self.size += pcm.size
        while self.size > self.limit:
            over = self.size - self.limit
            head = self.chunks[0]
            if head.size <= over:
                self.chunks.popleft()
                self.size -= head.size
                self.dropped += head.size
            else:
                self.chunks[0] = head[over:]
                self.size -= over
                self.dropped += over

    def take(self, n: int) -> Pcm16 | None:
        if not self.playing:
            if self.size < self.prime:
                return None
            self.playing = True
        out = np.zeros(n, dtype=np.int16)
        filled = 0
        while filled < n and self.chunks:
            head = self.chunks[0]
            k = min(n - filled, head.size)
            out[filled : filled + k] = head[:k]
            filled += k
            self.size -= k
            if k == head.size:
                self.chunks.popleft()
            else:
                self.chunks[0] = head[k:]
        if filled < n:
            self.playing = False  # ran dry: prime again before playing on
        return out


class PacedAudioTrack(MediaStreamTrack):
    """An outgoing audio track: 20 ms mono frames at ``rate``, in real time, mixing what was fed
    per source (``feed`` never blocks; each source keeps at most ``MAX_BUFFER_S``, oldest dropped;
    a source with nothing buffered is silence)."""

    kind = "audio"

    def __init__(self, rate: int) -> None:
        super().__init__()
        self.rate = rate
        self.samples = round(rate * FRAME_S)
        self._sources: dict[str, _Source] = {}
        self._start: float | None = None
        self._pts = 0

    def feed(self, source: str, pcm: Pcm16) -> None:
        buffer = self._sources.get(source)
        if buffer is None:
            buffer = self._sources[source] = _Source(
                round(self.rate * MAX_BUFFER_S), round(self.rate * PRIME_S)
            )
        buffer.feed(pcm)

    def clear(self, source: str) -> None:
        self._sources.pop(source, None)

    @property
    def dropped_samples(self) -> int:
        return sum(s.dropped for s in self._sources.values())

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._pts += self.samples
            wait = self._start + self._pts / self.rate - now
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -MAX_BUFFER_S:  # the consumer stalled: carry on from now, no burst
                self._start = now - self._pts / self.rate
        mix = np.zeros(self.samples, dtype=np.int32)
        for source in self._sources.values():
            pcm = source.take(self.samples)
            if pcm is not None:
                mix += pcm
        frame = av.AudioFrame.from_ndarray(
            np.clip(mix, -32768, 32767).astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self.rate
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.rate)
        return frame
