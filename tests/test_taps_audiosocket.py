"""The Asterisk AudioSocket tap over real TCP sockets, with legs written from the public protocol
(docs.asterisk.org, AudioSocket): the REST registration of each leg, two legs making one call
(8 kHz ``0x10`` frames on one, 16 kHz ``0x12`` on the other), DTMF, hangup; bad legs around it
(audio before the UUID, an unknown UUID, a short UUID, a payload over the limit, a truncated
message) while the call runs undisturbed; a leg that drops mid-call; a second leg that never comes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import numpy as np
import pytest

from sidecar.audio import Pcm16, resample
from sidecar.kernel.errors import ConfigError
from sidecar.taps.audiosocket import AudioSocketSettings
from tests.conftest import dialogue, espeak, silence
from tests.service_helpers import LiveService
from tests.tap_helpers import CallFollower, chunks, finals_text, of_type, paced, word_overlap, words

pytestmark = pytest.mark.model

SCRIPT = [
    ("agent", "Thank you for calling Acme billing, my name is Sam. How can I help you today?"),
    ("customer", "Hello, I was charged twice for my order and I would like a refund please."),
    ("agent", "Shut up, you stupid idiot."),
]
AGENT_ONLY = {"acme", "sam", "stupid", "idiot"}
SLIN8, SLIN16 = 0x10, 0x12


def message(kind: int, payload: bytes = b"") -> bytes:
    """One AudioSocket message: type, big-endian payload length, payload."""
    return bytes([kind]) + len(payload).to_bytes(2, "big") + payload


def audio_messages(pcm16k: Pcm16, kind: int) -> list[bytes]:
    """20 ms audio messages of 16 kHz speech, at the rate the message type says."""
    rate = 8000 if kind == SLIN8 else 16_000
    pcm = resample(pcm16k, 16_000, rate)
    return [message(kind, c.astype("<i2").tobytes()) for c in chunks(pcm, rate // 50)]


class Leg:
    """Asterisk's side of one AudioSocket connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, service: LiveService) -> Leg:
        reader, writer = await asyncio.open_connection("127.0.0.1", service.audiosocket_port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def stream(self, messages: list[bytes], dtmf_at: int | None = None) -> None:
        i = 0
        async for m in paced(messages, 0.02):
            await self.send(m)
            if i == dtmf_at:
                await self.send(message(0x03, b"5"))
            i += 1

    async def server_closed(self, timeout_s: float = 5.0) -> bool:
        """True when the server closes the connection (this tap never sends anything)."""
        data = await asyncio.wait_for(self.reader.read(), timeout_s)
        return data == b""

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def register(http: httpx.AsyncClient, **leg: Any) -> httpx.Response:
    return await http.post("/v1/taps/audiosocket/legs", json={k: str(v) for k, v in leg.items()})


def integrator(service: LiveService) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=service.base, headers={"Authorization": f"Bearer {service.token('integrator')}"}
    )


async def ended_reason(service: LiveService, call_id: str, timeout_s: float = 60.0) -> str:
    headers = {"Authorization": f"Bearer {service.token('supervisor')}"}
    async with httpx.AsyncClient(base_url=service.base, headers=headers) as http:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            r = await http.get(f"/v1/calls/{call_id}")
            if r.status_code == 200 and r.json()["ended"]:
                return str(r.json()["end_reason"])
            await asyncio.sleep(0.2)
    raise AssertionError(f"call {call_id} did not end within {timeout_s} s")


# -- bad legs --------------------------------------------------------------------------------------


