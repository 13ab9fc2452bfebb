"""The coach on a running call: through the sink and the bus, as `assist replay` wires it."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from coach.engine import Coach
from coach.rules import DEFAULT_PACK
from coach.sink import CoachSink
from sidecar.kernel.bus import InMemoryBus
from sidecar.kernel.clock import FastClock
from sidecar.kernel.events import Alert, Event, TranscriptPartial, Word
from tests.coach_helpers import jsonl, replay_coached

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def coach() -> Coach:
    return Coach()


def alerts(events: list[Event]) -> list[Alert]:
    return [e.payload for e in events if isinstance(e.payload, Alert)]


CALL = [
    ("agent", "Thanks for calling, this call may be recorded for quality purposes.", 0.0, 3.0),
    ("customer", "Hi, my card number is 4 5 3 2 7 1 8 8 0 6 1 9 2 2 4 7 and it got declined.", 3.5, 8.0),
    ("agent", "Can you confirm your full name and date of birth?", 8.5, 10.0),
    ("customer", "Sam Lee, first of June 1980.", 10.5, 12.0),
    ("agent", "Thanks. I'll put you on a short hold while I check.", 12.5, 14.0),
    ("agent", "Thanks for holding. I promise it will work again by tonight.", 34.0, 37.0),
    ("customer", "Hello? Is that it?", 60.0, 61.0),
    ("agent", "Sorry. Is there anything else I can help you with today?", 61.5, 63.0),
]


async def test_a_call_gets_alerts_checklist_intents_emotion_and_a_score(coach: Coach, tmp_path: Path) -> None:
    events = await replay_coached(coach, jsonl(tmp_path / "call.jsonl", CALL))
    types = [e.type for e in events]
    assert types[0] == "call.started"
    assert types[-2:] == ["score", "call.ended"]
    cats = [(a.category, a.rule_id) for a in alerts(events)]
    assert ("false_promise", "false_promise.guarantee") in cats
    assert [c for c, _ in cats].count("dead_air") == 1  # 34 → 60 s; the announced hold 14 → 34 s is excused
    dead = next(e for e in events if isinstance(e.payload, Alert) and e.payload.category == "dead_air")
    assert (dead.t_start, dead.t_end) == (37.0, 60.0)
    steps = {(e.payload.step, e.payload.state) for e in events if e.type == "checklist"}  # type: ignore[union-attr]
    assert {
        ("recording_notice", "done"),
        ("identity_verification", "done"),
        ("closing_check", "done"),
    } <= steps
    assert not any(state == "missed" for _, state in steps)
    assert any(e.type == "emotion" for e in events)
    score = events[-2].payload
    assert 0 < score.total < 100  # type: ignore[union-attr]


async def test_card_numbers_never_leave_the_coach(coach: Coach, tmp_path: Path) -> None:
    events = await replay_coached(coach, jsonl(tmp_path / "call.jsonl", CALL))
    text = "\n".join(e.to_json() for e in events)
    assert "4 5 3 2 7 1 8 8" not in text
    assert "4532" not in text
    assert "••••2247" in text  # the last four digits stay


async def test_missed_disclosures(coach: Coach, tmp_path: Path) -> None:
    turns = [
        ("agent", "Northfield Bank, what do you need?", 0.0, 2.0),
        ("customer", "I want to check my balance.", 2.5, 4.0),
        ("agent", "I can see your account balance is 420 dollars.", 4.5, 7.0),
        ("customer", "Okay, thanks.", 7.5, 8.5),
    ]
    events = await replay_coached(coach, jsonl(tmp_path / "call.jsonl", turns))
    missed = {a.step for a in alerts(events) if a.category == "missing_disclosure"}
    assert missed == {"recording_notice", "identity_verification", "closing_check"}


async def test_an_alert_on_a_partial_is_not_repeated_by_its_final(coach: Coach) -> None:
    bus = InMemoryBus(FastClock())
    sink = CoachSink(coach, bus)
    from sidecar.kernel.events import CallStarted, TranscriptFinal

    await sink(
        Event("call.started", "c2", None, 0, 0, CallStarted("test", "en", ("agent", "customer"), False))
    )
    said = "Are you deaf? I told you the hold"
    words = tuple(Word(w, i * 0.3, i * 0.3 + 0.3) for i, w in enumerate(said.split()))
    await sink(
        Event(
            "transcript.partial",
            "c2",
            "agent",
            0.0,
            2.0,
            TranscriptPartial(said, "Are you deaf?", words, "en", 1),
        )
    )
    await sink(Event("transcript.final", "c2", "agent", 0.0, 3.0,
                     TranscriptFinal(said + " is there because of you.", words, "en", 1)))  # fmt: skip
    events = [e async for e in _take(bus, "c2")]
    abuse = [a for a in alerts(events) if a.category == "abuse"]
    assert len(abuse) == 1
    assert abuse[0].source == "partial"


async def _take(bus: InMemoryBus, call_id: str) -> AsyncIterator[Event]:
    sub = bus.subscribe(call_id, after_seq=0)
    while True:
        try:
            yield await asyncio.wait_for(anext(sub), 0.2)
        except (TimeoutError, StopAsyncIteration):
            return


async def test_hot_reload_while_a_replay_runs(tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    shutil.copytree(DEFAULT_PACK, pack)
    coach = Coach(pack)
    turns = [("agent", "Hello, this call may be recorded.", 0.0, 0.3)]
    turns += [
        ("agent", f"Let me mention the purple elephant number {i}.", 0.4 + 0.3 * i, 0.6 + 0.3 * i)
        for i in range(10)
    ]
    path = jsonl(tmp_path / "call.jsonl", turns)
    watcher = asyncio.create_task(coach.watch(0.05))
    replay = asyncio.create_task(replay_coached(coach, path, realtime=True))
    await asyncio.sleep(0.7)  # the call is under way
    (pack / "extra.yaml").write_text(
        "pack: extra\nversion: 1\nlang: en\nrules:\n  - id: x.elephant\n    category: unprofessional\n"
        "    message: No elephants.\n    match:\n      phrases: [purple elephant]\n", encoding="utf-8")  # fmt: skip
    (pack / "broken.yaml").write_text("pack: [", encoding="utf-8")  # refused: the good rules stay in force
    await asyncio.sleep(0.2)
    (pack / "broken.yaml").unlink()
    events = await replay
    watcher.cancel()
    assert coach.reloads >= 1
    fired = [e for e in events if isinstance(e.payload, Alert) and e.payload.rule_id == "x.elephant"]
    assert fired, "the new rule never fired"
    assert fired[0].t_start > 0.4  # not on the first utterances, which ran under the old pack
    assert events[-1].type == "call.ended"  # the call was not dropped
