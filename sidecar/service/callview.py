"""One call as the REST API, the floor and the widgets see it: typed items folded from its events.

``CallState`` is the projection of one call's events (transcript, alerts, checklist, temperature
curve, suggestions, scorecard, risk); ``summary()`` is its row on the floor, ``detail()`` the whole
view. Both are the pydantic models the routes declare, so ``/openapi.json`` describes what the
browser reads, and a new panel is a field here (its item model, its fold, its place in
``CallDetail``) plus the script that draws it.

Items keep the JSON the widgets were built on: an event's place in the call (``seq``, ``channel``,
``t_start``, ``t_end``, ``emitted_at``, as the bus stamped them) followed by its payload's fields
(floats rounded to milliseconds, as ``plain`` does). A payload field added in
``sidecar.kernel.events`` needs its place in the item here too (``tests/test_service_board.py``
fails until it has one; the fold would otherwise leave it out).
Memory: every list is bounded (``MAX_ITEMS``, oldest dropped; the full record stays on the bus).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, Literal, TypedDict, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from sidecar.kernel.events import (
    Alert,
    Barge,
    CallEnded,
    CallStarted,
    Channel,
    Checklist,
    ChecklistState,
    Emotion,
    Event,
    Intent,
    Score,
    Severity,
    Suggestion,
    TranscriptFinal,
    TranscriptRedacted,
    Whisper,
    plain,
)

MAX_ITEMS = 2_000
CURVE_POINTS = 40  # temperatures in a summary (the sparkline)
RISK_WEIGHTS = {"fatal": 0.6, "serious": 0.3, "general": 0.08}


class Item(BaseModel):
    model_config = ConfigDict(frozen=True)


class Stamped(Item):
    """Where on the call an item sits: its event's seq, channel and times."""

    seq: int = Field(description="the event's per-call seq (the SSE id)")
    channel: Channel | None
    t_start: float = Field(description="seconds of call audio")
    t_end: float = Field(description="seconds of call audio")
    emitted_at: float = Field(description="wall clock, epoch seconds")


class Head(TypedDict):
    """``Stamped``'s fields as the fold passes them on: ``Item(**head, **payload)``."""

    seq: int
    channel: Channel | None
    t_start: float
    t_end: float
    emitted_at: float


class TranscriptLine(Stamped):
    """A final transcript (redacted; replaced when a later ``transcript.redacted`` corrects it)."""

    text: str
    lang: str
    segment: int


class AlertItem(Stamped):
    category: str
    severity: Severity
    rule_id: str
    message: str = Field(description="what the agent is told")
    evidence: str = Field(description="the redacted words that triggered it")
    step: str | None = Field(description="the disclosure step of a missing_disclosure alert")
    snippet_id: str | None = Field(description="a procedure to show with it")
    source: Literal["partial", "final", "timing", "checklist"]
    reason: str = Field(description="what matched: a phrase, a pattern, or the exemplar it resembles")


class ChecklistStep(Item):
    state: ChecklistState
    mandatory: bool
    evidence: str
    seq: int
    t_end: float


class EmotionPoint(Item):
    seq: int
    t: float = Field(description="seconds of call audio")
    temperature: float = Field(description="the customer's temperature after this utterance, -1..1")
    utterance: float = Field(description="this utterance's own score, -1..1")
    label: Literal["angry", "negative", "neutral", "positive"]
    drivers: list[str]
    warning: bool = Field(description="the temperature is falling fast")


class SuggestionItem(Stamped):
    snippet_id: str
    title: str
    body: str
    score: float
    reason: str
    version: int = Field(description="the snippet's version when it was pushed")


class WhisperItem(Stamped):
    text: str
    author: str


class IntentItem(Stamped):
    intent: str
    confidence: float
    evidence: str
    rule_id: str


class BargeItem(Stamped):
    author: str
    reason: str


class ScorecardItem(Item):
    name: str
    section: Literal["service_quality", "efficiency", "customer_experience"]
    score: float = Field(description="0..1")
    weight: float = Field(description="share of the total")
    detail: str
    evidence_s: list[float] = Field(description="seconds of call audio that show it")


class Scorecard(Item):
    total: float = Field(description="0..100")
    sections: dict[str, float]
    items: list[ScorecardItem]


