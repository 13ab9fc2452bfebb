"""The injected clock: the same pipeline replays as fast as possible or in real time.

Nothing in the pipeline reads ``time.time()`` directly: pacing goes through ``sleep_until``
(media seconds since the call started) and event stamps through ``wall``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def wall(self) -> float:
        """Wall-clock epoch seconds (for ``emitted_at``)."""
        ...

    def elapsed(self) -> float:
        """Seconds since the clock started (monotonic)."""
        ...

    async def sleep_until(self, t: float) -> None:
        """Wait until ``elapsed() >= t``."""
        ...


class RealtimeClock:
    """Paces media at its own speed: a live call, or ``--realtime`` replay."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def wall(self) -> float:
        return time.time()

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    async def sleep_until(self, t: float) -> None:
        delay = t - self.elapsed()
        if delay > 0:
            await asyncio.sleep(delay)


class FastClock:
    """Never waits: replay as fast as the pipeline can take it.

    ``elapsed`` follows the media time asked for, so what was fed is what has "happened".
    """

    def __init__(self) -> None:
        self._now = 0.0

    def wall(self) -> float:
        return time.time()

    def elapsed(self) -> float:
        return self._now

    async def sleep_until(self, t: float) -> None:
        self._now = max(self._now, t)
        await asyncio.sleep(0)  # let the pipeline run between frames
