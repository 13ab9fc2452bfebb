"""What a detector is: a name and pure functions over the call as the coach sees it, each returning
typed findings.

A detector reads one or more moments of a call:

- ``utterance``: every partial and final of either side, as it comes (what must reach the agent
  before the turn ends: violations);
- ``final``: every final, after the disclosure checklist has read it (customer intents);
- ``silence``: a gap in the speech, while it lasts and when the next speech ends it (dead air).

It remembers nothing: the session decides what was already shown (one alert per category and
speech segment, one intent per name and segment, one silence alert per gap and detector) and
redacts the evidence before it leaves the coach. ``coach.detectors`` keeps the ordered list the
session runs; a new detector is one module that defines a ``Detector`` and is listed there (or
registered with ``coach.detectors.register``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from coach.compiled import CompiledIntent, CompiledRule, CompiledRules
from coach.matcher import Hit, Units
from coach.window import Utterance, Window
from sidecar.kernel.events import Severity


@dataclass(frozen=True, slots=True)
class UtteranceContext:
    """The current utterance (partial or final) in its window, prepared once for every detector."""

    window: Window
    units: Units  # clauses, sentence vectors and the judge's reading of the current utterance
    rules: CompiledRules


@dataclass(frozen=True, slots=True)
class Silence:
    """Nobody speaking from ``gap_start`` (the end of the last speech) to ``gap_end`` (the next
    speech, or now)."""

    history: tuple[Utterance, ...]  # the finals before the gap, oldest first
    gap_start: float
    gap_end: float
    rules: CompiledRules
    lang: str  # of the last utterance


@dataclass(frozen=True, slots=True)
class AlertFinding:
    """An alert for the agent. ``evidence`` and ``reason`` are raw: the session redacts them."""

    category: str
    severity: Severity
    rule_id: str
    message: str
    evidence: str
    reason: str
    t_start: float
    t_end: float
    snippet: str | None = None  # a knowledge snippet the alert points to

    @classmethod
    def of_rule(cls, rule: CompiledRule, hit: Hit, t_start: float, t_end: float) -> AlertFinding:
        r = rule.rule
        return cls(
            r.category, r.severity, r.id, r.message, hit.evidence, hit.reason, t_start, t_end, r.snippet
        )


@dataclass(frozen=True, slots=True)
class IntentFinding:
    """What the customer wants (a refund, to cancel, a supervisor ...), and how sure the rule is."""

    rule: CompiledIntent
    hit: Hit
    confidence: float


Finding: TypeAlias = AlertFinding | IntentFinding
UtteranceDetect = Callable[[UtteranceContext], Sequence[Finding]]
SilenceDetect = Callable[[Silence], Sequence[AlertFinding]]


@dataclass(frozen=True, slots=True)
class Detector:
    """A named detector: one pure function per moment it reads (None for a moment it does not)."""

    name: str
    utterance: UtteranceDetect | None = None
    final: UtteranceDetect | None = None
    silence: SilenceDetect | None = None
