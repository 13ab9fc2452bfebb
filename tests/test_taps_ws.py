"""The WebSocket media taps over real sockets against the running service (real ASR, real coach):
Twilio Media Streams (``/v1/taps/twilio``) and L16 as FreeSWITCH mod_audio_fork and jambonz
``listen`` send it (``/v1/taps/l16``).

The clients here speak each platform's side of the protocol as its public documentation describes
it (they are protocol clients, not fakes of the service); speech is espeak-ng, fed at real-time
pace in 20 ms chunks; what the service made of it is read back from the call's SSE stream.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, cast

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sidecar.audio import Pcm16, resample
from sidecar.taps.twilio import MediaChunk, TwilioStream
from tests.conftest import dialogue, espeak, silence
from tests.service_helpers import LiveService
from tests.tap_helpers import (
    CallFollower,
    chunks,
    finals_text,
    interleave,
    mulaw_encode,
    paced,
    word_overlap,
    words,
)

pytestmark = pytest.mark.model

# lines that espeak-ng renders and Whisper hears well even band-limited to 8 kHz μ-law (telephone)
AGENT_HELLO = "Hello, thank you for calling the billing team, how can I help?"
CUSTOMER_LINE = "I was charged twice for my subscription last week."
AGENT_ABUSE = "Shut up, you stupid idiot."
AGENT_ONLY = {"hello", "billing", "team", "help", "shut", "stupid", "idiot"}
CUSTOMER_ONLY = {"charged", "twice", "subscription", "week"}
ENDED_S = 120.0  # the call's end after the last audio: ASR drains on a shared 2-core machine


def ws_url(service: LiveService, tap: str, token: str | None = None) -> str:
    url = service.base.replace("http://", "ws://") + f"/v1/taps/{tap}"
    return f"{url}?access_token={token}" if token else url


def open_tap(
    service: LiveService, tap: str, token: str | None = "", **kwargs: Any
) -> Any:  # an async context manager: the connection
    token = service.token("integrator") if token == "" else token
    return connect(ws_url(service, tap, token), proxy=None, compression=None, open_timeout=30, **kwargs)


def follow(service: LiveService, call_id: str) -> CallFollower:
    return CallFollower(service.base, service.token("supervisor"), call_id)


async def closed_with(ws: ClientConnection, timeout_s: float = 60.0) -> tuple[int | None, str]:
    """Wait for the server to close the socket (it never sends data): its code and reason."""
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(timeout_s):
            while True:
                await ws.recv()
    return ws.close_code, ws.close_reason or ""


def assert_channel_finals(messages: list[dict[str, Any]], agent_script: str, customer_script: str) -> None:
    agent, customer = finals_text(messages, "agent"), finals_text(messages, "customer")
    assert word_overlap(agent_script, agent) >= 0.6, f"agent finals {agent!r} vs {agent_script!r}"
    assert word_overlap(customer_script, customer) >= 0.6, f"customer finals {customer!r}"
    assert not AGENT_ONLY & set(words(customer)), f"agent words on the customer channel: {customer!r}"
    assert not CUSTOMER_ONLY & set(words(agent)), f"customer words on the agent channel: {agent!r}"


def fatal_abuse(m: dict[str, Any]) -> bool:
    payload = m["data"]["payload"] if m["event"] == "alert" else {}
    return payload.get("severity") == "fatal" and payload.get("category") == "abuse"


# -- Twilio Media Streams: the platform's side, from Twilio's public docs ---------------------------


class TwilioClient:
    """Twilio's side of a Media Stream (``<Start><Stream track="both_tracks">``): ``connected``,
    ``start``, ``media`` every 20 ms per track (160 bytes of 8 kHz μ-law, base64), ``stop``."""

    def __init__(self, ws: ClientConnection, call_sid: str | None = None, **params: str) -> None:
        self.ws = ws
        self.call_sid = call_sid or f"CA{uuid.uuid4().hex}"
        self.stream_sid = f"MZ{uuid.uuid4().hex}"
        self.params = {"agent_id": "alice", "queue": "tests", "lang": "en", **params}
        self.seq = 0
        self.chunk = {"inbound": 0, "outbound": 0}

    @property
    def call_id(self) -> str:
        return self.params.get("call_id") or f"twilio-{self.call_sid}"

    async def send(self, message: dict[str, Any]) -> None:
        self.seq += 1
        await self.ws.send(json.dumps({**message, "sequenceNumber": str(self.seq)}))

    def start_message(self, encoding: str = "audio/x-mulaw", rate: int = 8000) -> dict[str, Any]:
        return {"event": "start", "streamSid": self.stream_sid, "start": {
            "accountSid": "AC" + "0" * 32, "streamSid": self.stream_sid, "callSid": self.call_sid,
            "tracks": ["inbound", "outbound"], "customParameters": self.params,
            "mediaFormat": {"encoding": encoding, "sampleRate": rate, "channels": 1}}}  # fmt: skip

    async def begin(self) -> None:
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self.send(self.start_message())

    def media_message(self, track: str, payload: str) -> dict[str, Any]:
        self.chunk[track] += 1
        ts = (self.chunk[track] - 1) * 20
        return {"event": "media", "streamSid": self.stream_sid, "media": {
            "track": track, "chunk": str(self.chunk[track]), "timestamp": str(ts), "payload": payload}}  # fmt: skip

    async def play(
        self, inbound: Pcm16, outbound: Pcm16, *, after: Callable[[int], Awaitable[None]] | None = None
    ) -> None:
        """Both tracks (16 kHz in, sent as 8 kHz μ-law), 20 ms per step in real time."""
        steps = list(zip(chunks(resample(inbound, 16_000, 8000), 160),
                         chunks(resample(outbound, 16_000, 8000), 160), strict=False))  # fmt: skip
        i = 0
        async for cin, cout in paced(steps, 0.02):
            await self.send(self.media_message("inbound", base64.b64encode(mulaw_encode(cin)).decode()))
            await self.send(self.media_message("outbound", base64.b64encode(mulaw_encode(cout)).decode()))
            i += 1
            if after is not None:
                await after(i)

    async def stop(self) -> None:
        await self.send({"event": "stop", "streamSid": self.stream_sid,
                         "stop": {"accountSid": "AC" + "0" * 32, "callSid": self.call_sid}})  # fmt: skip


async def twilio_short_call(service: LiveService) -> None:
    """A good stream of half a second of silence: it starts, stops and ends cleanly."""
    async with open_tap(service, "twilio") as ws:
        tw = TwilioClient(ws)
        follower = follow(service, tw.call_id)
        await tw.begin()
        await tw.play(silence(0.5), silence(0.5))
        await tw.stop()
        assert await closed_with(ws) == (1000, "stop received")
    ended = (await follower.ended(ENDED_S))[-1]
    assert ended["data"]["payload"]["reason"] == "completed"


# Each bad client: what it sends after connecting, the close code it must get, whether a call had
# started (then it must end with call.ended, reason protocol_error).
TwilioCase = Callable[[TwilioClient], Awaitable[None]]


async def _bad_json(tw: TwilioClient) -> None:
    await tw.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    await tw.ws.send('{"event": "start", "start": {')


async def _media_before_start(tw: TwilioClient) -> None:
    await tw.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    await tw.send(tw.media_message("inbound", base64.b64encode(b"\xff" * 160).decode()))


async def _wrong_encoding(tw: TwilioClient) -> None:
    await tw.send(tw.start_message(encoding="audio/x-alaw"))


async def _wrong_rate(tw: TwilioClient) -> None:
    await tw.send(tw.start_message(rate=16000))


async def _oversized(tw: TwilioClient) -> None:
    await tw.begin()
    await tw.send(tw.media_message("inbound", base64.b64encode(b"\xff" * 60_000).decode()))


async def _bad_base64(tw: TwilioClient) -> None:
    await tw.begin()
    await tw.send(tw.media_message("inbound", base64.b64encode(b"\xff" * 160).decode()))
    await tw.send(tw.media_message("outbound", "not*base64!"))


async def _binary_frame(tw: TwilioClient) -> None:
    await tw.begin()
    await tw.ws.send(b"\xff" * 160)


async def _no_event(tw: TwilioClient) -> None:
    await tw.ws.send(json.dumps({"streamSid": tw.stream_sid, "media": {}}))


TWILIO_CASES: dict[str, tuple[TwilioCase, int, bool]] = {
    "bad-json": (_bad_json, 1007, False),
    "no-event": (_no_event, 1007, False),
    "media-before-start": (_media_before_start, 1008, False),
    "wrong-encoding": (_wrong_encoding, 1003, False),
    "wrong-rate": (_wrong_rate, 1003, False),
    "oversized-frame": (_oversized, 1009, True),
    "bad-base64": (_bad_base64, 1007, True),
    "binary-frame": (_binary_frame, 1003, True),
}


async def run_twilio_case(service: LiveService, name: str) -> None:
    case, code, starts = TWILIO_CASES[name]
    async with open_tap(service, "twilio") as ws:
        tw = TwilioClient(ws)
        follower = follow(service, tw.call_id) if starts else None
        await case(tw)
        got, reason = await closed_with(ws)
    assert got == code, f"{name}: closed with {got} {reason!r}, expected {code}"
    assert reason, f"{name}: a close without a reason"
    if follower is not None:
        ended = (await follower.ended(ENDED_S))[-1]
        assert ended["data"]["payload"]["reason"] == "protocol_error", name


# -- auth --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tap", ["twilio", "l16"])
@pytest.mark.parametrize("who", ["none", "unknown", "agent"])
async def test_taps_refuse_a_missing_unknown_or_unauthorised_token(
    service: LiveService, tap: str, who: str
) -> None:
    token = {"none": None, "unknown": "not-a-token", "agent": service.token("agent")}[who]
    with pytest.raises(InvalidStatus) as refused:  # closed with 1008 before accept: HTTP 403
        async with open_tap(service, tap, token):
            pass
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("tap", ["twilio", "l16"])
@pytest.mark.parametrize("scheme", ["Bearer", "Basic"])
async def test_taps_take_a_bearer_or_basic_header(service: LiveService, tap: str, scheme: str) -> None:
    token = service.token("integrator")
    # Basic: what jambonz (wsAuth) and mod_audio_fork can send; the token is the password
    value = token if scheme == "Bearer" else base64.b64encode(f"jambonz:{token}".encode()).decode()
    headers = {"Authorization": f"{scheme} {value}"}
    async with open_tap(service, tap, None, additional_headers=headers) as ws:
        await ws.close()  # nothing sent: no call was started
        assert ws.close_code == 1000


# -- Twilio ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TWILIO_CASES))
async def test_twilio_bad_input_closes_with_its_code_and_the_next_stream_works(
    service: LiveService, name: str
) -> None:
    await run_twilio_case(service, name)
    await twilio_short_call(service)


async def test_twilio_dialogue_is_transcribed_per_track_with_an_abuse_alert_while_bad_clients_misbehave(
    service: LiveService,
) -> None:
    agent, customer, _ = dialogue(
        [("agent", AGENT_HELLO), ("customer", CUSTOMER_LINE), ("agent", AGENT_ABUSE)]
    )
    bad_runs: list[asyncio.Task[None]] = []

    async with open_tap(service, "twilio") as ws:
        tw = TwilioClient(ws)
        follower = follow(service, tw.call_id)
        await tw.begin()

        async def misbehave(step: int) -> None:  # bad clients on their own sockets, mid-call
            if step == 100:
                bad_runs.extend(asyncio.create_task(run_twilio_case(service, n)) for n in TWILIO_CASES)
            if step == 150:  # someone else's stream claiming this call's id is refused
                bad_runs.append(asyncio.create_task(duplicate_call_id(service, tw.call_sid)))

        await tw.play(customer, agent, after=misbehave)  # inbound = customer, outbound = agent
        await tw.stop()
        assert await closed_with(ws) == (1000, "stop received")
    await asyncio.gather(*bad_runs)  # every bad client got its close code

    messages = await follower.ended(ENDED_S)
    started = messages[0]["data"]
    assert started["type"] == "call.started"
    assert started["payload"]["source"] == "twilio"
    assert started["payload"]["meta"]["agent_id"] == "alice"
    assert started["payload"]["meta"]["call_sid"] == tw.call_sid
    assert sorted(started["payload"]["channels"]) == ["agent", "customer"]
    assert_channel_finals(messages, f"{AGENT_HELLO} {AGENT_ABUSE}", CUSTOMER_LINE)
    alert = next(m for m in messages if fatal_abuse(m))
    assert alert["data"]["channel"] == "agent"
    ended = messages[-1]["data"]
    assert ended["type"] == "call.ended"
    assert ended["payload"]["reason"] == "completed"
    assert [m["data"]["seq"] for m in messages] == list(range(1, len(messages) + 1))


def test_twilio_timestamps_fill_short_holes_with_silence_and_leave_long_ones() -> None:
    stream = TwilioStream(cast(Any, None))  # placement needs no service
    chunk = np.ones(160, dtype=np.int16)

    def place(track: str, ts: int | None) -> int:
        return stream._place(MediaChunk(track, ts, chunk)).size

    assert place("inbound", 1000) == 160  # a track's first chunk: as it comes
    assert place("inbound", 1020) == 160  # in step
    assert place("inbound", 1100) == 160 + 480  # 60 ms missing: filled
    assert place("inbound", 1110) == 160  # overlapping (late): as it comes, never cut
    assert place("inbound", 5000) == 160  # a 3.9 s hole: left to LiveCall's wall-clock jump
    assert place("inbound", None) == 160  # no timestamp: arrival order
    assert place("inbound", 5060) == 160 + 160  # counted on from the chunk before
    assert place("outbound", 0) == 160  # each track on its own


async def duplicate_call_id(service: LiveService, call_sid: str) -> None:
    async with open_tap(service, "twilio") as ws:
        await TwilioClient(ws, call_sid).begin()
        code, reason = await closed_with(ws)
    assert code == 1008, (code, reason)
    assert "already in use" in reason


# -- L16 (mod_audio_fork, jambonz listen) -----------------------------------------------------------


async def send_l16(ws: ClientConnection, pcm: Pcm16, rate: int, nchannels: int, frame_bytes: int) -> None:
    """Interleaved int16 LE in frames of ``frame_bytes`` (any size, split anywhere), real time."""
    data = pcm.astype("<i2").tobytes()
    frames = [data[i : i + frame_bytes] for i in range(0, len(data), frame_bytes)]
    async for frame in paced(frames, frame_bytes / (2 * nchannels * rate)):
        await ws.send(frame)


async def test_l16_stereo_16k_as_jambonz_sends_it(service: LiveService) -> None:
    agent, customer, _ = dialogue([("agent", AGENT_HELLO), ("customer", CUSTOMER_LINE)])
    call_sid = str(uuid.uuid4())
    follower = follow(service, f"l16-{call_sid}")
    metadata = {"callSid": call_sid, "from": "+15083084809", "to": "+15083728299", "direction": "inbound",
                "sampleRate": 16000, "mixType": "stereo", "agent_id": "alice", "queue": "tests", "lang": "en"}  # fmt: skip
    async with open_tap(service, "l16", subprotocols=["audio.jambonz.org"]) as ws:
        assert ws.subprotocol == "audio.jambonz.org"
        await ws.send(json.dumps(metadata))
        # jambonz's default mapping: left = caller (customer), right = callee (agent); frames of an
        # odd size, so samples and stereo frames are split across WebSocket frames
        await send_l16(ws, interleave(customer, agent), 16_000, 2, 2557)
        await ws.close()
    messages = await follower.ended(ENDED_S)
    payload = messages[0]["data"]["payload"]
    assert payload["source"] == "l16"
    assert payload["meta"]["mix_type"] == "stereo"
    assert "from" not in payload["meta"]
    assert "+15083084809" not in json.dumps(messages[0])
    assert_channel_finals(messages, AGENT_HELLO, CUSTOMER_LINE)
    assert messages[-1]["data"]["payload"]["reason"] == "completed"


async def test_l16_mono_8k_as_mod_audio_fork_sends_it(service: LiveService) -> None:
    call_id = f"fs-{uuid.uuid4().hex[:12]}"
    follower = follow(service, call_id)
    # mod_audio_fork sends the metadata text it was started with: the rate and channel go in it
    metadata = {"call_id": call_id, "sample_rate": "8k", "mix_type": "mono", "channel": "agent",
                "agent_id": "alice", "lang": "en"}  # fmt: skip
    speech = resample(np.concatenate([silence(0.3), espeak(AGENT_ABUSE), silence(1.0)]), 16_000, 8000)
    async with open_tap(service, "l16", subprotocols=["audio.drachtio.org"]) as ws:
        assert ws.subprotocol == "audio.drachtio.org"
        await ws.send(json.dumps(metadata))
        await ws.send(json.dumps({"type": "ping"}))  # a control message: logged and ignored
        await send_l16(ws, speech, 8000, 1, 321)  # 20.06 ms, an odd number of bytes
        await ws.close()
    messages = await follower.ended(ENDED_S)
    assert messages[0]["data"]["payload"]["channels"] == ["agent"]
    assert word_overlap(AGENT_ABUSE, finals_text(messages, "agent")) >= 0.6
    assert any(fatal_abuse(m) for m in messages)
    assert messages[-1]["data"]["payload"]["reason"] == "completed"


L16_CASES: dict[str, tuple[list[str | bytes], int, bool]] = {
    "binary-before-metadata": ([b"\x00\x01" * 160], 1008, False),
    "metadata-not-json": (["callSid=abc; sampleRate=8000"], 1007, False),
    "metadata-not-an-object": (["[8000]"], 1007, False),
    "no-sample-rate": ([json.dumps({"mixType": "mono"})], 1007, False),
    "unsupported-rate": ([json.dumps({"sampleRate": 11025})], 1003, False),
    "unsupported-mix": ([json.dumps({"sampleRate": 8000, "mixType": "quad"})], 1003, False),
    "same-party-twice": (
        [json.dumps({"sampleRate": 8000, "mixType": "stereo", "channels": ["agent", "agent"]})],
        1007,
        False,
    ),
    "oversized-frame": (
        [json.dumps({"sampleRate": 8000}), b"\x00" * 320, b"\x00" * (1024 * 1024 + 2)],
        1009,
        True,
    ),
}


@pytest.mark.parametrize("name", list(L16_CASES))
async def test_l16_bad_input_closes_with_its_code(service: LiveService, name: str) -> None:
    frames, code, starts = L16_CASES[name]
    call_id = f"l16bad-{uuid.uuid4().hex[:12]}"
    if isinstance(frames[0], str) and frames[0].startswith("{") and starts:
        frames = [json.dumps({**json.loads(frames[0]), "call_id": call_id}), *frames[1:]]
    follower = follow(service, call_id) if starts else None
    async with open_tap(service, "l16") as ws:
        for frame in frames:
            await ws.send(frame)
        got, reason = await closed_with(ws)
    assert got == code, (name, got, reason)
    assert reason
    if follower is not None:
        assert (await follower.ended(ENDED_S))[-1]["data"]["payload"]["reason"] == "protocol_error"


# -- a client that vanishes ----------------------------------------------------------------------------


@pytest.mark.parametrize("tap", ["twilio", "l16"])
async def test_a_client_that_drops_mid_call_ends_its_call(service: LiveService, tap: str) -> None:
    speech = np.concatenate([silence(0.3), espeak(CUSTOMER_LINE)])[: 16_000 * 2]  # cut mid-sentence
    async with open_tap(service, tap) as ws:
        if tap == "twilio":
            tw = TwilioClient(ws)
            follower = follow(service, tw.call_id)
            await tw.begin()
            await tw.play(speech, silence(speech.size / 16_000))
        else:
            call_id = f"drop-{uuid.uuid4().hex[:12]}"
            follower = follow(service, call_id)
            await ws.send(json.dumps({"sampleRate": 16000, "call_id": call_id, "agent_id": "alice"}))
            await send_l16(ws, speech, 16_000, 1, 640)
        await follower.seen(lambda m: m["event"] == "call.started", 30)
        ws.transport.abort()  # the TCP connection goes, without a close frame or a stop
    messages = await follower.ended(ENDED_S)
    assert messages[-1]["data"]["payload"]["reason"] == "dropped"
