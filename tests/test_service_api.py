"""The service over real HTTP: roles, calls, whisper and barge, knowledge, rules, operations."""

from __future__ import annotations

import pytest

from tests.service_helpers import LiveService

pytestmark = pytest.mark.model

# (method, path, body): one request per permission the roles differ on
KB_WRITE = ("PUT", "/v1/kb/snippets/role-check", {"title": "t", "body": "b", "tags": [], "lang": "en"})
FLOOR = ("GET", "/v1/recordings", None)
RULES = ("GET", "/v1/rules", None)
KB_READ = ("GET", "/v1/kb/snippets", None)
SEARCH = ("GET", "/v1/kb/search?q=refund", None)
CALLS = ("GET", "/v1/calls", None)

EXPECTED = {
    # role:               calls  recordings  kb read  search  kb write  rules
    "agent": (200, 403, 403, 200, 403, 403),
    "supervisor": (200, 200, 200, 200, 403, 403),
    "knowledge_manager": (403, 403, 200, 200, 200, 200),
    "integrator": (403, 403, 403, 403, 403, 403),
    "admin": (200, 200, 200, 200, 200, 200),
}


@pytest.mark.parametrize("role", list(EXPECTED))
def test_role_matrix(service: LiveService, role: str) -> None:
    with service.client(role) as c:
        got = tuple(
            c.request(method, path, json=body).status_code
            for method, path, body in (CALLS, FLOOR, KB_READ, SEARCH, KB_WRITE, RULES)
        )
    assert got == EXPECTED[role]


def test_missing_or_unknown_token_is_401(service: LiveService) -> None:
    with service.client() as c:
        assert c.get("/v1/calls").status_code == 401
        r = c.get("/v1/calls", headers={"Authorization": "Bearer not-a-real-token"})
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert "token" in r.json()["detail"]
        assert c.get("/v1/floor/events?access_token=nope").status_code == 401
    with service.client("agent") as c:
        assert c.get("/v1/me").json() == {"name": "alice", "role": "agent"}


def test_an_agent_sees_only_their_own_calls(service: LiveService) -> None:
    mine = service.start_call("polite-refund.jsonl", agent="alice", realtime=False)
    theirs = service.start_call("polite-refund.jsonl", agent="bob", realtime=False)
    service.wait_ended(mine)
    service.wait_ended(theirs)
    with service.client("agent") as alice:
        ids = {c["call_id"] for c in alice.get("/v1/calls").json()}
        assert mine in ids
        assert theirs not in ids
        assert alice.get(f"/v1/calls/{mine}").status_code == 200
        assert alice.get(f"/v1/calls/{theirs}").status_code == 403
        assert alice.get(f"/v1/calls/{theirs}/events").status_code == 403
        assert alice.post(f"/v1/calls/{mine}/whisper", json={"text": "hi"}).status_code == 403
    with service.client("supervisor") as sup:
        ids = {c["call_id"] for c in sup.get("/v1/calls").json()}
        assert {mine, theirs} <= ids


def test_a_recorded_call_is_coached_and_ranked_by_risk(service: LiveService) -> None:
    risky = service.start_call("refund-abuse.jsonl", realtime=False)
    calm = service.start_call("polite-refund.jsonl", realtime=False)
    detail = service.wait_ended(risky)
    service.wait_ended(calm)
    assert any(t["channel"] == "customer" and "refund" in t["text"] for t in detail["transcript"])
    fatal = [a for a in detail["alerts"] if a["severity"] == "fatal"]
    assert fatal
    assert fatal[0]["category"] == "abuse"
    assert detail["alert_counts"]["fatal"] >= 1
    assert detail["emotion"]
    assert detail["temperature"] < 0
    assert detail["scorecard"] is not None
    assert 0 <= detail["scorecard"]["total"] <= 100
    assert any(s["snippet_id"] == "refund-status" for s in detail["suggestions"])
    assert "recording" in detail["checklist"] or detail["checklist"]
    with service.client("supervisor") as c:
        ranked = [s["call_id"] for s in c.get("/v1/calls?status=ended").json()]
        assert ranked.index(risky) < ranked.index(calm)
        assert all(not s["ended"] for s in c.get("/v1/calls?status=live").json())


