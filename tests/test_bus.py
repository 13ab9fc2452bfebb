"""Events and the bus: the in-memory and the Redis Streams bus run the same suite (``make_bus``),
then the Redis bus's own tests (several nodes, concurrent publishers, trimming, expiry)."""

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from redis import asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from sidecar.kernel.bus import ALL_CALLS, Bus, CallIdInUseError, InMemoryBus, SubscriberLaggedError
from sidecar.kernel.clock import FastClock
from sidecar.kernel.errors import ConfigError
from sidecar.kernel.events import (
    CallEnded,
    CallStarted,
    Event,
    Prosody,
    TranscriptFinal,
    TranscriptPartial,
    Word,
    event_from_dict,
)
from sidecar.kernel.redis_bus import RedisStreamsBus, redact_url
from sidecar.kernel.redis_reconnect import RedisUnavailableError
from tests.conftest import RedisBusFactory
from tests.redis_helpers import own_redis

pytestmark = pytest.mark.unit

MakeBus = Callable[..., Bus]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def make_bus(request: pytest.FixtureRequest) -> MakeBus:
    """A bus factory (``retain_events=`` and the like): once in memory, once on Redis Streams."""
    if request.param == "memory":
        return lambda **kwargs: InMemoryBus(FastClock(), **kwargs)
    factory: RedisBusFactory = request.getfixturevalue("redis_bus_factory")
    return lambda **kwargs: factory(clock=FastClock(), **kwargs)


def started(call_id: str) -> Event:
    return Event(
        "call.started", call_id, None, 0.0, 0.0, CallStarted("test", "en", ("agent", "customer"), False)
    )


def final(call_id: str, text: str, t: float = 1.0) -> Event:
    words = tuple(Word(w, t, t + 0.2) for w in text.split())
    return Event("transcript.final", call_id, "customer", t, t + 1, TranscriptFinal(text, words, "en", 1))


def ended(call_id: str) -> Event:
    return Event("call.ended", call_id, None, 0.0, 5.0, CallEnded("completed", 5.0, {"frames_dropped": 0.0}))


async def collect(events: AsyncIterator[Event], limit: int | None = None) -> list[Event]:
    got: list[Event] = []
    async for event in events:
        got.append(event)
        if len(got) == limit:
            break
    return got


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


# --- the Bus contract, run against both implementations ------------------------------------------


async def test_seq_is_per_call_and_strictly_increasing(make_bus: MakeBus):
    bus = make_bus()
    stamped = [await bus.publish(e) for e in (started("a"), started("b"), final("a", "x"), final("b", "y"))]
    assert [(e.call_id, e.seq) for e in stamped] == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert all(e.emitted_at > 0 for e in stamped)


async def test_subscribe_replays_history_then_follows_live_until_the_call_ends(make_bus: MakeBus):
    bus = make_bus()
    await bus.publish(started("a"))
    await bus.publish(final("a", "one"))
    received: list[int] = []

    async def reader() -> None:
        async for e in bus.subscribe("a", after_seq=0):
            received.append(e.seq)

    task = asyncio.create_task(reader())
    await asyncio.sleep(0.05)
    await bus.publish(final("a", "two"))
    await bus.publish(ended("a"))
    await asyncio.wait_for(task, 5)
    assert received == [1, 2, 3, 4]


async def test_subscribers_receive_what_was_published(make_bus: MakeBus):
    bus = make_bus()
    published = [await bus.publish(e) for e in (started("a"), final("a", "hello there", 1.25), ended("a"))]
    assert await collect(bus.subscribe("a")) == published


async def test_resume_after_seq_misses_nothing_and_repeats_nothing(make_bus: MakeBus):
    bus = make_bus()
    for e in (started("a"), final("a", "1"), final("a", "2"), final("a", "3"), ended("a")):
        await bus.publish(e)
    seqs = [e.seq async for e in bus.subscribe("a", after_seq=2)]
    assert seqs == [3, 4, 5]


async def test_live_only_subscription_of_one_call(make_bus: MakeBus):
    bus = make_bus()
    await bus.publish(started("a"))
    await bus.publish(final("a", "before"))
    task = asyncio.create_task(collect(bus.subscribe("a", after_seq=None)))
    await asyncio.sleep(0.05)
    await bus.publish(final("a", "after"))
    await bus.publish(ended("a"))
    assert [e.seq for e in await asyncio.wait_for(task, 5)] == [3, 4]
    # an ended call has nothing new to wait for: the subscription ends at once
    assert await asyncio.wait_for(collect(bus.subscribe("a", after_seq=None)), 5) == []
    assert await asyncio.wait_for(collect(bus.subscribe("a", after_seq=4)), 5) == []


