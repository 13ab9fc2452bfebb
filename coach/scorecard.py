"""The post-call QA scorecard: a pure function of what the coach saw during the call.

Weights (contact-centre QA practice): service quality 60% (politeness 20, violations 25,
disclosures 15), efficiency 25% (talk/silence 10, dead air 10, handle time 5), customer
experience 15% (temperature trend). Each item scores 0..1 and names the call times behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sidecar.kernel.events import Score, ScoreItem

_SEVERITY_COST = {"fatal": 0.6, "serious": 0.3, "general": 0.15}
_RUDE = ("abuse", "discrimination", "unprofessional")


@dataclass(frozen=True, slots=True)
class AlertRecord:
    category: str
    severity: str
    t: float


@dataclass(frozen=True, slots=True)
class CallSummary:
    duration_s: float
    agent_talk_s: float
    customer_talk_s: float
    alerts: Sequence[AlertRecord]
    steps_done: Sequence[tuple[str, float]]  # (step, time)
    steps_missed: Sequence[tuple[str, float]]
    temperatures: Sequence[tuple[float, float]]  # (time, temperature) per customer utterance
    target_handle_s: float = 480.0


def _clamp(x: float) -> float:
    return max(0.0, min(1.0, x))


def scorecard(s: CallSummary) -> Score:
    violations = [a for a in s.alerts if a.category not in ("dead_air", "missing_disclosure")]
    rude = [a for a in violations if a.category in _RUDE]
    dead = [a for a in s.alerts if a.category == "dead_air"]
    talk = s.agent_talk_s + s.customer_talk_s
    steps = len(s.steps_done) + len(s.steps_missed)
    temps = [t for _, t in s.temperatures]
    trend = (temps[-1] - temps[0]) if len(temps) >= 2 else 0.0
    final = temps[-1] if temps else 0.0
    items = (
        ScoreItem("politeness", "service_quality", _clamp(1.0 - 0.5 * len(rude)), 0.20,
                  f"{len(rude)} abusive, discriminatory or unprofessional remarks", tuple(a.t for a in rude)),
        ScoreItem("violations", "service_quality",
                  _clamp(1.0 - sum(_SEVERITY_COST.get(a.severity, 0.15) for a in violations)), 0.25,
                  f"{len(violations)} violations", tuple(a.t for a in violations)),
        ScoreItem("disclosures", "service_quality", len(s.steps_done) / steps if steps else 1.0, 0.15,
                  f"{len(s.steps_done)} of {steps} required steps done"
                  + (f"; missed: {', '.join(n for n, _ in s.steps_missed)}" if s.steps_missed else ""),
                  tuple(t for _, t in s.steps_missed)),
        ScoreItem("talk_silence", "efficiency", _clamp((talk / s.duration_s) / 0.6) if s.duration_s else 1.0, 0.10,
                  f"speech {talk:.0f} s of {s.duration_s:.0f} s", ()),
        ScoreItem("dead_air", "efficiency", _clamp(1.0 - 0.35 * len(dead)), 0.10,
                  f"{len(dead)} unexplained silences", tuple(a.t for a in dead)),
        ScoreItem("handle_time", "efficiency",
                  _clamp(1.0 - max(0.0, s.duration_s - s.target_handle_s) / s.target_handle_s), 0.05,
                  f"{s.duration_s / 60:.1f} min (target {s.target_handle_s / 60:.0f} min)", ()),
        ScoreItem("temperature_trend", "customer_experience", _clamp(0.5 + 0.5 * trend + 0.25 * final), 0.15,
                  f"customer temperature {temps[0] if temps else 0:+.2f} → {final:+.2f}",
                  tuple(t for t, _ in s.temperatures[-1:])),
    )  # fmt: skip
    sections: dict[str, float] = {}
    for item in items:
        sections[item.section] = sections.get(item.section, 0.0) + item.score * item.weight
    total = round(100 * sum(sections.values()), 1)
    return Score(total, {k: round(100 * v, 1) for k, v in sections.items()}, items)
