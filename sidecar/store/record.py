"""What the call store keeps of one ended call, folded from its bus events.

``CallRecorder`` is a pure fold (no I/O): feed it every event of any number of calls; on a call's
``call.ended`` it returns that call's ``CallRecord``. The live service (``subscriber.py``) and
``assist qa run`` both use it, so a stored call is the same whichever path scored it.

Everything kept is what the bus carried, which is already redacted (transcripts, evidence);
``transcript.redacted`` corrections replace the final they correct. Lists are bounded per call
(``MAX_ITEMS``; the oldest are dropped), and at most ``max_open`` calls are folded at once (a call
that never ends is forgotten, oldest first).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

from sidecar.kernel.events import (
    Alert,
    CallEnded,
    CallStarted,
    Checklist,
    Emotion,
    Event,
    Intent,
    Score,
    Suggestion,
    TranscriptFinal,
    TranscriptRedacted,
    Word,
    plain,
)

MAX_ITEMS = 10_000  # per list and call: far more than any real call produces


@dataclass(frozen=True, slots=True)
class StoredWord:
    text: str
    t_start: float
    t_end: float
    probability: float = 1.0


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    seq: int
    channel: str
    t_start: float
    t_end: float
    text: str
    lang: str
    segment: int
    words: tuple[StoredWord, ...] = ()


@dataclass(frozen=True, slots=True)
class AlertItem:
    seq: int
    t_start: float
    t_end: float
    category: str
    severity: str
    rule_id: str
    message: str
    evidence: str
    step: str | None = None
    source: str = "final"
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ChecklistItem:
    step: str
    state: str
    mandatory: bool
    evidence: str
    t: float


@dataclass(frozen=True, slots=True)
class IntentItem:
    seq: int
    t_start: float
    t_end: float
    intent: str
    confidence: float
    evidence: str
    rule_id: str = ""


@dataclass(frozen=True, slots=True)
class EmotionPoint:
    t: float
    temperature: float
    utterance: float
    label: str
    drivers: tuple[str, ...] = ()
    warning: bool = False


@dataclass(frozen=True, slots=True)
class SuggestionItem:
    seq: int
    t: float
    snippet_id: str
    title: str
    score: float
    reason: str
    version: int = 0
    feedback: tuple[tuple[str, int], ...] = ()  # (kind, count): shown, used, dismissed, helpful ...


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One ended call as stored. Times: ``started_at``/``ended_at`` wall clock (epoch s), the rest
    seconds of call audio."""

    call_id: str
    agent_id: str = ""
    queue: str = ""
    lang: str = ""
    source: str = ""
    customer_ref: str | None = None
    recording_ref: str | None = None
    started_at: float = 0.0
    ended_at: float = 0.0
    duration_s: float = 0.0
    end_reason: str = ""
    transcript: tuple[TranscriptLine, ...] = ()
    alerts: tuple[AlertItem, ...] = ()
    checklist: tuple[ChecklistItem, ...] = ()
    intents: tuple[IntentItem, ...] = ()
    emotion: tuple[EmotionPoint, ...] = ()
    suggestions: tuple[SuggestionItem, ...] = ()
    scorecard: dict[str, Any] | None = None
    stats: dict[str, float] = field(default_factory=dict)
    origin: str = "live"  # "live" (the service saw it) or "qa" (assist qa run)
    content_hash: str | None = None  # qa run: sha256 of the scored file (what makes a rerun skip it)

    @property
    def score_total(self) -> float | None:
        total = self.scorecard.get("total") if self.scorecard else None
        return float(total) if isinstance(total, (int, float)) else None

    def alert_counts(self) -> dict[str, int]:
        counts = {"fatal": 0, "serious": 0, "general": 0}
        for alert in self.alerts:
            counts[alert.severity] = counts.get(alert.severity, 0) + 1
        return counts

    def search_text(self) -> str:
        """The redacted transcript, lower-cased: what the text filter searches."""
        return "\n".join(line.text for line in self.transcript).lower()

    def to_json_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = plain(self)
        data["suggestions"] = [
            {**s, "feedback": {kind: n for kind, n in item.feedback}}
            for s, item in zip(data["suggestions"], self.suggestions, strict=True)
        ]
        return data


def record_from_json(data: dict[str, Any]) -> CallRecord:
    """Inverse of ``CallRecord.to_json_dict`` (what the store reads back)."""
    return CallRecord(
        call_id=data["call_id"],
        agent_id=data.get("agent_id", ""),
        queue=data.get("queue", ""),
        lang=data.get("lang", ""),
        source=data.get("source", ""),
        customer_ref=data.get("customer_ref"),
        recording_ref=data.get("recording_ref"),
        started_at=float(data.get("started_at", 0.0)),
        ended_at=float(data.get("ended_at", 0.0)),
        duration_s=float(data.get("duration_s", 0.0)),
        end_reason=data.get("end_reason", ""),
        transcript=tuple(
            TranscriptLine(**{**t, "words": tuple(StoredWord(**w) for w in t.get("words", ()))})
            for t in data.get("transcript", ())
        ),
        alerts=tuple(AlertItem(**a) for a in data.get("alerts", ())),
        checklist=tuple(ChecklistItem(**c) for c in data.get("checklist", ())),
        intents=tuple(IntentItem(**i) for i in data.get("intents", ())),
        emotion=tuple(
            EmotionPoint(**{**e, "drivers": tuple(e.get("drivers", ()))}) for e in data.get("emotion", ())
        ),
        suggestions=tuple(
            SuggestionItem(**{**s, "feedback": tuple(sorted(s.get("feedback", {}).items()))})
            for s in data.get("suggestions", ())
        ),
        scorecard=data.get("scorecard"),
        stats=dict(data.get("stats", {})),
        origin=data.get("origin", "live"),
        content_hash=data.get("content_hash"),
    )


