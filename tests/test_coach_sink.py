"""The coach sink's background mode (the service's live calls): a call's transcripts are published
as soon as they are redacted, its coaching runs in the call's own ordered worker, other calls are
not held up by it, and a full queue makes the emitter wait (nothing is dropped)."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from coach.engine import Coach
from coach.session import CoachSession
from coach.sink import CoachSink, backlog
from sidecar.kernel.bus import BusUnavailableError, InMemoryBus
from sidecar.kernel.clock import FastClock
from sidecar.kernel.events import CallEnded, CallStarted, Event, TranscriptFinal, Word
from tests.coach_helpers import jsonl, replay_coached

pytestmark = pytest.mark.model

CALL = [
    ("agent", "Thanks for calling, this call may be recorded for quality purposes.", 0.0, 3.0),
    ("customer", "Hi, my card number is 4 5 3 2 7 1 8 8 0 6 1 9 2 2 4 7 and it got declined.", 3.5, 8.0),
    ("agent", "Can you confirm your full name and date of birth?", 8.5, 10.0),
    ("customer", "Sam Lee, first of June 1980. I want to cancel my account, this is ridiculous.", 10.5, 14.0),
    ("agent", "Are you deaf? I promise it will work again by tonight.", 34.0, 37.0),
    ("customer", "Hello? Is that it?", 60.0, 61.0),
    ("agent", "Sorry. Is there anything else I can help you with today?", 61.5, 63.0),
]


@pytest.fixture(scope="module")
def coach() -> Coach:
    return Coach(judge=False)  # the judge's time budget would make the two runs differ


def plain(events: list[Event]) -> list[str]:
    """An event without its bus stamps (seq, emitted_at), and without the queue's figures."""
    out = []
    for e in events:
        d = json.loads(e.to_json())
        d.pop("seq", None)
        d.pop("emitted_at", None)
        if e.type == "call.ended":
            d["payload"]["stats"] = {
                k: v for k, v in d["payload"]["stats"].items() if not k.startswith("coach_")
            }
        out.append(json.dumps(d, sort_keys=True))
    return out


async def test_background_gives_the_same_events_as_inline_coaching_after_its_transcript(
    coach: Coach, tmp_path: Path
) -> None:
    path = jsonl(tmp_path / "call.jsonl", CALL)
    inline = await replay_coached(coach, path, background=False, timeout_s=60)
    background = await replay_coached(coach, path, background=True, timeout_s=60)
    assert sorted(plain(background)) == sorted(plain(inline))
    coaching = [e for e in background if not e.type.startswith("transcript.")]
    assert plain(coaching) == plain([e for e in inline if not e.type.startswith("transcript.")])
    assert background[-1].type == "call.ended"
    assert {"alert", "checklist", "emotion", "score"} <= {e.type for e in background}
    stats = background[-1].payload.stats  # type: ignore[union-attr]
    assert stats["coach_errors"] == 0.0
    assert stats["coach_queue_max"] >= 1.0
    assert "coach_wait_ms_p95" in stats
    assert "4532" not in "\n".join(e.to_json() for e in background)
    assert backlog() == 0


def final(call_id: str, channel: str, text: str, t0: float, segment: int) -> Event:
    words = tuple(Word(w, t0 + i * 0.3, t0 + i * 0.3 + 0.3) for i, w in enumerate(text.split()))
    return Event("transcript.final", call_id, channel, t0, t0 + 0.3 * len(words),  # type: ignore[arg-type]
                 TranscriptFinal(text, words, "en", segment))  # fmt: skip


def started(call_id: str) -> Event:
    return Event("call.started", call_id, None, 0, 0, CallStarted("test", "en", ("agent", "customer"), True))


def ended(call_id: str, t: float) -> Event:
    return Event("call.ended", call_id, None, 0.0, t, CallEnded("completed", t))


def gate(session: CoachSession, opened: threading.Event) -> None:
    """A fake for a slow coach (a retrieval that takes long): the session's coaching waits for
    ``opened``; redaction does not."""
    real = session.coach

    def slow(event: Event) -> list[Event]:
        opened.wait(60)
        return real(event)

    session.coach = slow  # type: ignore[method-assign]


