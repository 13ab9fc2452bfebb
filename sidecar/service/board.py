"""The call board: what the REST API and the supervisor floor show, folded from the bus's events.

Each call's state (transcript, alerts, checklist, temperature curve, suggestions, scorecard, risk)
is a projection of its events; the board follows the bus's ``"*"`` stream, so any API node that
reads the same bus shows the same board. Memory: every list is bounded (``MAX_ITEMS`` per list,
oldest dropped — the full record stays on the bus), and only the last ``retain_ended`` ended calls
are kept.

The floor feed is a bounded ring of ``call`` (summary) and ``alert`` messages with a floor-wide
id; a supervisor's stream reads it through a cursor and resumes by id. A reader too far behind
gets ``FloorLaggedError`` and re-reads the call list.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict, deque
from dataclasses import dataclass, field
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
    Whisper,
    plain,
)

MAX_ITEMS = 2_000
CURVE_POINTS = 40  # temperatures in a summary (the sparkline)
RISK_WEIGHTS = {"fatal": 0.6, "serious": 0.3, "general": 0.08}


class FloorLaggedError(Exception):
    """The floor reader's position is older than the ring still holds."""


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
    transcript: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_ITEMS))
    alerts: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_ITEMS))
    checklist: dict[str, dict[str, Any]] = field(default_factory=dict)
    emotion: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_ITEMS))
    suggestions: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_ITEMS))
    whispers: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_ITEMS))
    intents: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_ITEMS))
    barges: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_ITEMS))
    scorecard: dict[str, Any] | None = None

    @property
    def checklist_counts(self) -> dict[str, int]:
        counts = {"done": 0, "due": 0, "missed": 0}
        for step in self.checklist.values():
            counts[step["state"]] = counts.get(step["state"], 0) + 1
        return counts

    @property
    def risk(self) -> float:
        return risk_score(self.alerts_by_severity, self.temperature)

    def summary(self) -> dict[str, Any]:
        last_alert = self.alerts[-1] if self.alerts else None
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
            "temperatures": [p["temperature"] for p in list(self.emotion)[-CURVE_POINTS:]],
            "alerts": dict(self.alerts_by_severity),
            "last_alert": last_alert,
            "checklist": self.checklist_counts,
            "score": self.scorecard["total"] if self.scorecard else None,
        }

    def detail(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "transcript": list(self.transcript),
            "alerts": list(self.alerts),
            "alert_counts": dict(self.alerts_by_severity),
            "checklist": dict(self.checklist),
            "emotion": list(self.emotion),
            "suggestions": list(self.suggestions),
            "whispers": list(self.whispers),
            "intents": list(self.intents),
            "barges": list(self.barges),
            "scorecard": self.scorecard,
        }

    def apply(self, event: Event) -> bool:
        """Fold one event in; True when the floor should hear about it."""
        self.last_seq = max(self.last_seq, event.seq)
        self.duration_s = max(self.duration_s, event.t_end)
        p = event.payload
        head = {"seq": event.seq, "channel": event.channel, "t_start": event.t_start, "t_end": event.t_end,
                "emitted_at": event.emitted_at}  # fmt: skip
        if isinstance(p, CallStarted):
            self.lang, self.source = p.lang, p.source
            self.agent_id = p.meta.get("agent_id", "")
            self.queue = p.meta.get("queue", "")
            return True
        if isinstance(p, TranscriptFinal):
            self.transcript.append({**head, "text": p.text, "lang": p.lang, "segment": p.segment})
            return False
        if isinstance(p, TranscriptRedacted):  # a number completed later: the final's text is redacted again
            for item in reversed(self.transcript):
                if item["channel"] == event.channel and item.get("segment") == p.segment:
                    item["text"] = p.text
                    break
            return False
        if isinstance(p, Alert):
            self.alerts.append({**head, **plain(p)})
            self.alerts_by_severity[p.severity] = self.alerts_by_severity.get(p.severity, 0) + 1
            return True
        if isinstance(p, Checklist):
            before = self.checklist.get(p.step, {}).get("state")
            self.checklist[p.step] = {"state": p.state, "mandatory": p.mandatory, "evidence": p.evidence,
                                      "seq": event.seq, "t_end": event.t_end}  # fmt: skip
            return before != p.state
        if isinstance(p, Emotion):
            self.emotion.append({"seq": event.seq, "t": event.t_end, **plain(p)})
            changed = abs(p.temperature - self.temperature) >= 0.05 or p.warning
            self.temperature = p.temperature
            return changed
        if isinstance(p, Suggestion):
            self.suggestions.append({**head, **plain(p)})
            return False
        if isinstance(p, Whisper):
            self.whispers.append({**head, **plain(p)})
            return False
        if isinstance(p, Intent):
            self.intents.append({**head, **plain(p)})
            return False
        if isinstance(p, Score):
            self.scorecard = plain(p)
            return True
        if isinstance(p, CallEnded):
            self.ended, self.end_reason = True, p.reason
            self.duration_s = max(self.duration_s, p.duration_s)
            return True
        if event.type == "barge":
            self.barges.append({**head, **plain(p)})
            return True
        return False


