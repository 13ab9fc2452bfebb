"""One call as the REST API, the floor and the widgets see it: typed items folded from its events.

``CallState`` is the projection of one call's events (transcript, alerts, checklist, temperature
curve, suggestions, scorecard, risk); ``summary()`` is its row on the floor, ``detail()`` the whole
view. Both are the pydantic models the routes declare, so ``/openapi.json`` describes what the
browser reads.

An item is its event's payload (the kernel's dataclass, inherited: a field added there is in the
item, its schema and its JSON with no change here) and its place in the call (``Stamped``: ``seq``,
``channel``, ``t_start``, ``t_end``, ``emitted_at``, as the bus stamped them), first in the JSON
as the widgets were built on; the scorecard is the ``Score`` payload itself. Two are their own
shapes: a transcript line (a final's text, not its words) and a checklist step (a step's latest
state). Payload floats are rounded to milliseconds (``plain``), as the events' own JSON has them.
A new panel is a list here (its item, its fold, its place in ``CallDetail``) and the script that
draws it.

Memory: every list is bounded (``MAX_ITEMS``, oldest dropped; the full record stays on the bus).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import field
from typing import Annotated, Generic, TypedDict, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.dataclasses import dataclass as typed_dataclass

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
    Suggestion,
    TranscriptFinal,
    TranscriptRedacted,
    Whisper,
    plain,
)

MAX_ITEMS = 2_000
CURVE_POINTS = 40  # temperatures in a summary (the sparkline)
RISK_WEIGHTS = {"fatal": 0.6, "serious": 0.3, "general": 0.08}
# every field is in every answer, so the published schema lists those with defaults as required too
SCHEMA = ConfigDict(json_schema_serialization_defaults_required=True)

Seconds = Annotated[float, Field(description="seconds of call audio")]


@dataclasses.dataclass(frozen=True)
class Stamped:
    """Where on the call an item sits: its event's seq, channel and times."""

    seq: Annotated[int, Field(description="the event's per-call seq (its SSE id)")]
    channel: Channel | None
    t_start: Seconds
    t_end: Seconds
    emitted_at: Annotated[float, Field(description="wall clock, epoch seconds")]


class Head(TypedDict):
    """``Stamped``'s fields as the fold hands them on: ``Item(**head, **plain(payload))``."""

    seq: int
    channel: Channel | None
    t_start: float
    t_end: float
    emitted_at: float


@dataclasses.dataclass(frozen=True)
class Point:
    """Where on the curve a reading sits: its event's seq and the end of what it read."""

    seq: int
    t: Seconds


@dataclasses.dataclass(frozen=True)
class OnCall:
    call_id: str


@typed_dataclass(frozen=True, config=SCHEMA)
class TranscriptLine(Stamped):
    """A final transcript (redacted; replaced when a later ``transcript.redacted`` corrects it)."""

    text: str
    lang: str
    segment: int


@typed_dataclass(frozen=True, config=SCHEMA)
class AlertItem(Alert, Stamped):
    """A violation: ``message`` is what the agent is told, ``evidence`` the redacted words."""


@typed_dataclass(frozen=True, config=SCHEMA)
class SuggestionItem(Suggestion, Stamped):
    """A procedure card pushed to the agent."""


@typed_dataclass(frozen=True, config=SCHEMA)
class WhisperItem(Whisper, Stamped):
    """A supervisor's note to the agent."""


@typed_dataclass(frozen=True, config=SCHEMA)
class IntentItem(Intent, Stamped):
    """What the customer called about, as a rule read it."""


@typed_dataclass(frozen=True, config=SCHEMA)
class BargeItem(Barge, Stamped):
    """A supervisor asked to join the call."""


@typed_dataclass(frozen=True, config=SCHEMA)
class EmotionPoint(Emotion, Point):
    """The customer's temperature after an utterance (-1..1), that utterance's own score, the
    drivers behind it; ``warning`` when it is falling fast."""


@typed_dataclass(frozen=True, config=SCHEMA)
class ChecklistStep:
    """A disclosure step's state now, and the event that set it."""

    state: ChecklistState
    mandatory: bool
    evidence: str
    seq: int
    t_end: Seconds


@typed_dataclass(frozen=True, config=SCHEMA)
class FloorAlert(AlertItem, OnCall):
    """An ``alert`` message on the floor: its call and the alert as the call's detail lists it."""


SCORECARD: TypeAdapter[Score] = TypeAdapter(Score)  # the score event's payload, floats rounded


class AlertCounts(BaseModel):
    model_config = SCHEMA
    fatal: int
    serious: int
    general: int


class ChecklistCounts(BaseModel):
    model_config = SCHEMA
    done: int
    due: int
    missed: int


AlertsT = TypeVar("AlertsT")
ChecklistT = TypeVar("ChecklistT")


class CallView(BaseModel, Generic[AlertsT, ChecklistT]):
    """What a call's row and its detail share; ``alerts`` and ``checklist`` are counts in the row
    and the items themselves in the detail (the widgets read them so)."""

    model_config = SCHEMA
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
    scorecard: Score | None = Field(description="the post-call scorecard once the call has ended")


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


@dataclasses.dataclass
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
    scorecard: Score | None = None

    @property
    def checklist_counts(self) -> ChecklistCounts:
        states = [step.state for step in list(self.checklist.values())]
        return ChecklistCounts(
            done=states.count("done"), due=states.count("due"), missed=states.count("missed")
        )

    @property
    def alert_counts(self) -> AlertCounts:
        return AlertCounts.model_validate(self.alerts_by_severity)

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
                    self.transcript[i] = dataclasses.replace(line, text=p.text)
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
            self.scorecard = SCORECARD.validate_python(plain(p))
            return True
        if isinstance(p, CallEnded):
            self.ended, self.end_reason = True, p.reason
            self.duration_s = max(self.duration_s, p.duration_s)
            return True
        if isinstance(p, Barge):
            self.barges.append(BargeItem(**head, **plain(p)))
            return True
        return False