async def bad_legs(service: LiveService) -> None:
    async with integrator(service) as http:
        audio_first = await Leg.connect(service)
        await audio_first.send(message(SLIN8, b"\x00" * 320))
        assert await audio_first.server_closed()

        unknown = await Leg.connect(service)
        await unknown.send(message(0x01, uuid.uuid4().bytes))
        assert await unknown.server_closed()

        short_uuid = await Leg.connect(service)
        await short_uuid.send(message(0x01, b"\x01\x02\x03\x04"))
        assert await short_uuid.server_closed()

        # a registered leg that then sends a payload over the limit: the leg and its call end
        big_id, big_uuid = f"as-big-{uuid.uuid4().hex[:8]}", uuid.uuid4()
        assert (await register(http, uuid=big_uuid, call_id=big_id, channel="customer")).status_code == 201
        big = await Leg.connect(service)
        await big.send(message(0x01, big_uuid.bytes))
        await big.stream(audio_messages(silence(0.5), SLIN8))
        await big.send(bytes([SLIN8, 0xFF, 0xFF]) + b"\x00" * 1000)
        assert await big.server_closed()
        assert await ended_reason(service, big_id) == "protocol_error"

        # a registered leg whose last message is cut short: the call ends as dropped
        cut_id, cut_uuid = f"as-cut-{uuid.uuid4().hex[:8]}", uuid.uuid4()
        assert (await register(http, uuid=cut_uuid, call_id=cut_id, channel="agent")).status_code == 201
        cut = await Leg.connect(service)
        await cut.send(message(0x01, cut_uuid.bytes))
        await cut.stream(audio_messages(silence(0.5), SLIN8))
        await cut.send(bytes([SLIN8]) + (1000).to_bytes(2, "big") + b"\x00" * 10)
        await cut.close()
        assert await ended_reason(service, cut_id) == "dropped"


# -- a two-leg call ----------------------------------------------------------------------------------


async def test_two_legs_make_one_call_with_bad_legs_around_it(service: LiveService) -> None:
    call_id = f"as-{uuid.uuid4().hex[:10]}"
    agent_uuid, customer_uuid = uuid.uuid4(), uuid.uuid4()
    async with integrator(service) as http:
        r = await register(
            http, uuid=agent_uuid, call_id=call_id, channel="agent", agent_id="alice", queue="tests"
        )
        assert r.status_code == 201, r.text
        assert r.json()["channel"] == "agent"
        assert r.json()["uuid"] == str(agent_uuid)
        assert r.json()["connect"] == f"127.0.0.1:{service.audiosocket_port}"  # where Asterisk dials this leg
        r = await register(http, uuid=customer_uuid, call_id=call_id, channel="customer")
        assert r.status_code == 201, r.text
        assert (
            await register(http, uuid=uuid.uuid4(), call_id=call_id, channel="customer")
        ).status_code == 409
        assert (await register(http, uuid=agent_uuid, call_id="other", channel="agent")).status_code == 409
        assert (await register(http, uuid=uuid.uuid4(), call_id="x", channel="supervisor")).status_code == 422
        spare = uuid.uuid4()
        assert (
            await register(http, uuid=spare, call_id=f"{call_id}-spare", channel="agent")
        ).status_code == 201
        assert (await http.delete(f"/v1/taps/audiosocket/legs/{spare}")).status_code == 204
        assert (await http.delete(f"/v1/taps/audiosocket/legs/{spare}")).status_code == 404
    async with httpx.AsyncClient(base_url=service.base) as anon:
        leg = {"uuid": str(uuid.uuid4()), "call_id": "y", "channel": "agent"}
        assert (await anon.post("/v1/taps/audiosocket/legs", json=leg)).status_code == 401
        agent_auth = {"Authorization": f"Bearer {service.token('agent')}"}
        assert (await anon.post("/v1/taps/audiosocket/legs", json=leg, headers=agent_auth)).status_code == 403

    agent, customer, _ = dialogue(SCRIPT)
    tail = silence(1.0)
    follower = CallFollower(service.base, service.token("supervisor"), call_id)

    async def run_leg(leg_uuid: uuid.UUID, pcm: Pcm16, kind: int, dtmf_at: int | None = None) -> None:
        leg = await Leg.connect(service)
        await leg.send(message(0x01, leg_uuid.bytes))
        await leg.stream(audio_messages(np.concatenate([pcm, tail]), kind), dtmf_at)
        await leg.send(message(0x00))
        await leg.close()

    await asyncio.gather(
        run_leg(agent_uuid, agent, SLIN8),
        run_leg(customer_uuid, customer, SLIN16, dtmf_at=50),
        bad_legs(service),
    )
    messages = await follower.ended(90)
    started = of_type(messages, "call.started")[0]["data"]["payload"]
    assert started["source"] == "audiosocket"
    assert started["channels"] == ["agent", "customer"]
    assert started["meta"]["agent_id"] == "alice"
    agent_said = " ".join(text for who, text in SCRIPT if who == "agent")
    customer_said = " ".join(text for who, text in SCRIPT if who == "customer")
    agent_heard, customer_heard = finals_text(messages, "agent"), finals_text(messages, "customer")
    assert word_overlap(agent_said, agent_heard) >= 0.6, agent_heard
    assert word_overlap(customer_said, customer_heard) >= 0.6, customer_heard
    assert not AGENT_ONLY & set(words(customer_heard)), customer_heard
    alerts = [m["data"] for m in of_type(messages, "alert") if m["data"]["payload"]["category"] == "abuse"]
    assert any(a["payload"]["severity"] == "fatal" and a["channel"] == "agent" for a in alerts)
    ended = messages[-1]["data"]
    assert ended["type"] == "call.ended"
    assert ended["payload"]["reason"] == "completed"
    async with integrator(service) as http:  # the call's legs are spent: their UUIDs are forgotten
        again = await Leg.connect(service)
        await again.send(message(0x01, agent_uuid.bytes))
        assert await again.server_closed()
        r = await register(http, uuid=uuid.uuid4(), call_id=call_id, channel="agent")
        assert r.status_code == 409  # the call id is taken


