"""Stopping the service mid-call: followers get the call's end (reason ``aborted``) and a clean end
of stream at once, not a cut-off after uvicorn's grace period."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest

from coach.engine import Coach
from knowledge.feedback import FeedbackLog
from knowledge.store import SnippetStore
from sidecar.bus import InMemoryBus
from sidecar.service.app import create_app
from sidecar.service.auth import Principal, TokenEntry, TokenTable
from sidecar.service.config import ServiceConfig, Services
from sidecar.service.serve import make_server
from tests.service_helpers import FIXTURES, free_port, read_sse

pytestmark = pytest.mark.unit


def test_shutdown_ends_live_calls_and_their_streams(tmp_path: Path) -> None:
    tokens = TokenTable([TokenEntry("supervisor-shutdown-token", Principal("sam", "supervisor"))])
    config = ServiceConfig(data_dir=tmp_path, recordings_dir=FIXTURES, kb_seed=None, tokens=tokens,
                           knowledge=False, preload_lang=None)  # fmt: skip
    store = SnippetStore(":memory:")
    services = Services(config=config, bus=InMemoryBus(), tokens=tokens, store=store,
                        feedback=FeedbackLog(store), coach=Coach(embedder=None), knowledge=None,
                        policy=None)  # fmt: skip
    port = free_port()
    server = make_server(create_app(config, services), "127.0.0.1", port)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.05)
    headers = {"Authorization": "Bearer supervisor-shutdown-token"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=20) as c:
        call_id = c.post("/v1/calls", json={"recording": "refund-abuse.jsonl"}).json()["call_id"]
        events = []
        with c.stream("GET", f"/v1/calls/{call_id}/events") as r:
            for message in read_sse(r):
                events.append(message)
                if message["event"] == "transcript.final":
                    stopped_at = time.monotonic()
                    server.should_exit = True  # as SIGTERM does
        ended_after = time.monotonic() - stopped_at
    thread.join(timeout=10)
    assert events[-1]["event"] == "call.ended"
    assert events[-1]["data"]["payload"]["reason"] == "aborted"
    assert ended_after < 2.0, f"the stream took {ended_after:.1f} s to end"
    assert not thread.is_alive()
