"""The call board as pure folds over events: risk, summaries, the floor feed and its resume."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from sidecar.kernel.events import (
    Alert,
    Barge,
    CallEnded,
    CallStarted,
    Checklist,
    Emotion,
    Event,
    Intent,
    Suggestion,
    TranscriptFinal,
    Whisper,
)
from sidecar.service.board import CallBoard, FloorLaggedError
from sidecar.service.callview import (
    AlertItem,
    BargeItem,
    EmotionPoint,
    FloorAlert,
    IntentItem,
    SuggestionItem,
    WhisperItem,
    risk_score,
)

pytestmark = pytest.mark.unit


def test_risk_grows_with_severity_count_and_a_cold_customer() -> None:
    none = {"fatal": 0, "serious": 0, "general": 0}
    assert risk_score(none, 0.0) == 0.0
    assert risk_score({**none, "general": 1}, 0.0) < risk_score({**none, "serious": 1}, 0.0)
    assert risk_score({**none, "serious": 1}, 0.0) < risk_score({**none, "fatal": 1}, 0.0)
    assert risk_score({**none, "serious": 2}, 0.0) == pytest.approx(0.51)
    assert risk_score(none, -1.0) == pytest.approx(0.4)
    assert risk_score(none, 0.8) == 0.0  # a happy customer is no risk, and no credit either
    assert risk_score({**none, "fatal": 5}, -1.0) < 1.0


def _events(call_id: str) -> list[Event]:
    out = [
        Event("call.started", call_id, None, 0, 0, CallStarted("x", "en", ("agent", "customer"), True,
                                                               {"agent_id": "alice", "queue": "billing"})),
        Event("transcript.final", call_id, "customer", 1, 2, TranscriptFinal("where is my refund", (), "en", 1)),
        Event("emotion", call_id, "customer", 1, 2, Emotion(-0.5, -0.5, "negative", ("words",))),
        Event("alert", call_id, "agent", 3, 4, Alert("abuse", "fatal", "abuse.insult", "Stop.", "shut up")),
        Event("checklist", call_id, "agent", 5, 5, Checklist("closing_check", "missed", True)),
        Event("call.ended", call_id, None, 0, 6, CallEnded("completed", 6.0)),
    ]  # fmt: skip
    return [Event(e.type, e.call_id, e.channel, e.t_start, e.t_end, e.payload, seq=i + 1, emitted_at=100.0 + i)
            for i, e in enumerate(out)]  # fmt: skip


async def test_the_board_folds_a_call_and_tells_the_floor() -> None:
    board = CallBoard()
    for event in _events("c1"):
        await board.apply(event)
    await board.apply(_events("c1")[3])  # a repeat (a resumed subscription) is ignored
    state = board.get("c1")
    assert state is not None
    summary = state.summary()
    assert (summary.agent_id, summary.queue, summary.ended) == ("alice", "billing", True)
    assert summary.alerts.model_dump() == {"fatal": 1, "serious": 0, "general": 0}
    assert summary.checklist.missed == 1
    assert summary.temperatures == [-0.5]
    assert summary.risk == risk_score(summary.alerts.model_dump(), -0.5)
    detail = state.detail()
    assert detail.transcript[0].text == "where is my refund"
    assert detail.alerts[0].emitted_at == 103.0
    feed = board.floor(after=0)
    kinds = [(await anext(feed)).event for _ in range(6)]
    assert kinds == ["call", "call", "alert", "call", "call", "call"]
    assert board.live_count() == 0


async def test_a_floor_reader_too_far_behind_is_told_so() -> None:
    board = CallBoard(floor_ring=3)
    for i in range(3):
        for event in _events(f"c{i}"):
            await board.apply(event)
    with pytest.raises(FloorLaggedError):
        await anext(board.floor(after=0))
    live = board.floor(after=None)  # from now on: waits for news
    waiter = asyncio.ensure_future(anext(live))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    for event in _events("c9")[:1]:
        await board.apply(event)
    message = await asyncio.wait_for(waiter, 1)
    assert message.data.call_id == "c9"


HEAD = ["seq", "channel", "t_start", "t_end", "emitted_at"]


@pytest.mark.parametrize(
    ("item", "payload", "place"),
    [
        (AlertItem, Alert, HEAD),
        (SuggestionItem, Suggestion, HEAD),
        (WhisperItem, Whisper, HEAD),
        (IntentItem, Intent, HEAD),
        (BargeItem, Barge, HEAD),
        (EmotionPoint, Emotion, ["seq", "t"]),
        (FloorAlert, Alert, ["call_id", *HEAD]),
    ],
)
def test_a_board_item_is_its_place_in_the_call_then_its_payload(
    item: type, payload: type, place: list[str]
) -> None:
    """Items inherit their payload's fields (one added in ``sidecar.kernel.events`` is in the JSON
    with no change to the board), after the fields that place them, as the widgets' JSON has them."""
    assert [f.name for f in dataclasses.fields(item)] == place + [f.name for f in dataclasses.fields(payload)]


async def test_the_language_model_reads_the_boards_typed_items() -> None:
    from sidecar.service.routes_llm import cards_of, turns_of

    board = CallBoard()
    events = [
        *_events("c1")[:2],
        Event("transcript.final", "c1", "agent", 2, 3, TranscriptFinal("  ", (), "en", 2)),
        Event("suggestion", "c1", "customer", 2, 3, Suggestion("kb-1", "Refunds", "Five days.", 0.9, "refund")),
        Event("suggestion", "c1", "customer", 3, 4, Suggestion("kb-2", "Delays", "Sorry.", 0.8, "wait")),
        Event("suggestion", "c1", "customer", 4, 5, Suggestion("kb-1", "Refunds", "Five days.", 0.9, "refund")),
    ]  # fmt: skip
    for seq, event in enumerate(events, start=1):
        await board.apply(dataclasses.replace(event, seq=seq))
    state = board.get("c1")
    assert state is not None
    assert [(t.channel, t.text) for t in turns_of(state)] == [("customer", "where is my refund")]
    assert [(c.snippet_id, c.title, c.body) for c in cards_of(state)] == [
        ("kb-2", "Delays", "Sorry."),
        ("kb-1", "Refunds", "Five days."),
    ]