@dataclass(frozen=True, slots=True)
class FloorMessage:
    id: int
    event: str  # "call" | "alert"
    data: dict[str, Any]


class CallBoard:
    def __init__(self, retain_ended: int = 500, floor_ring: int = 10_000) -> None:
        self._calls: OrderedDict[str, CallState] = OrderedDict()
        self._retain_ended = retain_ended
        self._floor: deque[FloorMessage] = deque(maxlen=floor_ring)
        self._floor_id = 0
        self._changed = asyncio.Condition()
        self.events_seen = 0

    def get(self, call_id: str) -> CallState | None:
        return self._calls.get(call_id)

    def calls(self) -> list[CallState]:
        return list(self._calls.values())

    def live_count(self) -> int:
        return sum(1 for c in self._calls.values() if not c.ended)

    async def apply(self, event: Event) -> None:
        state = self._calls.get(event.call_id)
        if state is None:
            state = self._calls[event.call_id] = CallState(event.call_id, started_at=event.emitted_at)
        elif event.seq <= state.last_seq and event.type != "call.started":
            return  # already folded in (a resumed subscription)
        self.events_seen += 1
        notify = state.apply(event)
        if isinstance(event.payload, Alert):
            self._post("alert", {"call_id": event.call_id, **state.alerts[-1]})
        if notify:
            self._post("call", state.summary())
        if state.ended:
            self._forget_old()
        if notify:
            async with self._changed:
                self._changed.notify_all()

    def _post(self, kind: str, data: dict[str, Any]) -> None:
        self._floor_id += 1
        self._floor.append(FloorMessage(self._floor_id, kind, data))

    def _forget_old(self) -> None:
        ended = [cid for cid, c in self._calls.items() if c.ended]
        for cid in ended[: max(0, len(ended) - self._retain_ended)]:
            del self._calls[cid]

    async def wait_for_call(self, call_id: str, timeout_s: float) -> bool:
        """Wait until the board has folded in the call's start (it follows the bus a moment behind)."""
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(lambda: call_id in self._calls)
        except TimeoutError:
            return False
        return True

    async def floor(self, after: int | None) -> Any:
        """Floor messages with ``id > after`` (``None``: from now on), until cancelled."""
        cursor = self._floor_id if after is None else after
        while True:
            if self._floor and self._floor[0].id > cursor + 1 and cursor < self._floor_id:
                raise FloorLaggedError(f"floor messages after {cursor} are no longer retained")
            batch = [m for m in self._floor if m.id > cursor]
            for message in batch:
                cursor = message.id
                yield message
            if not batch:
                async with self._changed:
                    await self._changed.wait_for(functools.partial(self._floor_past, cursor))

    def _floor_past(self, cursor: int) -> bool:
        return self._floor_id > cursor


def summary_sort_key(state: CallState) -> tuple[float, float]:
    return (-state.risk, -state.started_at)
