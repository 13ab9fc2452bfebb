"""``assist serve --role``: API nodes and media workers on one Redis (real servers, one of them a
process of its own that is killed mid-call)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from sidecar.kernel.commands import RedisCommands
from sidecar.kernel.redis_bus import RedisStreamsBus
from tests.conftest import dialogue, write_wav
from tests.redis_helpers import delete_prefix
from tests.service_helpers import LightServer, free_port, light_server, read_sse

pytestmark = pytest.mark.redis
T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]


def _ask(redis_url: str, prefix: str, question: Callable[[RedisCommands], Awaitable[T]]) -> T:
    """One question to the cluster's Redis, from the test's own (synchronous) side."""

    async def ask() -> T:
        commands = RedisCommands.from_url(redis_url, prefix=prefix)
        try:
            return await question(commands)
        finally:
            await commands.close()

    return asyncio.run(ask())


def _workers(redis_url: str, prefix: str) -> list[str]:
    async def names(commands: RedisCommands) -> list[str]:
        return [w.worker for w in await commands.workers()]

    return _ask(redis_url, prefix, names)


def _owner(redis_url: str, prefix: str, call_id: str) -> str | None:
    return _ask(redis_url, prefix, lambda commands: commands.owner(call_id))


@contextlib.contextmanager
def cluster(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """(prefix, start(name, role)): light nodes on one fresh key prefix; all stopped on exit."""
    prefix = f"test-roles-{uuid.uuid4().hex}"
    servers: list[LightServer] = []

    def start(name: str, role: str) -> LightServer:
        bus = RedisStreamsBus(redis_url, prefix=prefix)
        servers.append(light_server(tmp_path / name, bus, role=role, redis_url=redis_url,
                                    redis_prefix=prefix, node_id=name))  # fmt: skip
        return servers[-1]

    try:
        yield prefix, start
    finally:
        for server in servers:
            server.stop()
        delete_prefix(redis_url, prefix)


@contextlib.contextmanager
def process_node(
    redis_url: str, prefix: str, name: str, data: Path, drain_s: float = 0.0
) -> Iterator[subprocess.Popen[bytes]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.light_node", "--role", "media", "--port", str(port), "--redis", redis_url,
         "--prefix", prefix, "--node-id", name, "--data", str(data), "--drain-s", str(drain_s)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def _wait_for(what: str, check: Any, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _start(client: httpx.Client, realtime: bool) -> str:
    response = client.post("/v1/calls", json={"recording": "refund-abuse.jsonl", "realtime": realtime})
    assert response.status_code == 201, response.text
    return str(response.json()["call_id"])


def test_an_api_node_runs_no_calls_and_needs_redis(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "serve", "--role", "api", "--port", str(free_port())],
        cwd=ROOT, env={**os.environ, "REDIS_URL": "", "PYTHONPATH": str(ROOT), "ASSIST_DATA": str(tmp_path)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode != 0
    assert "needs the Redis bus: set REDIS_URL" in out.stderr
    assert "Traceback" not in out.stderr


def test_calls_started_on_an_api_node_run_on_a_worker_and_stream_from_the_api(
    redis_url: str, tmp_path: Path
) -> None:
    with cluster(redis_url, tmp_path) as (prefix, start):
        worker = start("w-1", "media")
        api = start("api-1", "api")
        _wait_for("the worker's heartbeat", lambda: _workers(redis_url, prefix) == ["w-1"], 15)
        with api.client() as on_api, worker.client() as on_worker:
            # no taps on an API node (a WebRTC offer is routed to a worker: see below): an
            # AudioSocket leg is a 404 there; a worker has the route
            assert on_api.post("/v1/taps/audiosocket/legs", json={}).status_code == 404
            assert on_worker.post("/v1/taps/audiosocket/legs", json={}).status_code == 403  # a supervisor
            call_id = _start(on_api, realtime=True)
            assert _owner(redis_url, prefix, call_id) == "w-1"
            _wait_for(
                "the call on the API node's board",
                lambda: on_api.get(f"/v1/calls/{call_id}").status_code == 200,
                10,
            )
            # what a worker's autoscaler reads: the calls this node runs (the API node runs none)
            assert "assist_node_calls 1.0" in on_worker.get("/metrics").text
            assert "assist_node_calls 0.0" in on_api.get("/metrics").text
            whisper = on_api.post(f"/v1/calls/{call_id}/whisper", json={"text": "offer the callback"})
            assert whisper.status_code == 202, whisper.text
            with on_api.stream("GET", f"/v1/calls/{call_id}/events") as r:
                events = list(read_sse(r))
            assert events[0]["event"] == "call.started"
            assert events[-1]["event"] == "call.ended"
            assert events[-1]["data"]["payload"]["reason"] == "completed"
            assert any(e["event"] == "whisper" for e in events)
            assert any(e["event"] == "alert" for e in events)  # coached on the worker
            assert [int(e["id"]) for e in events] == list(range(1, len(events) + 1))
            assert on_worker.get(f"/v1/calls/{call_id}").json()["ended"]  # any node serves any call
            # the ended call gives up its owner at the worker's next heartbeat
            _wait_for("the owner key gone", lambda: _owner(redis_url, prefix, call_id) is None, 10)
            missing = on_api.post("/v1/calls", json={"recording": "no-such.jsonl", "realtime": False})
            assert missing.status_code == 400  # refused on the API node, before any worker
            again = on_api.post("/v1/calls", json={"recording": "refund-abuse.jsonl", "call_id": call_id})
            assert again.status_code == 409  # the worker's refusal, as the API node's answer
            assert "already in use" in again.json()["detail"]


def test_a_media_worker_dying_mid_call_ends_its_calls_and_new_calls_go_elsewhere(
    redis_url: str, tmp_path: Path
) -> None:
    with cluster(redis_url, tmp_path) as (prefix, start):
        api = start("api-1", "api")
        # "w-a" (the process that dies) sorts first: of two idle workers, it gets the first call
        with process_node(redis_url, prefix, "w-a", tmp_path / "w-a") as doomed:
            start("w-b", "media")
            _wait_for("both workers", lambda: _workers(redis_url, prefix) == ["w-a", "w-b"], 60)
            with api.client() as on_api:
                call_id = _start(on_api, realtime=True)  # 17 s of call
                assert _owner(redis_url, prefix, call_id) == "w-a"
                with on_api.stream("GET", f"/v1/calls/{call_id}/events", timeout=60) as r:
                    events = []
                    for message in read_sse(r):
                        events.append(message)
                        if message["event"] == "transcript.final" and doomed.poll() is None:
                            doomed.send_signal(signal.SIGKILL)  # mid-call, no goodbye
                            killed_at = time.monotonic()
                ended_after = time.monotonic() - killed_at
                assert events[-1]["event"] == "call.ended"
                assert events[-1]["data"]["payload"]["reason"] == "worker_lost"
                assert ended_after < 15  # stale after 6 s without a heartbeat, swept every 2 s
                assert [int(e["id"]) for e in events] == list(range(1, len(events) + 1))
                floor = {c["call_id"]: c for c in on_api.get("/v1/calls").json()}
                assert floor[call_id]["ended"]
                _wait_for("the dead worker gone", lambda: _workers(redis_url, prefix) == ["w-b"], 10)
                second = _start(on_api, realtime=False)
                assert _owner(redis_url, prefix, second) == "w-b"


def test_a_media_worker_stopped_with_sigterm_finishes_its_calls_and_takes_no_new_one(
    redis_url: str, tmp_path: Path
) -> None:
    with cluster(redis_url, tmp_path) as (prefix, start):
        api = start("api-1", "api")
        with process_node(redis_url, prefix, "w-a", tmp_path / "w-a", drain_s=60) as stopping:
            start("w-b", "media")
            _wait_for("both workers", lambda: _workers(redis_url, prefix) == ["w-a", "w-b"], 60)
            with api.client() as on_api:
                call_id = _start(on_api, realtime=True)  # 17 s of call on w-a (it sorts first)
                assert _owner(redis_url, prefix, call_id) == "w-a"
                second = None
                with on_api.stream("GET", f"/v1/calls/{call_id}/events", timeout=60) as r:
                    events = []
                    for message in read_sse(r):
                        events.append(message)
                        if message["event"] == "transcript.final" and second is None:
                            stopping.send_signal(signal.SIGTERM)  # a scale-down, mid-call
                            # draining: still beating (its call is not "lost"), with no room
                            _wait_for("w-a full", lambda: _room(redis_url, prefix).get("w-a") == 0, 10)
                            second = _start(on_api, realtime=False)
                            assert _owner(redis_url, prefix, second) == "w-b"
                            assert stopping.poll() is None  # still running its call
                assert second is not None  # the SIGTERM was sent mid-call
                assert events[-1]["event"] == "call.ended"
                assert events[-1]["data"]["payload"]["reason"] == "completed"  # not aborted, not lost
                assert [int(e["id"]) for e in events] == list(range(1, len(events) + 1))
                # gone once its call ended, well within the drain (uvicorn exits by the signal it got)
                assert stopping.wait(timeout=30) in (0, -signal.SIGTERM)
                _wait_for("w-a off the list", lambda: _workers(redis_url, prefix) == ["w-b"], 10)


def _room(redis_url: str, prefix: str) -> dict[str, int]:
    async def room(commands: RedisCommands) -> dict[str, int]:
        return {w.worker: w.capacity for w in await commands.workers()}

    return _ask(redis_url, prefix, room)


@pytest.mark.model
@pytest.mark.espeak
def test_a_webrtc_offer_to_an_api_node_is_answered_by_a_worker_and_the_call_runs_there(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSIST_ICE_ADDRESSES", "127.0.0.1")  # the worker's tap reads it at start
    agent, customer, _ = dialogue(
        [("agent", "Thank you for calling, how can I help?"), ("customer", "I need to change my address.")]
    )
    wav = write_wav(tmp_path / "call.wav", [agent, customer])
    with cluster(redis_url, tmp_path) as (prefix, start):
        worker = start("w-1", "media")
        api = start("api-1", "api")
        _wait_for("the worker's heartbeat", lambda: _workers(redis_url, prefix) == ["w-1"], 15)
        with api.client() as on_api:
            gone = on_api.delete(
                "/v1/taps/webrtc/no-such-call", headers={"Authorization": f"Bearer {api.integrator_token}"}
            )
            assert gone.status_code == 404
            assert "no live call" in gone.json()["detail"]
            client = subprocess.Popen(
                [sys.executable, str(ROOT / "examples" / "taps" / "webrtc_client.py"), "--url", api.base,
                 "--token", api.integrator_token, "--ice-address", "127.0.0.1", "--timeout", "90", str(wav)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )  # fmt: skip
            try:
                assert client.stdout is not None
                call_id = client.stdout.readline().strip()
                assert call_id, client.stderr.read() if client.stderr else ""
                assert _owner(redis_url, prefix, call_id) == "w-1"
                with on_api.stream("GET", f"/v1/calls/{call_id}/events", timeout=120) as r:
                    events = list(read_sse(r))
                assert client.wait(timeout=60) == 0
            finally:
                if client.poll() is None:
                    client.kill()
                    client.wait()
        assert events[0]["data"]["payload"]["source"] == "webrtc"
        assert events[-1]["data"]["payload"]["reason"] == "completed"
        finals = " ".join(e["data"]["payload"]["text"] for e in events if e["event"] == "transcript.final")
        assert "address" in finals.lower()
        with worker.client() as on_worker:  # the call ran on the worker
            assert on_worker.get(f"/v1/calls/{call_id}").json()["source"] == "webrtc"
