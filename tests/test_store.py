"""The call store on SQLite and on a real PostgreSQL: the fold of a call's events, save once,
search filters, verdicts and per-rule precision, the audit log, retention and erasure, and the
Alembic migrations (from an empty database and from the previous revision)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from sidecar.kernel.bus import InMemoryBus
from sidecar.store import migrate
from sidecar.store.query import CallQuery
from sidecar.store.record import CallRecorder, customer_ref_hash, record_from_json
from sidecar.store.repository import AlertReview, CallStore, StoreError
from sidecar.store.retention import DAY_S, erase_customer, purge_expired
from sidecar.store.schema import metadata
from sidecar.store.settings import StoreSettings, normalise_url, sqlite_url
from sidecar.store.subscriber import PersistStats, persist_calls
from tests.conftest import RedisBusFactory
from tests.store_helpers import call_events, make_record

pytest_plugins = ["tests.store_fixtures"]

NOW = 2_000_000_000.0


@pytest.fixture
def store(database_url: str) -> Iterator[CallStore]:
    s = CallStore(database_url, now=lambda: NOW)
    yield s
    s.close()


def stored_alerts(store: CallStore, call_id: str) -> list[AlertReview]:
    stored = store.get(call_id)
    assert stored is not None
    return list(stored.alerts)


@pytest.mark.unit
def test_the_fold_keeps_what_the_board_knows_and_applies_redaction() -> None:
    record = make_record("c1")
    assert (record.agent_id, record.queue, record.lang, record.customer_ref) == (
        "alice",
        "billing",
        "en",
        "cust-1",
    )
    assert record.recording_ref == "c1.wav"
    assert record.source == "tap:test"
    assert record.duration_s == 5.0
    assert [line.text for line in record.transcript] == ["where is my refund", "my card is [card]"]
    assert record.transcript[0].words[1].text == "is"
    assert record.transcript[0].words[1].t_start == 1.3
    assert record.transcript[1].words[0].text == "[card]"  # the correction replaced the final's words
    assert [(a.category, a.severity) for a in record.alerts] == [
        ("abuse", "fatal"),
        ("missing_disclosure", "serious"),
    ]
    assert [(c.step, c.state) for c in record.checklist] == [("recording_notice", "missed")]
    assert record.intents[0].intent == "refund_request"
    assert record.emotion[0].temperature == -0.3
    assert record.suggestions[0].snippet_id == "refund-policy"
    assert record.score_total == 72.5
    assert record.stats == {"finals": 2.0}
    assert record_from_json(json.loads(json.dumps(record.to_json_dict()))) == record


@pytest.mark.unit
def test_the_fold_bounds_open_calls() -> None:
    recorder = CallRecorder(max_open=2)
    for call_id in ("a", "b", "c"):
        assert recorder.apply(call_events(call_id)[0]) is None
    assert recorder.open_calls == 2
    assert recorder.forgotten == 1


@pytest.mark.unit
def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ASSIST_DATABASE_URL", raising=False)
    monkeypatch.delenv("ASSIST_CALL_DB", raising=False)
    monkeypatch.setenv("ASSIST_RETENTION_DAYS", "30")
    settings = StoreSettings.from_env(tmp_path)
    assert settings.url == sqlite_url(tmp_path / "calls.sqlite3")
    assert settings.retention_days == 30
    monkeypatch.setenv("ASSIST_DATABASE_URL", "postgresql://u@db/calls")
    assert StoreSettings.from_env(tmp_path).url == "postgresql+psycopg://u@db/calls"
    assert normalise_url("sqlite:///x") == "sqlite:///x"
    monkeypatch.setenv("ASSIST_RETENTION_DAYS", "forever")
    with pytest.raises(Exception, match="ASSIST_RETENTION_DAYS"):
        StoreSettings.from_env(tmp_path)


def test_a_call_is_stored_once_and_read_back_whole(store: CallStore) -> None:
    record = make_record("c1")
    assert store.save(record) is True
    assert store.save(record) is False  # a second node, or a re-read stream: stored once
    stored = store.get("c1")
    assert stored is not None
    assert stored.record == record
    assert stored.summary.score == 72.5
    assert stored.summary.alerts == {"fatal": 1, "serious": 1, "general": 0}
    assert [a.rule_id for a in stored.alerts] == ["abuse.insult", "disc.recording"]
    assert store.get("nope") is None
    assert store.count(CallQuery()) == 1


def test_a_content_hash_is_stored_once(store: CallStore) -> None:
    from dataclasses import replace

    first = replace(make_record("qa-1"), origin="qa", content_hash="a" * 64)
    again = replace(make_record("qa-2"), origin="qa", content_hash="a" * 64)
    assert store.save(first) is True
    assert store.save(again) is False
    assert store.has_content("a" * 64)
    assert not store.has_content("b" * 64)
    assert store.stored_hashes() == {"a" * 64}


def test_search_filters(store: CallStore) -> None:
    day = 86_400.0
    store.save(make_record("a1", agent="alice", queue="billing", started=NOW - 3 * day, score=90.0, abusive=False,
                           intent="info_request", text="how do I pay my bill"))  # fmt: skip
    store.save(make_record("a2", agent="alice", queue="cards", started=NOW - 2 * day, score=55.0, lang="zh",
                           text="我的 退款 在哪里"))  # fmt: skip
    store.save(
        make_record("b1", agent="bob", queue="billing", started=NOW - day, score=70.0, customer_ref="cust-2")
    )

    def ids(**kw: object) -> list[str]:
        return [s.call_id for s in store.search(CallQuery(**kw))]  # type: ignore[arg-type]

    assert ids() == ["b1", "a2", "a1"]  # newest first
    assert ids(agent_id="alice") == ["a2", "a1"]
    assert ids(queue="billing") == ["b1", "a1"]
    assert ids(lang="zh") == ["a2"]
    assert ids(since=NOW - 2.5 * day, until=NOW - 0.5 * day) == ["b1", "a2"]
    assert ids(category="abuse") == ["b1", "a2"]
    assert ids(severity="serious", agent_id="bob") == ["b1"]
    assert ids(rule_id="abuse.insult", lang="en") == ["b1"]
    assert ids(intent="info_request") == ["a1"]
    assert ids(score_min=60, score_max=95) == ["b1", "a1"]
    assert ids(text="PAY MY") == ["a1"]
    assert ids(text="退款") == ["a2"]
    assert ids(text="100%") == []  # LIKE wildcards are taken literally
    assert ids(customer_ref="cust-2") == ["b1"]
    assert ids(limit=1, offset=1) == ["a2"]
    assert store.count(CallQuery(agent_id="alice")) == 2


def test_verdicts_make_rule_precision_and_are_audited(store: CallStore) -> None:
    for call_id in ("v1", "v2", "v3"):
        store.save(make_record(call_id))
    abuse = {
        c: next(a for a in stored_alerts(store, c) if a.rule_id == "abuse.insult") for c in ("v1", "v2", "v3")
    }
    before = {r.rule_id: r for r in store.rule_precision()}
    assert before["abuse.insult"].alerts == 3
    assert before["abuse.insult"].precision is None
    store.set_verdict("v1", abuse["v1"].alert_id, "confirmed", "clear insult", "quinn", "qa")
    store.set_verdict("v2", abuse["v2"].alert_id, "not_a_violation", "quoting the customer", "quinn", "qa")
    review = store.set_verdict("v3", abuse["v3"].alert_id, "not_a_violation", "", "quinn", "qa")
    assert review.verdict == "not_a_violation"
    assert review.reviewer == "quinn"
    rule = {r.rule_id: r for r in store.rule_precision()}["abuse.insult"]
    assert (rule.reviewed, rule.confirmed, rule.not_a_violation) == (3, 1, 2)
    assert rule.precision == pytest.approx(1 / 3, abs=1e-4)
    store.set_verdict(
        "v3", abuse["v3"].alert_id, "confirmed", "on second listen", "sam", "supervisor"
    )  # replaces
    rule = {r.rule_id: r for r in store.rule_precision()}["abuse.insult"]
    assert (rule.reviewed, rule.confirmed) == (3, 2)
    assert rule.precision == pytest.approx(2 / 3, abs=1e-4)
    assert {r.rule_id: r for r in store.rule_precision(since=NOW + 1)}["abuse.insult"].reviewed == 0
    assert stored_alerts(store, "v1")[0].comment == "clear insult"
    with pytest.raises(StoreError, match="no alert"):
        store.set_verdict("v1", abuse["v2"].alert_id, "confirmed", "", "quinn", "qa")  # another call's alert
    with pytest.raises(StoreError, match="verdict must be"):
        store.set_verdict("v1", abuse["v1"].alert_id, "maybe", "", "quinn", "qa")
    verdicts = store.audit_entries(action="verdict")
    assert len(verdicts) == 4
    assert verdicts[0].actor == "sam"
    assert verdicts[0].call_id == "v3"


def test_opening_a_call_is_audited(store: CallStore) -> None:
    store.save(make_record("o1"))
    assert store.open_call("o1", "quinn", "qa") is not None
    assert store.open_call("missing", "quinn", "qa") is None
    entries = store.audit_entries(call_id="o1")
    assert [(e.actor, e.role, e.action, e.at) for e in entries] == [("quinn", "qa", "open", NOW)]


def test_erasure_by_customer_reference_leaves_an_audit_entry(store: CallStore) -> None:
    store.save(make_record("e1", customer_ref="cust-9"))
    store.save(make_record("e2", customer_ref="cust-9", agent="bob"))
    store.save(make_record("k1", customer_ref="cust-1"))
    a1 = stored_alerts(store, "e1")[0]
    store.set_verdict("e1", a1.alert_id, "confirmed", "", "quinn", "qa")
    assert erase_customer(store, "cust-9", "root", "admin") == 2
    assert store.get("e1") is None
    assert store.get("e2") is None
    assert store.get("k1") is not None
    assert store.count(CallQuery(customer_ref="cust-9")) == 0
    assert {r.rule_id: r for r in store.rule_precision()}[
        "abuse.insult"
    ].reviewed == 0  # its verdicts went too
    entry = store.audit_entries(action="erase")[0]
    assert (entry.actor, entry.role) == ("root", "admin")
    assert "cust-9" not in entry.detail
    assert customer_ref_hash("cust-9") in entry.detail
    assert "2 calls" in entry.detail
    assert erase_customer(store, "cust-9", "root", "admin") == 0  # nothing left: still audited
    assert len(store.audit_entries(action="erase")) == 2
    with pytest.raises(ValueError, match="customer reference"):
        erase_customer(store, "  ", "root", "admin")


def test_retention_purges_old_calls(store: CallStore) -> None:
    store.save(make_record("old", started=NOW - 40 * DAY_S))
    store.save(make_record("new", started=NOW - 5 * DAY_S))
    assert purge_expired(store, 0) == 0  # 0 days: kept for ever
    assert purge_expired(store, 30) == 1
    assert store.get("old") is None
    assert store.get("new") is not None
    assert purge_expired(store, 30) == 0
    [entry] = store.audit_entries(action="purge")
    assert entry.actor == "retention"
    assert "1 calls" in entry.detail


async def test_the_service_writer_stores_each_ended_call_once(store: CallStore) -> None:
    """The live path: events on a real in-memory bus, the writer task folds and stores them."""
    bus = InMemoryBus()
    stats = PersistStats()
    feedback = {"w1": {"refund-policy": {"shown": 1, "helpful": 1}}}
    task = asyncio.create_task(
        persist_calls(bus, store, feedback=lambda cid: feedback.get(cid, {}), stats=stats)
    )
    for call_id in ("w1", "w2"):
        for event in call_events(call_id):
            await bus.publish(replace(event, seq=0))
    for _ in range(500):
        if stats.stored == 2:
            break
        await asyncio.sleep(0.02)
    task.cancel()
    assert stats.stored == 2
    assert stats.failed == 0
    stored = store.get("w1")
    assert stored is not None
    assert stored.record.suggestions[0].feedback == (("helpful", 1), ("shown", 1))
    assert store.get("w2") is not None


def test_migrations_from_an_empty_database_match_the_schema(database_url: str) -> None:
    engine = create_engine(database_url)
    assert migrate.current_revision(engine) is None
    assert migrate.upgrade(engine) == migrate.head_revision() == "0003"
    assert migrate.upgrade(engine) == "0003"  # a no-op when up to date
    found = inspect(engine)
    for table in metadata.sorted_tables:
        assert {c["name"] for c in found.get_columns(table.name)} == {c.name for c in table.columns}, (
            table.name
        )
        indexes = {i["name"] for i in found.get_indexes(table.name)}
        assert {i.name for i in table.indexes} <= indexes, table.name
    engine.dispose()


def test_migration_from_the_previous_revision_keeps_the_calls(database_url: str) -> None:
    engine = create_engine(database_url)
    assert migrate.upgrade(engine, "0001") == "0001"
    tables = set(inspect(engine).get_table_names())
    assert {"calls", "alerts", "call_intents"} <= tables
    assert "audit_log" not in tables
    with engine.begin() as conn:  # a call stored under revision 0001
        conn.execute(text(
            "INSERT INTO calls (call_id, agent_id, queue, lang, source, origin, started_at, ended_at, duration_s,"
            " end_reason, score_total, alerts_fatal, alerts_serious, alerts_general, search_text, record, stored_at)"
            " VALUES ('old-1', 'alice', 'q', 'en', 's', 'live', 1, 2, 1, 'completed', 80, 0, 0, 0, '', :record, 3)"
        ), {"record": json.dumps(make_record("old-1").to_json_dict())})  # fmt: skip
    engine.dispose()
    store = CallStore(database_url)  # the service's start: migrates to head
    assert migrate.current_revision(store.engine) == "0003"
    stored = store.get("old-1")
    assert stored is not None
    assert stored.summary.score == 80
    store.audit("quinn", "qa", "open", "old-1")  # a table of revision 0002
    assert store.save(make_record("new-1")) is True
    assert migrate.downgrade(store.engine, "0001") == "0001"
    assert "audit_log" not in inspect(store.engine).get_table_names()
    store.close()


def test_nodes_starting_together_migrate_one_after_the_other(postgres_database: str) -> None:
    """PostgreSQL, where several API nodes share a database: three processes upgrade an empty
    database at once; the advisory lock makes the later ones find it done."""
    from tests.store_fixtures import empty_postgres

    url = empty_postgres(postgres_database)
    code = "import sys; from sqlalchemy import create_engine; from sidecar.store import migrate; print(migrate.upgrade(create_engine(sys.argv[1])))"
    nodes = [subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]  # fmt: skip
    results = [node.communicate(timeout=120) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0, 0], [err[-500:] for _, err in results]
    assert [out.strip() for out, _ in results] == ["0003", "0003", "0003"]


@pytest.mark.redis
async def test_two_nodes_on_one_redis_bus_store_each_call_once(
    store: CallStore, redis_bus_factory: RedisBusFactory
) -> None:
    """Two API nodes follow the same Redis Streams bus into one database: each call stored once."""
    publisher, node_a, node_b = redis_bus_factory(), redis_bus_factory(), redis_bus_factory()
    stats = [PersistStats(), PersistStats()]
    writers = [
        asyncio.create_task(persist_calls(bus, store, stats=s))
        for bus, s in zip((node_a, node_b), stats, strict=True)
    ]
    await asyncio.sleep(0.3)  # both subscribed
    for call_id in ("r1", "r2", "r3"):
        for event in call_events(call_id):
            await publisher.publish(replace(event, seq=0))
    for _ in range(500):
        if sum(s.stored + s.already_stored for s in stats) == 6:
            break
        await asyncio.sleep(0.02)
    for writer in writers:
        writer.cancel()
    await asyncio.gather(*writers, return_exceptions=True)
    assert sum(s.stored for s in stats) == 3
    assert sum(s.already_stored for s in stats) == 3
    assert store.count(CallQuery()) == 3
