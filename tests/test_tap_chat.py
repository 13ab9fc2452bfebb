"""The text chat tap (``/v1/taps/chat``) over real WebSockets on 127.0.0.1 against the running
service (real coach, real knowledge base): a chat is coached like a call (redaction, alerts,
procedure cards, the board), bad input gets error frames, typing gaps are not dead air unless
configured; and a chat driven through the tap shows its alert and its card in the agent widget in
headless Debian Chromium (screenshot in ``test-artifacts/browser/``).

The chat lines were written for these tests (checked against the coach first): an agent's
insult the pack's exact matchers catch, a customer's late parcel that pulls the ``late-order``
procedure from the sample knowledge base, a card number that must be redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sidecar.taps.chat import (
    MAX_FRAME_BYTES,
    MAX_TEXT_CHARS,
    ChatInputError,
    ChatTimeline,
    RateLimit,
    clean_text,
    parse_frame,
    parse_ts,
)
from tests.browser_helpers import ARTIFACTS
from tests.service_helpers import LiveService
from tests.tap_helpers import CallFollower, of_type

pytestmark = pytest.mark.model

GREETING = "Hi, you're through to Robin on the online help desk, what's up?"
LATE_PARCEL = (
    "My order was supposed to turn up last Tuesday and the tracking hasn't changed in five days. "
    "Where is my parcel?"
)
INSULT = "Do you even listen to what I type, you absolute moron?"
CARD = "My card number is 4929 1234 5678 9012 if that helps."
SPLIT_CARD = ("The long number on my card starts 4556 7375", "and then it goes 8689 9855")
T0 = 1_764_000_000_000  # a client's Date.now() at the chat's start (ms)


def chat_url(service: LiveService, token: str | None) -> str:
    url = service.base.replace("http://", "ws://") + "/v1/taps/chat"
    return f"{url}?access_token={token}" if token else url


def open_chat(service: LiveService, token: str | None = "") -> Any:  # an async context manager
    token = service.token("integrator") if token == "" else token
    return connect(chat_url(service, token), proxy=None, compression=None, open_timeout=30, max_size=None)


def new_id() -> str:
    return f"chat-test-{uuid.uuid4().hex[:10]}"


async def recv(ws: ClientConnection, timeout_s: float = 60.0) -> dict[str, Any]:
    frame = await asyncio.wait_for(ws.recv(), timeout_s)
    assert isinstance(frame, str)
    message: dict[str, Any] = json.loads(frame)
    return message


async def start(ws: ClientConnection, call_id: str, **extra: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "start", "call_id": call_id, "agent_id": "alice", "queue": "chat-tests",
                              "lang": "en", "ts": T0, **extra}))  # fmt: skip
    started = await recv(ws)
    assert started["type"] == "started", started
    assert started["call_id"] == call_id
    return started


async def say(
    ws: ClientConnection, channel: str, text: str, at_s: float, ident: str | None = None
) -> dict[str, Any]:
    """One message ``at_s`` seconds into the chat (client time); the server's answer to it."""
    message = {"type": "message", "channel": channel, "text": text, "ts": T0 + round(at_s * 1000)}
    if ident is not None:
        message["id"] = ident
    await ws.send(json.dumps(message))
    return await recv(ws)


async def closed_with(ws: ClientConnection, timeout_s: float = 30.0) -> tuple[int | None, str]:
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(timeout_s):
            while True:
                await ws.recv()
    return ws.close_code, ws.close_reason or ""


def follow(service: LiveService, call_id: str) -> CallFollower:
    return CallFollower(service.base, service.token("supervisor"), call_id)