def customer_ref_hash(customer_ref: str) -> str:
    """What the audit log keeps of an erased customer's reference (not the reference itself)."""
    return hashlib.sha256(customer_ref.encode("utf-8")).hexdigest()


def _words(words: tuple[Word, ...]) -> tuple[StoredWord, ...]:
    return tuple(
        StoredWord(w.text, round(w.t_start, 3), round(w.t_end, 3), round(w.probability, 3)) for w in words
    )


@dataclass
class _Open:
    """One call being folded."""

    call_id: str
    started_at: float = 0.0
    meta: dict[str, str] = field(default_factory=dict)
    lang: str = ""
    source: str = ""
    transcript: list[TranscriptLine] = field(default_factory=list)
    alerts: list[AlertItem] = field(default_factory=list)
    checklist: dict[str, ChecklistItem] = field(default_factory=dict)
    intents: list[IntentItem] = field(default_factory=list)
    emotion: list[EmotionPoint] = field(default_factory=list)
    suggestions: list[SuggestionItem] = field(default_factory=list)
    scorecard: dict[str, Any] | None = None
    duration_s: float = 0.0

    def add(self, items: list[Any], item: Any) -> None:
        items.append(item)
        if len(items) > MAX_ITEMS:
            del items[0]

    def apply(self, event: Event) -> None:
        p = event.payload
        self.duration_s = max(self.duration_s, event.t_end)
        if isinstance(p, CallStarted):
            self.started_at, self.lang, self.source, self.meta = (
                event.emitted_at,
                p.lang,
                p.source,
                dict(p.meta),
            )
        elif isinstance(p, TranscriptFinal):
            self.add(self.transcript, TranscriptLine(event.seq, event.channel or "", event.t_start, event.t_end,
                                                     p.text, p.lang, p.segment, _words(p.words)))  # fmt: skip
        elif isinstance(p, TranscriptRedacted):
            for i in range(len(self.transcript) - 1, -1, -1):
                line = self.transcript[i]
                if line.channel == event.channel and line.segment == p.segment:
                    self.transcript[i] = replace(line, text=p.text, words=_words(p.words))
                    break
        elif isinstance(p, Alert):
            self.add(self.alerts, AlertItem(event.seq, event.t_start, event.t_end, p.category, p.severity,
                                            p.rule_id, p.message, p.evidence, p.step, p.source, p.reason))  # fmt: skip
        elif isinstance(p, Checklist):
            self.checklist[p.step] = ChecklistItem(p.step, p.state, p.mandatory, p.evidence, event.t_end)
        elif isinstance(p, Intent):
            self.add(self.intents, IntentItem(event.seq, event.t_start, event.t_end, p.intent, p.confidence,
                                              p.evidence, p.rule_id))  # fmt: skip
        elif isinstance(p, Emotion):
            self.add(self.emotion, EmotionPoint(event.t_end, p.temperature, p.utterance, p.label, p.drivers,
                                                p.warning))  # fmt: skip
        elif isinstance(p, Suggestion):
            self.add(self.suggestions, SuggestionItem(event.seq, event.t_end, p.snippet_id, p.title, p.score,
                                                      p.reason, p.version))  # fmt: skip
        elif isinstance(p, Score):
            self.scorecard = plain(p)

    def finish(self, event: Event, ended: CallEnded) -> CallRecord:
        meta = self.meta
        return CallRecord(
            call_id=self.call_id,
            agent_id=meta.get("agent_id", ""),
            queue=meta.get("queue", ""),
            lang=self.lang,
            source=meta.get("tap") or self.source,
            customer_ref=meta.get("customer_ref") or None,
            recording_ref=meta.get("recording") or None,
            started_at=self.started_at or event.emitted_at,
            ended_at=event.emitted_at,
            duration_s=round(max(self.duration_s, ended.duration_s), 3),
            end_reason=ended.reason,
            transcript=tuple(self.transcript),
            alerts=tuple(self.alerts),
            checklist=tuple(sorted(self.checklist.values(), key=lambda c: c.step)),
            intents=tuple(self.intents),
            emotion=tuple(self.emotion),
            suggestions=tuple(self.suggestions),
            scorecard=self.scorecard,
            stats={k: float(v) for k, v in ended.stats.items()},
        )


class CallRecorder:
    """Folds the events of many calls; ``apply`` returns a call's record when it ends."""

    def __init__(self, max_open: int = 5_000) -> None:
        self._open: OrderedDict[str, _Open] = OrderedDict()
        self._max_open = max_open
        self.forgotten = 0  # calls dropped unfinished because too many were open

    def apply(self, event: Event) -> CallRecord | None:
        state = self._open.get(event.call_id)
        if state is None:
            state = self._open[event.call_id] = _Open(event.call_id)
            if len(self._open) > self._max_open:
                self._open.popitem(last=False)
                self.forgotten += 1
        if isinstance(event.payload, CallEnded):
            del self._open[event.call_id]
            return state.finish(event, event.payload)
        state.apply(event)
        return None

    @property
    def open_calls(self) -> int:
        return len(self._open)
