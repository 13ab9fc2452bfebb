"""Events and the in-memory bus (the Redis bus will run this same suite)."""

import asyncio
import json

import pytest

from sidecar.bus import ALL_CALLS, InMemoryBus, SubscriberLaggedError
from sidecar.clock import FastClock
from sidecar.events import (
    CallEnded,
    CallStarted,
    Event,
    Prosody,
    TranscriptFinal,
    TranscriptPartial,
    Word,
    event_from_dict,
)

pytestmark = pytest.mark.unit


def started(call_id: str) -> Event:
    return Event(
        "call.started", call_id, None, 0.0, 0.0, CallStarted("test", "en", ("agent", "customer"), False)
    )


def final(call_id: str, text: str, t: float = 1.0) -> Event:
    words = tuple(Word(w, t, t + 0.2) for w in text.split())
    return Event("transcript.final", call_id, "customer", t, t + 1, TranscriptFinal(text, words, "en", 1))


def ended(call_id: str) -> Event:
    return Event("call.ended", call_id, None, 0.0, 5.0, CallEnded("completed", 5.0, {"frames_dropped": 0.0}))


def test_event_json_has_the_contract_fields_and_round_trips():
    prosody = Prosody(1.0, -20.0, -3.0, 180.0, 4.0, 0.8, 4.5, 2.5)
    event = Event(
        "transcript.final", "c1", "agent", 1.0, 2.0,
        TranscriptFinal("hi there", (Word("hi", 1.0, 1.2, 0.9), Word("there", 1.2, 1.6)), "en", 3, prosody),
        seq=7, emitted_at=1700000000.123,
    )  # fmt: skip
    data = json.loads(event.to_json())
    assert set(data) == {"type", "call_id", "seq", "channel", "t_start", "t_end", "emitted_at", "payload"}
    assert data["payload"]["words"][0] == {"text": "hi", "t_start": 1.0, "t_end": 1.2, "probability": 0.9}
    assert event_from_dict(data) == event


def test_payload_must_match_the_type():
    with pytest.raises(TypeError):
        Event("transcript.partial", "c1", "agent", 0, 1, TranscriptFinal("x", (), "en", 1))
    partial = TranscriptPartial("a b", "a", (), "en", 1)
    assert Event("transcript.partial", "c1", "agent", 0, 1, partial).payload is partial


async def test_seq_is_per_call_and_strictly_increasing():
    bus = InMemoryBus(FastClock())
    stamped = [await bus.publish(e) for e in (started("a"), started("b"), final("a", "x"), final("b", "y"))]
    assert [(e.call_id, e.seq) for e in stamped] == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert all(e.emitted_at > 0 for e in stamped)


async def test_subscribe_replays_history_then_follows_live_until_the_call_ends():
    bus = InMemoryBus(FastClock())
    await bus.publish(started("a"))
    await bus.publish(final("a", "one"))
    received: list[int] = []

    async def reader() -> None:
        async for e in bus.subscribe("a", after_seq=0):
            received.append(e.seq)

    task = asyncio.create_task(reader())
    await asyncio.sleep(0.01)
    await bus.publish(final("a", "two"))
    await bus.publish(ended("a"))
    await asyncio.wait_for(task, 1)
    assert received == [1, 2, 3, 4]


async def test_resume_after_seq_misses_nothing_and_repeats_nothing():
    bus = InMemoryBus(FastClock())
    for e in (started("a"), final("a", "1"), final("a", "2"), final("a", "3"), ended("a")):
        await bus.publish(e)
    seqs = [e.seq async for e in bus.subscribe("a", after_seq=2)]
    assert seqs == [3, 4, 5]


async def test_live_only_subscription_and_all_calls():
    bus = InMemoryBus(FastClock())
    await bus.publish(started("a"))
    got: list[tuple[str, int]] = []

    async def floor() -> None:
        async for e in bus.subscribe(ALL_CALLS, after_seq=None):
            got.append((e.call_id, e.seq))
            if len(got) == 3:
                return

    task = asyncio.create_task(floor())
    await asyncio.sleep(0.01)
    for e in (started("b"), final("a", "x"), final("b", "y")):
        await bus.publish(e)
    await asyncio.wait_for(task, 1)
    assert got == [("b", 1), ("a", 2), ("b", 2)]


async def test_a_subscriber_too_far_behind_is_told_it_lagged():
    bus = InMemoryBus(FastClock(), retain_events=3)
    for i in range(6):
        await bus.publish(final("a", str(i), t=float(i)))
    with pytest.raises(SubscriberLaggedError):
        async for _ in bus.subscribe("a", after_seq=0):
            pass


async def test_ended_calls_accept_nothing_more_and_old_ones_are_forgotten():
    bus = InMemoryBus(FastClock(), retain_ended_calls=1)
    for cid in ("a", "b"):
        await bus.publish(started(cid))
        await bus.publish(ended(cid))
    with pytest.raises(RuntimeError, match="has ended"):
        await bus.publish(final("b", "late"))
    assert [(c.call_id, c.ended, c.last_seq) for c in bus.calls()] == [("b", True, 2)]
