"""One ended call, as the early-warning detectors see it: a ``CallDigest``.

Built from the call's events (``digest_from_events``, or incrementally with ``DigestFold`` as the
bus delivers them), or from the call board's state of an ended call (``digest_from_board``), using
only what the product already emits:

- ``call.started``: ``source``, ``lang`` and the ``meta`` the tap was given (``agent_id``,
  ``queue``, and where present ``team`` and ``customer_ref``); its bus time is the start;
- ``call.ended``: the duration (the end is start + duration);
- ``intent``: the customer's intents in order;
- ``suggestion``: the knowledge card pushed for a turn names its topic. A complaint's topic is the
  snippet of the first card pushed for the complaint's turn or up to ``TOPIC_LAG_S`` after it; a
  complaint with no card has no topic (a bare "complaint" is not a topic to count);
- ``emotion``: the customer temperature curve (start, end, lowest, mean);
- ``transcript.final`` / ``transcript.redacted`` of the customer: negative and total word counts
  (``sidecar.qa.negative``); the text is not kept;
- ``alert``: violations counted by (category, severity).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sidecar.kernel.events import (
    Alert,
    CallEnded,
    CallStarted,
    Emotion,
    Event,
    Intent,
    Suggestion,
    TranscriptFinal,
    TranscriptRedacted,
)
from sidecar.qa.negative import count_negative_words

if TYPE_CHECKING:
    from sidecar.service.callview import CallState

COMPLAINT_INTENTS = frozenset(
    {"complaint", "implicit_complaint", "refund_request", "cancel_threat", "escalation_request"}
)
TOPIC_LAG_S = 20.0  # a card pushed this long after a complaint's turn still names its topic


@dataclass(frozen=True, slots=True)
class ViolationCount:
    category: str
    severity: str
    count: int


@dataclass(frozen=True, slots=True)
class CallDigest:
    """What one ended call contributes to the cross-call warnings. Times are epoch seconds."""

    call_id: str
    agent_id: str
    queue: str
    lang: str
    started_at: float
    ended_at: float
    team: str = ""
    customer_ref: str = ""  # the same customer calling twice counts once in a complaint burst
    intents: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()  # every topic the call touched (knowledge cards pushed)
    complaint_topics: tuple[str, ...] = ()  # the topics the customer complained about
    temperature_start: float = 0.0  # customer temperature, -1 (angry) .. 1
    temperature_end: float = 0.0
    temperature_min: float = 0.0
    temperature_mean: float = 0.0
    customer_words: int = 0
    negative_words: int = 0
    violations: tuple[ViolationCount, ...] = ()

    def __post_init__(self) -> None:
        if not self.call_id:
            raise ValueError("a call digest needs a call_id")
        if self.ended_at < self.started_at:
            raise ValueError(f"call {self.call_id} ends before it starts")
        if not 0 <= self.negative_words <= self.customer_words:
            raise ValueError(
                f"call {self.call_id}: negative words must be between 0 and the customer's words"
            )

    @property
    def customer(self) -> str:
        """Who called: the customer reference where the tap gave one, else the call itself."""
        return self.customer_ref or self.call_id

    @property
    def negative_share(self) -> float:
        return self.negative_words / self.customer_words if self.customer_words else 0.0

    @property
    def duration_s(self) -> float:
        return self.ended_at - self.started_at


@dataclass
class DigestFold:
    """The digest of one call, folded event by event (bounded: counts and short lists only)."""

    call_id: str
    started_at: float | None = None
    duration_s: float = 0.0
    ended: bool = False
    meta: dict[str, str] = field(default_factory=dict)
    lang: str = ""
    intents: list[tuple[float, float, str]] = field(default_factory=list)  # (t_start, t_end, intent)
    cards: list[tuple[float, str]] = field(default_factory=list)  # (t_start, snippet id)
    temperatures: list[float] = field(default_factory=list)
    words: dict[tuple[str | None, int], tuple[int, int]] = field(default_factory=dict)  # segment: (neg, all)
    violations: Counter[tuple[str, str]] = field(default_factory=Counter)

    MAX_ITEMS = 2_000  # per list, as the call board keeps

    def apply(self, event: Event) -> None:
        p = event.payload
        self.duration_s = max(self.duration_s, event.t_end)
        if self.started_at is None or isinstance(p, CallStarted):
            self.started_at = event.emitted_at
        if isinstance(p, CallStarted):
            self.meta, self.lang = dict(p.meta), p.lang
        elif isinstance(p, Intent) and len(self.intents) < self.MAX_ITEMS:
            self.intents.append((event.t_start, event.t_end, p.intent))
        elif isinstance(p, Suggestion) and len(self.cards) < self.MAX_ITEMS:
            self.cards.append((event.t_start, p.snippet_id))
        elif isinstance(p, Emotion) and len(self.temperatures) < self.MAX_ITEMS:
            self.temperatures.append(p.temperature)
        elif isinstance(p, TranscriptFinal | TranscriptRedacted) and event.channel == "customer":
            # a redaction replaces its final's counts (same segment)
            self.words[(event.channel, p.segment)] = count_negative_words(p.text, p.lang)
        elif isinstance(p, Alert):
            self.violations[(p.category, p.severity)] += 1
        elif isinstance(p, CallEnded):
            self.ended = True
            self.duration_s = max(self.duration_s, p.duration_s)

    def digest(self) -> CallDigest:
        started = self.started_at or 0.0
        temps = self.temperatures
        negative = sum(n for n, _ in self.words.values())
        total = sum(t for _, t in self.words.values())
        return CallDigest(
            call_id=self.call_id,
            agent_id=self.meta.get("agent_id", ""),
            queue=self.meta.get("queue", ""),
            lang=self.lang,
            started_at=started,
            ended_at=started + self.duration_s,
            team=self.meta.get("team", ""),
            customer_ref=self.meta.get("customer_ref", ""),
            intents=tuple(i for _, _, i in self.intents),
            topics=tuple(dict.fromkeys(snippet for _, snippet in self.cards)),
            complaint_topics=complaint_topics(self.intents, self.cards),
            temperature_start=temps[0] if temps else 0.0,
            temperature_end=temps[-1] if temps else 0.0,
            temperature_min=min(temps, default=0.0),
            temperature_mean=sum(temps) / len(temps) if temps else 0.0,
            customer_words=total,
            negative_words=negative,
            violations=tuple(ViolationCount(c, s, n) for (c, s), n in sorted(self.violations.items())),
        )


def complaint_topics(
    intents: Iterable[tuple[float, float, str]], cards: Iterable[tuple[float, str]]
) -> tuple[str, ...]:
    """The topic of each complaint: the first card pushed from its turn's start to ``TOPIC_LAG_S``
    after the turn's end. Distinct, in order."""
    ordered = sorted(cards)
    topics: dict[str, None] = {}
    for t_start, t_end, intent in intents:
        if intent not in COMPLAINT_INTENTS:
            continue
        card = next((s for t, s in ordered if t_start <= t <= t_end + TOPIC_LAG_S), None)
        if card is not None:
            topics[card] = None
    return tuple(topics)


