"""Customer intents: every intent rule of the speaker's side that matches the current utterance,
at most one hit per intent name (the first rule wins), most confident first."""

from __future__ import annotations

from dataclasses import dataclass

from coach.compiled import CompiledIntent, CompiledRules
from coach.matcher import Hit, Units
from coach.window import Window


@dataclass(frozen=True, slots=True)
class IntentFinding:
    rule: CompiledIntent
    hit: Hit
    confidence: float


def detect_intents(window: Window, rules: CompiledRules, units: Units) -> list[IntentFinding]:
    utt = window.current
    found: dict[str, IntentFinding] = {}
    for rule in rules.intents:
        r = rule.rule
        if r.intent in found or r.channel not in ("any", utt.channel) or r.lang not in ("any", utt.lang):
            continue
        hit = rule.matcher.match(units)
        if hit is None:
            continue
        if not rule.matcher.context_ok(window):
            continue
        # a lexical hit keeps the rule's confidence; a semantic one scales with its similarity margin
        confidence = r.confidence if hit.score >= 1.0 else round(r.confidence * min(1.0, hit.score), 3)
        found[r.intent] = IntentFinding(rule, hit, confidence)
    return primary(list(found.values()))


# One primary intent per utterance: the most specific reading of the words wins (an escalation
# request usually also complains; sarcasm is a complaint said the other way round).
PRIORITY = ("escalation_request", "cancel_threat", "refund_request", "implicit_complaint", "complaint")


def primary(found: list[IntentFinding]) -> list[IntentFinding]:
    if not found:
        return []
    rank = {name: i for i, name in enumerate(PRIORITY)}
    informational = [f for f in found if f.rule.rule.intent == "info_request"]
    others = [f for f in found if f.rule.rule.intent != "info_request"]
    if not others:
        return informational[:1]
    others.sort(key=lambda f: (rank.get(f.rule.rule.intent, len(PRIORITY)), -f.confidence))
    return others[:1]
