"""Cross-call early warnings (issue 15): the simulated day, each detector's edges, the digest built
from a call's events, and the watch that publishes warnings on a real in-memory bus."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sidecar.kernel.bus import InMemoryBus
from sidecar.kernel.events import (
    Alert,
    CallEnded,
    CallStarted,
    Emotion,
    Event,
    FloorWarning,
    Intent,
    Suggestion,
    TranscriptFinal,
    TranscriptRedacted,
    event_from_dict,
)
from sidecar.qa.config import (
    AgentHotConfig,
    ComplaintBurstConfig,
    EarlyWarningConfig,
    NegativeShareConfig,
    QueueSpikeConfig,
    TopicShareConfig,
    load_config,
)
from sidecar.qa.detectors import AgentHot, ComplaintBurst, NegativeShare, TopicShare
from sidecar.qa.digest import CallDigest, digest_from_board, digest_from_events
from sidecar.qa.engine import WarningEngine
from sidecar.qa.simday import DAY, DAY0, run_day
from sidecar.qa.stats import poisson_tail
from sidecar.qa.volume import QueueSpike
from sidecar.qa.warning import EarlyWarning, OutOfOrderError
from sidecar.qa.watch import WARNINGS_STREAM, WarningWatch, warning_event

pytestmark = pytest.mark.unit
MIN = 60.0
HOUR = 3600.0
T0 = DAY0 + 10 * DAY + 9 * HOUR  # a 09:00, ten simulated days in


def call(n: int, at: float, **fields: object) -> CallDigest:
    base = CallDigest(call_id=f"c{n}", agent_id="a1", queue="q", lang="en", started_at=at - 300, ended_at=at,
                      customer_ref=f"cust{n}", customer_words=100)  # fmt: skip
    return replace(base, **fields)  # type: ignore[arg-type]


def raised(warnings: list[EarlyWarning]) -> list[EarlyWarning]:
    return [w for w in warnings if w.state == "raised"]


def cleared(warnings: list[EarlyWarning]) -> list[EarlyWarning]:
    return [w for w in warnings if w.state == "cleared"]


# ---------------------------------------------------------------------------------- the simulated day


def test_a_simulated_day_raises_each_injected_pattern_once_within_its_window() -> None:
    result = run_day(0, patterns=True)
    assert 250 <= len(result.day.digests) <= 450  # a few hundred calls
    up = raised(list(result.warnings))
    for pattern in result.day.patterns:
        hits = [w for w in up if (w.kind, w.key) == (pattern.kind, pattern.key)]
        assert len(hits) == 1, (pattern.kind, [(w.kind, w.key) for w in up])
        assert pattern.start <= hits[0].at <= pattern.deadline, pattern.kind
        assert hits[0].call_ids  # the calls behind it
    aimed = {(p.kind, p.key) for p in result.day.patterns}
    assert {(w.kind, w.key) for w in up} == aimed  # and nothing else that day
    assert {p.kind for p in result.day.patterns} == {
        "complaint_burst", "queue_spike", "topic_share", "agent_hot", "negative_share"}  # fmt: skip


def test_the_same_day_without_the_patterns_raises_nothing() -> None:
    control = run_day(0, patterns=False)
    assert raised(list(control.warnings)) == []
    assert len(control.day.digests) >= 250


# ---------------------------------------------------------------------------------- (a) complaint burst


def test_a_burst_fires_when_the_threshold_is_exactly_met_and_not_before() -> None:
    burst = ComplaintBurst(ComplaintBurstConfig(min_customers=5, window_s=45 * MIN, clear_below=3))
    out: list[EarlyWarning] = []
    for i in range(4):
        out += burst.observe(call(i, T0 + i * MIN, complaint_topics=("outage",)), T0 + i * MIN)
    assert out == []
    fifth = burst.observe(call(4, T0 + 44 * MIN, complaint_topics=("outage",)), T0 + 44 * MIN)
    assert [(w.kind, w.key, w.value, len(w.call_ids)) for w in fifth] == [("complaint_burst", "outage", 5, 5)]
    sixth = burst.observe(call(5, T0 + 45 * MIN, complaint_topics=("outage",)), T0 + 45 * MIN)
    assert sixth == []  # once per episode


def test_a_burst_counts_customers_not_calls_and_only_the_topic() -> None:
    burst = ComplaintBurst(ComplaintBurstConfig(min_customers=3))
    out: list[EarlyWarning] = []
    for i in range(5):  # one customer calling five times
        out += burst.observe(call(i, T0 + i, customer_ref="same", complaint_topics=("outage",)), T0 + i)
    for i in range(5, 10):  # other customers, other topics or no complaint
        out += burst.observe(call(i, T0 + i, topics=("outage",), complaint_topics=(f"t{i}",)), T0 + i)
    assert out == []


def test_a_burst_of_an_everyday_topic_in_a_busy_centre_is_not_a_burst() -> None:
    burst = ComplaintBurst(ComplaintBurstConfig(min_customers=5, window_s=45 * MIN))
    out: list[EarlyWarning] = []
    for i in range(2000):  # 200 calls an hour for ten hours, one in twenty a billing complaint
        at = T0 + i * 18
        out += burst.observe(call(i, at, complaint_topics=("billing",) if i % 20 == 0 else ()), at)
    assert out == []  # 7 or 8 in every 45 minutes, as usual
    for i in range(2000, 2020):  # then twenty more within five minutes
        at = T0 + 36_000 + (i - 2000) * 15
        out += burst.observe(call(i, at, complaint_topics=("billing",)), at)
    assert [(w.kind, w.key) for w in raised(out)] == [("complaint_burst", "billing")]


def test_a_burst_clears_when_it_thins_out_and_fires_again_as_a_new_episode() -> None:
    burst = ComplaintBurst(ComplaintBurstConfig(min_customers=3, window_s=30 * MIN, clear_below=2, max_p=1.0))
    first = [
        w
        for i in range(3)
        for w in burst.observe(call(i, T0 + i * MIN, complaint_topics=("x",)), T0 + i * MIN)
    ]
    assert len(raised(first)) == 1
    later = T0 + 2 * HOUR
    gone = burst.advance(later)
    assert [(w.state, w.episode) for w in gone] == [("cleared", first[0].episode)]
    again = [
        w
        for i in range(3)
        for w in burst.observe(call(10 + i, later + i, complaint_topics=("x",)), later + i)
    ]
    assert len(raised(again)) == 1
    assert again[0].episode != first[0].episode


# ---------------------------------------------------------------------------------- (b) queue spike


def _spike_with_history(per_hour: int, days: int, config: QueueSpikeConfig) -> tuple[QueueSpike, float]:
    spike, n = QueueSpike(config), 0
    for d in range(days):  # ``per_hour`` calls in each hour 08:00-12:00 on the previous days
        for h in range(8, 12):
            for k in range(per_hour):
                at = DAY0 + d * DAY + h * HOUR + (k + 0.5) * HOUR / per_hour
                n += 1
                assert spike.observe(call(n, at), at) == []
    return spike, DAY0 + days * DAY


def test_a_queue_at_exactly_twice_its_usual_volume_fires_once() -> None:
    config = QueueSpikeConfig(ratio=2.0, window_s=HOUR, min_history_days=3, min_calls=10, max_p=1e-2)
    spike, today = _spike_with_history(10, 3, config)
    start, out = today + 9 * HOUR, []
    for k in range(19):  # 19 calls in the hour from 09:00: 1.9x the usual 10
        out += spike.observe(call(1000 + k, start + k * 150), start + k * 150)
    assert out == []
    out = spike.observe(call(2000, start + 19 * 150), start + 19 * 150)  # the 20th: exactly 2x
    assert [(w.kind, w.key, w.value, w.threshold) for w in out] == [("queue_spike", "q", 2.0, 2.0)]
    assert poisson_tail(20, 10.0) <= config.max_p
    assert spike.observe(call(2001, start + 3000), start + 3000) == []  # once per episode
    gone = spike.advance(start + 3 * HOUR)
    assert [w.state for w in gone] == ["cleared"]


def test_a_queue_without_enough_history_is_not_judged() -> None:
    config = QueueSpikeConfig(window_s=HOUR, min_history_days=3, min_calls=2)
    spike, today = _spike_with_history(2, 2, config)  # two previous days only
    out = [
        w
        for k in range(50)
        for w in spike.observe(call(5000 + k, today + 9 * HOUR + k), today + 9 * HOUR + k)
    ]
    assert out == []


def test_a_small_count_at_twice_the_usual_is_not_a_spike_by_chance() -> None:
    config = QueueSpikeConfig(window_s=HOUR, min_history_days=3, min_calls=4, min_expected=1.0, max_p=1e-4)
    spike, today = _spike_with_history(3, 3, config)
    start = today + 9 * HOUR
    out = [w for k in range(8) for w in spike.observe(call(7000 + k, start + k * 60), start + k * 60)]
    assert out == []  # 8 against a usual 3: 2.7x, but P(>= 8 | 3) is 1.2%


# ---------------------------------------------------------------------------------- (c) topic share


def _topic_day(topic_every: int, start: float, n: int, first: int) -> list[CallDigest]:
    return [call(first + i, start + i * 2 * MIN, topics=("new",) if i % topic_every == 0 else (f"o{i % 7}",))
            for i in range(n)]  # fmt: skip


def test_a_topic_whose_share_rises_fires_once() -> None:
    share = TopicShare(TopicShareConfig(min_reference_calls=200))
    out: list[EarlyWarning] = []
    for d in _topic_day(50, T0 - 20 * HOUR, 500, 0):  # 2% of calls over the day before
        out += share.observe(d, d.ended_at)
    assert out == []
    for d in _topic_day(2, T0, 90, 1000):  # then half the calls
        out += share.observe(d, d.ended_at)
    assert [(w.kind, w.key) for w in raised(out)] == [("topic_share", "new")]


def test_a_topic_share_is_not_judged_on_a_cold_start() -> None:
    share = TopicShare(TopicShareConfig(min_reference_calls=200))
    out = [w for d in _topic_day(2, T0, 90, 0) for w in share.observe(d, d.ended_at)]
    assert out == []


# ---------------------------------------------------------------------------------- (d) agent running hot


def _shift(temps: list[float], start: float = T0, agent: str = "a7") -> list[CallDigest]:
    return [call(i, start + i * 20 * MIN, agent_id=agent, temperature_end=t) for i, t in enumerate(temps)]


def test_an_agent_whose_calls_end_hotter_through_the_shift_fires_once() -> None:
    hot = AgentHot(AgentHotConfig())
    temps = [0.2, 0.0, 0.3, 0.1, 0.2, 0.0, -0.2, -0.4, -0.5, -0.6, -0.5, -0.7, -0.6]
    out = [w for d in _shift(temps) for w in hot.observe(d, d.ended_at)]
    assert [(w.kind, w.key) for w in raised(out)] == [("agent_hot", "a7")]
    assert len(raised(out)[0].call_ids) == AgentHotConfig().recent_calls


def test_an_agent_with_steadily_cold_customers_is_not_running_hot() -> None:
    hot = AgentHot(AgentHotConfig())  # hot all along: no drift over the shift
    temps = [-0.5, -0.6, -0.4, -0.5, -0.6, -0.5, -0.4, -0.6, -0.5, -0.5, -0.6, -0.5]
    assert [w for d in _shift(temps) for w in hot.observe(d, d.ended_at)] == []


def test_an_agent_episode_ends_with_the_shift_and_a_new_shift_can_fire_again() -> None:
    hot = AgentHot(AgentHotConfig(shift_gap_s=2 * HOUR))
    temps = [0.2, 0.0, 0.3, 0.1, 0.2, 0.0, -0.5, -0.6, -0.5, -0.7, -0.6, -0.7]
    first = [w for d in _shift(temps) for w in hot.observe(d, d.ended_at)]
    assert len(raised(first)) == 1
    next_day = T0 + DAY
    gone = hot.advance(next_day)
    assert [w.state for w in gone] == ["cleared"]
    again = [
        w
        for d in _shift(temps, start=next_day)
        for w in hot.observe(replace(d, call_id="n" + d.call_id), d.ended_at)
    ]
    assert len(raised(again)) == 1
    assert raised(again)[0].episode != raised(first)[0].episode


# ---------------------------------------------------------------------------------- (e) negative-word share


def test_negative_share_fires_at_exactly_the_threshold_and_clears_below() -> None:
    neg = NegativeShare(
        NegativeShareConfig(threshold=0.15, clear_below=0.12, window_s=HOUR, min_calls=5, min_words=500)
    )
    out: list[EarlyWarning] = []
    for i in range(4):
        out += neg.observe(call(i, T0 + i * MIN, customer_words=100, negative_words=15), T0 + i * MIN)
    assert out == []  # 15% but only four calls
    out = neg.observe(call(4, T0 + 4 * MIN, customer_words=100, negative_words=15), T0 + 4 * MIN)
    assert [(w.kind, w.key, w.value) for w in out] == [("negative_share", "q", 0.15)]
    # calm calls dilute the window: 75/600 = 12.5% stays in the episode, 75/700 = 10.7% clears it
    assert neg.observe(call(5, T0 + 5 * MIN, negative_words=0), T0 + 5 * MIN) == []
    gone = neg.observe(call(6, T0 + 6 * MIN, negative_words=0), T0 + 6 * MIN)
    assert [w.state for w in gone] == ["cleared"]
    back = [
        w for i in range(7, 20) for w in neg.observe(call(i, T0 + i * MIN, negative_words=40), T0 + i * MIN)
    ]
    assert len(raised(back)) == 1  # a new episode


def test_negative_share_below_the_threshold_never_fires() -> None:
    neg = NegativeShare(NegativeShareConfig(threshold=0.15))
    out = [w for i in range(40) for w in neg.observe(call(i, T0 + i * MIN, customer_words=100, negative_words=14),
                                                     T0 + i * MIN)]  # fmt: skip
    assert out == []


# ---------------------------------------------------------------------------------- time and order


def test_a_detector_refuses_time_going_backwards() -> None:
    burst = ComplaintBurst(ComplaintBurstConfig())
    burst.observe(call(1, T0), T0)
    with pytest.raises(OutOfOrderError):
        burst.observe(call(2, T0 - 1), T0 - 1)


def test_the_engine_takes_a_slightly_late_call_as_of_now_and_drops_a_stale_one() -> None:
    engine = WarningEngine(replace(EarlyWarningConfig(), late_tolerance_s=300,
                                   complaint_burst=ComplaintBurstConfig(min_customers=3)))  # fmt: skip
    assert engine.feed(call(1, T0, complaint_topics=("x",))) == []
    assert engine.feed(call(2, T0 + 600, complaint_topics=("x",))) == []
    out = engine.feed(call(3, T0 + 400, complaint_topics=("x",)))  # 200 s late: counted, at T0 + 600
    assert [(w.kind, w.at) for w in out] == [("complaint_burst", T0 + 600)]
    assert engine.feed(call(4, T0, complaint_topics=("y",))) == []  # 600 s late: dropped
    assert engine.late_dropped == 1
    assert engine.feed(call(3, T0 + 700, complaint_topics=("x",))) == []  # the same call again
    assert engine.duplicates == 1
    assert engine.advance(T0) == []  # a timer behind the newest call changes nothing


def test_config_from_a_mapping_names_what_is_wrong() -> None:
    config = EarlyWarningConfig.from_mapping({"complaint_burst": {"min_customers": 4, "window_s": 1800}})
    assert config.complaint_burst.min_customers == 4
    assert config.complaint_burst.window_s == 1800.0
    assert config.queue_spike == QueueSpikeConfig()
    with pytest.raises(ValueError, match=r"complaint_burst\.min_custmers"):
        EarlyWarningConfig.from_mapping({"complaint_burst": {"min_custmers": 4}})
    with pytest.raises(ValueError, match="whole number"):
        EarlyWarningConfig.from_mapping({"complaint_burst": {"min_customers": 4.5}})
    with pytest.raises(ValueError, match="must be a number"):
        EarlyWarningConfig.from_mapping({"late_tolerance_s": "soon"})


# ---------------------------------------------------------------------------------- digests and the watch


def call_events(call_id: str, customer: str, topic: str, *, complaint: bool = True) -> list[Event]:
    """A short call as the coach emits it: a complaint turn, its card, the temperature, an alert."""
    meta = {"agent_id": "ag1", "queue": "tech", "team": "t1", "customer_ref": customer}
    text = "This is terrible, the internet is broken again and nobody helps"
    return [
        Event(
            "call.started",
            call_id,
            None,
            0.0,
            0.0,
            CallStarted("tap", "en", ("agent", "customer"), True, meta),
        ),
        Event("transcript.final", call_id, "customer", 1.0, 4.0, TranscriptFinal(text, (), "en", 1)),
        Event(
            "intent",
            call_id,
            "customer",
            1.0,
            4.0,
            Intent("complaint" if complaint else "info_request", 0.9, "broken"),
        ),
        Event("emotion", call_id, "customer", 1.0, 4.0, Emotion(-0.2, -0.4, "negative", ("negative words",))),
        Event("suggestion", call_id, None, 4.0, 4.5, Suggestion(topic, "Outage", "body", 0.8, "why")),
        Event("transcript.final", call_id, "customer", 6.0, 8.0, TranscriptFinal("ok thanks", (), "en", 2)),
        Event("emotion", call_id, "customer", 6.0, 8.0, Emotion(0.1, 0.5, "neutral", ())),
        Event("alert", call_id, "agent", 9.0, 10.0, Alert("dead_air", "general", "r1", "m", "")),
        Event("call.ended", call_id, None, 0.0, 30.0, CallEnded("hangup", 30.0)),
    ]


def test_a_digest_from_a_calls_events_has_what_the_detectors_need() -> None:
    events = [replace(e, emitted_at=1000.0 + e.t_end) for e in call_events("c1", "cust9", "outage")]
    d = digest_from_events("c1", events)
    assert (d.agent_id, d.queue, d.team, d.customer_ref, d.lang) == ("ag1", "tech", "t1", "cust9", "en")
    assert (d.started_at, d.ended_at) == (1000.0, 1030.0)
    assert d.intents == ("complaint",)
    assert d.topics == ("outage",)
    assert d.complaint_topics == ("outage",)
    assert (d.temperature_start, d.temperature_end, d.temperature_min) == (-0.2, 0.1, -0.2)
    assert d.customer_words == 13
    assert 2 <= d.negative_words <= 4
    assert [(v.category, v.severity, v.count) for v in d.violations] == [("dead_air", "general", 1)]
    # a redaction replaces its final's words; a question with a card is a topic, not a complaint
    redacted = Event("transcript.redacted", "c2", "customer", 1.0, 4.0, TranscriptRedacted("ok", (), "en", 1))
    other = digest_from_events("c2", [*call_events("c2", "x", "plans", complaint=False)[:-1], redacted,
                                      call_events("c2", "x", "plans")[-1]])  # fmt: skip
    assert other.topics == ("plans",)
    assert other.complaint_topics == ()
    assert other.customer_words == 3
    with pytest.raises(ValueError, match="has not ended"):
        digest_from_events("c1", events[:-1])


def test_a_warning_event_round_trips_through_json() -> None:
    w = EarlyWarning(
        "queue_spike", "raised", "tech", 1.0, 2.0, ("a", "b"), 2.5, 2.0, "m", "queue_spike:tech:2"
    )
    event = replace(warning_event(w), seq=1, emitted_at=3.0)
    back = event_from_dict(event.to_dict())
    assert back == event
    assert isinstance(back.payload, FloorWarning)
    assert back.payload.call_ids == ("a", "b")


async def test_the_watch_publishes_a_warning_on_the_floor_stream_once() -> None:
    bus = InMemoryBus()
    engine = WarningEngine(
        replace(EarlyWarningConfig(), complaint_burst=ComplaintBurstConfig(min_customers=3))
    )
    watch = WarningWatch(bus, engine)
    task = asyncio.create_task(watch.run())
    await asyncio.sleep(0.05)  # subscribed
    floor: list[Event] = []

    async def read_floor() -> None:
        async for event in bus.subscribe(WARNINGS_STREAM, after_seq=0):
            floor.append(event)

    reader = asyncio.create_task(read_floor())
    try:
        for i in range(5):
            for event in call_events(f"w{i}", f"cust{i}", "outage"):
                await bus.publish(event)
        async with asyncio.timeout(30):  # every call folded in, and the warning read back
            while watch.engine.calls_seen < 5 or not floor:  # noqa: ASYNC110 (two tasks' progress, read-only)
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # anything more would have arrived by now
    finally:
        task.cancel()
        reader.cancel()
        await asyncio.gather(task, reader, return_exceptions=True)
    assert [e.type for e in floor] == ["warning.raised"]
    payload = floor[0].payload
    assert isinstance(payload, FloorWarning)
    assert (payload.kind, payload.key, payload.call_ids) == ("complaint_burst", "outage", ("w0", "w1", "w2"))
    assert watch.folds == {}  # every ended call's fold is gone
    assert [c.call_id for c in bus.calls() if not c.ended] == [WARNINGS_STREAM]


def test_thresholds_are_read_from_yaml_and_reloaded_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "warnings.yaml"
    path.write_text("complaint_burst: {min_customers: 2, clear_below: 1}\n", encoding="utf-8")
    watch = WarningWatch(InMemoryBus(), config_path=path)
    assert watch.engine.config.complaint_burst.min_customers == 2
    out = [
        w
        for e in call_events("y0", "c0", "roaming") + call_events("y1", "c1", "roaming")
        for w in watch.step(e)
    ]
    assert [(w.kind, w.key) for w in out] == [("complaint_burst", "roaming")]
    path.write_text("complaint_burst: {min_custmers: 3}\n", encoding="utf-8")  # a typo: kept as it was
    os.utime(path, (1, 1))
    assert watch.step(call_events("y2", "c2", "other")[-1]) == []
    assert "complaint_burst.min_custmers" in watch.config_error
    assert watch.engine.config.complaint_burst.min_customers == 2
    path.write_text("complaint_burst: {min_customers: 7}\nqueue_spike: {ratio: 3}\n", encoding="utf-8")
    os.utime(path, (2, 2))
    watch.step(call_events("y3", "c3", "other")[-1])
    assert watch.engine.config.complaint_burst.min_customers == 7
    assert watch.engine.detectors[1].config.ratio == 3.0
    assert watch.config_error == ""
    path.write_text("nope: 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"warnings\.yaml: early warnings: unknown key 'nope'"):
        load_config(path)
    with pytest.raises(ValueError, match="clear_below <= min_customers"):
        EarlyWarningConfig.from_mapping({"complaint_burst": {"min_customers": 2}})


def test_the_service_publishes_warnings_on_the_floor_stream_and_not_as_a_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.service_helpers import light_server

    thresholds = tmp_path / "warnings.yaml"
    thresholds.write_text("complaint_burst: {min_customers: 2, clear_below: 1}\n", encoding="utf-8")
    monkeypatch.setenv("ASSIST_EARLY_WARNINGS", str(thresholds))
    bus = InMemoryBus()
    node = light_server(tmp_path, bus)
    try:
        app: Any = node.server.config.app
        ctx = app.state.ctx
        loop = ctx.tasks[0].get_loop()  # the service's own loop: the bus lives there

        async def two_complaints() -> Event:
            for i in range(2):
                for event in call_events(f"s{i}", f"cust{i}", "roaming"):
                    await bus.publish(event)
            async with asyncio.timeout(60):
                async for event in bus.subscribe(WARNINGS_STREAM, after_seq=0):
                    return event
            raise AssertionError("unreachable: the floor stream never ends")

        warning = asyncio.run_coroutine_threadsafe(two_complaints(), loop).result(timeout=90)
        assert warning.type == "warning.raised"
        assert isinstance(warning.payload, FloorWarning)
        assert (warning.payload.key, warning.payload.call_ids) == ("roaming", ("s0", "s1"))
        with node.client() as client:
            listed = [c["call_id"] for c in client.get("/v1/calls").json()]
        assert "s0" in listed
        assert WARNINGS_STREAM not in listed
    finally:
        node.stop()


async def test_the_boards_state_of_a_call_gives_the_same_digest_as_its_events() -> None:
    from sidecar.service.board import CallBoard

    board = CallBoard()
    events = [
        replace(e, seq=i + 1, emitted_at=500.0 + e.t_end)
        for i, e in enumerate(call_events("b1", "c", "outage"))
    ]
    for event in events:
        await board.apply(event)
    state = board.get("b1")
    assert state is not None
    from_board = digest_from_board(state, team="t1", customer_ref="c")
    assert from_board == digest_from_events("b1", events)


def test_a_digest_that_contradicts_itself_is_refused() -> None:
    with pytest.raises(ValueError, match="ends before it starts"):
        call(1, T0, started_at=T0 + 1)
    with pytest.raises(ValueError, match="negative words"):
        call(1, T0, customer_words=10, negative_words=11)


def test_the_usual_volume_is_the_same_hours_of_the_previous_days_pro_rata_in_local_time() -> None:
    from sidecar.qa.volume import VolumeBaseline

    offset = 8 * HOUR  # the centre's local day starts at 16:00 UTC
    baseline = VolumeBaseline(QueueSpikeConfig(min_history_days=2, history_days=7, utc_offset_s=offset))
    for d in range(2):
        local_midnight = DAY0 + d * DAY - offset
        for _ in range(6):
            baseline.add("q", local_midnight + 9 * HOUR + 10 * MIN)  # six calls at 09:10 local
        for _ in range(2):
            baseline.add("q", local_midnight + 10 * HOUR + 10 * MIN)  # two at 10:10 local
    today = DAY0 + 2 * DAY - offset
    assert baseline.usual("q", today + 9 * HOUR + 30 * MIN, today + 10 * HOUR + 30 * MIN) == pytest.approx(
        4.0
    )
    assert baseline.usual("other", today + 9 * HOUR, today + 10 * HOUR) == 0.0
    assert (
        baseline.usual("q", DAY0 + DAY - offset + 9 * HOUR, DAY0 + DAY - offset + 10 * HOUR) is None
    )  # 1 day