# -- legs that go away -----------------------------------------------------------------------------


async def test_a_dropped_leg_and_a_leg_that_never_comes_end_their_calls(service: LiveService) -> None:
    line = "I can see the second charge on your card from Monday."
    speech = np.concatenate([silence(0.3), espeak(line), silence(0.8)])
    dropped_id, lonely_id = f"as-drop-{uuid.uuid4().hex[:8]}", f"as-lone-{uuid.uuid4().hex[:8]}"
    dropped_uuid, lonely_uuid = uuid.uuid4(), uuid.uuid4()
    async with integrator(service) as http:
        for body in (
            {"uuid": dropped_uuid, "call_id": dropped_id, "channel": "agent"},
            {"uuid": lonely_uuid, "call_id": lonely_id, "channel": "customer"},
            {"uuid": uuid.uuid4(), "call_id": lonely_id, "channel": "agent"},  # never connects
        ):
            assert (await register(http, **body)).status_code == 201
    dropped = CallFollower(service.base, service.token("supervisor"), dropped_id)
    lonely = CallFollower(service.base, service.token("supervisor"), lonely_id)

    async def drop_mid_call() -> None:
        leg = await Leg.connect(service)
        await leg.send(message(0x01, dropped_uuid.bytes))
        frames = audio_messages(np.concatenate([speech, espeak("and then there was more")]), SLIN8)
        await leg.stream(frames[: len(frames) - 40])  # mid-word
        leg.writer.transport.abort()  # a reset: Asterisk's host went away

    async def lonely_leg() -> float:
        leg = await Leg.connect(service)
        await leg.send(message(0x01, lonely_uuid.bytes))
        await leg.stream(audio_messages(speech, SLIN8))
        await leg.send(message(0x00))
        await leg.close()
        return time.monotonic()

    _, hung_up_at = await asyncio.gather(drop_mid_call(), lonely_leg())
    messages = await dropped.ended(60)
    assert messages[-1]["data"]["payload"]["reason"] in ("dropped", "completed")  # reset, or a clean close
    assert word_overlap(line, finals_text(messages, "agent")) >= 0.6
    messages = await lonely.ended(60)
    waited = time.monotonic() - hung_up_at
    assert waited >= 4.0, f"the call ended {waited:.1f} s after its only leg, before the wait for the other"
    assert messages[-1]["data"]["payload"]["reason"] == "completed"
    assert word_overlap(line, finals_text(messages, "customer")) >= 0.6


@pytest.mark.parametrize(("value", "ok"), [
    ("10.1.2.3:9092", True), ("media-0.assist.svc:9092", True), ("[fd00::7]:9092", True),
    ("10.1.2.3", False), (":9092", False), ("10.1.2.3:99999", False), ("10.1.2.3:port", False),
])  # fmt: skip
def test_the_advertised_address_is_host_and_port(
    value: str, ok: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSIST_AUDIOSOCKET_ADVERTISE", value)
    if ok:
        assert AudioSocketSettings.from_env().advertise == value
    else:
        with pytest.raises(ConfigError, match="ASSIST_AUDIOSOCKET_ADVERTISE"):
            AudioSocketSettings.from_env()