class AlertCounts(Item):
    fatal: int
    serious: int
    general: int


class ChecklistCounts(Item):
    done: int
    due: int
    missed: int


AlertsT = TypeVar("AlertsT")
ChecklistT = TypeVar("ChecklistT")


class CallView(Item, Generic[AlertsT, ChecklistT]):
    """What a call's row and its detail share; ``alerts`` and ``checklist`` are counts in the row
    and the items themselves in the detail (the widgets read them so)."""

    call_id: str
    agent_id: str
    queue: str
    lang: str
    source: str
    started_at: float = Field(description="wall clock, epoch seconds")
    ended: bool
    end_reason: str
    duration_s: float
    last_seq: int
    risk: float = Field(description="0..1, riskiest first in lists")
    temperature: float = Field(description="the customer's temperature now, -1..1")
    temperatures: list[float] = Field(description="recent temperatures, for a sparkline")
    alerts: AlertsT
    last_alert: AlertItem | None
    checklist: ChecklistT
    score: float | None = Field(description="the post-call score (0..100) once the call has ended")


class CallSummary(CallView[AlertCounts, ChecklistCounts]):
    """A call's row on the floor and in ``GET /v1/calls``: ``alerts`` counts by severity,
    ``checklist`` disclosure steps by state."""


class CallDetail(CallView[list[AlertItem], dict[str, ChecklistStep]]):
    """A call's whole view: ``alerts`` the alerts themselves, ``checklist`` each step by name."""

    alert_counts: AlertCounts
    transcript: list[TranscriptLine]
    emotion: list[EmotionPoint]
    suggestions: list[SuggestionItem]
    whispers: list[WhisperItem]
    intents: list[IntentItem]
    barges: list[BargeItem]
    scorecard: Scorecard | None


def risk_score(alerts: dict[str, int], temperature: float) -> float:
    """0..1: the chance-like union of what went wrong, plus how unhappy the customer is now.

    Each alert (a missed mandatory disclosure raises one too) adds its severity's weight as an
    independent risk: two serious alerts make 0.51; a cold customer adds up to 0.4.
    """
    safe = 1.0
    for severity, n in alerts.items():
        safe *= (1.0 - RISK_WEIGHTS.get(severity, 0.0)) ** n
    safe *= 1.0 - 0.4 * max(0.0, -temperature)
    return round(1.0 - safe, 3)


