"""Violations: a pure function from the call window (and the compiled rules) to findings.

``detect_violations`` looks at the current utterance (a partial or a final) of the speaking side.
It remembers nothing: the session decides what was already alerted (one alert per category and
speech segment). ``DETECTOR`` is how the session runs it (``coach.detectors``).
"""

from __future__ import annotations

from dataclasses import dataclass

from coach.compiled import CompiledRule, CompiledRules
from coach.detector import AlertFinding, Detector, UtteranceContext
from coach.matcher import Hit, Units
from coach.window import Utterance, Window
from sidecar.kernel.redact import find_pii

# When two categories fire on the same words, the graver one is the finding.
_SUPERSEDES = {"unprofessional": ("abuse", "discrimination"), "false_promise": ("misleading_claim",)}


@dataclass(frozen=True, slots=True)
class Finding:
    rule: CompiledRule
    hit: Hit
    t_start: float
    t_end: float


def _applies(rule: CompiledRule, utt: Utterance) -> bool:
    r = rule.rule
    return r.channel in ("any", utt.channel) and r.lang in ("any", utt.lang) and r.match.timing is None


def _pii_hit(rule: CompiledRule, utt: Utterance) -> Hit | None:
    kinds = rule.rule.match.pii
    if not kinds:
        return None
    for span in find_pii(utt.text, utt.lang):
        if span.kind in kinds:
            return Hit(utt.text[span.start : span.end], f"reads out a {span.kind.replace('_', ' ')}", 1.0)
    return None


def detect_violations(window: Window, rules: CompiledRules, units: Units) -> list[Finding]:
    """Every rule that matches the current utterance, graver categories first."""
    utt = window.current
    found: dict[str, Finding] = {}
    for rule in rules.rules:
        if not _applies(rule, utt) or rule.rule.category in found:
            continue
        matcher = rule.matcher
        hit = _pii_hit(rule, utt) or (
            matcher.match(units) if matcher.spec.text or matcher.spec.judge else None
        )
        if hit is None or not matcher.context_ok(window):
            continue
        found[rule.rule.category] = Finding(rule, hit, utt.t_start, utt.t_end)
    judged = {c for c, f in found.items() if f.rule.rule.match.judge and not f.rule.rule.match.text}
    if len(judged) < len(found):  # an exact rule fired: it names the category; the judge's reading of
        for category in judged:  # the same words is the near neighbour it confuses it with
            del found[category]
    elif len(judged) > 1:  # the judge's one reading of the utterance: its most probable category
        best = max(judged, key=lambda c: found[c].hit.score)
        found = {best: found[best]}
    for lesser, graver in _SUPERSEDES.items():
        # a graver reading wins, unless it is only a resemblance and the lesser one an exact match
        if lesser in found and any(
            g in found and found[g].hit.score >= found[lesser].hit.score for g in graver
        ):
            del found[lesser]
    return list(found.values())


def _alerts(ctx: UtteranceContext) -> list[AlertFinding]:
    return [
        AlertFinding.of_rule(f.rule, f.hit, f.t_start, f.t_end)
        for f in detect_violations(ctx.window, ctx.rules, ctx.units)
    ]


DETECTOR = Detector("violations", utterance=_alerts)
