"""Audio that arrives while a tap's call is still starting (a model may be loading).

Kept per channel up to ``max_s`` seconds (drop policy: the channel's oldest audio goes first,
counted in ``dropped_s``), then handed to the call in one piece per channel, so the call's time
lines up with what was said. Audio that arrives during the hand-over is handed over too.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from sidecar.audio import Pcm16
from sidecar.calls.live_call import LiveCall
from sidecar.kernel.events import Channel


class HeldAudio:
    def __init__(self, max_s: float) -> None:
        self.max_s = max_s
        self._chunks: deque[tuple[Channel, int, Pcm16]] = deque()
        self._samples: dict[Channel, int] = {}
        self.dropped_s = 0.0

    def __bool__(self) -> bool:
        return bool(self._chunks)

    def hold(self, channel: Channel, pcm: Pcm16, rate: int) -> None:
        self._chunks.append((channel, rate, pcm))
        self._samples[channel] = self._samples.get(channel, 0) + pcm.size
        while self._samples[channel] > self.max_s * rate:
            index = next(i for i, (ch, _, _) in enumerate(self._chunks) if ch == channel)
            _, old_rate, old = self._chunks[index]
            del self._chunks[index]
            self._samples[channel] -= old.size
            self.dropped_s += old.size / old_rate

    async def hand_over(self, call: LiveCall) -> None:
        """Push everything held into ``call``, one piece per channel (and rate)."""
        while self._chunks:
            chunks = list(self._chunks)
            self._chunks.clear()
            self._samples.clear()
            for channel in call.channels:
                mine = [(rate, pcm) for ch, rate, pcm in chunks if ch == channel]
                for rate in dict.fromkeys(r for r, _ in mine):  # a leg does not change rate mid-call
                    await call.push(channel, np.concatenate([p for r, p in mine if r == rate]), rate)
