"""The review API over real HTTP: a real service (uvicorn on 127.0.0.1, the coach without its
embedding models: exact matchers only), calls played through the live pipeline and stored when
they end, in the service's SQLite call store.

Roles: an agent sees only their own stored calls; QA reviewers and supervisors see all and give
verdicts, which move the rule's precision; erasure by customer reference is a supervisor's (or
admin's), removes the calls and leaves an audit entry; opening a call is audited. ``assist qa run``
on the same file, with the same coach, stores the same score as the live path."""

from __future__ import annotations

import asyncio
import csv
import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecar.qa_run import Scorer, run_qa
from sidecar.service.auth import Principal, Role, TokenEntry, TokenTable
from sidecar.service.config import ServiceConfig
from sidecar.store.query import CallQuery
from sidecar.store.repository import CallStore
from sidecar.store.settings import sqlite_url
from tests.service_helpers import FIXTURES, free_port
from tests.store_helpers import make_record

USERS: dict[str, tuple[str, Role]] = {  # name: (token, role)
    "alice": ("history-alice-token", "agent"),
    "bob": ("history-bob-token", "agent"),
    "quinn": ("history-qa-token", "qa"),
    "sam": ("history-supervisor-token", "supervisor"),
    "kim": ("history-km-token", "knowledge_manager"),
    "root": ("history-admin-token", "admin"),
}


@dataclass
class HistoryService:
    base: str
    data: Path
    services: Any

    def client(self, user: str) -> httpx.Client:
        token = USERS[user][0]
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def play(self, recording: str, agent: str, *, realtime: bool = False) -> str:
        with self.client("sam") as c:
            r = c.post(
                "/v1/calls",
                json={"recording": recording, "realtime": realtime, "agent_id": agent, "queue": "returns"},
            )
            assert r.status_code == 201, r.text
            return str(r.json()["call_id"])

    def wait_stored(self, call_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        with self.client("sam") as c:
            while time.monotonic() < deadline:
                r = c.get(f"/v1/history/calls/{call_id}")
                if r.status_code == 200:
                    return dict(r.json())
                time.sleep(0.2)
        raise AssertionError(f"call {call_id} was not stored within {timeout_s} s")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HistoryService]:
    from coach.engine import Coach
    from knowledge.feedback import FeedbackLog
    from knowledge.store import SnippetStore
    from sidecar.service.app import create_app
    from sidecar.service.config import Services
    from sidecar.service.serve import make_server

    data = tmp_path_factory.mktemp("history-data")
    tokens = TokenTable([TokenEntry(token, Principal(name, role)) for name, (token, role) in USERS.items()])
    config = ServiceConfig(data_dir=data, recordings_dir=FIXTURES, kb_seed=None, tokens=tokens, knowledge=False,
                           preload_lang=None)  # fmt: skip
    store = SnippetStore(":memory:")
    services = Services(config=config, bus=_memory_bus(), tokens=tokens, store=store, feedback=FeedbackLog(store),
                        coach=Coach(embedder=None, judge=False), knowledge=None, policy=None)  # fmt: skip
    server = make_server(create_app(config, services), "127.0.0.1", port := free_port())
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), name="history-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive(), "the history test service did not start"
        assert time.monotonic() < deadline, "the history test service did not start in time"
        time.sleep(0.05)
    yield HistoryService(f"http://127.0.0.1:{port}", data, services)
    server.should_exit = True
    thread.join(timeout=30)


def _memory_bus() -> Any:
    from sidecar.kernel.bus import InMemoryBus

    return InMemoryBus()


@pytest.fixture(scope="module")
def played(history: HistoryService) -> dict[str, str]:
    """alice's abusive call and bob's polite one, played live and stored."""
    calls = {
        "alice": history.play("refund-abuse.jsonl", "alice"),
        "bob": history.play("polite-refund.jsonl", "bob"),
    }
    for call_id in calls.values():
        history.wait_stored(call_id)
    return calls


