"""What a detector is: a name and pure functions over the call as the coach sees it, each returning
typed findings.

A detector reads one or more moments of a call:

- ``utterance``: every partial and final of either side, as it comes (what must reach the agent
  before the turn ends: violations);
- ``final``: every final, with what the detectors before it found in it (customer intents);
- ``silence``: a gap in the speech, while it lasts and when the next speech ends it (dead air).

Those remember nothing: the session decides what was already shown (one alert per category and
speech segment, one intent per name and segment, one silence alert per gap and detector) and
redacts the evidence before it leaves the coach. A detector that follows the call through time
(the disclosure checklist's steps, the customer's temperature) is a pure state machine: ``track``
makes one call's ``Tracker`` from the rules, which steps it on each final and once at the end. ``coach.detectors`` keeps the ordered list the
session runs; a new detector is one module that defines a ``Detector`` and is listed there (or
registered with ``coach.detectors.register``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeAlias

from coach.compiled import CompiledIntent, CompiledRule, CompiledRules
from coach.matcher import Hit, Units
from coach.window import Utterance, Window
from sidecar.kernel.events import Severity

if TYPE_CHECKING:
    from coach.checklist import Change
    from coach.emotion import Reading


@dataclass(frozen=True, slots=True)
class UtteranceContext:
    """The current utterance (partial or final) in its window, prepared once for every detector."""

    window: Window
    units: Units  # clauses, sentence vectors and the judge's reading of the current utterance
    rules: CompiledRules
    found: tuple[Finding, ...] = ()  # on a final: what the detectors before this one found in it


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


@dataclass(frozen=True, slots=True)
class StepFinding:
    """A disclosure step that changed state (due, done, missed); a mandatory one missed is also an
    alert."""

    change: Change


@dataclass(frozen=True, slots=True)
class EmotionFinding:
    """The customer's temperature after one of their finals, and what drove it."""

    reading: Reading


@dataclass(frozen=True, slots=True)
class CallEnd:
    t_end: float
    rules: CompiledRules
    lang: str


Finding: TypeAlias = AlertFinding | IntentFinding | StepFinding | EmotionFinding
UtteranceDetect = Callable[[UtteranceContext], Sequence[Finding]]
SilenceDetect = Callable[[Silence], Sequence[AlertFinding]]


class Tracker(Protocol):
    """One call's state machine behind a detector that follows the call: stepped on every final
    and once when the call ends."""

    def final(self, ctx: UtteranceContext) -> Sequence[Finding]: ...

    def end(self, end: CallEnd) -> Sequence[Finding]: ...


# the call's tracker and what it finds before anyone speaks, from the rules and the call's language
Track = Callable[[CompiledRules, str], tuple[Tracker, Sequence[Finding]]]


@dataclass(frozen=True, slots=True)
class Detector:
    """A named detector: one pure function per moment it reads (None for a moment it does not), or
    ``track`` for one that follows the call (its finals and its end)."""

    name: str
    utterance: UtteranceDetect | None = None
    final: UtteranceDetect | None = None
    silence: SilenceDetect | None = None
    track: Track | None = None

    def __post_init__(self) -> None:
        if self.track is not None and (self.utterance or self.final or self.silence):
            raise ValueError(
                f"detector {self.name!r}: one that tracks the call reads it through its tracker only"
            )
