"""The LiveKit tap up to the SDK's boundary (no LiveKit server can run here, so no room is ever
joined): the track router, the audio pump and the call feed with real ``rtc.AudioFrame``s, a
call fed through them on the running service (real ASR, real coach), the REST control, and the
SDK's own connect failing against 127.0.0.1 (a closed port, a fake signalling endpoint that
refuses the token, a listener that never answers).

Fakes, named as such: ``RecordingCall`` (records what a pump pushes), the fake track handles
(plain strings handed to ``open_frames``), ``FakeSignal401`` (an HTTP server that refuses every
request as LiveKit refuses a bad token). Join tokens are minted here as LiveKit mints them
(HS256 JWTs) with a made-up secret: no server ever checks them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import pytest
from livekit import rtc

from sidecar.audio import Pcm16, resample
from sidecar.calls.errors import CallNotLiveError
from sidecar.calls.live_call import CallMeta
from sidecar.kernel.events import Channel
from sidecar.service.context import AppContext
from sidecar.taps.livekit import (
    AudioPump,
    CallFeed,
    ChannelMapping,
    Ignored,
    LiveKitTap,
    ParticipantLeft,
    Party,
    RoomLeft,
    Routed,
    StopRequested,
    TokenError,
    TrackRouter,
    TrackSubscribed,
    TrackUnsubscribed,
    call_id_for,
    disconnect_reason,
    read_join_token,
)
from tests.conftest import dialogue
from tests.service_helpers import LiveService, free_port
from tests.tap_helpers import CallFollower, finals_text, paced, word_overlap, words

SECRET = b"a-made-up-api-secret-no-server-checks"
RATE = 48_000
FRAME = 480  # 10 ms at 48 kHz, as LiveKit's streams deliver them


def mint_token(identity: str = "assist-tap", room: str = "support-42", *, ttl_s: float = 6 * 3600.0,
               **video: Any) -> str:  # fmt: skip
    """A LiveKit join token (HS256 JWT; claims as LiveKit's server SDKs write them)."""
    grants = {
        "room": room,
        "roomJoin": True,
        "canSubscribe": True,
        "canPublish": False,
        "hidden": True,
        **video,
    }
    claims = {"iss": "APIfake", "sub": identity, "nbf": int(time.time()) - 10,
              "exp": int(time.time() + ttl_s), "video": {k: v for k, v in grants.items() if v is not None}}  # fmt: skip

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(SECRET, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def speech_frames(pcm16k: Pcm16) -> list[rtc.AudioFrame]:
    """16 kHz speech as the SDK's own 10 ms mono frames at 48 kHz."""
    pcm = resample(pcm16k, 16_000, RATE)
    pcm = np.concatenate([pcm, np.zeros(-pcm.size % FRAME, dtype=np.int16)])
    frames = []
    for start in range(0, pcm.size, FRAME):
        frame = rtc.AudioFrame.create(RATE, 1, FRAME)
        np.frombuffer(frame.data, dtype=np.int16)[:] = pcm[start : start + FRAME]
        frames.append(frame)
    return frames


class RecordingCall:
    """A fake call: records every push (what ``LiveCall.push`` would get)."""

    def __init__(self, ended_after: int | None = None) -> None:
        self.call_id = "fake-call"
        self.pushed: list[tuple[Channel, Pcm16, int]] = []
        self.ended_after = ended_after

    async def push(self, channel: Channel, pcm: Pcm16, rate: int) -> None:
        if self.ended_after is not None and len(self.pushed) >= self.ended_after:
            raise CallNotLiveError("ended")
        self.pushed.append((channel, pcm, rate))

    def samples(self, channel: Channel) -> Pcm16:
        parts = [p for ch, p, _ in self.pushed if ch == channel]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


async def frames_of(items: Sequence[rtc.AudioFrame | rtc.AudioFrameEvent]) -> AsyncGenerator[Any, None]:
    for item in items:
        yield item
        await asyncio.sleep(0)


async def paced_frames(items: Sequence[rtc.AudioFrame | rtc.AudioFrameEvent]) -> AsyncGenerator[Any, None]:
    """One frame per 10 ms on the wall clock, as a room delivers them."""
    async for item in paced(items, FRAME / RATE):
        yield item


def const_frames(value: int, n: int) -> list[rtc.AudioFrame]:
    frames = []
    for _ in range(n):
        frame = rtc.AudioFrame.create(RATE, 1, FRAME)
        np.frombuffer(frame.data, dtype=np.int16)[:] = value
        frames.append(frame)
    return frames


# -- unit: tokens, mapping, routing ----------------------------------------------------------


@pytest.mark.unit
def test_join_token_gives_identity_and_room() -> None:
    token = read_join_token(mint_token("tap-1", "room a/b"))
    assert (token.identity, token.room, token.hidden) == ("tap-1", "room a/b", True)
    assert token.expires_at is not None
    assert token.expires_at > time.time()
    assert call_id_for("room a/b") == "livekit-room_a_b"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("not-a-jwt", "JWT"),
        ("a.!!!.c", "JWT"),
        (mint_token(roomJoin=None), "roomJoin"),
        (mint_token(roomJoin=False), "roomJoin"),
        (mint_token(room=""), "no room"),
        (mint_token(canSubscribe=False), "canSubscribe"),
        (mint_token(identity=""), "identity"),
        (mint_token(ttl_s=-5), "expired"),
    ],
)
def test_join_token_refused(token: str, message: str) -> None:
    with pytest.raises(TokenError, match=message):
        read_join_token(token)