def payloads(messages: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [m["data"]["payload"] | {"channel": m["data"]["channel"]} for m in of_type(messages, event)]


# -- pure parts ----------------------------------------------------------------------------------


@pytest.mark.unit
def test_timestamps_are_milliseconds_and_call_time_never_runs_backwards() -> None:
    assert parse_ts(T0) == float(T0)
    for bad in ("1764000000000", True, None, float("nan"), 1_764_000_000):
        with pytest.raises(ChatInputError) as err:
            parse_ts(bad)
        assert err.value.code == "bad_ts"
    with pytest.raises(ChatInputError, match="looks like seconds"):
        parse_ts(1_764_000_000)
    line = ChatTimeline(T0, started=100.0)
    assert line.place(T0 + 2500, 102.0).t == 2.5
    back = line.place(T0 + 1000, 103.0)  # the other device's clock is behind
    assert (back.t, back.clamped) == (2.5, True)
    assert line.place(T0 + 90_000, 104.0).t == 90.0
    assert line.now(110.0) == 96.0
    with pytest.raises(ChatInputError, match="12 h"):
        line.place(T0 + 13 * 3600 * 1000, 105.0)
    late = ChatTimeline(
        None, started=50.0
    )  # no ts in the start frame: the first message is as late as it came
    assert late.place(T0, 53.0).t == 3.0


@pytest.mark.unit
def test_messages_are_validated_with_one_clear_line() -> None:
    ok = parse_frame(json.dumps({"channel": "customer", "text": " hello\n\tthere\u200b ", "ts": T0, "id": 7}))
    assert not isinstance(ok, str)
    assert (ok.channel, ok.text, ok.id) == ("customer", "hello there", "7")
    assert parse_frame('{"type": "ping"}') == "ping"
    cases = {
        "not json": "bad_json",
        "[1, 2]": "bad_json",
        '{"type": "typing"}': "bad_type",
        '{"channel": "bot", "text": "hi", "ts": 1764000000000}': "bad_channel",
        '{"channel": "agent", "text": "hi"}': "bad_ts",
        '{"channel": "agent", "text": "   ", "ts": 1764000000000}': "bad_text",
        '{"channel": "agent", "text": 5, "ts": 1764000000000}': "bad_text",
    }
    for frame, code in cases.items():
        with pytest.raises(ChatInputError) as err:
            parse_frame(frame)
        assert err.value.code == code, frame
        assert "\n" not in err.value.message
    with pytest.raises(ChatInputError) as err:
        clean_text("x" * (MAX_TEXT_CHARS + 1))
    assert err.value.code == "text_too_long"


@pytest.mark.unit
def test_the_rate_limit_allows_a_burst_then_a_steady_rate() -> None:
    limit = RateLimit(burst=3, per_s=2.0, now=0.0)
    assert [limit.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert limit.allow(0.5)  # one refilled
    assert not limit.allow(0.6)
    assert [limit.allow(10.0) for _ in range(4)] == [True, True, True, False]  # never above the burst


# -- over a real socket ------------------------------------------------------------------------


async def test_a_chat_is_coached_like_a_call(service: LiveService) -> None:
    call_id = new_id()
    follower = follow(service, call_id)
    async with open_chat(service) as ws:
        started = await start(ws, call_id)
        assert started["dead_air"] is False
        acks = [
            await say(ws, "agent", GREETING, 1.0, "m1"),
            await say(ws, "customer", LATE_PARCEL, 20.0, "m2"),
            await say(ws, "agent", INSULT, 35.0, "m3"),
            await say(ws, "customer", CARD, 50.0, "m4"),
        ]
        assert [a["type"] for a in acks] == ["ack"] * 4, acks
        assert [(a["id"], a["channel"], a["t"], a["segment"]) for a in acks] == [
            ("m1", "agent", 1.0, 1), ("m2", "customer", 20.0, 1), ("m3", "agent", 35.0, 2), ("m4", "customer", 50.0, 2),
        ]  # fmt: skip
        # an ack means coached and published: the call's state already has the alert
        with service.client("agent") as alice:  # the agent of the chat sees it as a call
            detail = alice.get(f"/v1/calls/{call_id}").json()
        assert detail["source"] == "chat"
        assert any(a["category"] == "abuse" and a["severity"] == "fatal" for a in detail["alerts"])
        # a card typed in two messages a couple of seconds apart is redacted as one number
        assert (await say(ws, "customer", SPLIT_CARD[0], 60.0))["type"] == "ack"
        assert (await say(ws, "customer", SPLIT_CARD[1], 62.0))["type"] == "ack"
        with service.client("agent") as alice:
            transcript = json.dumps(
                alice.get(f"/v1/calls/{call_id}").json()["transcript"], ensure_ascii=False
            )
        assert "7375" not in transcript
        assert "[card ••••9855]" in transcript
        await ws.send(json.dumps({"type": "end"}))
        assert (await closed_with(ws))[0] == 1000
    messages = await follower.ended()

    call_started = of_type(messages, "call.started")[0]["data"]["payload"]
    assert call_started["source"] == "chat"
    assert call_started["meta"]["kind"] == "chat"
    assert call_started["meta"]["dead_air"] == "off"
    assert call_started["meta"]["agent_id"] == "alice"
    finals = payloads(messages, "transcript.final")
    assert [(f["channel"], f["segment"]) for f in finals] == [
        ("agent", 1),
        ("customer", 1),
        ("agent", 2),
        ("customer", 2),
        ("customer", 3),
        ("customer", 4),
    ]
    assert finals[1]["text"] == LATE_PARCEL
    # redacted on the way in, as speech finals are: the card's last four digits stay
    assert "4929" not in json.dumps(messages)
    assert "5678" not in json.dumps(messages)
    assert "••••9012" in finals[3]["text"]
    assert "4556" not in json.dumps(messages)
    assert [c["segment"] for c in payloads(messages, "transcript.redacted")] == [3]
    abuse = [a for a in payloads(messages, "alert") if a["category"] == "abuse"]
    assert len(abuse) == 1
    assert abuse[0]["severity"] == "fatal"
    assert abuse[0]["channel"] == "agent"
    cards = payloads(messages, "suggestion")
    assert "late-order" in [c["snippet_id"] for c in cards], cards
    assert not [a for a in payloads(messages, "alert") if a["category"] == "dead_air"]
    ended = of_type(messages, "call.ended")[0]["data"]["payload"]
    assert ended["reason"] == "completed"
    assert ended["stats"]["agent_messages"] == 2
    assert ended["stats"]["customer_messages"] == 4
    assert of_type(messages, "score"), "a chat gets its scorecard like a call"


async def test_a_long_typing_gap_is_not_dead_air_unless_configured(service: LiveService) -> None:
    """Two minutes between messages (client time): nothing by default; a dead_air alert when the
    start frame asks for silences to be coached."""
    found: dict[bool, list[dict[str, Any]]] = {}
    for dead_air in (False, True):
        call_id = new_id()
        follower = follow(service, call_id)
        async with open_chat(service) as ws:
            await start(ws, call_id, dead_air=dead_air)
            assert (await say(ws, "customer", "Hello, is anyone there?", 2.0))["type"] == "ack"
            assert (await say(ws, "agent", "Hi, sorry for the wait, how can I help today?", 122.0))[
                "type"
            ] == "ack"
            await ws.close()
        messages = await follower.ended()
        found[dead_air] = [a for a in payloads(messages, "alert") if a["category"] == "dead_air"]
        meta = of_type(messages, "call.started")[0]["data"]["payload"]["meta"]
        assert meta["dead_air"] == ("on" if dead_air else "off")
    assert found[False] == []
    assert len(found[True]) == 1
    assert found[True][0]["source"] == "timing"


async def test_a_chinese_chat_is_coached_in_chinese(service: LiveService) -> None:
    call_id = new_id()
    follower = follow(service, call_id)
    async with open_chat(service) as ws:
        await start(ws, call_id, lang="zh")
        assert (await say(ws, "customer", "你好，我的手机号是13912345678，订单一直没发货。", 3.0))[
            "type"
        ] == "ack"
        assert (await say(ws, "agent", "我都回复你三遍了，你是不是傻啊？", 9.0))["type"] == "ack"
        await ws.send(json.dumps({"type": "end"}))
        await closed_with(ws)
    messages = await follower.ended()
    finals = payloads(messages, "transcript.final")
    assert [f["lang"] for f in finals] == ["zh", "zh"]
    assert "13912345678" not in json.dumps(messages, ensure_ascii=False)
    abuse = [a for a in payloads(messages, "alert") if a["category"] == "abuse"]
    assert [(a["severity"], a["channel"]) for a in abuse] == [("fatal", "agent")]


async def test_bad_messages_get_error_frames_and_the_chat_goes_on(service: LiveService) -> None:
    call_id = new_id()
    follower = follow(service, call_id)
    async with open_chat(service) as ws:
        await start(ws, call_id)
        bad = [
            ("this is not json", "bad_json", None),
            (json.dumps({"type": "message", "channel": "supervisor", "text": "hi", "ts": T0, "id": "b1"}), "bad_channel", "b1"),
            (json.dumps({"type": "message", "channel": "agent", "text": "hi", "id": "b2"}), "bad_ts", "b2"),
            (json.dumps({"type": "message", "channel": "agent", "text": "hi", "ts": T0 // 1000}), "bad_ts", None),
            (json.dumps({"type": "message", "channel": "agent", "text": "", "ts": T0}), "bad_text", None),
            (json.dumps({"type": "message", "channel": "agent", "text": "y" * (MAX_TEXT_CHARS + 1), "ts": T0}), "text_too_long", None),
            (json.dumps({"type": "typing", "channel": "agent"}), "bad_type", None),
        ]  # fmt: skip
        for frame, code, ident in bad:
            await ws.send(frame)
            error = await recv(ws)
            assert error["type"] == "error", error
            assert (error["code"], error["id"]) == (code, ident)
            assert error["message"]
            assert "\n" not in error["message"]
        seconds = await recv_after(ws, json.dumps({"channel": "agent", "text": "hi", "ts": T0 // 1000}))
        assert "looks like seconds" in seconds["message"]
        # still open: good messages are coached; an earlier ts than the last is placed at its time
        first = await say(ws, "customer", "Hi, quick question about my bill.", 30.0, "g1")
        assert (first["type"], first["t"], first["clamped"]) == ("ack", 30.0, False)
        earlier = await say(ws, "agent", "Sure, happy to help with that.", 29.0, "g2")
        assert (earlier["type"], earlier["t"], earlier["clamped"]) == ("ack", 30.0, True)
        await ws.send('{"type": "ping"}')
        assert (await recv(ws))["type"] == "pong"
    messages = await follower.ended()
    finals = payloads(messages, "transcript.final")
    assert [f["text"] for f in finals] == [
        "Hi, quick question about my bill.",
        "Sure, happy to help with that.",
    ]
    ended = of_type(messages, "call.ended")[0]["data"]["payload"]
    assert ended["stats"]["refused_messages"] == len(bad) + 1


async def recv_after(ws: ClientConnection, frame: str) -> dict[str, Any]:
    await ws.send(frame)
    return await recv(ws)


async def test_a_flood_is_rate_limited_without_closing_the_chat(service: LiveService) -> None:
    async with open_chat(service) as ws:
        await start(ws, new_id())
        for _ in range(60):  # far over the burst (20): on any machine most of these are refused
            await ws.send('{"type": "ping"}')
        answers = [await recv(ws) for _ in range(60)]
        limited = [a for a in answers if a["type"] == "error"]
        assert limited
        assert all(a["code"] == "rate_limited" for a in limited)
        assert sum(1 for a in answers if a["type"] == "pong") >= 20
        await asyncio.sleep(1.5)  # the bucket refills: the chat goes on
        assert (await say(ws, "customer", "Sorry, my keyboard got stuck there.", 5.0))["type"] == "ack"


async def _no_start(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"type": "message", "channel": "agent", "text": "hi", "ts": T0}))


async def _bad_lang(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"type": "start", "lang": "fr"}))


async def _bad_start_json(ws: ClientConnection) -> None:
    await ws.send("{start")


async def _binary(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"type": "start", "agent_id": "alice"}))
    assert (await recv(ws))["type"] == "started"
    await ws.send(b"\x00\x01\x02")


async def _oversized(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"type": "start", "agent_id": "alice"}))
    assert (await recv(ws))["type"] == "started"
    await ws.send(json.dumps({"channel": "agent", "text": "z" * MAX_FRAME_BYTES, "ts": T0}))


