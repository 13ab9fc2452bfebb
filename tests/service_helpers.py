"""A real ``assist serve`` for tests: uvicorn on 127.0.0.1 in a background thread, real models,
a real SQLite knowledge base seeded from the sample, the recorded calls in
``tests/fixtures/service``, and one token per role (two agents, ``alice`` and ``bob``).

Registered as a pytest plugin in ``conftest.py``; the server starts once per test session.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from sidecar.service.app import create_app
from sidecar.service.auth import Principal, TokenEntry, TokenTable
from sidecar.service.config import SAMPLES, ServiceConfig
from sidecar.service.serve import make_server

FIXTURES = Path(__file__).parent / "fixtures" / "service"
TOKENS = {
    "admin": ("admin-test-token", "root"),
    "supervisor": ("supervisor-test-token", "sam"),
    "knowledge_manager": ("km-test-token", "kim"),
    "integrator": ("integrator-test-token", "ivan"),
    "agent": ("agent-alice-token", "alice"),
    "agent2": ("agent-bob-token", "bob"),
}


class LeakWatch(logging.Handler):
    """Every log record of the test session, from any logger, checked for the tokens the tests use."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.secrets = secrets
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"{record.getMessage()} {record.exc_text or ''}"
        except Exception:  # a record that cannot be formatted says nothing
            return
        if any(secret in text for secret in self.secrets):
            self.leaks.append(f"{record.name} ({record.levelname}): {text[:300]}")


@pytest.fixture(scope="session", autouse=True)
def no_token_in_any_log_line() -> Iterator[None]:
    """Issue 13: no token reaches a log line, whatever the test, logger or level. Fails the session
    (at its last teardown) if one did."""
    watch = LeakWatch([token for token, _ in TOKENS.values()] + [LightServer.token])
    root = logging.getLogger()
    root.addHandler(watch)
    yield
    root.removeHandler(watch)
    assert not watch.leaks, f"{len(watch.leaks)} log records carried a token: {watch.leaks[:5]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveService:
    base: str
    server: uvicorn.Server
    audiosocket_port: int = 0  # the AudioSocket tap's TCP port on 127.0.0.1

    def token(self, role: str) -> str:
        return TOKENS[role][0]

    def client(self, role: str | None = None, timeout: float = 30.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token(role)}"} if role else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=timeout)

    def start_call(self, recording: str, *, agent: str = "alice", realtime: bool = True, **extra: Any) -> str:
        with self.client("supervisor") as c:
            r = c.post("/v1/calls", json={"recording": recording, "realtime": realtime, "agent_id": agent,
                                          "queue": "tests", **extra})  # fmt: skip
            assert r.status_code == 201, r.text
            return str(r.json()["call_id"])

    def wait_ended(self, call_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        with self.client("supervisor") as c:
            while time.monotonic() < deadline:
                detail: dict[str, Any] = c.get(f"/v1/calls/{call_id}").json()
                if detail["ended"]:
                    return detail
                time.sleep(0.2)
        raise AssertionError(f"call {call_id} did not end within {timeout_s} s")


def read_sse(response: httpx.Response, stop: Any = None) -> Iterator[dict[str, Any]]:
    """Parse an SSE body into messages ``{id, event, data}`` (data JSON-decoded)."""
    message: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in message:
                message["data"] = json.loads(message["data"])
                yield message
            message = {}
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(": ")
        if key in ("id", "event", "data"):
            message[key] = value


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """One real service shared by the suite (models load once)."""
    yield from run_service(tmp_path_factory)


def run_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """A real service on loopback with the sample knowledge base and the fixture recordings
    (generator: yields once, stops the server after)."""
    data = tmp_path_factory.mktemp("service-data")
    recordings = tmp_path_factory.mktemp("recordings")
    for path in FIXTURES.glob("*.jsonl"):
        shutil.copy(path, recordings / path.name)
    tokens = TokenTable([TokenEntry(tok, Principal(name, "agent" if role == "agent2" else role))  # type: ignore[arg-type]
                         for role, (tok, name) in TOKENS.items()])  # fmt: skip
    config = ServiceConfig(
        data_dir=data,
        recordings_dir=recordings,
        kb_seed=SAMPLES / "sample-kb.jsonl",
        tokens=tokens,
        preload_lang=None,  # these calls are transcripts: no ASR model needed
        audiosocket_port=(audiosocket_port := free_port()),
    )
    port = free_port()
    server = make_server(create_app(config), "127.0.0.1", port)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), name="assist-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 240
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test service did not start")
        time.sleep(0.1)
    yield LiveService(f"http://127.0.0.1:{port}", server, audiosocket_port)
    server.should_exit = True
    thread.join(timeout=30)


@dataclass
class LightServer:
    """A real service without the ML models (coach without embeddings, no knowledge): for
    tests of the plumbing (shutdown, buses, nodes). ``token`` is a supervisor's."""

    base: str
    server: uvicorn.Server
    thread: threading.Thread
    token: str = "supervisor-light-token"
    integrator_token: str = "integrator-light-token"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.token}"}, timeout=20)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def light_app(data_dir: Path, bus: Any, **config: Any) -> FastAPI:
    """The service's app on light services; ``config``: ``ServiceConfig`` fields (role, ...)."""
    from coach.engine import Coach
    from knowledge.feedback import FeedbackLog
    from knowledge.store import SnippetStore
    from sidecar.service.config import Services

    tokens = TokenTable([TokenEntry(LightServer.token, Principal("sam", "supervisor")),
                         TokenEntry(LightServer.integrator_token, Principal("ivy", "integrator"))])  # fmt: skip
    cfg = ServiceConfig(data_dir=data_dir, recordings_dir=FIXTURES, kb_seed=None, tokens=tokens,
                        knowledge=False, preload_lang=None, **config)  # fmt: skip
    store = SnippetStore(":memory:")
    services = Services(config=cfg, bus=bus, tokens=tokens, store=store, feedback=FeedbackLog(store),
                        coach=Coach(embedder=None), knowledge=None, policy=None)  # fmt: skip
    return create_app(cfg, services)


def light_server(data_dir: Path, bus: Any, **config: Any) -> LightServer:
    port = free_port()
    server = make_server(light_app(data_dir, bus, **config), "127.0.0.1", port)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the light test service did not start")
        time.sleep(0.05)
    return LightServer(f"http://127.0.0.1:{port}", server, thread)