def test_whisper_and_barge_reach_the_call(service: LiveService) -> None:
    call_id = service.start_call("polite-refund.jsonl", realtime=True)
    with service.client("supervisor") as c:
        r = c.post(f"/v1/calls/{call_id}/whisper", json={"text": "Offer the express refund."})
        assert r.status_code == 202
        assert r.json()["type"] == "whisper"
        assert r.json()["payload"]["author"] == "sam"
        r = c.post(f"/v1/calls/{call_id}/barge", json={"reason": "customer asked for a manager"})
        assert r.status_code == 202
        assert r.json()["type"] == "barge"
        assert c.post(f"/v1/calls/{call_id}/whisper", json={"text": ""}).status_code == 422
        assert c.post("/v1/calls/no-such-call/whisper", json={"text": "x"}).status_code == 404
    detail = service.wait_ended(call_id)
    assert detail["whispers"][0]["text"] == "Offer the express refund."
    assert detail["barges"][0]["reason"] == "customer asked for a manager"
    with service.client("supervisor") as c:  # the call has ended: nothing more can be sent
        assert c.post(f"/v1/calls/{call_id}/whisper", json={"text": "late"}).status_code == 409


def test_bad_start_requests_are_clear(service: LiveService) -> None:
    with service.client("supervisor") as c:
        names = {r["name"] for r in c.get("/v1/recordings").json()}
        assert {"refund-abuse.jsonl", "polite-refund.jsonl"} <= names
        r = c.post("/v1/calls", json={"recording": "../../etc/passwd"})
        assert r.status_code == 400
        assert "bare file name" in r.json()["detail"]
        assert c.post("/v1/calls", json={"recording": "missing.wav"}).status_code == 400
        assert c.post("/v1/calls", json={"recording": "x.jsonl", "lang": "fr"}).status_code == 422
        r = c.get("/v1/calls/x/events", headers={"Last-Event-ID": "abc"})
        assert r.status_code == 404  # unknown call first
        assert c.get("/v1/calls/does-not-exist").status_code == 404


def test_knowledge_edit_history_rollback_feedback(service: LiveService) -> None:
    with service.client("knowledge_manager") as km:
        r = km.put("/v1/kb/snippets/api-test", json={"title": "", "body": "b", "lang": "en"})
        assert r.status_code == 422
        r = km.put("/v1/kb/snippets/api-test",
                   json={"title": "Wire transfer limits", "body": "1. Check the daily limit. 2. Offer a branch visit.",
                         "tags": ["banking"], "lang": "xx-not-a-code!", "status": "published"})  # fmt: skip
        assert r.status_code == 422
        assert r.json()["detail"][0]["field"] == "lang"
        body = {"title": "Wire transfer limits", "body": "1. Check the daily limit. 2. Offer a branch visit.",
                "tags": ["banking"], "lang": "en", "triggers": ["transfer limit"], "status": "draft"}  # fmt: skip
        v1 = km.put("/v1/kb/snippets/api-test", json=body).json()
        assert v1["version"] == 1
        assert v1["status"] == "draft"
        assert v1["updated_by"] == "kim"
        v2 = km.post("/v1/kb/snippets/api-test/publish").json()
        assert v2["status"] == "published"
        assert v2["version"] == 2
        v3 = km.put(
            "/v1/kb/snippets/api-test", json={**body, "title": "Transfer limits", "status": "published"}
        )
        assert v3.json()["version"] == 3
        history = km.get("/v1/kb/snippets/api-test/history").json()
        assert [h["version"] for h in history] == [1, 2, 3]
        back = km.post("/v1/kb/snippets/api-test/rollback", json={"version": 2}).json()
        assert back["title"] == "Wire transfer limits"
        assert back["version"] == 4
        assert km.get("/v1/kb/audit?snippet_id=api-test").json()
    call_id = service.start_call(
        "polite-refund.jsonl", agent="alice", realtime=False
    )  # feedback needs a call
    service.wait_ended(call_id)
    with service.client("agent") as agent:
        hits = agent.get("/v1/kb/search", params={"q": "what is the daily limit for a wire transfer"}).json()
        assert hits[0]["snippet_id"] == "api-test"
        for kind in ("shown", "used", "helpful"):
            r = agent.post(
                "/v1/kb/feedback", json={"call_id": call_id, "snippet_id": "api-test", "kind": kind}
            )
            assert r.status_code == 204
        r = agent.post("/v1/kb/feedback", json={"call_id": call_id, "snippet_id": "nope", "kind": "used"})
        assert r.status_code == 404
        r = agent.post("/v1/kb/feedback", json={"call_id": "c1", "snippet_id": "api-test", "kind": "used"})
        assert r.status_code == 404  # no such call
    with service.client("knowledge_manager") as km:
        stats = {s["snippet_id"]: s for s in km.get("/v1/kb/analytics").json()}
        assert stats["api-test"]["shown"] == 1
        assert stats["api-test"]["use_rate"] == 1.0
        assert km.delete("/v1/kb/snippets/api-test").status_code == 204
        assert km.get("/v1/kb/snippets/api-test").status_code == 404
        assert km.delete("/v1/kb/snippets/api-test").status_code == 404


