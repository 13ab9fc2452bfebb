"""A real service for the review and report tests: uvicorn on 127.0.0.1 in a thread with its own
event loop (so a test can publish on the service's in-memory bus), the coach without embedding
models, the call store in the test's data folder, one token per user, a recordings folder with the
service's transcript fixtures and one WAV (``rev-a1.wav``). Stored calls are saved
through the service's own ``CallStore`` (``save``, what the live writer and ``assist qa run``
call), built with ``tests.store_helpers.make_record``."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from sidecar.kernel.events import Event
from sidecar.qa.watch import CONFIG_ENV
from sidecar.service.auth import Principal, Role, TokenEntry, TokenTable
from sidecar.service.config import ServiceConfig
from sidecar.store.record import CallRecord
from tests.service_helpers import FIXTURES, free_port
from tests.store_helpers import make_record

USERS: dict[str, tuple[str, Role]] = {  # name: (token, role)
    "alice": ("review-alice-token", "agent"),
    "bob": ("review-bob-token", "agent"),
    "quinn": ("review-qa-token", "qa"),
    "sam": ("review-supervisor-token", "supervisor"),
    "kim": ("review-km-token", "knowledge_manager"),
}


@dataclass
class ReviewService:
    base: str
    app: Any
    services: Any
    loop: asyncio.AbstractEventLoop

    def token(self, user: str) -> str:
        return USERS[user][0]

    def client(self, user: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.token(user)}"}, timeout=30
        )

    def save(self, record: CallRecord) -> None:
        assert self.app.state.call_store.store.save(record), f"call {record.call_id} was already stored"

    def publish(self, event: Event) -> Event:
        """An event on the service's bus, from the test's thread."""
        future = asyncio.run_coroutine_threadsafe(self.services.bus.publish(event), self.loop)
        published: Event = future.result(timeout=10)
        return published


def start_review_service(
    data: Path, warnings_config: Path | None = None
) -> tuple[ReviewService, Any, threading.Thread]:
    """``warnings_config``: the early-warning thresholds file its ``WarningWatch`` reads
    (``ASSIST_EARLY_WARNINGS``, set while the service starts)."""
    from coach.engine import Coach
    from knowledge.feedback import FeedbackLog
    from knowledge.store import SnippetStore
    from sidecar.kernel.bus import InMemoryBus
    from sidecar.service.app import create_app
    from sidecar.service.config import Services
    from sidecar.service.serve import make_server

    tokens = TokenTable([TokenEntry(token, Principal(name, role)) for name, (token, role) in USERS.items()])
    recordings = data / "recordings"
    recordings.mkdir(exist_ok=True)
    for path in FIXTURES.glob("*.jsonl"):
        shutil.copy(path, recordings / path.name)
    write_wav(recordings / PLAYABLE, seconds=2.0)  # rev-a1's recording (make_record names it so)
    config = ServiceConfig(data_dir=data, recordings_dir=recordings, kb_seed=None, tokens=tokens, knowledge=False,
                           preload_lang=None)  # fmt: skip
    store = SnippetStore(":memory:")
    services = Services(config=config, bus=InMemoryBus(), tokens=tokens, store=store, feedback=FeedbackLog(store),
                        coach=Coach(embedder=None, judge=False), knowledge=None, policy=None)  # fmt: skip
    app = create_app(config, services)
    server = make_server(app, "127.0.0.1", port := free_port())
    loop = asyncio.new_event_loop()
    thread = threading.Thread(
        target=lambda: loop.run_until_complete(server.serve()), name="review-serve", daemon=True
    )
    before = os.environ.get(CONFIG_ENV)
    if warnings_config is not None:
        os.environ[CONFIG_ENV] = str(warnings_config)
    try:
        thread.start()
        deadline = time.monotonic() + 120
        while not (server.started and getattr(app.state, "call_store", None) is not None):
            assert thread.is_alive(), "the review test service did not start"
            assert time.monotonic() < deadline, "the review test service did not start in time"
            time.sleep(0.05)
    finally:
        if before is None:
            os.environ.pop(CONFIG_ENV, None)
        else:
            os.environ[CONFIG_ENV] = before
    return ReviewService(f"http://127.0.0.1:{port}", app, services, loop), server, thread


def review_service(data: Path, warnings_config: Path | None = None) -> Iterator[ReviewService]:
    """For a module-scoped fixture: the service, stopped at the end."""
    service, server, thread = start_review_service(data, warnings_config)
    yield service
    server.should_exit = True
    thread.join(timeout=30)


DAY = 86_400.0
PLAYABLE = "rev-a1.wav"


def write_wav(path: Path, seconds: float, rate: int = 8000) -> None:
    """A quiet mono 16-bit WAV (a recording the review page can play)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))


def day_start(days_ago: int, now: float | None = None) -> float:
    """UTC midnight ``days_ago`` days before today (the reports' day buckets at offset 0)."""
    t = time.time() if now is None else now
    return (t // DAY - days_ago) * DAY


@dataclass(frozen=True)
class Planned:
    call_id: str
    agent: str
    queue: str
    started: float
    score: float
    abusive: bool
    customer_ref: str | None


def planned_calls() -> list[Planned]:
    """Calls over two weeks: alice's calls on two days (one abusive), bob's on one day; the
    customer ``cust-r`` calls twice within 7 days (alice, then bob): alice's call is a repeat."""
    d2, d1, d9 = day_start(2) + 10 * 3600, day_start(1) + 9 * 3600, day_start(9) + 11 * 3600
    return [
        Planned("rev-a1", "alice", "billing", d2, 80.0, True, "cust-r"),
        Planned("rev-a2", "alice", "billing", d2 + 3600, 90.0, False, "cust-x"),
        Planned("rev-a3", "alice", "returns", d9, 60.0, False, None),
        Planned("rev-b1", "bob", "returns", d1, 70.0, False, "cust-r"),
        Planned("rev-b2", "bob", "returns", d1 + 600, 95.0, True, "cust-y"),
    ]


def store_planned(service: ReviewService) -> list[Planned]:
    plan = planned_calls()
    for p in plan:
        service.save(make_record(p.call_id, agent=p.agent, queue=p.queue, started=p.started, score=p.score,
                                 abusive=p.abusive, customer_ref=p.customer_ref))  # fmt: skip
    return plan
