"""Customer intents: every intent rule of the speaker's side that matches the current utterance,
at most one hit per intent name (the first rule wins), most confident first. ``DETECTOR`` is how the
session runs it (``coach.detectors``): on customer finals."""

from __future__ import annotations

from collections.abc import Sequence

from coach.compiled import CompiledRules
from coach.detector import Detector, IntentFinding, UtteranceContext
from coach.matcher import Units
from coach.window import Window


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
    return primary(list(found.values()), units.sentences)


# One primary intent per utterance: the most specific reading of the words wins (an escalation
# request usually also complains; sarcasm is a complaint said the other way round).
PRIORITY = ("escalation_request", "cancel_threat", "refund_request", "implicit_complaint", "complaint")
# A turn with two needs ("the app keeps logging me out. And while I'm on, can I change my plan?")
# carries a second intent when another sentence of it asks for something else: a request or a
# question, never a second grievance (a grievance comes with most requests; it is not a need).
SECOND_NEEDS = frozenset({"escalation_request", "cancel_threat", "refund_request", "info_request"})


def primary(found: list[IntentFinding], sentences: Sequence[str] = ()) -> list[IntentFinding]:
    """The primary intent, then at most one second need read in another sentence of the turn."""
    if not found:
        return []
    rank = {name: i for i, name in enumerate(PRIORITY)}
    informational = [f for f in found if f.rule.rule.intent == "info_request"]
    others = [f for f in found if f.rule.rule.intent != "info_request"]
    if not others:
        return informational[:1]
    others.sort(key=lambda f: (rank.get(f.rule.rule.intent, len(PRIORITY)), -f.confidence))
    first = others[0]
    for f in (*others[1:], *informational):
        if f.rule.rule.intent not in SECOND_NEEDS:
            continue
        where, there = _sentence_of(f.hit.evidence, sentences), _sentence_of(first.hit.evidence, sentences)
        if where is not None and there is not None and where != there:
            return [first, f]
    return [first]


def _sentence_of(evidence: str, sentences: Sequence[str]) -> int | None:
    """Which sentence of the turn carries the evidence (None: the whole turn, or unknown)."""
    evidence = evidence.strip()
    if len(sentences) < 2 or not evidence:
        return None
    return next((i for i, s in enumerate(sentences) if evidence in s), None)


def _customer_intents(ctx: UtteranceContext) -> list[IntentFinding]:
    if ctx.window.current.channel != "customer":
        return []
    return detect_intents(ctx.window, ctx.rules, ctx.units)


DETECTOR = Detector("intents", final=_customer_intents)
