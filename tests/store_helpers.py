"""Calls for the call-store tests: a small call's events as the coach publishes them, and its record."""

from __future__ import annotations

from sidecar.kernel.events import (
    Alert,
    CallEnded,
    CallStarted,
    Checklist,
    Emotion,
    Event,
    Intent,
    Score,
    ScoreItem,
    Suggestion,
    TranscriptFinal,
    TranscriptRedacted,
    Word,
)
from sidecar.store.record import CallRecord, CallRecorder


def call_events(call_id: str, *, agent: str = "alice", queue: str = "billing", lang: str = "en",
                customer_ref: str | None = "cust-1", started: float = 1_000_000.0, abusive: bool = True,
                score: float = 72.5, intent: str = "refund_request", text: str = "where is my refund") -> list[Event]:  # fmt: skip
    """A small call's events as the coach publishes them (stamped seq and wall-clock times)."""
    meta = {"agent_id": agent, "queue": queue, "recording": f"{call_id}.wav"}
    if customer_ref:
        meta["customer_ref"] = customer_ref
    words = tuple(Word(w, 1.0 + i * 0.3, 1.25 + i * 0.3, 0.9) for i, w in enumerate(text.split()))
    payloads: list[tuple[str, str | None, float, float, object]] = [
        ("call.started", None, 0.0, 0.0, CallStarted("tap:test", lang, ("agent", "customer"), False, meta)),
        ("checklist", "agent", 0.0, 0.0, Checklist("recording_notice", "due", True)),
        ("transcript.final", "customer", 1.0, 2.5, TranscriptFinal(text, words, lang, 1)),
        ("intent", "customer", 1.0, 2.5, Intent(intent, 0.93, text, "intent.refund")),
        ("emotion", "customer", 1.0, 2.5, Emotion(-0.3, -0.5, "negative", ("refund",))),
        ("transcript.final", "agent", 3.0, 4.0, TranscriptFinal("my card is 4111 1111", (), lang, 1)),
        ("transcript.redacted", "agent", 3.0, 4.0, TranscriptRedacted("my card is [card]", (Word("[card]", 3.5, 4.0),), lang, 1)),
        ("suggestion", "agent", 2.5, 2.5, Suggestion("refund-policy", "Refund policy", "Steps...", 0.9, "refund_request", 2)),
        ("checklist", "agent", 4.0, 4.0, Checklist("recording_notice", "missed", True)),
        ("score", None, 0.0, 5.0, Score(score, {"service_quality": 40.0}, (ScoreItem("politeness", "service_quality", 0.8, 0.2, "ok"),))),
        ("call.ended", None, 0.0, 5.0, CallEnded("completed", 5.0, {"finals": 2.0})),
    ]  # fmt: skip
    if abusive:
        payloads.insert(
            6,
            (
                "alert",
                "agent",
                3.0,
                4.0,
                Alert("abuse", "fatal", "abuse.insult", "Stop", "shut up", source="final"),
            ),
        )
        payloads.insert(7, ("alert", "agent", 4.0, 4.0, Alert("missing_disclosure", "serious", "disc.recording", "Say it", "", step="recording_notice", source="checklist")))  # fmt: skip
    events = []
    for seq, (etype, channel, t0, t1, payload) in enumerate(payloads, start=1):
        events.append(Event(etype, call_id, channel, t0, t1, payload, seq=seq, emitted_at=started + t1))  # type: ignore[arg-type]
    return events


def make_record(call_id: str, **kwargs: object) -> CallRecord:
    recorder = CallRecorder()
    record = None
    for event in call_events(call_id, **kwargs):  # type: ignore[arg-type]
        record = recorder.apply(event) or record
    assert record is not None
    return record