@dataclass
class CallState:
    call_id: str
    started_at: float
    agent_id: str = ""
    queue: str = ""
    lang: str = ""
    source: str = ""
    ended: bool = False
    end_reason: str = ""
    duration_s: float = 0.0
    last_seq: int = 0
    temperature: float = 0.0
    alerts_by_severity: dict[str, int] = field(
        default_factory=lambda: {"fatal": 0, "serious": 0, "general": 0}
    )
    transcript: deque[TranscriptLine] = field(default_factory=lambda: deque(maxlen=MAX_ITEMS))
    alerts: deque[AlertItem] = field(default_factory=lambda: deque(maxlen=MAX_ITEMS))
    checklist: dict[str, ChecklistStep] = field(default_factory=dict)
    emotion: deque[EmotionPoint] = field(default_factory=lambda: deque(maxlen=MAX_ITEMS))
    suggestions: deque[SuggestionItem] = field(default_factory=lambda: deque(maxlen=MAX_ITEMS))
    whispers: deque[WhisperItem] = field(default_factory=lambda: deque(maxlen=MAX_ITEMS))
    intents: deque[IntentItem] = field(default_factory=lambda: deque(maxlen=MAX_ITEMS))
    barges: deque[BargeItem] = field(default_factory=lambda: deque(maxlen=MAX_ITEMS))
    scorecard: Scorecard | None = None

    @property
    def checklist_counts(self) -> ChecklistCounts:
        states = [step.state for step in list(self.checklist.values())]
        return ChecklistCounts(
            done=states.count("done"), due=states.count("due"), missed=states.count("missed")
        )

    @property
    def alert_counts(self) -> AlertCounts:
        return AlertCounts(**self.alerts_by_severity)

    @property
    def risk(self) -> float:
        return risk_score(self.alerts_by_severity, self.temperature)

    def _view(self) -> dict[str, object]:
        """The fields the row and the detail share, but for ``alerts`` and ``checklist``."""
        return {
            "call_id": self.call_id,
            "agent_id": self.agent_id,
            "queue": self.queue,
            "lang": self.lang,
            "source": self.source,
            "started_at": round(self.started_at, 3),
            "ended": self.ended,
            "end_reason": self.end_reason,
            "duration_s": round(self.duration_s, 3),
            "last_seq": self.last_seq,
            "risk": self.risk,
            "temperature": round(self.temperature, 3),
            "temperatures": [p.temperature for p in list(self.emotion)[-CURVE_POINTS:]],
            "last_alert": self.alerts[-1] if self.alerts else None,
            "score": self.scorecard.total if self.scorecard else None,
        }

    def summary(self) -> CallSummary:
        return CallSummary.model_validate(
            {**self._view(), "alerts": self.alert_counts, "checklist": self.checklist_counts}
        )

    def detail(self) -> CallDetail:
        # list() and dict() copy in one step each: a request thread may read while the loop folds
        return CallDetail.model_validate(
            {
                **self._view(),
                "alerts": list(self.alerts),
                "checklist": dict(self.checklist),
                "alert_counts": self.alert_counts,
                "transcript": list(self.transcript),
                "emotion": list(self.emotion),
                "suggestions": list(self.suggestions),
                "whispers": list(self.whispers),
                "intents": list(self.intents),
                "barges": list(self.barges),
                "scorecard": self.scorecard,
            }
        )

    def apply(self, event: Event) -> bool:
        """Fold one event in; True when the floor should hear about it."""
        self.last_seq = max(self.last_seq, event.seq)
        self.duration_s = max(self.duration_s, event.t_end)
        p = event.payload
        head = Head(seq=event.seq, channel=event.channel, t_start=event.t_start, t_end=event.t_end,
                    emitted_at=event.emitted_at)  # fmt: skip
        if isinstance(p, CallStarted):
            self.lang, self.source = p.lang, p.source
            self.agent_id = p.meta.get("agent_id", "")
            self.queue = p.meta.get("queue", "")
            return True
        if isinstance(p, TranscriptFinal):
            self.transcript.append(TranscriptLine(**head, text=p.text, lang=p.lang, segment=p.segment))
            return False
        if isinstance(p, TranscriptRedacted):  # a number completed later: the final's text is redacted again
            for i in range(len(self.transcript) - 1, -1, -1):
                line = self.transcript[i]
                if line.channel == event.channel and line.segment == p.segment:
                    self.transcript[i] = line.model_copy(update={"text": p.text})
                    break
            return False
        if isinstance(p, Alert):
            self.alerts.append(AlertItem(**head, **plain(p)))
            self.alerts_by_severity[p.severity] = self.alerts_by_severity.get(p.severity, 0) + 1
            return True
        if isinstance(p, Checklist):
            before = self.checklist[p.step].state if p.step in self.checklist else None
            self.checklist[p.step] = ChecklistStep(state=p.state, mandatory=p.mandatory, evidence=p.evidence,
                                                   seq=event.seq, t_end=event.t_end)  # fmt: skip
            return before != p.state
        if isinstance(p, Emotion):
            self.emotion.append(EmotionPoint(seq=event.seq, t=event.t_end, **plain(p)))
            changed = abs(p.temperature - self.temperature) >= 0.05 or p.warning
            self.temperature = p.temperature
            return changed
        if isinstance(p, Suggestion):
            self.suggestions.append(SuggestionItem(**head, **plain(p)))
            return False
        if isinstance(p, Whisper):
            self.whispers.append(WhisperItem(**head, **plain(p)))
            return False
        if isinstance(p, Intent):
            self.intents.append(IntentItem(**head, **plain(p)))
            return False
        if isinstance(p, Score):
            self.scorecard = Scorecard.model_validate(plain(p))
            return True
        if isinstance(p, CallEnded):
            self.ended, self.end_reason = True, p.reason
            self.duration_s = max(self.duration_s, p.duration_s)
            return True
        if isinstance(p, Barge):
            self.barges.append(BargeItem(**head, **plain(p)))
            return True
        return False