async def test_live_only_subscription_and_all_calls(make_bus: MakeBus):
    bus = make_bus()
    await bus.publish(started("a"))
    got: list[tuple[str, int]] = []

    async def floor() -> None:
        async for e in bus.subscribe(ALL_CALLS, after_seq=None):
            got.append((e.call_id, e.seq))
            if len(got) == 3:
                return

    task = asyncio.create_task(floor())
    await asyncio.sleep(0.05)
    for e in (started("b"), final("a", "x"), final("b", "y")):
        await bus.publish(e)
    await asyncio.wait_for(task, 5)
    assert got == [("b", 1), ("a", 2), ("b", 2)]


async def test_all_calls_after_seq_replays_what_is_retained_then_follows(make_bus: MakeBus):
    bus = make_bus()
    for e in (started("a"), started("b"), final("a", "x"), final("b", "y"), final("a", "z")):
        await bus.publish(e)
    task = asyncio.create_task(collect(bus.subscribe(ALL_CALLS, after_seq=1), limit=4))
    await asyncio.sleep(0.05)
    await bus.publish(final("b", "live"))
    got = await asyncio.wait_for(task, 5)
    assert [(e.call_id, e.seq) for e in got] == [("a", 2), ("b", 2), ("a", 3), ("b", 3)]


async def test_a_subscriber_too_far_behind_is_told_it_lagged(make_bus: MakeBus):
    # Redis trims whole stream nodes (MAXLEN ~), so publish well past the retention.
    bus = make_bus(retain_events=3)
    for i in range(300):
        await bus.publish(final("a", str(i), t=float(i)))
    await bus.publish(ended("a"))
    with pytest.raises(SubscriberLaggedError):
        async for _ in bus.subscribe("a", after_seq=0):
            pass
    assert [e.seq async for e in bus.subscribe("a", after_seq=299)] == [300, 301]


async def test_ended_calls_accept_nothing_more(make_bus: MakeBus):
    bus = make_bus()
    for cid in ("a", "b"):
        await bus.publish(started(cid))
        await bus.publish(ended(cid))
    with pytest.raises(RuntimeError, match="has ended"):
        await bus.publish(final("b", "late"))
    assert [(c.call_id, c.ended, c.last_seq) for c in bus.calls()] == [("a", True, 2), ("b", True, 2)]


async def test_a_call_id_is_claimed_by_its_first_call_started(make_bus: MakeBus):
    bus = make_bus()
    await bus.publish(started("c1"))
    await bus.publish(final("c1", "hello"))
    with pytest.raises(CallIdInUseError, match="call id c1 is already in use"):
        await bus.publish(started("c1"))  # a second call on the same id, live
    await bus.publish(ended("c1"))
    with pytest.raises(CallIdInUseError):
        await bus.publish(started("c1"))  # ... or ended and still retained
    got = await collect(bus.subscribe("c1"))
    assert [e.type for e in got] == ["call.started", "transcript.final", "call.ended"]
    assert [e.seq for e in got] == [1, 2, 3]


async def test_a_hundred_concurrent_subscribers(make_bus: MakeBus):
    bus = make_bus()
    await bus.publish(started("a"))
    readers = [asyncio.create_task(collect(bus.subscribe("a", after_seq=0))) for _ in range(90)]
    floors = [asyncio.create_task(collect(bus.subscribe(ALL_CALLS, after_seq=None))) for _ in range(10)]
    await asyncio.sleep(0.2)
    for i in range(20):
        await bus.publish(final("a", f"word {i}", t=float(i)))
    await bus.publish(ended("a"))
    results = await asyncio.wait_for(asyncio.gather(*readers), 10)
    assert all([e.seq for e in got] == list(range(1, 23)) for got in results)
    for task in floors:  # "*" subscriptions run until cancelled, even while blocked in a read
        task.cancel()
    await asyncio.wait_for(asyncio.gather(*floors, return_exceptions=True), 10)  # a cancel is never swallowed
    assert all(task.cancelled() for task in floors)
    # the bus still works after its subscribers were cancelled mid-read
    await bus.publish(started("b"))
    await bus.publish(ended("b"))
    assert [e.seq for e in await asyncio.wait_for(collect(bus.subscribe("b")), 5)] == [1, 2]


