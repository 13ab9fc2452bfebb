"""Cross-call early-warning detectors: small stateful classes over explicit time windows.

Each one is fed ``observe(digest, at)`` for every ended call in order of ``at`` (seconds; the
engine passes the call's end) and ``advance(at)`` when time passes with no call; both return the
warnings raised or cleared by that step. None reads a clock; an earlier ``at`` than one already
seen raises ``OutOfOrderError``. State is bounded by the calls inside each detector's windows.
The queue-volume detector lives in ``sidecar.qa.volume``.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from sidecar.qa.config import AgentHotConfig, ComplaintBurstConfig, NegativeShareConfig, TopicShareConfig
from sidecar.qa.digest import CallDigest
from sidecar.qa.stats import mean, poisson_tail, slope_per_hour, two_proportion_z, welch_t
from sidecar.qa.warning import EarlyWarning, Episodes, MonotonicTime


def _some(*warnings: EarlyWarning | None) -> list[EarlyWarning]:
    return [w for w in warnings if w is not None]


# ---------------------------------------------------------------------------------------------- (a)


class ComplaintBurst:
    """Several customers complaining about the same topic within a window, more than the topic's
    usual rate explains."""

    def __init__(self, config: ComplaintBurstConfig) -> None:
        self.config = config
        self.episodes = Episodes("complaint_burst")
        self.time = MonotonicTime()
        self.recent: dict[str, deque[tuple[float, str, str]]] = {}  # topic -> (at, call id, customer)
        self.window_calls: deque[float] = deque()  # every call in the window
        self.day_calls: deque[tuple[float, tuple[str, ...]]] = deque()  # every call in the reference
        self.day_complaints: Counter[str] = Counter()

    def _count(self, topic: str, now: float) -> int:
        window = self.recent.get(topic)
        if window is None:
            return 0
        while window and window[0][0] < now - self.config.window_s:
            window.popleft()
        if not window:
            del self.recent[topic]
            return 0
        return len({customer for _, _, customer in window})

    def _slide(self, now: float) -> None:
        while self.window_calls and self.window_calls[0] < now - self.config.window_s:
            self.window_calls.popleft()
        while self.day_calls and self.day_calls[0][0] < now - self.config.reference_s:
            self.day_complaints.subtract(self.day_calls.popleft()[1])

    def usual(self, topic: str) -> float:
        """Complaints about the topic the window's calls would bring at the usual rate (the rate
        of the reference's calls before the window)."""
        c = self.config
        before = self.day_complaints[topic] - len(self.recent.get(topic, ()))
        calls_before = len(self.day_calls) - len(self.window_calls)
        share = (before + c.prior_calls * c.prior_share) / (calls_before + c.prior_calls)
        return len(self.window_calls) * share

    def observe(self, digest: CallDigest, at: float) -> list[EarlyWarning]:
        now = self.time.advance(at)
        out = self.advance(now)
        self.window_calls.append(now)
        self.day_calls.append((now, digest.complaint_topics))
        self.day_complaints.update(digest.complaint_topics)
        c = self.config
        for topic in digest.complaint_topics:
            self.recent.setdefault(topic, deque()).append((now, digest.call_id, digest.customer))
            n = self._count(topic, now)
            if n >= c.min_customers and poisson_tail(n, self.usual(topic)) <= c.max_p:
                window = self.recent[topic]
                out += _some(self.episodes.raise_(
                    topic, now, window[0][0], [cid for _, cid, _ in window], n, c.min_customers,
                    f"{n} customers complained about {topic} within {c.window_s / 60:.0f} min "
                    f"(usually {self.usual(topic):.1f})",
                ))  # fmt: skip
        return out

    def advance(self, at: float) -> list[EarlyWarning]:
        now = self.time.advance(at)
        self._slide(now)
        out: list[EarlyWarning] = []
        for topic in list(self.recent):  # every topic's window slides (a topic gone quiet is forgotten)
            if topic not in self.episodes.open:
                self._count(topic, now)
        for topic in list(self.episodes.open):
            if (n := self._count(topic, now)) < self.config.clear_below:
                out += _some(self.episodes.clear(topic, now, n, self.config.clear_below,
                                                 f"complaints about {topic} back to {n} in the window"))  # fmt: skip
        return out


# ---------------------------------------------------------------------------------------------- (c)


