"""What the service hands the taps: its calls as a tap sees them (``ServiceCalls``: one check before
a tap accepts a call) and the auth the taps' routes apply (503 while starting, then 401 / 403)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from coach.engine import Coach
from sidecar.calls.access import AccessDeniedError, Caller, TapPermission
from sidecar.calls.errors import TooManyCallsError
from sidecar.calls.live_call import CallMeta
from sidecar.calls.registry import LiveCalls
from sidecar.kernel.bus import CallIdInUseError, InMemoryBus
from sidecar.kernel.events import CallStarted, Event
from sidecar.service.board import CallBoard
from sidecar.service.tap_access import ServiceCalls
from sidecar.taps.access import TapAccess, install_access
from sidecar.taps.chat import ChatCall
from sidecar.taps.routes import routers

pytestmark = pytest.mark.unit


async def test_check_open_refuses_an_id_in_use_here_or_on_the_board_and_a_full_service() -> None:
    live = LiveCalls(InMemoryBus(), Coach(embedder=None, judge=False), None, None, max_calls=2)
    board = CallBoard()
    started = CallStarted("x", "en", ("agent", "customer"), True, {})
    await board.apply(Event("call.started", "elsewhere", None, 0, 0, started, seq=1, emitted_at=1.0))
    closing = asyncio.Event()
    calls = ServiceCalls(live, board, closing)
    calls.check_open("fresh")
    with pytest.raises(CallIdInUseError, match="call id elsewhere is already in use"):
        calls.check_open("elsewhere")  # another node's call, on the board
    call = await calls.open_call(CallMeta("chat", "here"), ("agent", "customer"), kind=ChatCall)
    assert calls.get("here") is call
    assert calls.in_use("here")
    with pytest.raises(CallIdInUseError):
        calls.check_open("here")
    calls.check_open("fresh")  # one running, room for one more
    with pytest.raises(TooManyCallsError, match="at most 2 calls"):
        calls.check_open("fresh", joining=1)  # a tap's call still joining counts
    await call.end()
    assert calls.get("here") is None
    assert not calls.closing
    closing.set()
    assert calls.closing


@dataclass(frozen=True)
class Who:
    name: str
    role: str


def integrators_only(token: str | None, permission: TapPermission) -> Caller:
    if token != "integrator-token":
        raise AccessDeniedError(401, "missing or unknown bearer token")
    if permission != "taps.connect":
        raise AccessDeniedError(403, f"the integrator role may not do this ({permission})", "integrator")
    return Who("int-1", "integrator")


def test_tap_routes_wait_for_the_service_then_apply_the_auth_it_handed_in() -> None:
    app = FastAPI()
    for router in routers:
        app.include_router(router)
    client = TestClient(app)
    listen = "/v1/taps/webrtc/c1/listen"
    offer = {"sdp": "v=0", "type": "offer"}
    assert client.post(listen, json=offer).status_code == 503  # nothing handed in yet: starting
    calls = ServiceCalls(
        LiveCalls(InMemoryBus(), Coach(embedder=None, judge=False), None, None), CallBoard(), asyncio.Event()
    )
    install_access(app, TapAccess(calls, integrators_only))
    refused = client.post(listen, json=offer)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    forbidden = client.post(listen, json=offer, headers={"Authorization": "Bearer integrator-token"})
    assert forbidden.status_code == 403
    assert forbidden.json()["detail"] == "the integrator role may not do this (calls.control)"
    allowed = client.get("/v1/taps/livekit/sessions/c1", headers={"Authorization": "Bearer integrator-token"})
    assert allowed.status_code == 404  # past the auth: no such session