def test_an_agent_sees_only_their_own_history(history: HistoryService, played: dict[str, str]) -> None:
    with history.client("alice") as alice:
        listed = alice.get("/v1/history/calls").json()
        assert [c["call_id"] for c in listed["calls"]] == [played["alice"]]
        assert listed["total"] == 1
        assert alice.get(f"/v1/history/calls/{played['alice']}").status_code == 200
        assert alice.get(f"/v1/history/calls/{played['bob']}").status_code == 403
        assert alice.get("/v1/history/calls", params={"agent": "bob"}).status_code == 403
        csv_rows = list(csv.reader(io.StringIO(alice.get("/v1/history/calls.csv").text)))
        assert [row[0] for row in csv_rows[1:]] == [played["alice"]]
        verdict = alice.put(
            f"/v1/history/calls/{played['alice']}/alerts/1/verdict", json={"verdict": "confirmed"}
        )
        assert verdict.status_code == 403
        assert alice.post("/v1/history/erasure", json={"customer_ref": "x"}).status_code == 403
        assert alice.get("/v1/history/audit").status_code == 403
    with history.client("quinn") as qa:
        assert {c["call_id"] for c in qa.get("/v1/history/calls").json()["calls"]} >= set(played.values())


def test_a_stored_call_is_whole_and_opening_it_is_audited(
    history: HistoryService, played: dict[str, str]
) -> None:
    with history.client("quinn") as qa:
        detail = qa.get(f"/v1/history/calls/{played['alice']}").json()
    assert detail["agent_id"] == "alice"
    assert detail["queue"] == "returns"
    assert detail["recording_ref"] == "refund-abuse.jsonl"
    assert detail["origin"] == "live"
    assert detail["score"] is not None
    assert detail["scorecard"]["total"] == detail["score"]
    assert detail["transcript"][0]["channel"] == "agent"
    assert detail["transcript"][0]["words"][0]["t_start"] == pytest.approx(0.3, abs=0.01)
    assert "abuse" in {a["category"] for a in detail["alert_list"]}
    assert {c["step"] for c in detail["checklist"]} >= {"recording_notice"}
    assert detail["emotion"]
    with history.client("sam") as supervisor:
        audit = supervisor.get(
            "/v1/history/audit", params={"call_id": played["alice"], "action": "open"}
        ).json()
    assert ("quinn", "qa") in {(e["actor"], e["role"]) for e in audit}


def test_filters_and_csv_export(history: HistoryService, played: dict[str, str]) -> None:
    with history.client("quinn") as qa:

        def ids(**params: Any) -> set[str]:
            return {c["call_id"] for c in qa.get("/v1/history/calls", params=params).json()["calls"]} & set(
                played.values()
            )

        assert ids(category="abuse") == {played["alice"]}
        assert ids(severity="fatal") == {played["alice"]}
        assert ids(agent="bob") == {played["bob"]}
        assert ids(queue="returns", lang="en") == set(played.values())
        assert ids(q="STUPID IDIOT") == {played["alice"]}
        assert ids(since=time.time() + 3600) == set()
        intents = {
            who: {i["intent"] for i in qa.get(f"/v1/history/calls/{call_id}").json()["intents"]}
            for who, call_id in played.items()
        }
        assert intents["bob"]
        for intent in intents["alice"] | intents["bob"]:
            assert ids(intent=intent) == {played[who] for who in played if intent in intents[who]}
        assert ids(intent="no_such_intent") == set()
        assert qa.get("/v1/history/calls", params={"score_min": 101}).status_code == 422
        export = qa.get("/v1/history/calls.csv", params={"agent": "alice"})
    assert export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert played["alice"] in {r["call_id"] for r in rows}
    assert all(r["agent_id"] == "alice" for r in rows)