async def test_a_slow_coach_holds_neither_its_transcripts_nor_another_call(coach: Coach) -> None:
    bus = InMemoryBus(FastClock())
    a, b = CoachSink(coach, bus, background=True), CoachSink(coach, bus, background=True)
    opened = threading.Event()
    seen_a: list[Event] = []

    async def follow_a() -> None:
        async for ev in bus.subscribe("a", after_seq=0):
            seen_a.append(ev)

    following = asyncio.create_task(follow_a())
    await a(started("a"))
    await b(started("b"))
    assert a.session is not None
    gate(a.session, opened)
    try:
        await asyncio.wait_for(
            a(final("a", "agent", "Are you deaf? My card is 4 5 3 2 7 1 8 8 0 6 1 9 2 2 4 7", 1.0, 1)), 10
        )
        await asyncio.wait_for(b(final("b", "agent", "Are you deaf? I told you twice.", 1.0, 1)), 10)
        b_end = await asyncio.wait_for(b(ended("b", 5.0)), 30)  # b's coaching ran while a's waits
        assert b_end.type == "call.ended"
        assert b_end.seq > 0
        b_events = [e async for e in bus.subscribe("b", after_seq=0)]
        assert any(e.type == "alert" for e in b_events)
        await asyncio.sleep(0.1)
        a_final = next(e for e in seen_a if e.type == "transcript.final")  # a's subscribers have it
        assert "4532" not in a_final.to_json()  # published, redacted, before its coaching
        assert not any(e.type == "alert" for e in seen_a)
    finally:
        opened.set()
    a_end = await asyncio.wait_for(a(ended("a", 5.0)), 30)
    await asyncio.wait_for(following, 10)
    a_events = seen_a
    assert a_events[-1].seq == a_end.seq
    types = [e.type for e in a_events]
    assert (
        types.index("transcript.final")
        < types.index("alert")
        < types.index("score")
        < types.index("call.ended")
    )


async def test_a_full_queue_makes_the_emitter_wait_and_nothing_is_dropped(coach: Coach) -> None:
    bus = InMemoryBus(FastClock())
    sink = CoachSink(coach, bus, background=True, max_pending=2)
    opened = threading.Event()
    await sink(started("q"))
    assert sink.session is not None
    gate(sink.session, opened)
    try:
        for i in range(3):  # one taken by the worker (held at the gate), two queued
            await asyncio.wait_for(
                sink(final("q", "customer", f"Sentence number {i} here.", 2.0 * i, i + 1)), 10
            )
        fourth = asyncio.create_task(sink(final("q", "customer", "And the fourth one.", 8.0, 4)))
        await asyncio.sleep(0.3)
        assert not fourth.done()  # back-pressure: the emitter waits for room
        assert sink.pending == 2
    finally:
        opened.set()
    await asyncio.wait_for(fourth, 30)
    end = await asyncio.wait_for(sink(ended("q", 10.0)), 30)
    events = [e async for e in bus.subscribe("q", after_seq=0)]
    assert sum(e.type == "transcript.final" for e in events) == 4
    assert sum(e.type == "emotion" for e in events) == 4  # every final was coached
    assert end.payload.stats["coach_queue_max"] == 2.0  # type: ignore[union-attr]
    assert end.payload.stats["coach_wait_ms_max"] >= 200.0  # type: ignore[union-attr]


class GivingUpBus(InMemoryBus):
    """A fake for a bus whose server stayed away longer than it waits: it gives up on every
    ``emotion`` event (``BusUnavailableError``) and takes the rest."""

    async def publish(self, event: Event) -> Event:
        if event.type == "emotion":
            raise BusUnavailableError("the bus server stayed away")
        return await super().publish(event)


async def test_coaching_events_the_bus_gave_up_on_are_counted_and_coaching_goes_on(coach: Coach) -> None:
    bus = GivingUpBus(FastClock())
    sink = CoachSink(coach, bus, background=True)
    await sink(started("g"))
    for i in range(3):
        await sink(final("g", "customer", f"Sentence number {i} here.", 2.0 * i, i + 1))
    end = await asyncio.wait_for(sink(ended("g", 8.0)), 30)
    events = [e async for e in bus.subscribe("g", after_seq=0)]
    assert sum(e.type == "transcript.final" for e in events) == 3
    assert not any(e.type == "emotion" for e in events)
    assert {"checklist", "score"} <= {e.type for e in events}  # the worker went on after each loss
    assert end.payload.stats["coach_events_lost"] == 3.0  # type: ignore[union-attr]
    assert end.payload.stats["coach_errors"] == 0.0  # type: ignore[union-attr]