async def test_in_memory_bus_forgets_the_oldest_ended_calls():
    bus = InMemoryBus(FastClock(), retain_ended_calls=1)
    for cid in ("a", "b"):
        await bus.publish(started(cid))
        await bus.publish(ended(cid))
    assert [(c.call_id, c.ended, c.last_seq) for c in bus.calls()] == [("b", True, 2)]


# --- Redis Streams only -------------------------------------------------------------------------


async def test_redis_bus_satisfies_the_protocol(redis_bus_factory: RedisBusFactory):
    bus: Bus = redis_bus_factory()  # checked by mypy
    assert isinstance(bus, RedisStreamsBus)
    await bus.ping()


async def test_two_nodes_share_calls(redis_bus_factory: RedisBusFactory):
    node_a, node_b = redis_bus_factory(clock=FastClock()), redis_bus_factory(clock=FastClock())
    await node_a.publish(started("c1"))
    task = asyncio.create_task(collect(node_b.subscribe("c1", after_seq=0)))
    await asyncio.sleep(0.05)
    published = [await node_a.publish(e) for e in (final("c1", "hello"), ended("c1"))]
    got = await asyncio.wait_for(task, 5)
    assert [e.seq for e in got] == [1, 2, 3]
    assert got[1:] == published
    # node B learnt of the call by reading it; both nodes see it in Redis
    assert [(c.call_id, c.last_seq, c.ended) for c in node_b.calls()] == [("c1", 3, True)]
    for node in (node_a, node_b):
        assert [(c.call_id, c.last_seq, c.ended) for c in await node.calls_async()] == [("c1", 3, True)]
    with pytest.raises(RuntimeError, match="has ended"):
        await node_b.publish(final("c1", "late"))  # refused by Redis, not by a local cache


async def test_calls_is_this_nodes_view_and_calls_async_is_redis(redis_bus_factory: RedisBusFactory):
    node_a, node_b = redis_bus_factory(), redis_bus_factory()
    first = await node_a.publish(started("c1"))
    await node_a.publish(final("c1", "x"))
    assert node_b.calls() == []
    listed = await node_b.calls_async()
    assert [(c.call_id, c.last_seq, c.ended, c.started_at) for c in listed] == [
        ("c1", 2, False, first.emitted_at)
    ]
    assert node_b.calls() == listed == node_a.calls()


async def test_concurrent_publishers_get_gap_free_unique_seqs(redis_bus_factory: RedisBusFactory):
    nodes = [redis_bus_factory(), redis_bus_factory()]
    await nodes[0].publish(started("c1"))
    reader = asyncio.create_task(collect(nodes[1].subscribe("c1", after_seq=0)))

    async def publisher(node: RedisStreamsBus, worker: int) -> list[int]:
        return [(await node.publish(final("c1", f"{worker} {i}"))).seq for i in range(50)]

    per_worker = await asyncio.gather(*(publisher(nodes[w % 2], w) for w in range(4)))
    await nodes[0].publish(ended("c1"))
    assert all(seqs == sorted(seqs) for seqs in per_worker)  # each publisher's own order is kept
    assert sorted(s for seqs in per_worker for s in seqs) == list(range(2, 202))
    got = await asyncio.wait_for(reader, 10)
    assert [e.seq for e in got] == list(range(1, 203))
    # the subscriber saw each publisher's events in the order it published them
    texts = [e.payload.text for e in got if isinstance(e.payload, TranscriptFinal)]
    for w in range(4):
        assert [t for t in texts if t.startswith(f"{w} ")] == [f"{w} {i}" for i in range(50)]


async def test_nodes_racing_to_start_one_call_id_have_one_winner(redis_bus_factory: RedisBusFactory):
    nodes = [redis_bus_factory() for _ in range(4)]
    for round_ in range(5):
        call_id = f"race-{round_}"
        results = await asyncio.gather(*(n.publish(started(call_id)) for n in nodes), return_exceptions=True)
        won = [r for r in results if isinstance(r, Event)]
        lost = [r for r in results if isinstance(r, CallIdInUseError)]
        assert len(won) == 1, results
        assert len(lost) == len(nodes) - 1, results
        assert won[0].seq == 1
        assert [c.call_id for c in await nodes[0].calls_async()].count(call_id) == 1


async def test_resume_mid_call_then_follow_live(redis_bus_factory: RedisBusFactory):
    bus = redis_bus_factory()
    for i in range(10):
        await bus.publish(final("c1", str(i)) if i else started("c1"))
    task = asyncio.create_task(collect(bus.subscribe("c1", after_seq=4)))
    await asyncio.sleep(0.05)
    await bus.publish(final("c1", "live"))
    await bus.publish(ended("c1"))
    assert [e.seq for e in await asyncio.wait_for(task, 5)] == list(range(5, 13))