def test_a_verdict_changes_the_rules_precision(history: HistoryService, played: dict[str, str]) -> None:
    with history.client("quinn") as qa:
        alerts = qa.get(f"/v1/history/calls/{played['alice']}").json()["alert_list"]
        abuse = next(a for a in alerts if a["category"] == "abuse")
        url = f"/v1/history/calls/{played['alice']}/alerts/{abuse['alert_id']}/verdict"
        r = qa.put(url, json={"verdict": "not_a_violation", "comment": "the customer's words, quoted"})
        assert r.status_code == 200, r.text
        assert (r.json()["verdict"], r.json()["reviewer"]) == ("not_a_violation", "quinn")
        assert qa.put(url, json={"verdict": "maybe"}).status_code == 422
        assert qa.put(f"/v1/history/calls/{played['bob']}/alerts/{abuse['alert_id']}/verdict",
                      json={"verdict": "confirmed"}).status_code == 404  # fmt: skip
    with history.client("kim") as km:
        rule = next(
            r for r in km.get("/v1/history/rules/precision").json() if r["rule_id"] == abuse["rule_id"]
        )
        assert (rule["reviewed"], rule["precision"]) == (1, 0.0)
        assert km.get(f"/v1/history/calls/{played['alice']}").status_code == 403  # precision, not calls
    with history.client("sam") as supervisor:
        assert supervisor.put(url, json={"verdict": "confirmed"}).status_code == 200
        rule = next(
            r
            for r in supervisor.get("/v1/history/rules/precision").json()
            if r["rule_id"] == abuse["rule_id"]
        )
        assert (rule["reviewed"], rule["confirmed"], rule["precision"]) == (1, 1, 1.0)


def test_erasure_by_customer_reference_removes_the_calls_and_is_audited(history: HistoryService) -> None:
    store = CallStore(sqlite_url(history.data / "calls.sqlite3"))
    try:
        for call_id in ("erase-1", "erase-2"):
            assert store.save(make_record(call_id, customer_ref="cust-erase", agent="alice"))
        assert store.save(make_record("keep-1", customer_ref="cust-keep", agent="alice"))
    finally:
        store.close()
    with history.client("quinn") as qa:
        assert qa.post("/v1/history/erasure", json={"customer_ref": "cust-erase"}).status_code == 403
    with history.client("sam") as supervisor:
        r = supervisor.post("/v1/history/erasure", json={"customer_ref": "cust-erase"})
        assert r.json() == {"erased": 2}
        assert supervisor.get("/v1/history/calls/erase-1").status_code == 404
        assert supervisor.get("/v1/history/calls/keep-1").status_code == 200
        [entry] = supervisor.get("/v1/history/audit", params={"action": "erase"}).json()
        assert (entry["actor"], entry["role"]) == ("sam", "supervisor")
        assert "2 calls erased" in entry["detail"]
        assert "cust-erase" not in entry["detail"]
        assert supervisor.post("/v1/history/erasure", json={"customer_ref": " "}).status_code == 422


def test_qa_run_scores_the_same_call_as_the_live_path(
    history: HistoryService, played: dict[str, str]
) -> None:
    """The same file three ways: a recorded call played fast and in real time (17 s: the live
    path, ticking for dead air, its coach in the background), and ``assist qa run``'s scorer."""
    realtime = history.play("refund-abuse.jsonl", "carol", realtime=True)
    history.wait_stored(realtime, timeout_s=120)
    store = CallStore(sqlite_url(history.data / "calls.sqlite3"))
    try:
        scorer = Scorer(coach=history.services.coach)  # the service's own coach: the same rules
        report = run_qa([FIXTURES / "refund-abuse.jsonl"], store, scorer=scorer, progress=False)
        assert (report.scored, report.failed) == (1, 0)
        [qa_call] = [
            s
            for s in store.search(CallQuery())
            if s.origin == "qa" and "refund-abuse" in (s.recording_ref or "")
        ]
        qa_stored = store.get(qa_call.call_id)
        lives = [store.get(played["alice"]), store.get(realtime)]
    finally:
        store.close()
    assert qa_stored is not None
    for live in lives:
        assert live is not None
        assert qa_stored.record.scorecard == live.record.scorecard
        assert [(a.category, a.rule_id, a.t_end) for a in qa_stored.alerts] == [
            (a.category, a.rule_id, a.t_end) for a in live.alerts
        ]
        assert [(c.step, c.state) for c in qa_stored.record.checklist] == [
            (c.step, c.state) for c in live.record.checklist
        ]
