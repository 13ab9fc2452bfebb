"""The AudioHook Monitor tap over a real WebSocket, with a client written from Genesys' public
AudioHook protocol (v2): headers, ``open``/``opened``, μ-law stereo audio paced in real time,
``ping``/``pong``, ``paused``/``resumed``, ``close``/``closed``; and every kind of bad input, while
another call runs undisturbed."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sidecar.audio import Pcm16, resample
from tests.conftest import dialogue, espeak, silence
from tests.service_helpers import LiveService
from tests.tap_helpers import (
    CallFollower,
    chunks,
    finals_text,
    interleave,
    mulaw_encode,
    of_type,
    paced,
    word_overlap,
    words,
)

pytestmark = pytest.mark.model

ORG = "d7934305-0972-4844-938e-9060eef73d05"
STEREO = {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}
OFFER = [STEREO, {**STEREO, "channels": ["external"]}, {**STEREO, "channels": ["internal"]}]
SCRIPT = [
    ("agent", "Thank you for calling Acme billing, my name is Sam. How can I help you today?"),
    ("customer", "Hello, I was charged twice for my order and I would like a refund please."),
    ("agent", "Shut up, you stupid idiot."),
]
AGENT_ONLY = {"acme", "sam", "stupid", "idiot"}  # words only the agent says
FRAME_S = 0.02


def ws_url(service: LiveService) -> str:
    return service.base.replace("http://", "ws://") + "/v1/taps/audiohook"


def headers(key: str, session_id: str) -> dict[str, str]:
    return {"X-API-KEY": key, "Audiohook-Organization-Id": ORG, "Audiohook-Correlation-Id": str(uuid.uuid4()),
            "Audiohook-Session-Id": session_id}  # fmt: skip


def open_params(conversation: str, media: Sequence[dict[str, Any]] = OFFER, **extra: Any) -> dict[str, Any]:
    return {
        "organizationId": ORG,
        "conversationId": conversation,
        "participant": {
            "id": str(uuid.uuid4()),
            "ani": "+15550001111",
            "aniName": "Test Caller",
            "dnis": "+15550002222",
        },
        "media": list(media),
        "language": "en-US",
        "customConfig": {"agent_id": "alice", "queue": "tests"},
        **extra,
    }


class HookClient:
    """The Genesys side of one session: numbers its messages, tracks ``serverseq``, queues what
    the server says."""

    def __init__(self, ws: ClientConnection, session_id: str) -> None:
        self.ws = ws
        self.session_id = session_id
        self.seq = 0
        self.serverseq = 0
        self.samples = 0  # audio sent, per channel, at 8 kHz
        self.conversation: str | None = None  # the call this session opened, if any
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.received: list[dict[str, Any]] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                self.serverseq = message["seq"]
                self.received.append(message)
                await self.inbox.put(message)
        except ConnectionClosed:
            pass

    async def send(self, kind: str, parameters: dict[str, Any], **override: Any) -> None:
        self.seq += 1
        message = {"version": "2", "type": kind, "seq": self.seq, "serverseq": self.serverseq,
                   "id": self.session_id, "position": f"PT{self.samples / 8000:.2f}S",
                   "parameters": parameters, **override}  # fmt: skip
        await self.ws.send(json.dumps(message))

    async def expect(self, kind: str, timeout_s: float = 5.0) -> dict[str, Any]:
        message = await asyncio.wait_for(self.inbox.get(), timeout_s)
        assert message["type"] == kind, message
        assert message["id"] == self.session_id
        assert message["version"] == "2"
        return message

    async def audio(self, frames: Sequence[bytes], samples_per_frame: int) -> None:
        async for frame in paced(frames, FRAME_S):
            await self.ws.send(frame)
            self.samples += samples_per_frame


def stereo_frames(customer: Pcm16, agent: Pcm16) -> list[bytes]:
    """16 kHz channels → 8 kHz μ-law, interleaved external (customer), internal (agent), 20 ms."""
    pcm = interleave(resample(customer, 16_000, 8000), resample(agent, 16_000, 8000))
    return [mulaw_encode(c) for c in chunks(pcm, 2 * 160)]


# -- a whole call, with bad clients around it ------------------------------------------------------


async def good_call(service: LiveService) -> dict[str, Any]:
    agent, customer, _ = dialogue(SCRIPT)
    frames = stereo_frames(np.concatenate([customer, silence(1.0)]), np.concatenate([agent, silence(1.0)]))
    conversation, session_id = str(uuid.uuid4()), str(uuid.uuid4())
    follower = CallFollower(service.base, service.token("supervisor"), f"audiohook-{conversation}")
    async with connect(ws_url(service), additional_headers=headers(service.token("integrator"), session_id),
                       proxy=None, compression=None) as ws:  # fmt: skip
        client = HookClient(ws, session_id)
        started = time.monotonic()
        await client.send("open", open_params(conversation))
        opened = await client.expect("opened", 5.0)
        opened_s = time.monotonic() - started
        assert opened["parameters"]["media"] == [STEREO]
        assert opened["clientseq"] == 1
        assert opened["seq"] == 1
        half = len(frames) // 2
        await client.audio(frames[:half], 160)
        await client.send("ping", {"rtt": "PT0.05S"})
        pong = await client.expect("pong")
        assert pong["clientseq"] == 2
        assert pong["parameters"] == {}
        await client.audio(frames[half:], 160)
        await client.send("close", {"reason": "end"})
        closed = await client.expect("closed", 5.0)
        assert closed["clientseq"] == 3
    messages = await follower.ended(90)
    return {"opened_s": opened_s, "messages": messages}


async def expect_disconnect(service: LiveService, steps: Any, reason: str, info: str) -> None:
    """Connect, run ``steps(client)``, expect ``disconnect`` (reason, info containing ``info``);
    then the close transaction the protocol asks for: ``close`` → ``closed``."""
    session_id = str(uuid.uuid4())
    async with connect(ws_url(service), additional_headers=headers(service.token("integrator"), session_id),
                       proxy=None, compression=None, max_size=None) as ws:  # fmt: skip
        client = HookClient(ws, session_id)
        await steps(client)
        message = await client.expect("disconnect", 10.0)
        assert message["parameters"]["reason"] == reason, message
        assert info.lower() in message["parameters"]["info"].lower(), message
        await client.send("close", {"reason": "disconnect"})
        await client.expect("closed")
    if client.conversation is not None:  # the call it had opened ends too
        summary = await ended_summary(service, f"audiohook-{client.conversation}")
        assert summary["end_reason"] == "protocol_error", summary


async def ended_summary(service: LiveService, call_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {service.token('supervisor')}"}
    async with httpx.AsyncClient(base_url=service.base, headers=headers) as http:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            r = await http.get(f"/v1/calls/{call_id}")
            if r.status_code == 200 and r.json()["ended"]:
                return dict(r.json())
            await asyncio.sleep(0.2)
    raise AssertionError(f"call {call_id} did not end within {timeout_s} s")


async def refused(service: LiveService, hdrs: dict[str, str]) -> int:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(ws_url(service), additional_headers=hdrs, proxy=None):
            pass
    return int(caught.value.response.status_code)


async def bad_clients(service: LiveService) -> None:
    session = str(uuid.uuid4())
    assert await refused(service, headers("not-a-token", session)) == 401
    assert await refused(service, {k: v for k, v in headers("", session).items() if k != "X-API-KEY"}) == 401
    assert await refused(service, headers(service.token("agent"), session)) == 403
    no_session = {
        k: v for k, v in headers(service.token("integrator"), session).items() if "Session" not in k
    }
    assert await refused(service, no_session) == 400

    async def bad_json(c: HookClient) -> None:
        await c.ws.send("{not json")

    async def wrong_version(c: HookClient) -> None:
        await c.send("open", open_params(str(uuid.uuid4())), version="1")

    async def binary_first(c: HookClient) -> None:
        await c.ws.send(b"\xff" * 320)

    async def opus_only(c: HookClient) -> None:
        await c.send("open", open_params(str(uuid.uuid4()), [{**STEREO, "format": "opus", "rate": 48000}]))

    async def wrong_org(c: HookClient) -> None:
        await c.send("open", {**open_params(str(uuid.uuid4())), "organizationId": str(uuid.uuid4())})

    async def unknown_type(c: HookClient) -> None:
        c.conversation = str(uuid.uuid4())
        await c.send("open", open_params(c.conversation))
        await c.expect("opened")
        await c.send("teleport", {})

    async def seq_skipped(c: HookClient) -> None:
        c.conversation = str(uuid.uuid4())
        await c.send("open", open_params(c.conversation))
        await c.expect("opened")
        c.seq += 5
        await c.send("ping", {})

    async def oversized(c: HookClient) -> None:
        c.conversation = str(uuid.uuid4())
        await c.send("open", open_params(c.conversation))
        await c.expect("opened")
        await c.ws.send(b"\xff" * 70_000)

    async def half_sample(c: HookClient) -> None:
        c.conversation = str(uuid.uuid4())
        await c.send("open", open_params(c.conversation))
        await c.expect("opened")
        await c.ws.send(b"\xff" * 321)  # stereo PCMU: an even number of bytes

    await asyncio.gather(
        expect_disconnect(service, bad_json, "error", "JSON"),
        expect_disconnect(service, wrong_version, "error", "version"),
        expect_disconnect(service, binary_first, "error", "before the open"),
        expect_disconnect(service, opus_only, "error", "media"),
        expect_disconnect(service, wrong_org, "unauthorized", "organizationId"),
        expect_disconnect(service, unknown_type, "error", "teleport"),
        expect_disconnect(service, seq_skipped, "error", "seq"),
        expect_disconnect(service, oversized, "error", "limit"),
        expect_disconnect(service, half_sample, "error", "samples"),
    )


async def test_audiohook_call_with_bad_clients_around_it(service: LiveService) -> None:
    call, _ = await asyncio.gather(good_call(service), bad_clients(service))
    print(f"\naudiohook: opened {call['opened_s'] * 1000:.0f} ms after open")
    assert call["opened_s"] < 5.0
    messages = call["messages"]
    started = of_type(messages, "call.started")[0]["data"]["payload"]
    assert started["source"] == "audiohook"
    assert started["lang"] == "en"
    assert started["channels"] == ["agent", "customer"]
    assert started["meta"]["agent_id"] == "alice"
    assert started["meta"]["queue"] == "tests"
    agent_said = " ".join(text for who, text in SCRIPT if who == "agent")
    customer_said = " ".join(text for who, text in SCRIPT if who == "customer")
    agent_heard, customer_heard = finals_text(messages, "agent"), finals_text(messages, "customer")
    assert word_overlap(agent_said, agent_heard) >= 0.6, agent_heard
    assert word_overlap(customer_said, customer_heard) >= 0.6, customer_heard
    assert not AGENT_ONLY & set(words(customer_heard)), customer_heard
    alerts = [m["data"] for m in of_type(messages, "alert")]
    assert any(a["payload"]["category"] == "abuse" and a["payload"]["severity"] == "fatal" for a in alerts)
    assert any(a["channel"] == "agent" for a in alerts if a["payload"]["category"] == "abuse")
    ended = messages[-1]["data"]
    assert ended["type"] == "call.ended"
    assert ended["payload"]["reason"] == "completed"


# -- a client that goes away ---------------------------------------------------------------------


async def test_audiohook_dropped_mid_call_ends_the_call(service: LiveService) -> None:
    """Mono (internal only) L16, a pause in the middle, then the socket dies without ``close``;
    a client that never answers ``disconnect`` is closed by the server."""
    speech = np.concatenate([silence(0.3), espeak("I can see the second charge on your card from Monday."),
                             silence(0.8)])  # fmt: skip
    pcm8k = resample(speech, 16_000, 8000)
    frames = [c.astype("<i2").tobytes() for c in chunks(pcm8k, 160)]
    conversation, session_id = str(uuid.uuid4()), str(uuid.uuid4())
    mono_l16 = {"type": "audio", "format": "L16", "channels": ["internal"], "rate": 8000}
    follower = CallFollower(service.base, service.token("supervisor"), f"audiohook-{conversation}")
    ws = await connect(ws_url(service), additional_headers=headers(service.token("integrator"), session_id),
                       proxy=None, compression=None)  # fmt: skip
    client = HookClient(ws, session_id)
    started = time.monotonic()
    await client.send("open", open_params(conversation, [{**STEREO, "format": "G729"}, mono_l16],
                                          supportedLanguages=True))  # fmt: skip
    opened = await client.expect("opened", 5.0)
    print(f"\naudiohook: opened {(time.monotonic() - started) * 1000:.0f} ms after open")
    assert opened["parameters"]["media"] == [mono_l16]
    assert "en-US" in opened["parameters"]["supportedLanguages"]
    await client.audio(frames, 160)
    await client.send("paused", {})
    await asyncio.sleep(1.5)  # on hold: no audio
    await client.send("resumed", {"start": f"PT{client.samples / 8000:.2f}S", "discarded": "PT1.5S"})
    await client.audio(frames[: len(frames) // 2], 160)
    assert [m["type"] for m in client.received] == ["opened"]  # paused/resumed get no answer
    ws.transport.abort()  # gone: no close transaction
    messages = await follower.ended(60)
    ended = messages[-1]["data"]
    assert ended["type"] == "call.ended"
    assert ended["payload"]["reason"] == "dropped"
    started_payload = of_type(messages, "call.started")[0]["data"]["payload"]
    assert started_payload["channels"] == ["agent"]
    assert (
        word_overlap("I can see the second charge on your card from Monday", finals_text(messages, "agent"))
        >= 0.6
    )

    # a client that gets ``disconnect`` and never closes: the server closes after its grace
    silent_session = str(uuid.uuid4())
    async with connect(ws_url(service), additional_headers=headers(service.token("integrator"), silent_session),
                       proxy=None) as ws2:  # fmt: skip
        await ws2.send(b"\x00" * 160)
        first = json.loads(await asyncio.wait_for(ws2.recv(), 5))
        assert first["type"] == "disconnect"
        t0 = time.monotonic()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws2.recv(), 15)
        assert time.monotonic() - t0 < 10
    async with httpx.AsyncClient(base_url=service.base) as c:
        assert (await c.get("/healthz")).json()["status"] == "ok"
