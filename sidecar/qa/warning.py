"""What a detector says: an ``EarlyWarning`` (raised once per episode, cleared when it ends), and
the ``Episodes`` bookkeeping every detector shares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

WarningKind: TypeAlias = Literal[
    "complaint_burst", "queue_spike", "topic_share", "agent_hot", "negative_share"
]
WARNING_KINDS: tuple[WarningKind, ...] = (
    "complaint_burst", "queue_spike", "topic_share", "agent_hot", "negative_share",
)  # fmt: skip
WarningState: TypeAlias = Literal["raised", "cleared"]
MAX_EVIDENCE = 50  # call ids named in one warning (the most recent)


class OutOfOrderError(ValueError):
    """A detector was given a time earlier than one it has already seen."""


@dataclass(frozen=True, slots=True)
class EarlyWarning:
    """One warning about many calls. ``key`` is what it is about (a topic, a queue, an agent);
    ``window_start``/``window_end`` (epoch seconds) the span of calls it measured; ``call_ids`` the
    calls behind it; ``value`` the measure and ``threshold`` what it had to reach (a count, a
    ratio, a share or a temperature, as ``message`` says). ``episode`` names the episode: the same
    in its ``raised`` and its ``cleared`` warning."""

    kind: WarningKind
    state: WarningState
    key: str
    window_start: float
    window_end: float
    call_ids: tuple[str, ...]
    value: float
    threshold: float
    message: str
    episode: str

    @property
    def at(self) -> float:
        return self.window_end


class Episodes:
    """Which keys of one detector are in an episode: a warning is raised when the condition first
    holds and not again until it has cleared."""

    def __init__(self, kind: WarningKind) -> None:
        self.kind = kind
        self.open: dict[str, tuple[str, float]] = {}  # key -> (episode id, raised at)

    def raise_(
        self, key: str, now: float, start: float, call_ids: Sequence[str], value: float, threshold: float,
        message: str,
    ) -> EarlyWarning | None:  # fmt: skip
        if key in self.open:
            return None
        episode = f"{self.kind}:{key}:{now:.0f}"
        self.open[key] = (episode, now)
        return EarlyWarning(self.kind, "raised", key, start, now, tuple(call_ids[-MAX_EVIDENCE:]),
                            round(value, 4), threshold, message, episode)  # fmt: skip

    def clear(
        self, key: str, now: float, value: float, threshold: float, message: str
    ) -> EarlyWarning | None:
        opened = self.open.pop(key, None)
        if opened is None:
            return None
        episode, raised_at = opened
        return EarlyWarning(self.kind, "cleared", key, raised_at, now, (), round(value, 4), threshold, message,
                            episode)  # fmt: skip


class MonotonicTime:
    """A detector's guard: times must not go backwards (the engine orders digests first)."""

    def __init__(self) -> None:
        self.now = float("-inf")

    def advance(self, at: float) -> float:
        if at < self.now:
            raise OutOfOrderError(f"time {at:.3f} is before {self.now:.3f}, which was already seen")
        self.now = at
        return at