class TopicShare:
    """A topic's share of all calls rising: the trailing window against the window before it.

    Two sliding windows with running counts: a call enters ``recent``, moves to ``reference`` when
    it is older than ``recent_s`` and leaves when older than ``recent_s + reference_s``.
    """

    def __init__(self, config: TopicShareConfig) -> None:
        self.config = config
        self.episodes = Episodes("topic_share")
        self.time = MonotonicTime()
        self.recent: deque[tuple[float, str, tuple[str, ...]]] = deque()
        self.reference: deque[tuple[float, tuple[str, ...]]] = deque()
        self.recent_counts: Counter[str] = Counter()
        self.reference_counts: Counter[str] = Counter()

    def _slide(self, now: float) -> None:
        c = self.config
        while self.recent and self.recent[0][0] < now - c.recent_s:
            at, _, topics = self.recent.popleft()
            self.recent_counts.subtract(topics)
            self.reference.append((at, topics))
            self.reference_counts.update(topics)
        while self.reference and self.reference[0][0] < now - c.recent_s - c.reference_s:
            _, topics = self.reference.popleft()
            self.reference_counts.subtract(topics)

    def shares(self, topic: str) -> tuple[float, float]:
        """(recent share, smoothed reference share) of the topic now."""
        c = self.config
        recent = self.recent_counts[topic] / len(self.recent) if self.recent else 0.0
        reference = (self.reference_counts[topic] + c.prior_calls * c.prior_share) / (
            len(self.reference) + c.prior_calls
        )
        return recent, reference

    def observe(self, digest: CallDigest, at: float) -> list[EarlyWarning]:
        now = self.time.advance(at)
        self._slide(now)
        topics = tuple(dict.fromkeys(digest.topics))
        self.recent.append((now, digest.call_id, topics))
        self.recent_counts.update(topics)
        out = self._clear(now)
        c = self.config
        for topic in topics:
            recent, reference = self.shares(topic)
            k = self.recent_counts[topic]
            n_ref = len(self.reference) + c.prior_calls
            if (
                len(self.reference) >= c.min_reference_calls
                and k >= c.min_calls
                and two_proportion_z(k, len(self.recent), reference * n_ref, n_ref) >= c.min_z
                and recent >= c.min_share
                and recent - reference >= c.min_rise
                and recent >= c.ratio * reference
            ):
                calls = [cid for _, cid, ts in self.recent if topic in ts]
                out += _some(self.episodes.raise_(
                    topic, now, self.recent[0][0], calls, recent, max(c.min_share, reference + c.min_rise),
                    f"{topic} is {recent:.0%} of calls in the last {c.recent_s / 3600:.0f} h "
                    f"(was {reference:.0%})",
                ))  # fmt: skip
        return out

    def _clear(self, now: float) -> list[EarlyWarning]:
        out: list[EarlyWarning] = []
        for topic in list(self.episodes.open):
            recent, reference = self.shares(topic)
            if recent < reference + self.config.min_rise / 2:
                out += _some(self.episodes.clear(topic, now, recent, reference + self.config.min_rise / 2,
                                                 f"{topic} back to {recent:.0%} of calls"))  # fmt: skip
        return out

    def advance(self, at: float) -> list[EarlyWarning]:
        now = self.time.advance(at)
        self._slide(now)
        return self._clear(now)


# ---------------------------------------------------------------------------------------------- (d)


@dataclass
class _Shift:
    start: float
    calls: list[tuple[float, float, str]] = field(default_factory=list)  # (at, end temperature, call id)