@pytest.mark.parametrize(
    ("send", "code", "reason"),
    [
        (_no_start, 1008, "first frame"),
        (_bad_lang, 1007, "lang"),
        (_bad_start_json, 1007, "not JSON"),
        (_binary, 1003, "binary"),
        (_oversized, 1009, "text frame over"),
    ],
    ids=["message-before-start", "bad-lang", "start-not-json", "binary-frame", "oversized-frame"],
)
async def test_protocol_errors_close_the_socket_with_a_code(
    service: LiveService, send: Any, code: int, reason: str
) -> None:
    async with open_chat(service) as ws:
        await send(ws)
        got, why = await closed_with(ws)
    assert got == code, (got, why)
    assert reason in why


async def test_a_tap_needs_an_integrator_token(service: LiveService) -> None:
    for token in (None, "not-a-token", service.token("agent")):
        with pytest.raises(InvalidStatus) as refused:
            async with open_chat(service, token):
                pass
        assert refused.value.response.status_code == 403


async def test_a_call_id_in_use_is_refused_and_a_dropped_client_ends_the_chat(service: LiveService) -> None:
    call_id = new_id()
    follower = follow(service, call_id)
    async with open_chat(service) as ws:
        await start(ws, call_id)
        assert (await say(ws, "customer", "Hi, I have a question about my bill.", 1.0))["type"] == "ack"
        async with open_chat(service) as second:
            await second.send(json.dumps({"type": "start", "call_id": call_id, "agent_id": "bob"}))
            code, why = await closed_with(second)
        assert code == 1008
        assert "already in use" in why
        ws.transport.abort()  # the connection drops: no close frame
        messages = await follower.ended()
    ended = of_type(messages, "call.ended")[0]["data"]["payload"]
    assert ended["reason"] == "dropped"
    assert of_type(messages, "call.started")[0]["data"]["payload"]["meta"]["agent_id"] == "alice"