async def test_a_live_subscriber_overtaken_by_trimming_lags(redis_bus_factory: RedisBusFactory):
    bus = redis_bus_factory(retain_events=10)
    await bus.publish(started("c1"))
    events = bus.subscribe("c1", after_seq=0)
    assert (await anext(events)).seq == 1
    for i in range(500):  # published while the subscriber is not reading
        await bus.publish(final("c1", str(i)))
    with pytest.raises(SubscriberLaggedError, match=r"events 2\.\."):
        await anext(events)
    # the per-call stream is trimmed, approximately, to the retention
    client = aioredis.Redis.from_url(redis_bus_factory.url)
    try:
        assert 10 <= await client.xlen(f"{redis_bus_factory.prefix}:events:c1") < 200
    finally:
        await client.aclose()


async def test_ended_call_keys_expire_and_live_ones_do_not(redis_bus_factory: RedisBusFactory):
    bus = redis_bus_factory(retain_ended_s=0.5)
    for e in (started("done"), started("live"), ended("done")):
        await bus.publish(e)
    p = redis_bus_factory.prefix
    client = aioredis.Redis.from_url(redis_bus_factory.url)
    try:
        assert 0 < await client.pttl(f"{p}:meta:done") <= 500
        assert 0 < await client.pttl(f"{p}:events:done") <= 500
        assert await client.pttl(f"{p}:meta:live") == -1
        assert await client.pttl(f"{p}:events:live") == -1
        await asyncio.sleep(0.8)
        assert not await client.exists(f"{p}:meta:done", f"{p}:events:done")
    finally:
        await client.aclose()
    assert [c.call_id for c in await bus.calls_async()] == ["live"]
    assert [c.call_id for c in bus.calls()] == ["live"]
    # the id of a forgotten call can be used again: a new call, from seq 1
    assert (await bus.publish(started("done"))).seq == 1


async def test_redis_holds_the_event_json_contract(redis_bus_factory: RedisBusFactory):
    bus = redis_bus_factory()
    published = await bus.publish(final("c1", "naïve 你好", 1.5))
    client = aioredis.Redis.from_url(redis_bus_factory.url, decode_responses=True)
    try:
        call_stream = await client.xrange(f"{redis_bus_factory.prefix}:events:c1")
        all_stream = await client.xrange(f"{redis_bus_factory.prefix}:all")
    finally:
        await client.aclose()
    assert call_stream is not None
    assert all_stream is not None
    [(entry_id, fields)], [(_, all_fields)] = call_stream, all_stream
    assert entry_id == "1-0"
    assert fields is not None
    assert all_fields is not None
    assert fields["e"] == all_fields["e"] == published.to_json()
    assert event_from_dict(json.loads(str(fields["e"]))) == published


async def test_an_idle_subscriber_outlives_many_block_timeouts(redis_bus_factory: RedisBusFactory):
    bus = redis_bus_factory(block_ms=50)
    await bus.publish(started("c1"))
    task = asyncio.create_task(collect(bus.subscribe("c1", after_seq=None)))
    floor = asyncio.create_task(collect(bus.subscribe(ALL_CALLS, after_seq=None), limit=1))
    await asyncio.sleep(0.4)  # several XREAD BLOCK rounds come back empty
    await bus.publish(ended("c1"))
    assert [e.seq for e in await asyncio.wait_for(task, 5)] == [2]
    assert [e.seq for e in await asyncio.wait_for(floor, 5)] == [2]


def test_a_socket_timeout_shorter_than_the_block_is_refused():
    with pytest.raises(ConfigError, match="socket_timeout"):
        RedisStreamsBus("redis://127.0.0.1:6379/0?socket_timeout=1", block_ms=2000)


async def test_unreachable_redis_is_a_clear_error():
    bus = RedisStreamsBus("redis://user:s3cret@127.0.0.1:1/0?socket_connect_timeout=1")
    try:
        with pytest.raises(RedisUnavailableError, match=r"redis://user:\*\*\*@127\.0\.0\.1:1/0"):
            await bus.ping()
        with pytest.raises(RedisUnavailableError, match="cannot reach Redis") as info:
            async with bus:
                pass
        assert "s3cret" not in str(info.value)
    finally:
        await bus.close()


