"""Stopping the service mid-call: followers get the call's end (reason ``aborted``) and a clean end
of stream at once, not a cut-off after uvicorn's grace period; with a drain (``ASSIST_DRAIN_S``)
the live calls first run to their end, or to the drain's, while no new call is taken."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from sidecar.kernel.bus import InMemoryBus
from tests.service_helpers import LightServer, light_server, read_sse

pytestmark = pytest.mark.unit


def test_shutdown_ends_live_calls_and_their_streams(tmp_path: Path) -> None:
    node = light_server(tmp_path, InMemoryBus())
    events, ended_after, _ = _stop_after_first_final(node, probe=False)
    assert events[-1]["event"] == "call.ended"
    assert events[-1]["data"]["payload"]["reason"] == "aborted"
    assert ended_after < 2.0, f"the stream took {ended_after:.1f} s to end"


def _stop_after_first_final(
    node: LightServer, probe: bool = True
) -> tuple[list[dict[str, Any]], float, dict[str, Any]]:
    """Stop ``node`` (as SIGTERM does) at its call's first final; what its followers saw, how long
    the call went on after, and (``probe``) what a new request met while the node was stopping."""
    seen: dict[str, Any] = {}
    with node.client() as c:
        call_id = c.post("/v1/calls", json={"recording": "refund-abuse.jsonl"}).json()["call_id"]
        events = []
        with c.stream("GET", f"/v1/calls/{call_id}/events") as r:
            for message in read_sse(r):
                events.append(message)
                if message["event"] == "transcript.final" and "stopped" not in seen:
                    stopped_at = time.monotonic()
                    node.server.should_exit = True  # as SIGTERM does
                    seen["stopped"] = True
                    if not probe:
                        continue
                    time.sleep(0.3)  # the server's loop sees it within 0.1 s
                    with node.client() as other:
                        seen["ready"] = other.get("/readyz")
                        seen["new_call"] = other.post("/v1/calls", json={"recording": "refund-abuse.jsonl"})
        went_on = time.monotonic() - stopped_at
    node.thread.join(timeout=20)
    assert not node.thread.is_alive()
    return events, went_on, seen


def test_a_drain_lets_live_calls_finish_and_refuses_new_ones(tmp_path: Path) -> None:
    node = light_server(tmp_path, InMemoryBus(), drain_s=60)
    with node.client() as c:
        assert c.get("/readyz").json() == {"status": "ready"}
    events, went_on, seen = _stop_after_first_final(node)
    assert seen["ready"].status_code == 503
    assert seen["ready"].json() == {"status": "draining"}
    assert seen["new_call"].status_code == 503, seen["new_call"].text
    assert "shutting down" in seen["new_call"].json()["detail"]
    assert events[-1]["event"] == "call.ended"
    assert events[-1]["data"]["payload"]["reason"] == "completed"
    assert went_on > 3  # the call (17 s in real time) went on to its end


def test_a_drain_ends_what_is_still_live_when_its_time_is_up(tmp_path: Path) -> None:
    node = light_server(tmp_path, InMemoryBus(), drain_s=1)
    events, went_on, _ = _stop_after_first_final(node)
    assert events[-1]["data"]["payload"]["reason"] == "aborted"
    assert 0.9 < went_on < 4.0, f"the call went on {went_on:.1f} s after a 1 s drain"
