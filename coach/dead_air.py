"""Dead air: a pure function from a silence (and the compiled rules' timing conditions) to an alert.

A silence of ``silence_s`` or more is dead air, unless the agent announced a hold shortly before it
(``excused_by``) and it has not yet run past ``excuse_s``. ``DETECTOR`` is how the session runs it
(``coach.detectors``); the session alerts once per gap, and never on a text chat.
"""

from __future__ import annotations

from collections.abc import Sequence

from coach.compiled import CompiledRules
from coach.detector import AlertFinding, Detector, Silence
from coach.matcher import Hit
from coach.violations import Finding
from coach.window import Utterance
from sidecar.kernel.text import clauses

_HOLD_LOOKBACK_S = 30.0  # a hold announcement counts for the silence right after it


def detect_dead_air(
    history: Sequence[Utterance], gap_start: float, gap_end: float, rules: CompiledRules, lang: str
) -> Finding | None:
    """Silence from ``gap_start`` (end of the last speech) to ``gap_end`` (next speech, or now).

    Excused when the agent announced a hold shortly before (``excused_by`` within ``excuse_s``).
    """
    for rule in rules.rules:
        timing = rule.rule.match.timing
        if timing is None or rule.rule.lang not in ("any", lang) or gap_end - gap_start < timing.silence_s:
            continue
        # only the agent's last words before the silence can announce it
        last_agent = next((u for u in reversed(history) if u.channel == "agent"), None)
        excuse = None
        if (
            last_agent is not None
            and rule.excuse is not None
            and last_agent.t_end >= gap_start - _HOLD_LOOKBACK_S
        ):
            excuse = rule.excuse.lexical(clauses(last_agent.text))
        if excuse is not None and gap_end - gap_start <= timing.excuse_s:
            continue
        seconds = gap_end - gap_start
        return Finding(rule, Hit(f"{seconds:.0f} s of silence", f"silence ≥ {timing.silence_s:g} s", 1.0),
                       gap_start, gap_end)  # fmt: skip
    return None


def _alerts(gap: Silence) -> list[AlertFinding]:
    found = detect_dead_air(gap.history, gap.gap_start, gap.gap_end, gap.rules, gap.lang)
    return [] if found is None else [AlertFinding.of_rule(found.rule, found.hit, found.t_start, found.t_end)]


DETECTOR = Detector("dead_air", silence=_alerts)