class AgentHot:
    """An agent whose calls end with hotter (lower temperature) customers as the shift goes on."""

    MAX_SHIFT_CALLS = 500

    def __init__(self, config: AgentHotConfig) -> None:
        self.config = config
        self.episodes = Episodes("agent_hot")
        self.time = MonotonicTime()
        self.shifts: dict[str, _Shift] = {}

    def observe(self, digest: CallDigest, at: float) -> list[EarlyWarning]:
        now = self.time.advance(at)
        out = self.advance(now)
        agent = digest.agent_id
        if not agent:
            return out
        c = self.config
        shift = self.shifts.get(agent)
        if shift is None:
            shift = self.shifts[agent] = _Shift(now)
        if len(shift.calls) < self.MAX_SHIFT_CALLS:
            shift.calls.append((now, digest.temperature_end, digest.call_id))
        if len(shift.calls) < c.min_calls:
            return out
        k = c.recent_calls
        recent_calls = shift.calls[-k:]
        recent = [t for _, t, _ in recent_calls]
        earlier = [t for _, t, _ in shift.calls[:-k]]
        drop = mean(earlier) - mean(recent)
        if agent in self.episodes.open and mean(recent) > c.clear_level:
            out += _some(self.episodes.clear(agent, now, mean(recent), c.clear_level,
                                             f"agent {agent}'s last {k} calls cooled to {mean(recent):+.2f}"))  # fmt: skip
        elif (
            mean(recent) <= c.hot_level
            and drop >= c.min_drop
            and welch_t(earlier, recent) >= c.min_t
            and (slope := slope_per_hour([(a, t) for a, t, _ in shift.calls])) <= c.slope_per_hour
        ):
            out += _some(self.episodes.raise_(
                agent, now, shift.start, [cid for _, _, cid in recent_calls], mean(recent), c.hot_level,
                f"agent {agent}'s last {k} calls ended at {mean(recent):+.2f} customer temperature "
                f"(earlier in the shift {mean(earlier):+.2f}; trend {slope:+.2f}/h)",
            ))  # fmt: skip
        return out

    def advance(self, at: float) -> list[EarlyWarning]:
        """Shifts with no call for ``shift_gap_s`` end (and their episodes with them)."""
        now = self.time.advance(at)
        out: list[EarlyWarning] = []
        for agent, shift in list(self.shifts.items()):
            if now - shift.calls[-1][0] > self.config.shift_gap_s:
                del self.shifts[agent]
                out += _some(self.episodes.clear(agent, now, 0.0, self.config.shift_gap_s,
                                                 f"agent {agent}'s shift ended"))  # fmt: skip
        return out


# ---------------------------------------------------------------------------------------------- (e)


class NegativeShare:
    """A queue's pooled negative-word share over a trailing window."""

    def __init__(self, config: NegativeShareConfig) -> None:
        self.config = config
        self.episodes = Episodes("negative_share")
        self.time = MonotonicTime()
        self.windows: dict[str, deque[tuple[float, str, int, int]]] = {}  # queue -> (at, call, neg, words)
        self.sums: dict[str, list[int]] = {}  # queue -> [negative, words]

    def _slide(self, queue: str, now: float) -> None:
        window, sums = self.windows[queue], self.sums[queue]
        while window and window[0][0] < now - self.config.window_s:
            _, _, neg, words = window.popleft()
            sums[0] -= neg
            sums[1] -= words

    def share(self, queue: str) -> float:
        neg, words = self.sums.get(queue, [0, 0])
        return neg / words if words else 0.0

    def observe(self, digest: CallDigest, at: float) -> list[EarlyWarning]:
        now = self.time.advance(at)
        out = self.advance(now)
        c, queue = self.config, digest.queue
        window = self.windows.setdefault(queue, deque())
        sums = self.sums.setdefault(queue, [0, 0])
        window.append((now, digest.call_id, digest.negative_words, digest.customer_words))
        sums[0] += digest.negative_words
        sums[1] += digest.customer_words
        share = self.share(queue)
        if queue in self.episodes.open and share < c.clear_below:  # this call diluted it
            out += _some(self.episodes.clear(queue, now, share, c.clear_below,
                                             f"negative words in queue {queue} back to {share:.0%}"))  # fmt: skip
        elif len(window) >= c.min_calls and sums[1] >= c.min_words and share >= c.threshold:
            out += _some(self.episodes.raise_(
                queue, now, window[0][0], [cid for _, cid, _, _ in window], share, c.threshold,
                f"negative words are {share:.0%} of what customers said in queue {queue} "
                f"in the last {c.window_s / 60:.0f} min",
            ))  # fmt: skip
        return out

    def advance(self, at: float) -> list[EarlyWarning]:
        now = self.time.advance(at)
        out: list[EarlyWarning] = []
        for queue in list(self.windows):
            self._slide(queue, now)
            if queue in self.episodes.open and (share := self.share(queue)) < self.config.clear_below:
                out += _some(self.episodes.clear(queue, now, share, self.config.clear_below,
                                                 f"negative words in queue {queue} back to {share:.0%}"))  # fmt: skip
            if not self.windows[queue] and queue not in self.episodes.open:
                del self.windows[queue], self.sums[queue]
        return out
