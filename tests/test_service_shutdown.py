"""Stopping the service mid-call: followers get the call's end (reason ``aborted``) and a clean end
of stream at once, not a cut-off after uvicorn's grace period."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sidecar.kernel.bus import InMemoryBus
from tests.service_helpers import light_server, read_sse

pytestmark = pytest.mark.unit


def test_shutdown_ends_live_calls_and_their_streams(tmp_path: Path) -> None:
    node = light_server(tmp_path, InMemoryBus())
    with node.client() as c:
        call_id = c.post("/v1/calls", json={"recording": "refund-abuse.jsonl"}).json()["call_id"]
        events = []
        with c.stream("GET", f"/v1/calls/{call_id}/events") as r:
            for message in read_sse(r):
                events.append(message)
                if message["event"] == "transcript.final":
                    stopped_at = time.monotonic()
                    node.server.should_exit = True  # as SIGTERM does
        ended_after = time.monotonic() - stopped_at
    node.thread.join(timeout=10)
    assert events[-1]["event"] == "call.ended"
    assert events[-1]["data"]["payload"]["reason"] == "aborted"
    assert ended_after < 2.0, f"the stream took {ended_after:.1f} s to end"
    assert not node.thread.is_alive()
