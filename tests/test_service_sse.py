"""SSE over real HTTP: resume with Last-Event-ID mid-call loses and repeats nothing; the floor
stream carries alerts and risk changes."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from tests.service_helpers import LiveService, read_sse

pytestmark = pytest.mark.model


def test_reconnect_with_last_event_id_misses_nothing_and_repeats_nothing(service: LiveService) -> None:
    call_id = service.start_call("refund-abuse.jsonl", realtime=True)
    auth = {"Authorization": f"Bearer {service.token('agent')}"}
    first: list[dict[str, Any]] = []
    with (
        httpx.Client(base_url=service.base, timeout=30.0, headers=auth) as c,
        c.stream("GET", f"/v1/calls/{call_id}/events") as r,
    ):
        assert r.headers["content-type"].startswith("text/event-stream")
        for message in read_sse(r):
            first.append(message)
            if message["event"] == "transcript.final" and message["data"]["channel"] == "customer":
                break  # drop the connection mid-call
    assert first[0]["event"] == "call.started"
    last_id = first[-1]["id"]
    rest: list[dict[str, Any]] = []
    with (
        httpx.Client(base_url=service.base, timeout=30.0, headers={**auth, "Last-Event-ID": last_id}) as c,
        # as a browser's EventSource reconnects: its first URL (?after=0) and the last id seen
        c.stream("GET", f"/v1/calls/{call_id}/events", params={"after": 0}) as r,
    ):
        rest = list(read_sse(r))  # the stream ends after call.ended
    assert rest, "nothing after the reconnect"
    assert rest[-1]["event"] == "call.ended"
    seqs = [int(m["id"]) for m in first + rest]
    assert seqs == list(range(1, len(seqs) + 1)), "a gap or a repeat across the reconnect"
    assert all(int(m["id"]) == m["data"]["seq"] and m["event"] == m["data"]["type"] for m in first + rest)
    # the same call read whole, after the fact, is the same sequence of events
    with (
        httpx.Client(base_url=service.base, timeout=30.0, headers=auth) as c,
        c.stream("GET", f"/v1/calls/{call_id}/events", params={"after": 0}) as r,
    ):
        whole = [m["data"] for m in read_sse(r)]
    assert whole == [m["data"] for m in first + rest]
    assert any(m["event"] == "alert" and m["data"]["payload"]["severity"] == "fatal" for m in first + rest)


def test_bad_last_event_id_is_400(service: LiveService) -> None:
    call_id = service.start_call("polite-refund.jsonl", realtime=False)
    service.wait_ended(call_id)
    with service.client("supervisor") as c:
        r = c.get(f"/v1/calls/{call_id}/events", headers={"Last-Event-ID": "not-a-number"})
        assert r.status_code == 400
        assert "Last-Event-ID" in r.json()["detail"]
        # after the last event of an ended call: the stream is empty and closes at once
        r = c.get(f"/v1/calls/{call_id}/events", params={"after": 10_000})
        assert r.status_code == 200
        assert "event:" not in r.text


def test_floor_stream_carries_alerts_and_call_summaries(service: LiveService) -> None:
    messages: list[dict[str, Any]] = []
    connected = threading.Event()
    done = threading.Event()

    def follow() -> None:
        token = service.token("supervisor")
        with (
            httpx.Client(base_url=service.base, timeout=30.0) as c,
            c.stream("GET", "/v1/floor/events", params={"access_token": token}) as r,
        ):
            connected.set()
            for message in read_sse(r):
                messages.append(message)
                data = message["data"]
                if message["event"] == "call" and data["ended"] and target and data["call_id"] == target[0]:
                    done.set()
                    return

    target: list[str] = []
    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    assert connected.wait(10)
    target.append(service.start_call("refund-abuse.jsonl", realtime=False))
    assert done.wait(60), "the floor never said the call ended"
    mine = [m for m in messages if m["data"]["call_id"] == target[0]]
    alerts = [m for m in mine if m["event"] == "alert"]
    assert any(a["data"]["severity"] == "fatal" for a in alerts)
    risks = [m["data"]["risk"] for m in mine if m["event"] == "call"]
    assert risks[0] < max(risks)
    assert max(risks) >= 0.6
    ids = [int(m["id"]) for m in messages]
    assert ids == sorted(ids)
    assert len(ids) == len(set(ids))
    with service.client("agent") as c:  # agents have no floor
        assert c.get("/v1/floor/events").status_code == 403
