"""L16 WebSocket tap: ``GET /v1/taps/l16``, raw linear PCM as FreeSWITCH ``mod_audio_fork`` and
jambonz ``listen`` send it; one socket per call.

Protocol: the first frame is a JSON text frame of metadata (jambonz sends the call's attributes
plus ``sampleRate`` and ``mixType`` and the verb's ``metadata``; ``mod_audio_fork`` sends the
metadata text it was started with, so put the rate and mix type in it). Every later binary frame
is 16-bit little-endian signed PCM: ``mono`` and ``mixed`` one channel, ``stereo`` two
interleaved. Frames may split anywhere (an odd byte, half a stereo frame): the rest waits for the
next frame. Text frames after the metadata (control messages, ``mod_audio_fork``'s stop
metadata) are logged by type and ignored. Nothing is ever sent back. The subprotocol the client
offers (``audio.jambonz.org``, ``audio.drachtio.org``) is accepted.

Metadata keys (``camelCase`` or ``snake_case``; a nested ``metadata`` object counts too):
``sampleRate`` (required: 8000, 16000 or another multiple of 8000 up to 64000; ``"8k"`` works),
``mixType`` (``mono`` default, ``mixed``, ``stereo``), ``agent_id``, ``queue``, ``lang`` (``en``
default, ``zh``, ``auto``), ``call_id`` (default ``l16-<callSid>``, or a generated id), and the
channel mapping below. Phone numbers (``from``, ``to``) are not kept.

Channel mapping: ``mono``: the one channel is ``channel`` (``customer`` by default: both platforms
send the caller's audio). ``mixed``: both parties summed into one channel cannot be separated, so
the call gets that one channel too (``channel``, default ``customer``) and every utterance of both
parties is attributed to it: per-party rules (agent abuse, disclosures) cannot tell who spoke;
``call.started`` says ``mix_type: mixed``. ``stereo``: ``channels`` names the left and the right
channel, default ``["customer", "agent"]`` (channel 0 is the caller on both platforms).

Auth: an integrator's token as ``?access_token=`` or ``Authorization: Bearer``; none, unknown or
not allowed: the handshake is refused (close 1008 before accept; the server answers HTTP 403).

Errors close the socket with a code and a reason, ending the call if it had started: 1003
unsupported data (a rate or mix type not handled), 1007 invalid payload (metadata that is not a
JSON object, bad values), 1008 policy (audio before metadata, a call id in use, idle too long),
1009 a binary frame over ``MAX_BINARY_BYTES`` or a text frame over ``MAX_TEXT_BYTES``, 1011 the
call failed, 1013 the service runs as many calls as it may.

Drop policy: this reader never waits on ASR. ``LiveCall.push`` only resamples and queues; the
call's pipeline drops its oldest audio when the recogniser falls behind.
Ends: the client closes normally (1000/1001) → ``call.ended`` reason ``completed``; any other
end of the socket → ``dropped``; a protocol error → ``protocol_error``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
from fastapi import APIRouter, WebSocket

from sidecar.audio import split_channels
from sidecar.calls.live_call import CallMeta, LiveCall
from sidecar.kernel.events import Channel
from sidecar.taps.ws import (
    CALL_ID,
    INVALID,
    LANGS,
    POLICY,
    UNSUPPORTED,
    Closed,
    TapProtocolError,
    TapSession,
    admit,
    open_tap_call,
    receive_frame,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/taps", tags=["taps"])

MixType = Literal["mono", "mixed", "stereo"]
MAX_BINARY_BYTES = 1024 * 1024  # 20 ms of 64 kHz stereo is 5 KiB: a MiB is not a live stream
MAX_TEXT_BYTES = 64 * 1024
METADATA_TIMEOUT_S = 10.0  # the metadata frame must arrive this soon after the handshake
IDLE_TIMEOUT_S = 30.0  # both platforms send audio every 20 ms, silence included
SUBPROTOCOLS = ("audio.jambonz.org", "audio.drachtio.org")
PARTIES: tuple[Channel, ...] = ("agent", "customer")


@dataclass(frozen=True, slots=True)
class L16Stream:
    """What the metadata frame says: the call, the rate and the wire channels, left first."""

    meta: CallMeta
    rate: int
    mix: MixType
    wire: tuple[Channel, ...]  # one entry per interleaved channel

    @property
    def channels(self) -> tuple[Channel, ...]:
        return tuple(ch for ch in PARTIES if ch in self.wire)


def _pick(fields: dict[str, Any], *names: str) -> Any:
    return next((fields[n] for n in names if fields.get(n) is not None), None)


def _rate(value: Any) -> int:
    text = str(value).strip().lower() if isinstance(value, (int, str)) else ""
    if text.endswith("k") and text[:-1].isdigit():
        text = str(int(text[:-1]) * 1000)
    if not text.isdigit():
        raise TapProtocolError(INVALID, "metadata must give sampleRate (e.g. 8000 or 16000)")
    rate = int(text)
    if rate % 8000 or not 8000 <= rate <= 64000:
        raise TapProtocolError(UNSUPPORTED, f"sampleRate {rate}: 8000, 16000, ... 64000 only")
    return rate


def _party(value: Any, what: str) -> Channel:
    if value not in PARTIES:
        raise TapProtocolError(INVALID, f'{what} must be "agent" or "customer"')
    return cast(Channel, value)


def parse_metadata(text: str) -> L16Stream:
    try:
        raw = json.loads(text)
    except ValueError:
        raise TapProtocolError(INVALID, "the metadata frame is not JSON") from None
    if not isinstance(raw, dict):
        raise TapProtocolError(INVALID, "the metadata frame must be a JSON object")
    nested = raw.get("metadata")
    fields: dict[str, Any] = {**raw, **(nested if isinstance(nested, dict) else {})}
    rate = _rate(_pick(fields, "sampleRate", "sample_rate"))
    mix = _pick(fields, "mixType", "mix_type") or "mono"
    if mix not in ("mono", "mixed", "stereo"):
        raise TapProtocolError(UNSUPPORTED, 'mixType must be "mono", "mixed" or "stereo"')
    wire: tuple[Channel, ...]
    if mix == "stereo":
        pair = fields.get("channels", ["customer", "agent"])
        if not isinstance(pair, list) or len(pair) != 2:
            raise TapProtocolError(INVALID, 'channels must be a pair such as ["customer", "agent"]')
        wire = (_party(pair[0], "channels[0]"), _party(pair[1], "channels[1]"))
        if wire[0] == wire[1]:
            raise TapProtocolError(INVALID, "channels must name two different parties")
    else:
        wire = (_party(fields.get("channel", "customer"), "channel"),)
    lang = fields.get("lang", "en")
    if lang not in LANGS:
        raise TapProtocolError(INVALID, f"lang must be one of {', '.join(LANGS)}")
    call_sid = _pick(fields, "callSid", "call_sid")
    call_id = fields.get("call_id")  # not jambonz's callId: that is the SIP Call-ID
    if call_id is None and isinstance(call_sid, str) and call_sid:
        call_id = f"l16-{call_sid}"
    if call_id is not None and (not isinstance(call_id, str) or not CALL_ID.match(call_id)):
        raise TapProtocolError(INVALID, "call id: letters, digits and ._:- only, at most 128")
    agent_id, queue = fields.get("agent_id", ""), fields.get("queue", "")
    if not isinstance(agent_id, str) or not isinstance(queue, str):
        raise TapProtocolError(INVALID, "agent_id and queue must be strings")
    extra = [("mix_type", str(mix)), ("sample_rate", str(rate))]
    if isinstance(call_sid, str) and call_sid:
        extra.append(("call_sid", call_sid[:64]))
    meta = CallMeta("l16", call_id, str(lang), agent_id[:128], queue[:128], tuple(extra))
    return L16Stream(meta, rate, cast(MixType, mix), wire)


class L16Feed:
    """Binary frames to per-channel PCM for the call; the bytes of a split sample wait."""

    def __init__(self, stream: L16Stream, call: LiveCall) -> None:
        self.stream = stream
        self.call = call
        self._rest = b""
        self._frame_bytes = 2 * len(stream.wire)

    async def feed(self, data: bytes) -> None:
        buf = self._rest + data if self._rest else data
        usable = len(buf) - len(buf) % self._frame_bytes
        self._rest = buf[usable:]
        if not usable:
            return
        pcm = np.frombuffer(buf, dtype="<i2", count=usable // 2).astype(np.int16)
        for channel, samples in zip(
            self.stream.wire, split_channels(pcm, len(self.stream.wire)), strict=True
        ):
            await self.call.push(channel, samples, self.stream.rate)


async def _receive(websocket: WebSocket, timeout_s: float) -> str | bytes | Closed:
    return await receive_frame(websocket, timeout_s, max_text=MAX_TEXT_BYTES, max_binary=MAX_BINARY_BYTES)


def _control(text: str, seen: set[str]) -> None:
    """A text frame after the metadata: ignored; the first of each type is logged (its type,
    never its content)."""
    try:
        message = json.loads(text)
    except ValueError:
        message = None
    kind = (message.get("type") or message.get("event")) if isinstance(message, dict) else None
    label = str(kind)[:40] if kind else "non-json"
    if label not in seen and len(seen) < 20:
        seen.add(label)
        log.info("l16 tap: text frame ignored", extra={"kind": label})


def _subprotocol(websocket: WebSocket) -> str | None:
    offered: list[str] = list(websocket.scope.get("subprotocols") or [])
    return next((p for p in SUBPROTOCOLS if p in offered), offered[0] if offered else None)


@router.websocket("/l16")
async def l16_tap(websocket: WebSocket) -> None:
    """L16 PCM after a JSON metadata frame (FreeSWITCH mod_audio_fork, jambonz listen); see
    docs/taps/l16.md."""
    calls = await admit(websocket, _subprotocol(websocket))
    if calls is None:
        return
    call: LiveCall | None = None
    async with TapSession(websocket, log, "l16", lambda: call) as session:
        first = await _receive(websocket, METADATA_TIMEOUT_S)
        if isinstance(first, Closed):
            return
        if isinstance(first, bytes):
            raise TapProtocolError(POLICY, "audio before the metadata: send the JSON metadata frame first")
        stream = parse_metadata(first)
        call = await open_tap_call(calls, stream.meta, stream.channels)
        log.info("l16 tap: call started", extra={"call_id": call.call_id, "mix_type": stream.mix})
        feed = L16Feed(stream, call)
        ignored: set[str] = set()
        while not isinstance(frame := await _receive(websocket, IDLE_TIMEOUT_S), Closed):
            if isinstance(frame, bytes):
                await feed.feed(frame)
            else:
                _control(frame, ignored)
        session.reason = frame.reason
