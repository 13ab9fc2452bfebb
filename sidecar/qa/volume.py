"""(b) A queue's call volume at twice its usual level or more.

``VolumeBaseline`` keeps, per local day, per queue, the count of calls in each hour of the day
(a few days of 24 counters: bounded). The usual volume of a trailing window is the mean over the
previous days of the same hours (see ``QueueSpikeConfig``). ``QueueSpike`` compares each queue's
calls in the trailing window with it.
"""

from __future__ import annotations

import math
from collections import deque

from sidecar.qa.config import QueueSpikeConfig
from sidecar.qa.digest import CallDigest
from sidecar.qa.stats import poisson_tail
from sidecar.qa.warning import EarlyWarning, Episodes, MonotonicTime

DAY = 86_400.0


class VolumeBaseline:
    def __init__(self, config: QueueSpikeConfig) -> None:
        self.config = config
        self.counts: dict[int, dict[str, list[int]]] = {}  # local day -> queue -> calls per hour

    def _local(self, at: float) -> tuple[int, int]:
        day, second = divmod(at + self.config.utc_offset_s, DAY)
        return int(day), int(second // 3600)

    def add(self, queue: str, at: float) -> None:
        day, hour = self._local(at)
        self.counts.setdefault(day, {}).setdefault(queue, [0] * 24)[hour] += 1
        for old in [d for d in self.counts if d < day - self.config.history_days]:
            del self.counts[old]

    def history(self, at: float) -> list[int]:
        """The previous days (with calls) the usual is taken over, at time ``at``."""
        today, _ = self._local(at)
        return sorted(d for d in self.counts if d < today)[-self.config.history_days :]

    def usual(self, queue: str, start: float, end: float) -> float | None:
        """Expected calls of the queue in ``[start, end]`` from the previous days; ``None`` with
        fewer than ``min_history_days`` of them."""
        days = self.history(end)
        if len(days) < self.config.min_history_days:
            return None
        expected, t = 0.0, start
        while t < end:
            slot_end = min(
                end, (math.floor((t + self.config.utc_offset_s) / 3600) + 1) * 3600 - self.config.utc_offset_s
            )
            _, hour = self._local(t)
            per_hour = sum(self.counts[d].get(queue, [0] * 24)[hour] for d in days) / len(days)
            expected += per_hour * (slot_end - t) / 3600
            t = slot_end
        return expected


class QueueSpike:
    def __init__(self, config: QueueSpikeConfig) -> None:
        self.config = config
        self.baseline = VolumeBaseline(config)
        self.episodes = Episodes("queue_spike")
        self.time = MonotonicTime()
        self.windows: dict[str, deque[tuple[float, str]]] = {}  # queue -> (at, call id)

    def _count(self, queue: str, now: float) -> int:
        window = self.windows.get(queue)
        if window is None:
            return 0
        while window and window[0][0] < now - self.config.window_s:
            window.popleft()
        return len(window)

    def _usual(self, queue: str, now: float) -> float | None:
        usual = self.baseline.usual(queue, now - self.config.window_s, now)
        return None if usual is None else max(usual, self.config.min_expected)

    def observe(self, digest: CallDigest, at: float) -> list[EarlyWarning]:
        now = self.time.advance(at)
        out = self.advance(now)
        c, queue = self.config, digest.queue
        self.baseline.add(queue, now)
        self.windows.setdefault(queue, deque()).append((now, digest.call_id))
        n = self._count(queue, now)
        usual = self._usual(queue, now)
        if (
            usual is not None
            and n >= c.min_calls
            and n >= c.ratio * usual
            and poisson_tail(n, usual) <= c.max_p
        ):
            window = self.windows[queue]
            out += _one(self.episodes.raise_(
                queue, now, window[0][0], [cid for _, cid in window], n / usual, c.ratio,
                f"queue {queue}: {n} calls in the last {c.window_s / 60:.0f} min, "
                f"{n / usual:.1f}x the usual {usual:.1f}",
            ))  # fmt: skip
        return out

    def advance(self, at: float) -> list[EarlyWarning]:
        now = self.time.advance(at)
        out: list[EarlyWarning] = []
        for queue in list(self.episodes.open):
            n, usual = self._count(queue, now), self._usual(queue, now)
            ratio = n / usual if usual else 0.0
            if ratio < self.config.clear_ratio:
                out += _one(self.episodes.clear(queue, now, ratio, self.config.clear_ratio,
                                                f"queue {queue} back to {ratio:.1f}x its usual volume"))  # fmt: skip
        for queue in [q for q in self.windows if not self._count(q, now) and q not in self.episodes.open]:
            del self.windows[queue]
        return out


def _one(warning: EarlyWarning | None) -> list[EarlyWarning]:
    return [] if warning is None else [warning]
