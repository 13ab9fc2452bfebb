"""Typed events: the one record the rest of the system (coach, bus, browser) sees.

Every event has ``type, call_id, seq, channel, t_start, t_end, emitted_at, payload``
(DESIGN.md). ``seq`` is per call and strictly increasing; the bus stamps it on publish.
Times ``t_start``/``t_end`` are seconds of call audio; ``emitted_at`` is wall-clock epoch seconds.
Payloads are frozen dataclasses, one per event type, serialised to JSON as plain objects.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, cast

Channel: TypeAlias = Literal["agent", "customer"]
CHANNELS: tuple[Channel, ...] = ("agent", "customer")

EventType: TypeAlias = Literal[
    "call.started",
    "call.ended",
    "transcript.partial",
    "transcript.final",
    "transcript.redacted",
    "alert",
    "checklist",
    "intent",
    "emotion",
    "suggestion",
    "whisper",
    "barge",
    "score",
    "warning.raised",
    "warning.cleared",
]
Severity: TypeAlias = Literal["fatal", "serious", "general"]
ChecklistState: TypeAlias = Literal["due", "done", "missed"]


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word; times are seconds of call audio."""

    text: str
    t_start: float
    t_end: float
    probability: float = 1.0


@dataclass(frozen=True, slots=True)
class Prosody:
    """How one speech segment sounded: inputs for the customer-emotion work.

    ``loudness_db`` is RMS level in dBFS over voiced frames; ``pitch_hz`` the median F0 of voiced
    frames (0 when none); ``pitch_range_st`` the spread of F0 (10th-90th percentile) in semitones;
    ``syllable_rate`` energy peaks per second of speech; ``words_per_s`` from the ASR word times.
    """

    duration_s: float
    loudness_db: float
    peak_db: float
    pitch_hz: float
    pitch_range_st: float
    voiced_ratio: float
    syllable_rate: float
    words_per_s: float = 0.0


@dataclass(frozen=True, slots=True)
class CallStarted:
    source: str
    lang: str
    channels: tuple[Channel, ...]
    realtime: bool
    meta: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallEnded:
    reason: str
    duration_s: float
    stats: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TranscriptPartial:
    """What is being said now. ``stable_text`` is the committed prefix (local agreement):
    it does not change within the segment's partials; the rest of ``text`` may."""

    text: str
    stable_text: str
    words: tuple[Word, ...]
    lang: str
    segment: int


@dataclass(frozen=True, slots=True)
class TranscriptFinal:
    """The end of a speech segment: the best transcript of it, with word times in call time."""

    text: str
    words: tuple[Word, ...]
    lang: str
    segment: int
    prosody: Prosody | None = None
    timing: Literal["asr", "estimated"] = "asr"


@dataclass(frozen=True, slots=True)
class TranscriptRedacted:
    """A correction of an earlier ``transcript.final`` of the same channel and ``segment``: its text
    and words redacted again, because a later utterance completed a number read across the two
    (a card in two halves). It replaces that final's text and words wherever they are shown or kept."""

    text: str
    words: tuple[Word, ...]
    lang: str
    segment: int


@dataclass(frozen=True, slots=True)
class Alert:
    """A violation. ``evidence`` is the redacted words that triggered it; ``step`` names the
    disclosure for ``missing_disclosure``; ``snippet_id`` a procedure to show with it."""

    category: str
    severity: Severity
    rule_id: str
    message: str
    evidence: str
    step: str | None = None
    snippet_id: str | None = None
    source: Literal["partial", "final", "timing", "checklist"] = "final"
    reason: str = ""  # what matched: a phrase, a pattern, or the exemplar it resembles


@dataclass(frozen=True, slots=True)
class Checklist:
    step: str
    state: ChecklistState
    mandatory: bool
    evidence: str = ""


@dataclass(frozen=True, slots=True)
class Intent:
    intent: str
    confidence: float
    evidence: str
    rule_id: str = ""


@dataclass(frozen=True, slots=True)
class Emotion:
    """The customer's temperature in -1..1 after this utterance (smoothed), this utterance's own
    score, a label and the named drivers behind it; ``warning`` when it is falling fast."""

    temperature: float
    utterance: float
    label: Literal["angry", "negative", "neutral", "positive"]
    drivers: tuple[str, ...]
    warning: bool = False