class ReplyLost:
    """The bus's publish script, run for real, whose reply is lost (a connection error) the first
    ``times`` calls: Redis applied the publish and went away before answering."""

    def __init__(self, script: Any, times: int = 1) -> None:
        self.script, self.times = script, times

    async def __call__(self, **kwargs: Any) -> Any:
        reply = await self.script(**kwargs)
        if self.times > 0:
            self.times -= 1
            raise RedisConnectionError("Connection closed by server.")
        return reply


@pytest.mark.redis
async def test_a_publish_whose_reply_was_lost_is_applied_once(redis_bus_factory: RedisBusFactory):
    bus = redis_bus_factory()
    other = redis_bus_factory()  # another node publishing to the same call
    script = bus._publish_script
    bus._publish_script = ReplyLost(script)  # type: ignore[assignment]
    assert (await bus.publish(started("c1"))).seq == 1  # the retry is not "id in use"
    assert (await other.publish(final("c1", "from the other node"))).seq == 2
    bus._publish_script = ReplyLost(script, times=2)  # type: ignore[assignment]
    assert (await bus.publish(final("c1", "hello"))).seq == 3
    bus._publish_script = ReplyLost(script)  # type: ignore[assignment]
    assert (await bus.publish(ended("c1"))).seq == 4  # the retry is not "the call has ended"
    got = await asyncio.wait_for(collect(other.subscribe("c1")), 5)
    assert [e.seq for e in got] == [1, 2, 3, 4]
    assert [e.type for e in got] == ["call.started", "transcript.final", "transcript.final", "call.ended"]
    assert bus.outages == 0  # Redis answered all along: a lost reply is not an outage


@pytest.mark.redis
async def test_concurrent_publishes_of_one_call_on_one_node_keep_their_order(
    redis_bus_factory: RedisBusFactory,
):
    bus = redis_bus_factory()
    await bus.publish(started("c1"))
    sent = await asyncio.gather(*(bus.publish(final("c1", f"turn {i}")) for i in range(50)))
    assert [e.seq for e in sent] == list(range(2, 52))  # one at a time, in the order they were made
    assert [e.payload.text for e in sent] == [f"turn {i}" for i in range(50)]  # type: ignore[union-attr]


async def test_a_publish_waits_for_redis_for_reconnect_s_then_raises_and_a_subscription_waits_on():
    bus = RedisStreamsBus("redis://127.0.0.1:1/0", reconnect_s=0.4)
    loop = asyncio.get_running_loop()
    try:
        begun = loop.time()
        with pytest.raises(RedisUnavailableError, match=r"unreachable for 0\.4 s"):
            await bus.publish(started("c1"))
        assert 0.4 <= loop.time() - begun < 2.0
        follower = asyncio.create_task(collect(bus.subscribe("c1")))  # waits as long as it takes
        await asyncio.sleep(0.6)
        assert not follower.done()
        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower
    finally:
        await bus.close()


@pytest.mark.redis
async def test_redis_away_longer_than_reconnect_s_loses_the_publish_that_gave_up_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """The bounded loss: a publish that waited ``reconnect_s`` raises (its caller is told, the
    node logs the outage); the call's next publish, once Redis is back, takes the next seq (the
    lost one took none), and a subscription that waited through the outage reads on, gap-free."""
    with own_redis(tmp_path / "redis") as server:
        bus = RedisStreamsBus(server.url, prefix="away", reconnect_s=0.5)
        try:
            await bus.publish(started("c1"))
            follower = asyncio.create_task(collect(bus.subscribe("c1")))
            await asyncio.sleep(0.1)
            await asyncio.to_thread(server.stop, "kill")
            with pytest.raises(RedisUnavailableError, match=r"unreachable for 0\.5 s"):
                await bus.publish(final("c1", "lost"))
            assert "Redis is unreachable" in caplog.text
            await asyncio.to_thread(server.start)
            assert (await bus.publish(final("c1", "after"))).seq == 2
            assert (await bus.publish(ended("c1"))).seq == 3
            got = await asyncio.wait_for(follower, 10)
            assert [e.type for e in got] == ["call.started", "transcript.final", "call.ended"]
            assert [e.seq for e in got] == [1, 2, 3]
            assert got[1].payload.text == "after"  # type: ignore[union-attr]
            assert bus.outages == 1
            assert "Redis is reachable again" in caplog.text
        finally:
            await bus.close()


def test_redact_url_hides_only_the_password():
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url("rediss://:pw@cache.example:6380/2") == "rediss://:***@cache.example:6380/2"
