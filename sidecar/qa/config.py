"""Thresholds of the cross-call early warnings: one frozen dataclass per detector.

Every duration is in seconds of the calls' own clock (their end times); nothing reads the wall
clock. ``EarlyWarningConfig.from_mapping`` reads the same shape from YAML/JSON (unknown keys and
wrong types are refused with the key named); ``load_config`` reads a YAML file, e.g.::

    complaint_burst: {min_customers: 5, window_s: 2700}
    queue_spike: {ratio: 2.0, window_s: 7200}
    negative_share: {threshold: 0.15}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class ComplaintBurstConfig:
    """``min_customers`` different customers complaining about one topic within ``window_s``,
    and that many unlikely for the topic: at most ``max_p`` probability of it in a Poisson count
    at the topic's usual rate (its share of complaints among all calls over the trailing
    ``reference_s``, smoothed with ``prior_calls`` pseudo-calls at ``prior_share``, times the calls
    in the window), so a big contact centre's everyday topic does not fire all day. The episode
    ends when fewer than ``clear_below`` remain in the window."""

    min_customers: int = 5
    window_s: float = 0.75 * HOUR
    clear_below: int = 3
    max_p: float = 1e-3  # 1.0: no usual-rate guard, a plain count
    reference_s: float = 24 * HOUR
    prior_calls: float = 50.0
    prior_share: float = 0.02

    def __post_init__(self) -> None:
        _check(
            0 < self.clear_below <= self.min_customers,
            "complaint_burst: need 0 < clear_below <= min_customers",
        )
        _check(self.window_s > 0 and self.reference_s > 0, "complaint_burst: windows must be positive")
        _check(0 < self.prior_share < 1, "complaint_burst: need 0 < prior_share < 1")


@dataclass(frozen=True, slots=True)
class QueueSpikeConfig:
    """A queue's calls in the trailing ``window_s`` at ``ratio`` x its usual volume or more.

    Usual: for each hour of the day, the mean count of that queue's calls in that hour over the
    previous ``history_days`` days the service saw calls on (at least ``min_history_days`` of them,
    else the queue has no usual yet and is not judged); the trailing window's usual is the sum of
    those hourly means over the hours it overlaps, pro rata. A quiet usual is floored at
    ``min_expected``, fewer than ``min_calls`` calls never make a spike, and the count must also be
    unlikely by chance: at most ``max_p`` probability of that many calls or more in a Poisson
    arrival at the usual rate (so a small queue's 5 calls against a usual 2.5 is not a spike, a
    big queue's 2x always is). The episode ends when
    the ratio falls below ``clear_ratio``. Calls count at their end (the only time a digest has for
    sure), the same for the window and the usual."""

    ratio: float = 2.0
    window_s: float = 2 * HOUR
    history_days: int = 7
    min_history_days: int = 5
    min_expected: float = 2.0
    min_calls: int = 10
    max_p: float = 1e-4
    clear_ratio: float = 1.5
    utc_offset_s: float = 0.0  # the contact centre's local day starts at midnight local time

    def __post_init__(self) -> None:
        _check(1 <= self.clear_ratio <= self.ratio, "queue_spike: need 1 <= clear_ratio <= ratio")
        _check(self.window_s > 0 and self.history_days >= self.min_history_days >= 1,
               "queue_spike: need window_s > 0 and history_days >= min_history_days >= 1")  # fmt: skip


@dataclass(frozen=True, slots=True)
class TopicShareConfig:
    """One topic's share of all calls in the trailing ``recent_s`` against its share in the
    ``reference_s`` before that: at least ``min_share``, ``min_rise`` above the reference and
    ``ratio`` times it, with at least ``min_calls`` calls on the topic, and a two-proportion
    z of at least ``min_z`` against the reference (its sampling noise counted too), so that chance swings of a
    common topic in a small window do not count. The reference share is
    smoothed with ``prior_calls`` pseudo-calls at ``prior_share`` (a topic never seen before is not
    infinitely new); with fewer than ``min_reference_calls`` calls in the reference window (a
    cold start) no topic is judged. The episode ends when the recent share falls below the reference plus half
    the rise."""

    recent_s: float = 2 * HOUR
    reference_s: float = 24 * HOUR
    min_share: float = 0.2
    min_rise: float = 0.10
    ratio: float = 2.0
    min_calls: int = 6
    min_z: float = 5.0
    min_reference_calls: int = 200
    prior_calls: float = 20.0
    prior_share: float = 0.05

    def __post_init__(self) -> None:
        _check(self.recent_s > 0 and self.reference_s > 0, "topic_share: windows must be positive")
        _check(0 < self.prior_share < 1, "topic_share: need 0 < prior_share < 1")


@dataclass(frozen=True, slots=True)
class AgentHotConfig:
    """An agent's calls end hotter as the shift goes on. A shift is the agent's run of calls with
    no pause longer than ``shift_gap_s``. With ``min_calls`` calls in the shift: the mean end
    temperature of the last ``recent_calls`` calls is at or below ``hot_level``, at least
    ``min_drop`` below the mean of the shift's calls before them with a Welch t of at least
    ``min_t`` (not one unlucky hour), and the least-squares trend of end temperature over the
    shift is at or below ``slope_per_hour``. The episode ends when the recent mean is back above
    ``clear_level`` or the shift ends."""

    shift_gap_s: float = 2 * HOUR
    min_calls: int = 10
    recent_calls: int = 6
    hot_level: float = -0.4
    min_drop: float = 0.4
    min_t: float = 3.0
    slope_per_hour: float = -0.05
    clear_level: float = -0.2

    def __post_init__(self) -> None:
        _check(self.clear_level >= self.hot_level, "agent_hot: need clear_level >= hot_level")
        _check(1 <= self.recent_calls < self.min_calls, "agent_hot: need 1 <= recent_calls < min_calls")


@dataclass(frozen=True, slots=True)
class NegativeShareConfig:
    """A queue's customers' negative-word share (pooled: negative words / words) over the
    trailing ``window_s`` at or above ``threshold``, with at least ``min_calls`` calls and
    ``min_words`` words in the window; the episode ends below ``clear_below``."""

    threshold: float = 0.15
    clear_below: float = 0.12
    window_s: float = 1 * HOUR
    min_calls: int = 5
    min_words: int = 800

    def __post_init__(self) -> None:
        _check(0 <= self.clear_below <= self.threshold, "negative_share: need 0 <= clear_below <= threshold")
        _check(self.window_s > 0, "negative_share: window_s must be positive")


@dataclass(frozen=True, slots=True)
class EarlyWarningConfig:
    complaint_burst: ComplaintBurstConfig = field(default_factory=ComplaintBurstConfig)
    queue_spike: QueueSpikeConfig = field(default_factory=QueueSpikeConfig)
    topic_share: TopicShareConfig = field(default_factory=TopicShareConfig)
    agent_hot: AgentHotConfig = field(default_factory=AgentHotConfig)
    negative_share: NegativeShareConfig = field(default_factory=NegativeShareConfig)
    late_tolerance_s: float = 300.0  # a digest this much older than the newest is taken as of now

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> EarlyWarningConfig:
        """Thresholds from a parsed YAML/JSON mapping; sections and keys left out keep defaults."""
        kwargs: dict[str, Any] = {}
        sections = {f.name: f for f in dataclasses.fields(cls)}
        for name, value in data.items():
            if name not in sections:
                raise ValueError(f"early warnings: unknown key {name!r} (known: {', '.join(sections)})")
            default = getattr(cls(), name)
            if dataclasses.is_dataclass(default):
                if not isinstance(value, dict):
                    raise ValueError(f"early warnings: {name} must be a mapping")
                kwargs[name] = _section(name, type(default), value)
            else:
                kwargs[name] = _number(name, value)
        return cls(**kwargs)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(f"early warnings: {message}")


def load_config(path: Path) -> EarlyWarningConfig:
    """Thresholds from a YAML file (an empty file: the defaults); ``ValueError`` naming the file
    and the key when it is wrong."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read early-warning thresholds ({type(exc).__name__})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: early-warning thresholds must be a mapping")
    try:
        return EarlyWarningConfig.from_mapping(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def _section(name: str, section: type[Any], data: dict[str, Any]) -> Any:
    known = {f.name: f for f in dataclasses.fields(section)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ValueError(f"early warnings: unknown key {name}.{key} (known: {', '.join(known)})")
        number = _number(f"{name}.{key}", value)
        values[key] = int(number) if known[key].type == "int" else number
        if known[key].type == "int" and number != int(number):
            raise ValueError(f"early warnings: {name}.{key} must be a whole number, not {value!r}")
    return section(**values)


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"early warnings: {key} must be a number, not {value!r}")
    return float(value)