async def test_a_supervisor_cannot_listen_in_or_barge_into_a_chat(service: LiveService) -> None:
    """A chat has no audio: listen-in and barge-in answer 409 with the reason (not a silent stream)."""
    call_id = new_id()
    async with open_chat(service) as ws:
        await start(ws, call_id)
        assert (await say(ws, "customer", "Hello, is anyone there?", 1.0))["type"] == "ack"
        headers = {"Authorization": f"Bearer {service.token('supervisor')}"}
        async with httpx.AsyncClient(base_url=service.base, headers=headers, timeout=30) as client:
            for action in ("listen", "barge"):
                r = await client.post(
                    f"/v1/taps/webrtc/{call_id}/{action}", json={"sdp": "v=0", "type": "offer"}
                )
                assert r.status_code == 409, (action, r.text)
                assert "text chat" in r.json()["detail"]


# -- the agent widget in Chromium ----------------------------------------------------------------

# ``browser`` is conftest's, function-scoped: the async tests of this module need the thread's
# event loop free, and Playwright's sync API keeps one running while it is open


@pytest.mark.browser
def test_a_chat_through_the_tap_shows_alerts_and_a_card_in_the_agent_widget(
    browser: Any, service: LiveService
) -> None:
    from websockets.sync.client import connect as connect_sync

    call_id = new_id()
    with connect_sync(chat_url(service, service.token("integrator")), open_timeout=30) as ws:

        def send(frame: dict[str, Any]) -> dict[str, Any]:
            ws.send(json.dumps(frame))
            answer: dict[str, Any] = json.loads(ws.recv(timeout=60))
            return answer

        assert (
            send({"type": "start", "call_id": call_id, "agent_id": "alice", "lang": "en"})["type"]
            == "started"
        )
        context = browser.new_context(viewport={"width": 420, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{service.base}/ui/agent.html?call={call_id}#token={service.token('agent')}")
        page.wait_for_selector("#call-status", timeout=20_000)
        now = int(time.time() * 1000)
        script = [("agent", GREETING), ("customer", LATE_PARCEL), ("agent", INSULT)]
        for i, (channel, text) in enumerate(script):
            ack = send({"type": "message", "channel": channel, "text": text, "ts": now + 1000 * i})
            assert ack["type"] == "ack", ack
        page.wait_for_selector('#transcript .final:has-text("tracking")', timeout=20_000)
        page.wait_for_selector('#suggestions .card[data-snippet-id="late-order"]', timeout=20_000)
        page.wait_for_selector('#alerts .alert[data-severity="fatal"]', timeout=20_000)
        assert page.is_visible("#fatal-banner")
        page.screenshot(path=str(ARTIFACTS / "agent-chat.png"), full_page=True)
        ws.send(json.dumps({"type": "end"}))
        with contextlib.suppress(Exception):
            ws.recv(timeout=10)  # the server's close
    page.wait_for_selector('#call-status:has-text("ended")', timeout=30_000)
    assert not errors, errors
    context.close()
