"""GET /v1/reports, GET /v1/floor/warnings/events and a stored call's recording over a real service and its call store: roles (an agent gets only their own
figures; QA and supervisors everyone's; a knowledge manager none), the figures equal what the
stored calls say (computed here from the planned calls), day and week buckets, the 7-day repeat
contact across agents, targets echoed; and the pure aggregation's edges."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from statistics import mean

import httpx
import pytest

from sidecar.qa.warning import EarlyWarning
from sidecar.qa.watch import warning_event
from sidecar.service.reports import (
    CallFacts,
    FactsCache,
    Targets,
    aggregate,
    bucket_of,
    read_facts,
    with_repeat,
)
from sidecar.service.routes_playback import playable
from sidecar.store.query import CallQuery
from sidecar.store.repository import CallStore
from tests.review_helpers import Planned, ReviewService, review_service, store_planned, write_wav
from tests.service_helpers import read_sse
from tests.store_helpers import make_record

pytest_plugins = ["tests.store_fixtures"]


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReviewService]:
    yield from review_service(tmp_path_factory.mktemp("reports-data"))


@pytest.fixture(scope="module")
def plan(svc: ReviewService) -> list[Planned]:
    return store_planned(svc)


def near(x: float) -> object:
    return pytest.approx(x, abs=1e-4)  # the API rounds shares and means to 4 decimals


def _day(t: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t))


def test_supervisor_gets_every_agent_with_figures_from_the_store(
    svc: ReviewService, plan: list[Planned]
) -> None:
    with svc.client("sam") as c:
        r = c.get("/v1/reports", params={"group": "agent", "period": "day"})
    assert r.status_code == 200, r.text
    report = r.json()
    assert [g["key"] for g in report["groups"]] == ["alice", "bob"]
    assert report["overall"]["calls"] == len(plan)
    assert report["targets"] == {
        "politeness": 0.95,
        "fcr": 0.85,
        "first_response_s": 30.0,
        "satisfaction": 0.0,
    }
    for group in report["groups"]:
        mine = [p for p in plan if p.agent == group["key"]]
        f = group["figures"]
        assert f["calls"] == len(mine)
        assert f["qa_score"] == near(mean(p.score for p in mine))
        assert f["politeness"] == near(sum(not p.abusive for p in mine) / len(mine))
        assert f["violations"] == (
            {"abuse": {"fatal": sum(p.abusive for p in mine)}} if any(p.abusive for p in mine) else {}
        )
        assert f["disclosure"] == 0.0
        assert f["disclosure_steps"] == len(mine)
        assert f["handle_time_s"] == near(5.0)
        assert f["first_response_s"] == near(3.0)
        assert f["temp_start"] == near(-0.3)
        assert f["temp_end"] == near(-0.3)
        days = sorted({_day(p.started) for p in mine})
        assert [b["key"] for b in group["series"]] == days
        for b in group["series"]:
            in_day = [p for p in mine if _day(p.started) == b["key"]]
            assert b["figures"]["calls"] == len(in_day)
            assert b["figures"]["qa_score"] == near(mean(p.score for p in in_day))
            assert b["end"] - b["start"] == 86_400
    # cust-r: alice's call, then bob's a day later: alice's is a repeat contact, bob's is not
    alice, bob = report["groups"]
    assert (alice["figures"]["fcr_calls"], alice["figures"]["repeat_calls"]) == (2, 1)
    assert alice["figures"]["fcr"] == near(0.5)
    assert (bob["figures"]["fcr_calls"], bob["figures"]["repeat_calls"], bob["figures"]["fcr"]) == (2, 0, 1.0)


def test_an_agent_gets_only_their_own_figures(svc: ReviewService, plan: list[Planned]) -> None:
    with svc.client("alice") as c:
        own = c.get("/v1/reports", params={"group": "team", "period": "week"})
        other = c.get("/v1/reports", params={"agent": "bob"})
    assert own.status_code == 200, own.text
    report = own.json()
    assert report["overall"]["calls"] == sum(p.agent == "alice" for p in plan)
    assert {g["key"] for g in report["groups"]} == {p.queue for p in plan if p.agent == "alice"}
    assert other.status_code == 403
    with svc.client("kim") as c:  # knowledge managers read rule precision, not agents' figures
        assert c.get("/v1/reports").status_code == 403
    with svc.client("quinn") as c:
        assert c.get("/v1/reports", params={"agent": "bob"}).json()["overall"]["calls"] == 2


def test_filters_targets_and_bad_input(svc: ReviewService, plan: list[Planned]) -> None:
    since = min(p.started for p in plan if p.agent == "bob")
    with svc.client("sam") as c:
        r = c.get("/v1/reports", params={"group": "team", "since": since, "target_politeness": 0.9,
                                         "target_first_response_s": 12})  # fmt: skip
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["overall"]["calls"] == sum(p.started >= since for p in plan)
        assert report["targets"]["politeness"] == 0.9
        assert report["targets"]["first_response_s"] == 12
        backwards = c.get("/v1/reports", params={"since": 10, "until": 5})
        assert backwards.status_code == 422  # shaped as every query problem is (what /openapi.json says)
        assert backwards.json()["detail"] == [
            {"type": "value_error", "loc": ["query", "until"], "msg": "until must be after since"}
        ]
        assert c.get("/v1/reports", params={"group": "floor"}).status_code == 422
        assert c.get("/v1/reports", params={"target_fcr": 2}).status_code == 422
    with svc.client("sam") as c:
        weeks = c.get("/v1/reports", params={"period": "week", "queue": "returns"}).json()
    for g in weeks["groups"]:
        for b in g["series"]:
            assert "-W" in b["key"]
            assert b["end"] - b["start"] == 7 * 86_400


def _facts(call_id: str, started: float, **kw: object) -> CallFacts:
    base: dict[str, object] = dict(call_id=call_id, agent_id="a", queue="q", started_at=started, duration_s=60.0,
                                   score=None, violations=(), rude=False, steps_done=0, steps_missed=0,
                                   dead_air_s=0.0, temp_start=None, temp_end=None, first_response_s=None)  # fmt: skip
    base.update(kw)
    return CallFacts(**base)  # type: ignore[arg-type]


def test_aggregation_edges() -> None:
    # a repeat needs a later call of the same customer within 7 days (not the same instant, not day 8)
    f = _facts("x", 1000.0, customer_ref="c")
    assert with_repeat(f, [1000.0]).repeat is False
    assert with_repeat(f, [1000.0 + 7 * 86_400]).repeat is True
    assert with_repeat(f, [1001.0 + 7 * 86_400]).repeat is False
    assert with_repeat(_facts("y", 1000.0), [1001.0]).repeat is None  # no reference: not counted
    # no scores, no steps, no readings: None, not 0
    report = aggregate([_facts("z", 0.0)], group_by="agent", period="day", targets=Targets())
    fig = report.overall
    assert (fig.qa_score, fig.disclosure, fig.temp_start, fig.fcr, fig.first_response_ok) == (None,) * 5
    assert fig.politeness == 1.0
    # first response against the target; the local day at an offset
    calls = [_facts("p", 0.0, first_response_s=10.0), _facts("q", 0.0, first_response_s=40.0)]
    assert aggregate(calls, group_by="team", period="day", targets=Targets()).overall.first_response_ok == 0.5
    assert bucket_of(23 * 3600.0, "day", 0)[0] == "1970-01-01"
    assert bucket_of(23 * 3600.0, "day", 120) == ("1970-01-02", 22 * 3600.0, 46 * 3600.0)
    key, start, end = bucket_of(4 * 86_400.0, "week")  # 1970-01-05 was a Monday
    assert (key, start, end) == ("1970-W02", 4 * 86_400.0, 11 * 86_400.0)


def test_targets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSIST_REPORT_TARGETS", "politeness=0.9, first_response_s=20")
    assert Targets.from_env() == Targets(politeness=0.9, fcr=0.85, first_response_s=20.0)
    monkeypatch.setenv("ASSIST_REPORT_TARGETS", "satisfaction=-0.2")
    assert Targets.from_env().satisfaction == -0.2
    monkeypatch.setenv("ASSIST_REPORT_TARGETS", "fcr=-0.2")
    with pytest.raises(Exception, match="fcr must be a finite number >= 0"):
        Targets.from_env()
    monkeypatch.setenv("ASSIST_REPORT_TARGETS", "speed=1")
    with pytest.raises(Exception, match="unknown target 'speed'"):
        Targets.from_env()


def test_the_floor_warnings_stream_replays_follows_and_resumes(svc: ReviewService) -> None:
    now = time.time()
    first = EarlyWarning("queue_spike", "raised", "returns", now - 7200, now, ("c1", "c2"), 2.4, 2.0,
                         "returns: 24 calls in 2 h, 2.4x usual", "queue_spike:returns:1")  # fmt: skip
    published = svc.publish(warning_event(first))
    with svc.client("alice") as c:  # agents do not read the floor
        assert c.get("/v1/floor/warnings/events").status_code == 403
    with svc.client("sam") as c, c.stream("GET", "/v1/floor/warnings/events") as r:
        assert r.status_code == 200
        messages = read_sse(r)
        replayed = next(messages)
        assert replayed["event"] == "warning.raised"
        assert replayed["id"] == str(published.seq)
        assert replayed["data"]["episode"] == "queue_spike:returns:1"
        assert replayed["data"]["call_ids"] == ["c1", "c2"]
        assert replayed["data"]["state"] == "raised"
        cleared = EarlyWarning("queue_spike", "cleared", "returns", now, now + 60, (), 1.2, 1.5,
                               "returns back to 1.2x", "queue_spike:returns:1")  # fmt: skip
        later = svc.publish(warning_event(cleared))
        followed = next(messages)
        assert (followed["event"], followed["id"]) == ("warning.cleared", str(later.seq))
    with svc.client("quinn") as c:  # QA reviewers have no floor either
        assert c.get("/v1/floor/warnings/events").status_code == 403
    with svc.client("sam") as c:
        headers = {"Last-Event-ID": str(published.seq)}
        with c.stream("GET", "/v1/floor/warnings/events", headers=headers) as r:
            resumed = next(read_sse(r))
        assert resumed["event"] == "warning.cleared"
        assert resumed["id"] == str(later.seq)


def test_read_facts_streams_oldest_first_and_says_when_it_stopped(database_url: str) -> None:
    """On SQLite and on the real PostgreSQL: the newest calls within the limit (oldest first),
    ``truncated`` past it, and the repeat flag from a later call of the same customer outside the
    selection too."""
    store = CallStore(database_url)
    try:
        for i, ref in enumerate(("c-1", None, "c-1")):
            store.save(make_record(f"rf-{i}", started=1_000_000.0 + i * 3600, customer_ref=ref))
        facts, truncated = read_facts(store, CallQuery(), limit=2)
        assert [f.call_id for f in facts] == ["rf-1", "rf-2"]
        assert truncated
        assert [f.repeat for f in facts] == [None, False]
        facts, _ = read_facts(store, CallQuery(until=1_000_000.0 + 1), limit=2)
        assert [(f.call_id, f.repeat) for f in facts] == [("rf-0", True)]  # its repeat is outside the range
        cache = FactsCache()
        everything, truncated = read_facts(store, CallQuery(agent_id="alice"), cache=cache)
        assert len(everything) == 3
        assert not truncated
        assert everything[2].repeat is False
        again, _ = read_facts(store, CallQuery(agent_id="alice"), cache=cache)  # parsed once, then cached
        assert again == everything
        assert (cache.misses, cache.hits) == (3, 3)
    finally:
        store.close()


def test_a_stored_recording_plays_for_whoever_may_read_the_call(
    svc: ReviewService, plan: list[Planned]
) -> None:
    with svc.client("alice") as c:  # rev-a1 is alice's; its reference names rev-a1.wav
        whole = c.get("/v1/history/calls/rev-a1/recording")
        part = c.get("/v1/history/calls/rev-a1/recording", headers={"Range": "bytes=0-43"})
    assert whole.status_code == 200, whole.text
    assert whole.headers["content-type"] == "audio/wav"
    assert whole.content[:4] == b"RIFF"
    assert len(whole.content) == 44 + 2 * 8000 * 2  # the header and 2 s of 16-bit 8 kHz
    assert part.status_code == 206
    assert part.content == whole.content[:44]
    with httpx.Client(base_url=svc.base, timeout=30) as anonymous:  # an <audio> element: token in the query
        query = anonymous.get(
            "/v1/history/calls/rev-a1/recording", params={"access_token": svc.token("quinn")}
        )
        assert query.status_code == 200
        assert anonymous.get("/v1/history/calls/rev-a1/recording").status_code == 401
    with svc.client("bob") as c:
        assert c.get("/v1/history/calls/rev-a1/recording").status_code == 403
        assert c.get("/v1/history/calls/rev-b1/recording").status_code == 404  # no such file
    with svc.client("kim") as c:
        assert c.get("/v1/history/calls/rev-a1/recording").status_code == 403


def test_only_a_wav_inside_the_recordings_folder_is_playable(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    root.mkdir()
    write_wav(root / "a.wav", seconds=0.1)
    write_wav(tmp_path / "outside.wav", seconds=0.1)
    (root / "t.jsonl").write_text("{}\n", encoding="utf-8")
    (root / "link.wav").symlink_to(tmp_path / "outside.wav")
    assert playable(root, "a.wav") == (root / "a.wav").resolve()
    assert playable(root, str(root / "a.wav")) == (root / "a.wav").resolve()  # qa run: an absolute path
    for ref in (
        "../outside.wav",
        str(tmp_path / "outside.wav"),
        "link.wav",
        "t.jsonl",
        "missing.wav",
        "",
        None,
    ):
        assert playable(root, ref) is None, ref
    assert playable(None, "a.wav") is None