@dataclass(frozen=True, slots=True)
class Suggestion:
    snippet_id: str
    title: str
    body: str
    score: float
    reason: str
    version: int = 0  # the snippet's version when it was pushed (edits show up as a new version)


@dataclass(frozen=True, slots=True)
class Whisper:
    """A supervisor's note to the agent, shown on the agent's widget only."""

    text: str
    author: str


@dataclass(frozen=True, slots=True)
class Barge:
    """A supervisor asks to join the call: the telephony side conferences them in."""

    author: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ScoreItem:
    name: str
    section: Literal["service_quality", "efficiency", "customer_experience"]
    score: float  # 0..1
    weight: float  # share of the total, the weights sum to 1
    detail: str
    evidence_s: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Score:
    total: float  # 0..100
    sections: dict[str, float]
    items: tuple[ScoreItem, ...]


@dataclass(frozen=True, slots=True)
class FloorWarning:
    """A cross-call early warning (``sidecar.qa``) for the supervisor floor: ``kind`` (complaint
    burst, queue spike, ...), ``key`` what it is about (a topic, a queue, an agent), the calls
    behind it and the span they cover (epoch seconds). Published on the ``WARNINGS_STREAM`` id;
    ``warning.cleared`` carries the same ``episode`` when the condition ends."""

    kind: str
    key: str
    message: str
    episode: str
    call_ids: tuple[str, ...]
    window_start: float
    window_end: float
    value: float
    threshold: float


Payload: TypeAlias = (
    CallStarted
    | CallEnded
    | TranscriptPartial
    | TranscriptFinal
    | TranscriptRedacted
    | Alert
    | Checklist
    | Intent
    | Emotion
    | Suggestion
    | Whisper
    | Barge
    | Score
    | FloorWarning
)

PAYLOAD_TYPES: dict[str, type[Any]] = {
    "call.started": CallStarted,
    "call.ended": CallEnded,
    "transcript.partial": TranscriptPartial,
    "transcript.final": TranscriptFinal,
    "transcript.redacted": TranscriptRedacted,
    "alert": Alert,
    "checklist": Checklist,
    "intent": Intent,
    "emotion": Emotion,
    "suggestion": Suggestion,
    "whisper": Whisper,
    "barge": Barge,
    "score": Score,
    "warning.raised": FloorWarning,
    "warning.cleared": FloorWarning,
}


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    call_id: str
    channel: Channel | None
    t_start: float
    t_end: float
    payload: Payload
    seq: int = 0  # stamped by the bus
    emitted_at: float = 0.0  # stamped by the bus (wall clock)

    def __post_init__(self) -> None:
        expected = PAYLOAD_TYPES[self.type]
        if not isinstance(self.payload, expected):
            raise TypeError(f"{self.type} needs a {expected.__name__} payload")

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "call_id": self.call_id,
            "seq": self.seq,
            "channel": self.channel,
            "t_start": round(self.t_start, 3),
            "t_end": round(self.t_end, 3),
            "emitted_at": round(self.emitted_at, 3),
            "payload": plain(self.payload),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


def plain(value: Any) -> Any:
    """Dataclasses to dicts, tuples to lists, floats rounded to milliseconds."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, float):
        return round(value, 3)
    return value


def event_from_dict(data: dict[str, Any]) -> Event:
    """Inverse of ``Event.to_dict`` (for buses that carry JSON, e.g. Redis Streams)."""
    etype = data["type"]
    cls = PAYLOAD_TYPES[etype]
    raw = dict(data["payload"])
    if "words" in raw:
        raw["words"] = tuple(Word(**w) for w in raw["words"])
    if "channels" in raw:
        raw["channels"] = tuple(raw["channels"])
    if raw.get("prosody") is not None:
        raw["prosody"] = Prosody(**raw["prosody"])
    if "call_ids" in raw:
        raw["call_ids"] = tuple(raw["call_ids"])
    if "drivers" in raw:
        raw["drivers"] = tuple(raw["drivers"])
    if etype == "score":
        raw["items"] = tuple(
            ScoreItem(**{**item, "evidence_s": tuple(item.get("evidence_s", ()))}) for item in raw["items"]
        )
    return Event(
        type=cast(EventType, etype),
        call_id=data["call_id"],
        channel=data["channel"],
        t_start=float(data["t_start"]),
        t_end=float(data["t_end"]),
        payload=cls(**raw),
        seq=int(data["seq"]),
        emitted_at=float(data["emitted_at"]),
    )
