"""Two API nodes on one Redis Streams bus (DESIGN.md's scale-out): a call played on one node is
listed, detailed and streamed, with resume, by the other."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecar.kernel.events import Event
from sidecar.kernel.redis_bus import RedisStreamsBus
from tests.redis_helpers import delete_prefix, own_redis
from tests.service_helpers import LightServer, light_server, read_sse

pytestmark = pytest.mark.redis


@contextlib.contextmanager
def nodes_on_one_redis(redis_url: str, tmp_path: Path, name: str) -> Iterator[Callable[[str], LightServer]]:
    """``start(node)`` runs a light API node on one fresh key prefix of the test Redis; on exit
    every node started is stopped and the prefix's keys are deleted."""
    prefix = f"test-{name}-{uuid.uuid4().hex}"
    started: list[LightServer] = []

    def start(node: str) -> LightServer:
        started.append(light_server(tmp_path / node, RedisStreamsBus(redis_url, prefix=prefix)))
        return started[-1]

    try:
        yield start
    finally:
        for server in started:
            server.stop()
        delete_prefix(redis_url, prefix)


def test_any_node_serves_a_call_played_on_another(redis_url: str, tmp_path: Path) -> None:
    with nodes_on_one_redis(redis_url, tmp_path, "nodes") as start:
        a, b = start("a"), start("b")
        with a.client() as on_a, b.client() as on_b:
            call_id = on_a.post("/v1/calls", json={"recording": "refund-abuse.jsonl", "realtime": False})
            call_id = call_id.json()["call_id"]
            deadline = time.monotonic() + 5  # node b folds the call in from the bus a moment later
            while on_b.get(f"/v1/calls/{call_id}").status_code != 200:
                assert time.monotonic() < deadline, "node b never heard of the call"
                time.sleep(0.05)
            with on_b.stream("GET", f"/v1/calls/{call_id}/events") as r:
                first = list(read_sse(r))
            assert first[0]["event"] == "call.started"
            assert first[-1]["event"] == "call.ended"
            assert [int(m["id"]) for m in first] == list(range(1, len(first) + 1))
            assert any(m["event"] == "alert" and m["data"]["payload"]["severity"] == "fatal" for m in first)
            middle = first[len(first) // 2]["id"]
            with on_b.stream("GET", f"/v1/calls/{call_id}/events", headers={"Last-Event-ID": middle}) as r:
                rest = list(read_sse(r))
            assert [m["data"] for m in rest] == [m["data"] for m in first[int(middle) :]]
            detail_b = on_b.get(f"/v1/calls/{call_id}").json()
            detail_a = on_a.get(f"/v1/calls/{call_id}").json()
            assert detail_b["ended"]
            assert detail_b["alert_counts"] == detail_a["alert_counts"]
            assert call_id in {c["call_id"] for c in on_b.get("/v1/calls").json()}


def test_two_nodes_starting_one_explicit_call_id_have_one_winner(redis_url: str, tmp_path: Path) -> None:
    """The id is claimed atomically on the shared bus: no two nodes run (and coach) the same call."""
    with nodes_on_one_redis(redis_url, tmp_path, "claim") as start:
        a, b = start("a"), start("b")
        with a.client() as on_a, b.client() as on_b, ThreadPoolExecutor(2) as pool:
            body = {"recording": "refund-abuse.jsonl", "realtime": False, "call_id": "claimed-once"}
            answers = list(pool.map(lambda c: c.post("/v1/calls", json=body), (on_a, on_b)))
            codes = sorted(r.status_code for r in answers)
            assert codes == [201, 409], [r.text for r in answers]
            refused = next(r for r in answers if r.status_code == 409)
            assert "already in use" in refused.json()["detail"]
            winner = on_a if answers[0].status_code == 201 else on_b
            assert winner.get("/v1/calls/claimed-once").status_code == 200
            again = on_b.post("/v1/calls", json=body)  # and later, while its events are retained
            assert again.status_code == 409, again.text


def test_an_api_node_restarting_mid_call_loses_nothing(redis_url: str, tmp_path: Path) -> None:
    """Fault test: node b, streaming a live call played on node a, goes away mid-call (its SSE
    stream is cut); a fresh node on the same Redis resumes the stream from the last id seen, and
    the events read across both nodes are the call's whole stream: gap-free, none twice."""
    with nodes_on_one_redis(redis_url, tmp_path, "restart") as start:
        a, b = start("a"), start("b")
        with a.client() as on_a:
            started = on_a.post("/v1/calls", json={"recording": "refund-abuse.jsonl", "realtime": True})
        assert started.status_code == 201, started.text
        call_id = started.json()["call_id"]
        seen: list[dict[str, Any]] = []

        def follow_on_b() -> None:
            with b.client() as on_b:
                deadline = time.monotonic() + 10
                while on_b.get(f"/v1/calls/{call_id}").status_code != 200 and time.monotonic() < deadline:
                    time.sleep(0.05)
                with (
                    contextlib.suppress(httpx.HTTPError),
                    on_b.stream("GET", f"/v1/calls/{call_id}/events") as r,
                ):
                    for message in read_sse(r):
                        seen.append(message)

        follower = threading.Thread(target=follow_on_b, daemon=True)
        follower.start()
        deadline = time.monotonic() + 15
        while len(seen) < 3:
            assert time.monotonic() < deadline, "node b streamed nothing"
            time.sleep(0.05)
        b.stop()  # the node goes away mid-call, and its stream with it
        follower.join(timeout=20)
        assert not follower.is_alive(), "node b's stream did not end when the node stopped"
        assert seen[-1]["event"] != "call.ended", "the call ended before the node stopped: no fault tested"
        b2 = start("b2")
        with b2.client() as on_b2:
            headers = {"Last-Event-ID": seen[-1]["id"]}
            with on_b2.stream("GET", f"/v1/calls/{call_id}/events", headers=headers) as r:
                assert r.status_code == 200
                rest = list(read_sse(r))
        assert rest[-1]["event"] == "call.ended"
        ids = [int(m["id"]) for m in seen + rest]
        assert ids == list(range(1, len(ids) + 1))
        with a.client() as on_a, on_a.stream("GET", f"/v1/calls/{call_id}/events") as r:
            whole = list(read_sse(r))
        assert [m["data"] for m in seen + rest] == [m["data"] for m in whole]


class WatchedBus(RedisStreamsBus):
    """A node's bus that keeps what each publish returned, and each publish that raised."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.published: list[Event] = []
        self.failed: list[str] = []

    async def publish(self, event: Event) -> Event:
        try:
            stamped = await super().publish(event)
        except Exception as exc:
            self.failed.append(f"{event.type}: {exc!r}")
            raise
        self.published.append(stamped)
        return stamped


class SseFollower(threading.Thread):
    """A browser's EventSource on one call: reads the stream and, when it breaks, reconnects
    with ``Last-Event-ID`` (as the browser does), until ``call.ended`` or ``deadline_s``."""

    def __init__(self, node: LightServer, call_id: str, deadline_s: float, last_id: str = "") -> None:
        super().__init__(daemon=True)
        self.node, self.call_id, self.deadline = node, call_id, time.monotonic() + deadline_s
        self.last_id = last_id  # resume after this id from the start (a browser that was away)
        self.seen: list[dict[str, Any]] = []
        self.reconnects = 0

    def run(self) -> None:
        with self.node.client() as client:
            while time.monotonic() < self.deadline:
                last_id = self.seen[-1]["id"] if self.seen else self.last_id
                headers = {"Last-Event-ID": last_id} if last_id else {}
                with (
                    contextlib.suppress(httpx.HTTPError),
                    client.stream("GET", f"/v1/calls/{self.call_id}/events", headers=headers) as r,
                ):
                    for message in read_sse(r):
                        self.seen.append(message)
                        if message["event"] == "call.ended":
                            return
                self.reconnects += 1
                time.sleep(0.5)


def followed_to_its_end(node: LightServer, follower: SseFollower, timeout_s: float) -> dict[str, Any]:
    """Once ``follower`` has read its call's end (within ``timeout_s``): the call's detail on ``node``."""
    follower.join(timeout=timeout_s)
    assert not follower.is_alive(), f"the call's stream never ended: {follower.seen[-3:]}"
    with node.client() as client:
        detail: dict[str, Any] = client.get(f"/v1/calls/{follower.call_id}").json()
    return detail


def play_and_follow_to_5_5_s(node: LightServer) -> tuple[str, SseFollower]:
    """Play the abusive-refund call (17 s) live on ``node``, follow its stream, return once the
    stream has the customer's first turn (it ends 5.5 s into the call)."""
    with node.client() as client:
        started = client.post("/v1/calls", json={"recording": "refund-abuse.jsonl", "realtime": True})
    assert started.status_code == 201, started.text
    call_id = started.json()["call_id"]
    follower = SseFollower(node, call_id, deadline_s=35)
    follower.start()
    deadline = time.monotonic() + 15
    while not any(m["event"] == "transcript.final" and m["data"]["t_end"] >= 5.5 for m in follower.seen):
        assert time.monotonic() < deadline, f"the node streamed too little: {follower.seen}"
        time.sleep(0.05)
    return call_id, follower


@pytest.mark.parametrize("how", ["shutdown", "kill"])
def test_redis_restarting_mid_call_loses_nothing(tmp_path: Path, how: str) -> None:
    """Fault test: the node's Redis (persisted: append-only file, fsync always) stops mid-call
    (SIGTERM, a clean shutdown, or SIGKILL, as in a crash) and comes back on the same port and
    files 3 s later. The call plays on to its end; every event the node published is in the call's stream
    once, with the ids gap-free; a follower that kept reading (reconnecting with Last-Event-ID if
    its stream broke) reads that whole stream; a browser that lost its stream when Redis went
    away resumes it with Last-Event-ID on a node started after the restart, and reads the rest
    live, none missing and none twice; and a node started after the call reads it whole."""
    with own_redis(tmp_path / "redis") as server:
        bus = WatchedBus(server.url, prefix="restart")
        a = light_server(tmp_path / "a", bus)
        try:
            call_id, follower = play_and_follow_to_5_5_s(a)
            down_at = time.time()
            away = list(follower.seen)  # what a browser had when its stream went with Redis
            server.stop(how)
            time.sleep(3.0)  # the agent's turn ending 7.5 s into the call falls in here
            server.start()
            up_at = time.time()
            b = light_server(tmp_path / "b", RedisStreamsBus(server.url, prefix="restart"))
            try:
                resumed = SseFollower(b, call_id, deadline_s=30, last_id=away[-1]["id"])
                resumed.start()
                follower.join(timeout=30)
                resumed.join(timeout=30)
                assert not follower.is_alive(), f"the call's stream never ended: {follower.seen[-3:]}"
                assert not resumed.is_alive(), f"the resumed stream never ended: {resumed.seen[-3:]}"
                with b.client() as on_b, on_b.stream("GET", f"/v1/calls/{call_id}/events") as r:
                    on_new_node = list(read_sse(r))
            finally:
                b.stop()
            with a.client() as on_a:
                detail = on_a.get(f"/v1/calls/{call_id}").json()
        finally:
            a.stop()  # (the node closes its bus)
    seen = follower.seen
    assert bus.failed == [], "publishes failed while Redis restarted"
    ids = [int(m["id"]) for m in seen]
    assert ids == list(range(1, len(ids) + 1)), "ids with a gap or twice"
    assert [m["data"] for m in seen] == [json.loads(e.to_json()) for e in bus.published]
    assert [m["data"] for m in away + resumed.seen] == [m["data"] for m in seen]
    assert [m["data"] for m in on_new_node] == [m["data"] for m in seen]
    assert seen[-1]["data"]["payload"]["reason"] == "completed"
    finals = [m for m in seen if m["event"] == "transcript.final"]
    assert len(finals) == 8, "a turn of the call is missing"
    assert any(m["data"]["emitted_at"] < down_at for m in finals)
    assert any(m["data"]["emitted_at"] > up_at for m in finals), "nothing came after the restart"
    call_began = seen[0]["data"]["emitted_at"]  # a turn is due call_began + t_end (wall clock)
    waited = [m for m in finals if down_at < call_began + m["data"]["t_end"] < up_at]
    assert waited, "no turn fell in the outage"
    assert bus.outages >= 1, "the node did not wait for Redis"
    assert detail["ended"], "the node's board lost the call's end"


def test_redis_away_longer_than_the_bus_waits_fails_the_call_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Fault test, the bounded loss: Redis stays away (4 s) longer than the node's bus waits for it
    (``reconnect_s``, 0.5 s here). The transcript the bus gave up on is lost and the call cannot go
    on: the node logs that the call failed, and once Redis is back the call ends with reason
    ``error`` and ``bus_unavailable`` in its stats, so no follower waits for a call that died; the
    stream holds every event that was published, ids gap-free."""
    with own_redis(tmp_path / "redis") as server:
        bus = WatchedBus(server.url, prefix="away", reconnect_s=0.5)
        a = light_server(tmp_path / "a", bus)
        try:
            call_id, follower = play_and_follow_to_5_5_s(a)
            server.stop("kill")
            time.sleep(4.0)  # a turn is due in the first 2 s of it (every 2 s to 11.5 s): it gives up
            server.start()
            detail = followed_to_its_end(a, follower, 20)
        finally:
            a.stop()
    seen = follower.seen
    assert bus.failed, "the bus never gave up"
    assert all("RedisUnavailableError" in f for f in bus.failed), bus.failed
    assert any(f"call {call_id} failed" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert [int(m["id"]) for m in seen] == list(range(1, len(seen) + 1))
    assert [m["data"] for m in seen] == [json.loads(e.to_json()) for e in bus.published]
    end = seen[-1]["data"]["payload"]
    assert (seen[-1]["event"], end["reason"], end["stats"]) == (
        "call.ended",
        "error",
        {"bus_unavailable": 1.0},
    )
    assert detail["ended"], "the node's board lost the call's end"


def test_a_tap_call_ending_while_redis_is_away_ends_on_the_bus_once_it_is_back(tmp_path: Path) -> None:
    """Fault test: a tap's call (a chat, the tap without speech models) ends while Redis is away
    longer than the bus waits (0.5 s here). The socket closes as usual, the node stops running
    the call, and once Redis is back the call's ``call.ended`` is on its stream (reason
    ``completed``, ``bus_unavailable`` in its stats): no follower waits for a call that ended."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    call_id = f"chat-away-{uuid.uuid4().hex[:8]}"
    with own_redis(tmp_path / "redis") as server:
        bus = WatchedBus(server.url, prefix="tap-away", reconnect_s=0.5)
        a = light_server(tmp_path / "a", bus)
        try:
            url = a.base.replace("http://", "ws://") + "/v1/taps/chat"
            auth = {"Authorization": f"Bearer {LightServer.integrator_token}"}
            with connect(url, additional_headers=auth, open_timeout=30) as ws:
                ws.send(json.dumps({"type": "start", "call_id": call_id, "agent_id": "alice", "lang": "en"}))
                assert json.loads(ws.recv(timeout=30))["type"] == "started"
                ws.send(
                    json.dumps(
                        {
                            "type": "message",
                            "channel": "customer",
                            "text": "my parcel never came",
                            "ts": round(time.time() * 1000),
                        }
                    )
                )
                assert json.loads(ws.recv(timeout=30))["type"] == "ack"
                server.stop("kill")
                ws.send(json.dumps({"type": "end"}))
                with contextlib.suppress(ConnectionClosed, TimeoutError):
                    while True:  # until the node closes the socket (after its 0.5 s wait)
                        ws.recv(timeout=20)
            with a.client() as on_a:  # the node lets the call go (the socket may close first)
                deadline = time.monotonic() + 10
                while "assist_node_calls 0.0" not in on_a.get("/metrics").text:
                    assert time.monotonic() < deadline, "the node still runs the call"
                    time.sleep(0.1)
            time.sleep(1.0)  # the end's retries meet a Redis that is still away
            server.start()
            follower = SseFollower(a, call_id, deadline_s=30)
            follower.start()
            detail = followed_to_its_end(a, follower, 35)
        finally:
            a.stop()
    seen = follower.seen
    assert [int(m["id"]) for m in seen] == list(range(1, len(seen) + 1))
    assert seen[0]["event"] == "call.started"
    assert [m["data"]["payload"]["text"] for m in seen if m["event"] == "transcript.final"] == [
        "my parcel never came"
    ]
    end = seen[-1]
    assert end["event"] == "call.ended"
    assert end["data"]["payload"]["reason"] == "completed"
    assert end["data"]["payload"]["stats"]["bus_unavailable"] == 1.0
    assert end["data"]["payload"]["stats"]["customer_messages"] == 1.0
    assert any("call.ended" in f for f in bus.failed), "the first try at the end did not meet Redis away"
    assert detail["ended"], "the node's board lost the call's end"