def test_dry_run_over_recorded_transcripts(service: LiveService) -> None:
    draft = {"id": "draft-refund", "title": "Where is my refund", "lang": "en", "tags": ["returns"],
             "body": "1. Confirm the return arrived. 2. Refunds take 5 to 10 business days."}  # fmt: skip
    with service.client("knowledge_manager") as km:
        report = km.post("/v1/kb/try", json={"snippets": [draft], "calls": ["polite-refund.jsonl"]}).json()
        assert report["calls"][0]["call"] == "polite-refund.jsonl"
        assert report["totals"][0]["snippet_id"] == "draft-refund"
        assert km.post("/v1/kb/try", json={"snippets": [draft], "calls": ["../x.jsonl"]}).status_code == 400
        assert km.get("/v1/kb/snippets/draft-refund").status_code == 404  # nothing was stored


def test_rules_validate_names_file_and_line_and_publish_hot_reloads(service: LiveService) -> None:
    with service.client("knowledge_manager") as km:
        before = km.get("/v1/rules").json()
        assert before["summary"]["rules"] > 10
        assert any(f["name"] == "violations.en.yaml" for f in before["files"])
        broken = (
            "pack: extra\nversion: 1\nrules:\n  - id: x\n    category: not-a-category\n    severity: fatal\n"
        )
        r = km.post("/v1/rules/validate", json={"files": {"extra.yaml": broken}}).json()
        assert r["ok"] is False
        assert r["problems"][0]["file"] == "extra.yaml"
        assert r["problems"][0]["line"] >= 4
        r = km.post("/v1/rules/publish", json={"files": {"extra.yaml": broken}})
        assert r.status_code == 422
        assert r.json()["detail"]["problems"]
        assert km.post("/v1/rules/validate", json={"files": {"../evil.yaml": "x"}}).status_code == 422
        good = (
            "pack: extra\nversion: 1\nrules:\n  - id: extra.no-gift-cards\n    category: false_promise\n"
            "    severity: serious\n    channel: agent\n    lang: en\n"
            '    match:\n      phrases: ["free gift card"]\n'
            "    message: Do not promise gift cards.\n"
        )
        assert km.post("/v1/rules/validate", json={"files": {"extra.yaml": good}}).json()["ok"] is True
        r = km.post("/v1/rules/publish", json={"files": {"extra.yaml": good}})
        assert r.status_code == 200, r.text
        assert r.json()["summary"]["rules"] == before["summary"]["rules"] + 1
        assert any(f["name"] == "extra.yaml" for f in km.get("/v1/rules").json()["files"])
        r = km.post("/v1/rules/publish", json={"files": {"extra.yaml": None}})
        assert r.json()["summary"]["rules"] == before["summary"]["rules"]


def test_health_metrics_and_openapi(service: LiveService) -> None:
    with service.client() as c:
        assert c.get("/healthz").json()["status"] == "ok"
        metrics = c.get("/metrics").text
        assert "assist_http_request_seconds" in metrics
        assert "assist_calls_live" in metrics
        spec = c.get("/openapi.json").json()
        assert "/v1/calls/{call_id}/events" in spec["paths"]
        assert "/v1/kb/search" in spec["paths"]
        page = c.get("/ui/agent.html")
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