def digest_from_events(call_id: str, events: Iterable[Event]) -> CallDigest:
    """The digest of an ended call from its events (the bus log or a stored call's)."""
    fold = DigestFold(call_id)
    for event in events:
        if event.call_id == call_id:
            fold.apply(event)
    if not fold.ended:
        raise ValueError(f"call {call_id} has not ended: no call.ended among its events")
    return fold.digest()


def digest_from_board(state: CallState, *, team: str = "", customer_ref: str = "") -> CallDigest:
    """The digest of an ended call from the call board's state (what REST and the floor show).
    The board keeps no ``team`` or ``customer_ref``: pass them where they are known."""
    if not state.ended:
        raise ValueError(f"call {state.call_id} has not ended")
    fold = DigestFold(state.call_id, started_at=state.started_at, duration_s=state.duration_s, ended=True)
    fold.meta = {"agent_id": state.agent_id, "queue": state.queue, "team": team, "customer_ref": customer_ref}
    fold.lang = state.lang
    fold.intents = [(i.t_start, i.t_end, i.intent) for i in state.intents]
    fold.cards = [(s.t_start, s.snippet_id) for s in state.suggestions]
    fold.temperatures = [e.temperature for e in state.emotion]
    for line in state.transcript:
        if line.channel == "customer":
            fold.words[("customer", line.segment)] = count_negative_words(line.text, line.lang)
    for alert in state.alerts:
        fold.violations[(alert.category, alert.severity)] += 1
    return fold.digest()