@pytest.mark.unit
def test_mapping_by_identity_prefix_and_attribute() -> None:
    exact = ChannelMapping(agent_identity="oscar", customer_identity="cust-9")
    assert exact.channel_of(Party("oscar")) == "agent"
    assert exact.channel_of(Party("cust-9")) == "customer"
    assert exact.channel_of(Party("cust-99")) is None

    prefixed = ChannelMapping(agent_prefix="agent-", customer_prefix="sip_")
    assert prefixed.channel_of(Party("agent-7")) == "agent"
    assert prefixed.channel_of(Party("sip_+15550100")) == "customer"
    nested = ChannelMapping(agent_prefix="a", customer_prefix="ab")  # the longest prefix wins
    assert nested.channel_of(Party("abc")) == "customer"
    assert nested.channel_of(Party("ax")) == "agent"

    by_attr = ChannelMapping(attribute="assist.channel")
    assert by_attr.channel_of(Party("u1", (("assist.channel", "agent"),))) == "agent"
    assert by_attr.channel_of(Party("u2", (("assist.channel", "customer"),))) == "customer"
    assert by_attr.channel_of(Party("u3", metadata='{"assist.channel": "customer"}')) == "customer"
    assert by_attr.channel_of(Party("u4", (("assist.channel", "supervisor"),))) is None
    assert by_attr.channel_of(Party("u5", metadata="not json")) is None

    # an explicit identity wins over a prefix, a prefix over an attribute
    mixed = ChannelMapping(agent_identity="sip_agent", customer_prefix="sip_", attribute="role")
    assert mixed.channel_of(Party("sip_agent", (("role", "customer"),))) == "agent"
    assert mixed.channel_of(Party("sip_1", (("role", "agent"),))) == "customer"
    assert mixed.channel_of(Party("web-1", (("role", "agent"),))) == "agent"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"agent_identity": "a"}, "nothing maps the customer"),
        ({"customer_prefix": "c"}, "nothing maps the agent"),
        ({"agent_identity": "x", "customer_identity": "x"}, "must differ"),
        ({"agent_prefix": "p", "customer_prefix": "p"}, "must differ"),
    ],
)
def test_mapping_refused(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ChannelMapping(**kwargs)


@pytest.mark.unit
def test_router_ignores_video_unknown_own_and_a_second_track() -> None:
    router = TrackRouter(ChannelMapping(agent_identity="oscar", customer_identity="cust"), own_identity="tap")
    assert router.route(Party("cust"), "TR_v", "video") == Ignored(
        "a video track (only audio is transcribed)"
    )
    assert isinstance(router.route(Party("stranger"), "TR_s", "audio"), Ignored)
    assert router.route(Party("tap"), "TR_own", "audio") == Ignored("our own participant")
    assert router.route(Party("cust"), "TR_c1", "audio") == Routed("customer")
    assert router.route(Party("cust"), "TR_c1", "audio") == Routed("customer")  # the same track again
    second = router.route(Party("cust"), "TR_c2", "audio")
    assert isinstance(second, Ignored)
    assert "already fed" in second.reason
    assert router.route(Party("oscar"), "TR_a", "audio") == Routed("agent")
    assert router.feeders() == {"customer": "cust", "agent": "oscar"}
    assert router.release("TR_c1") == "customer"  # unsubscribed: the channel is free again
    assert router.route(Party("cust"), "TR_c2", "audio") == Routed("customer")
    assert router.release("TR_unknown") is None
    assert router.channel_of(Party("tap")) is None


@pytest.mark.unit
def test_disconnect_reasons() -> None:
    assert disconnect_reason(rtc.DisconnectReason.ROOM_DELETED) == RoomLeft("completed", "ROOM_DELETED")
    assert disconnect_reason(rtc.DisconnectReason.PARTICIPANT_REMOVED).reason == "completed"
    assert disconnect_reason(rtc.DisconnectReason.SIGNAL_CLOSE) == RoomLeft("dropped", "SIGNAL_CLOSE")
    assert disconnect_reason(rtc.DisconnectReason.SERVER_SHUTDOWN).reason == "dropped"
    assert disconnect_reason(9999).detail == "reason 9999"


# -- unit: the pump and the feed, with the SDK's frames -------------------------------------------


@pytest.mark.unit
async def test_audio_pump_pushes_the_frames_samples() -> None:
    rng = np.random.default_rng(7)
    pcm = rng.integers(-20000, 20000, FRAME * 5, dtype=np.int16)
    frames = []
    for i in range(5):
        frame = rtc.AudioFrame.create(RATE, 1, FRAME)
        np.frombuffer(frame.data, dtype=np.int16)[:] = pcm[i * FRAME : (i + 1) * FRAME]
        frames.append(frame)
    stereo = rtc.AudioFrame(np.stack([pcm[:FRAME], -pcm[:FRAME]], axis=1).tobytes(), 16_000, 2, FRAME)
    call = RecordingCall()
    items: list[rtc.AudioFrame | rtc.AudioFrameEvent] = [rtc.AudioFrameEvent(f) for f in frames[:3]]
    pump = AudioPump(call, "customer", frames_of([*items, *frames[3:], stereo]))
    await pump.run()
    assert pump.frames_in == 6
    assert [rate for _, _, rate in call.pushed] == [RATE] * 5 + [16_000]
    assert np.array_equal(call.samples("customer")[: FRAME * 5], pcm)
    assert np.array_equal(call.pushed[-1][1], pcm[:FRAME])  # a stereo frame: its first channel
    frames[0].data[0] = (
        int(pcm[0]) ^ 1
    )  # the pump copied: later changes to a frame's buffer do not reach the call
    assert call.pushed[0][1][0] == pcm[0]

    ended = RecordingCall(ended_after=2)  # the call ends under the pump: it stops, quietly
    await AudioPump(ended, "agent", frames_of(frames)).run()
    assert len(ended.pushed) == 2


@pytest.mark.unit
async def test_call_feed_routes_tracks_and_ends_with_the_customer() -> None:
    agent_frames, customer_frames = const_frames(1000, 4), const_frames(-1000, 3)
    opened: list[str] = []

    def open_frames(track: Any) -> AsyncGenerator[Any, None]:
        opened.append(track)
        return frames_of(agent_frames if track.startswith("agent") else customer_frames)

    call = RecordingCall()
    router = TrackRouter(ChannelMapping(agent_identity="oscar", customer_prefix="sip_"), own_identity="tap")
    feed = CallFeed(call, router, open_frames)
    customer = Party("sip_+15550100")
    assert await feed.handle(TrackSubscribed(Party("oscar"), "TR_a", "audio", "agent-track")) is None
    assert await feed.handle(TrackSubscribed(customer, "TR_c1", "audio", "customer-track-1")) is None
    assert await feed.handle(TrackSubscribed(customer, "TR_v", "video", "customer-video")) is None
    assert await feed.handle(TrackSubscribed(Party("visitor"), "TR_x", "audio", "visitor-track")) is None
    await asyncio.gather(*(task for _, task in list(feed.pumps.values())))
    assert await feed.handle(TrackUnsubscribed(customer.identity, "TR_c1")) is None
    # re-subscribed (a new track sid): the same channel goes on
    assert await feed.handle(TrackSubscribed(customer, "TR_c2", "audio", "customer-track-2")) is None
    await asyncio.gather(*(task for _, task in list(feed.pumps.values())))
    assert opened == ["agent-track", "customer-track-1", "customer-track-2"]
    assert feed.subscriptions == {"agent": 1, "customer": 2}
    assert [i["reason"] for i in feed.ignored] == [
        "a video track (only audio is transcribed)",
        "the participant maps to no channel",
    ]
    assert call.samples("agent").size == 4 * FRAME
    assert set(call.samples("agent").tolist()) == {1000}
    assert call.samples("customer").size == 2 * 3 * FRAME
    assert set(call.samples("customer").tolist()) == {-1000}

    assert await feed.handle(ParticipantLeft(Party("oscar"))) is None  # the agent leaving: on
    assert await feed.handle(ParticipantLeft(Party("visitor"))) is None
    assert await feed.handle(ParticipantLeft(customer)) == "completed"  # the customer hung up
    assert await feed.handle(RoomLeft("dropped", "SIGNAL_CLOSE")) == "dropped"
    assert await feed.handle(StopRequested("completed")) == "completed"
    await feed.close()
    assert feed.pumps == {}


@pytest.mark.unit
async def test_call_feed_stops_a_pump_when_its_track_goes() -> None:
    async def endless() -> AsyncGenerator[rtc.AudioFrame, None]:
        while True:
            yield rtc.AudioFrame.create(RATE, 1, FRAME)
            await asyncio.sleep(0.01)

    closed: list[str] = []

    class Stream:  # a fake frame stream: endless silence, records its closing
        def __init__(self) -> None:
            self.frames = endless()

        def __aiter__(self) -> AsyncIterator[rtc.AudioFrame]:
            return self.frames

        async def aclose(self) -> None:
            closed.append("closed")
            await self.frames.aclose()

    call = RecordingCall()
    feed = CallFeed(call, TrackRouter(ChannelMapping(attribute="assist.channel")), lambda track: Stream())
    party = Party("u1", (("assist.channel", "customer"),))
    await feed.handle(TrackSubscribed(party, "TR_1", "audio", "t1"))
    await asyncio.sleep(0.1)
    assert feed.router.feeders() == {"customer": "u1"}
    await feed.handle(TrackUnsubscribed("u1", "TR_1"))
    assert feed.pumps == {}
    assert feed.router.feeders() == {}
    assert closed == ["closed"]
    pushed = len(call.pushed)
    await asyncio.sleep(0.05)
    assert len(call.pushed) == pushed > 0


# -- a call through the real pipeline -------------------------------------------------------------

AGENT_LINE = "Thank you for calling Northwind billing, this is Oscar speaking."
CUSTOMER_FIRST = "I would like to cancel my internet subscription today."
CUSTOMER_SECOND = "The connection keeps dropping every single evening."
AGENT_ONLY = {"northwind", "oscar", "billing", "speaking"}
CUSTOMER_ONLY = {"cancel", "internet", "subscription", "connection", "dropping", "evening"}
ENDED_S = 120.0  # the call's end after the last audio: ASR drains on a shared 2-core machine


def service_loop(service: LiveService) -> asyncio.AbstractEventLoop:
    """The event loop uvicorn serves on (the service's AppContext lives there)."""
    return service.server.servers[0].get_loop()


def service_ctx(service: LiveService) -> AppContext:
    app: Any = service.server.config.app
    ctx: AppContext = app.state.ctx
    return ctx


async def play_room(
    ctx: AppContext, call_id: str, agent: list[rtc.AudioFrame], customer: tuple[list[rtc.AudioFrame], ...],
    hole_s: float,
) -> tuple[str | None, dict[Channel, int], list[dict[str, str]]]:  # fmt: skip
    """In the service's loop: a call fed by ``CallFeed`` as a room would feed it: the agent's
    track, the customer's first track, an ignored visitor, the customer's track unsubscribed and
    (``hole_s`` later) subscribed again, then the customer leaving."""
    call = await ctx.live.open_call(CallMeta("livekit", call_id, "en", "alice", "tests", (("room", "r-1"),)))
    tracks: dict[str, list[rtc.AudioFrame]] = {"agent": agent, "customer-1": customer[0], "customer-2": customer[1],
                                               "visitor": customer[0]}  # fmt: skip

    def open_frames(track: Any) -> AsyncGenerator[Any, None]:  # fake track handles: the names above
        frames = tracks[track]
        items: list[rtc.AudioFrame | rtc.AudioFrameEvent] = (
            [rtc.AudioFrameEvent(f) for f in frames] if track == "agent" else list(frames)
        )
        return paced_frames(items)

    router = TrackRouter(
        ChannelMapping(agent_identity="oscar", customer_identity="cust-1"), own_identity="tap"
    )
    feed = CallFeed(call, router, open_frames)
    reason = None
    try:
        await feed.handle(TrackSubscribed(Party("oscar"), "TR_a", "audio", "agent"))
        await feed.handle(TrackSubscribed(Party("cust-1"), "TR_c1", "audio", "customer-1"))
        await feed.handle(TrackSubscribed(Party("visitor-1"), "TR_x", "audio", "visitor"))
        customer_pump = feed.pumps["TR_c1"][1]
        await customer_pump
        await feed.handle(TrackUnsubscribed("cust-1", "TR_c1"))
        await asyncio.sleep(hole_s)
        await feed.handle(TrackSubscribed(Party("cust-1"), "TR_c2", "audio", "customer-2"))
        await asyncio.gather(*(task for _, task in list(feed.pumps.values())))
        reason = await feed.handle(ParticipantLeft(Party("cust-1")))
    finally:
        await feed.close()
        await call.end(reason or "error")
    return reason, dict(feed.subscriptions), list(feed.ignored)


@pytest.mark.model
@pytest.mark.espeak
def test_room_audio_through_a_live_call(service: LiveService) -> None:
    agent, customer, timeline = dialogue(
        [("agent", AGENT_LINE), ("customer", CUSTOMER_FIRST), ("customer", CUSTOMER_SECOND)], gap_s=1.5
    )
    # the customer's first track ends 0.2 s after their first sentence; the second starts 1.0 s later
    _, _, first_end = timeline[1]
    split, hole_s = round((first_end + 0.2) * 16_000), 1.0
    customer_tracks = (speech_frames(customer[:split]), speech_frames(customer[split + 16_000 :]))
    call_id = f"livekit-test-{uuid.uuid4().hex[:8]}"
    follower = CallFollower(service.base, service.token("supervisor"), call_id)
    future = asyncio.run_coroutine_threadsafe(
        play_room(service_ctx(service), call_id, speech_frames(agent), customer_tracks, hole_s),
        service_loop(service),
    )
    reason, subscriptions, ignored = future.result(timeout=90)
    messages = follower.wait_ended(ENDED_S)

    assert reason == "completed"
    assert subscriptions == {"agent": 1, "customer": 2}
    assert [i["identity"] for i in ignored] == ["visitor-1"]
    started_event = next(m for m in messages if m["event"] == "call.started")
    assert started_event["data"]["payload"]["meta"]["tap"] == "livekit"
    assert started_event["data"]["payload"]["meta"]["room"] == "r-1"
    ended = next(m for m in messages if m["event"] == "call.ended")
    assert ended["data"]["payload"]["reason"] == "completed"
    heard_agent, heard_customer = finals_text(messages, "agent"), finals_text(messages, "customer")
    assert word_overlap(AGENT_LINE, heard_agent) >= 0.6, heard_agent
    assert word_overlap(CUSTOMER_FIRST, heard_customer) >= 0.6, heard_customer
    assert word_overlap(CUSTOMER_SECOND, heard_customer) >= 0.6, heard_customer  # after re-subscribing
    assert not AGENT_ONLY & set(words(heard_customer)), heard_customer
    assert not CUSTOMER_ONLY & set(words(heard_agent)), heard_agent


# -- REST control, and the SDK's connect against 127.0.0.1 ----------------------------------------


def session_body(url: str, **extra: Any) -> dict[str, Any]:
    room = extra.pop("room_in_token", f"room-{uuid.uuid4().hex[:8]}")
    return {"url": url, "token": mint_token("assist-tap", room), "agent_identity": "oscar",
            "customer_identity": "cust-1", "agent_id": "alice", "queue": "tests", **extra}  # fmt: skip


def closed_port_url() -> str:
    return f"ws://127.0.0.1:{free_port()}"


def wait_state(client: httpx.Client, call_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
    """The session once it has left ``connecting``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = client.get(f"/v1/taps/livekit/sessions/{call_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["state"] != "connecting":
            return body
        time.sleep(0.1)
    raise AssertionError(f"session {call_id} still connecting after {timeout_s} s")


def assert_no_call(service: LiveService, call_id: str) -> None:
    with service.client("supervisor") as c:
        assert c.get(f"/v1/calls/{call_id}").status_code == 404
        assert call_id not in {s["call_id"] for s in c.get("/v1/calls", params={"status": "live"}).json()}
    assert call_id not in service_ctx(service).live.calls


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP listener that never accepts: the SDK's signalling gets no answer."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"ws://127.0.0.1:{s.getsockname()[1]}"


class FakeSignal401(BaseHTTPRequestHandler):
    """A fake LiveKit signalling endpoint: refuses every request as LiveKit refuses a bad token."""

    def do_GET(self) -> None:
        body = b"invalid token: signature is invalid"
        self.send_response(401)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def refusing_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeSignal401)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.model
def test_sessions_need_an_integrator(service: LiveService) -> None:
    body = session_body(closed_port_url())
    with service.client() as anonymous:
        assert anonymous.post("/v1/taps/livekit/sessions", json=body).status_code == 401
        assert anonymous.get("/v1/taps/livekit/sessions/x").status_code == 401
        assert anonymous.delete("/v1/taps/livekit/sessions/x").status_code == 401
    for role in ("agent", "supervisor", "knowledge_manager"):
        with service.client(role) as c:
            assert c.post("/v1/taps/livekit/sessions", json=body).status_code == 403
            assert c.get("/v1/taps/livekit/sessions/x").status_code == 403
            assert c.delete("/v1/taps/livekit/sessions/x").status_code == 403
    with service.client("integrator") as c:
        assert c.get("/v1/taps/livekit/sessions/nope").status_code == 404
        assert c.delete("/v1/taps/livekit/sessions/nope").status_code == 404


@pytest.mark.model
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"url": "ftp://livekit.example.com"}, "ws://"),
        ({"url": "wss://"}, "no host"),
        ({"url": "livekit.example.com"}, "ws://"),
        ({"customer_identity": "oscar"}, "must differ"),
        ({"customer_identity": None}, "nothing maps the customer"),
        ({"token": "not-a-jwt"}, "JWT"),
        ({"token": mint_token(roomJoin=False)}, "roomJoin"),
        ({"token": mint_token(canSubscribe=False)}, "canSubscribe"),
        ({"token": mint_token(ttl_s=-60)}, "expired"),
        ({"token": mint_token(room="room-a"), "room": "room-b"}, "another room"),
        ({"token": mint_token("oscar")}, "the tap's own"),
        ({"call_id": "bad id!"}, "pattern"),
        ({"lang": "fr"}, "lang"),
        ({"channel_attribute": "bad key!"}, "pattern"),
    ],
)
def test_bad_sessions_are_422(service: LiveService, change: dict[str, Any], message: str) -> None:
    body = {**session_body(closed_port_url()), **change}
    with service.client("integrator") as c:
        r = c.post("/v1/taps/livekit/sessions", json=body)
    assert r.status_code == 422, r.text
    assert message in r.text


@pytest.mark.model
def test_unreachable_server_fails_the_session(service: LiveService) -> None:
    room = f"room-{uuid.uuid4().hex[:8]}"
    with service.client("integrator") as c:
        r = c.post("/v1/taps/livekit/sessions", json=session_body(closed_port_url(), room_in_token=room))
        assert r.status_code == 202, r.text
        assert r.json() == {"call_id": f"livekit-{room}", "state": "connecting", "room": room}
        session = wait_state(c, f"livekit-{room}", timeout_s=30)
        assert session["state"] == "failed", session
        assert session["error"].startswith("could not join the LiveKit room:"), session
        assert "refused" in session["error"].lower(), session
        assert session["channels"] == {}
        assert session["ended_reason"] is None
        assert c.delete(f"/v1/taps/livekit/sessions/livekit-{room}").status_code == 204  # nothing to stop
    assert_no_call(service, f"livekit-{room}")


@pytest.mark.model
def test_refused_token_fails_the_session(service: LiveService, refusing_server: str) -> None:
    call_id = f"lk-{uuid.uuid4().hex[:8]}"
    with service.client("integrator") as c:
        r = c.post("/v1/taps/livekit/sessions", json=session_body(refusing_server, call_id=call_id))
        assert r.status_code == 202, r.text
        session = wait_state(c, call_id, timeout_s=30)
    assert session["state"] == "failed", session
    assert "401" in session["error"], session
    assert "invalid token" in session["error"], session
    assert_no_call(service, call_id)


@pytest.mark.model
def test_stop_while_connecting_and_limits(service: LiveService, silent_server: str) -> None:
    call_id = f"lk-{uuid.uuid4().hex[:8]}"
    tap: LiveKitTap | None = None
    with service.client("integrator") as c:
        r = c.post("/v1/taps/livekit/sessions", json=session_body(silent_server, call_id=call_id))
        assert r.status_code == 202, r.text
        app: Any = service.server.config.app
        tap = app.state.livekit_tap
        assert c.get(f"/v1/taps/livekit/sessions/{call_id}").json()["state"] == "connecting"
        again = c.post("/v1/taps/livekit/sessions", json=session_body(silent_server, call_id=call_id))
        assert again.status_code == 409, again.text
        assert tap is not None
        tap.max_sessions = 1  # this one is running: no room for another
        try:
            other = c.post("/v1/taps/livekit/sessions", json=session_body(silent_server))
            assert other.status_code == 503, other.text
            assert "at most 1 LiveKit sessions" in other.json()["detail"]
        finally:
            tap.max_sessions = 20
        t = time.monotonic()
        assert c.delete(f"/v1/taps/livekit/sessions/{call_id}").status_code == 204
        assert time.monotonic() - t < 5
        session = c.get(f"/v1/taps/livekit/sessions/{call_id}").json()
    assert session["state"] == "ended"
    assert session["ended_reason"] == "stopped before the room was joined"
    assert_no_call(service, call_id)
