"""Twilio Media Streams tap: ``GET /v1/taps/twilio`` (WebSocket), one socket per stream.

Protocol (Twilio's public Media Streams docs): JSON text frames, each with an ``event``:
``connected`` (``protocol``, ``version``), ``start`` (``streamSid``; ``start``: ``callSid``,
``accountSid``, ``tracks``, ``customParameters``, ``mediaFormat``), ``media`` (``media``:
``track``, ``chunk``, ``timestamp`` in ms, ``payload`` base64 μ-law), ``dtmf``, ``mark``,
``stop``. Only ``audio/x-mulaw`` at 8000 Hz, 1 channel is accepted. Nothing is ever sent back
(no audio, so no marks either: a ``mark`` from Twilio is ignored).

Call metadata comes from ``<Parameter>``s (``customParameters``): ``agent_id``, ``queue``,
``lang`` (``en``, ``zh`` or ``auto``; default ``en``), optional ``call_id`` (default
``twilio-<callSid>``), optional ``inbound`` (which party the ``inbound`` track is: ``customer``
by default, ``agent`` when the stream sits on the agent's leg).

Channel mapping: ``inbound`` track → customer, ``outbound`` track → agent (``track="both_tracks"``);
the call has only the channels that ``start.tracks`` announces.

Placement: chunks go to the call in arrival order; a track whose ``timestamp`` runs ahead of the
audio received on it by a short hole (≤ ``GAP_JUMP_S``) gets that hole as silence, so its call
time stays right; a longer hole is left to ``LiveCall``'s wall-clock gap jump.

Auth: an integrator's token as ``?access_token=`` (Twilio cannot set headers) or
``Authorization: Bearer``; none, unknown or not allowed: the handshake is refused (close 1008
before accept, which the server answers with HTTP 403).

Errors close the socket with a code and a reason, and end the call (``call.ended``) if it had
started: 1003 unsupported data (a binary frame, a media format other than 8 kHz μ-law mono),
1007 invalid payload (not JSON, not an object, no ``event``, missing or bad fields, bad base64),
1008 policy (media before ``start``, a second ``start``, a call id in use, idle too long), 1009 a
text frame over ``MAX_TEXT_BYTES``, 1011 the call failed, 1013 the service runs as many calls as
it may. Unknown ``event`` names are logged and ignored (Twilio adds events over time).

Drop policy: this reader never waits on ASR. ``LiveCall.push`` only resamples and queues; the
call's pipeline drops its oldest audio when the recogniser falls behind.
Ends: ``stop`` → ``call.ended`` reason ``completed`` and close 1000; a socket that goes away
without ``stop`` → reason ``dropped``; a protocol error → ``protocol_error``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, WebSocket

from sidecar.audio import Pcm16, decode_g711
from sidecar.calls.access import TapCalls
from sidecar.calls.live_call import GAP_JUMP_S, CallMeta, LiveCall
from sidecar.kernel.events import Channel
from sidecar.taps.ws import (
    CALL_ID,
    INVALID,
    LANGS,
    NORMAL,
    POLICY,
    UNSUPPORTED,
    Closed,
    TapProtocolError,
    TapSession,
    admit,
    close_quietly,
    open_tap_call,
    receive_frame,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/taps", tags=["taps"])

RATE = 8000
ENCODING = "audio/x-mulaw"
MAX_TEXT_BYTES = 64 * 1024  # a media message carries ~0.3 KiB; anything near this is not Twilio
START_TIMEOUT_S = 10.0  # ``start`` must arrive this soon after the handshake
IDLE_TIMEOUT_S = 30.0  # a started stream sends media every 20 ms: this long without a message is dead
TRACKS = ("inbound", "outbound")


@dataclass(frozen=True, slots=True)
class StreamStart:
    """What a ``start`` message says: the call's metadata and each announced track's channel."""

    stream_sid: str
    call_sid: str
    meta: CallMeta
    tracks: tuple[tuple[str, Channel], ...]  # (twilio track, our channel)

    @property
    def channels(self) -> tuple[Channel, ...]:
        mapped = {ch for _, ch in self.tracks}
        return tuple(ch for ch in ("agent", "customer") if ch in mapped)


@dataclass(frozen=True, slots=True)
class MediaChunk:
    track: str
    timestamp_ms: int | None
    pcm: Pcm16  # 8 kHz int16


def parse_message(text: str) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except ValueError:
        raise TapProtocolError(INVALID, "a frame that is not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("event"), str):
        raise TapProtocolError(INVALID, 'each message must be a JSON object with an "event"')
    return message


def _str(obj: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str) or (default is None and not value):
        raise TapProtocolError(INVALID, f"{where}.{key} must be a string")
    return value


def parse_start(message: dict[str, Any]) -> StreamStart:
    start = message.get("start")
    if not isinstance(start, dict):
        raise TapProtocolError(INVALID, 'a start message needs a "start" object')
    fmt = start.get("mediaFormat")
    if not isinstance(fmt, dict):
        raise TapProtocolError(INVALID, "start.mediaFormat is missing")
    if fmt.get("encoding") != ENCODING or fmt.get("sampleRate") != RATE or fmt.get("channels", 1) != 1:
        got = f"{fmt.get('encoding')}/{fmt.get('sampleRate')}/{fmt.get('channels', 1)}"
        raise TapProtocolError(
            UNSUPPORTED, f"only {ENCODING} at {RATE} Hz mono is supported, not {got}"[:120]
        )
    stream_sid = _str(message, "streamSid", "message", start.get("streamSid"))
    call_sid = _str(start, "callSid", "start")
    params = start.get("customParameters") or {}
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise TapProtocolError(INVALID, "start.customParameters must map names to strings")
    lang = params.get("lang", "en")
    if lang not in LANGS:
        raise TapProtocolError(INVALID, f"customParameters.lang must be one of {', '.join(LANGS)}")
    call_id = params.get("call_id") or f"twilio-{call_sid}"
    if not CALL_ID.match(call_id):
        raise TapProtocolError(INVALID, "call id: letters, digits and ._:- only, at most 128")
    inbound = params.get("inbound", "customer")
    if inbound not in ("customer", "agent"):
        raise TapProtocolError(INVALID, 'customParameters.inbound must be "customer" or "agent"')
    outbound: Channel = "agent" if inbound == "customer" else "customer"
    tracks = start.get("tracks", ["inbound"])
    if (
        not isinstance(tracks, list)
        or not tracks
        or any(t not in TRACKS for t in tracks)
        or len(set(tracks)) != len(tracks)
    ):
        raise TapProtocolError(INVALID, 'start.tracks must list "inbound" and/or "outbound"')
    mapping: dict[str, Channel] = {"inbound": inbound, "outbound": outbound}
    meta = CallMeta(
        source="twilio",
        call_id=call_id,
        lang=lang,
        agent_id=params.get("agent_id", "")[:128],
        queue=params.get("queue", "")[:128],
        extra=(("stream_sid", stream_sid[:64]), ("call_sid", call_sid[:64])),
    )
    return StreamStart(stream_sid, call_sid, meta, tuple((t, mapping[t]) for t in tracks))


def parse_media(message: dict[str, Any]) -> MediaChunk:
    media = message.get("media")
    if not isinstance(media, dict):
        raise TapProtocolError(INVALID, 'a media message needs a "media" object')
    track = media.get("track", "inbound")
    payload = media.get("payload")
    if not isinstance(payload, str):
        raise TapProtocolError(INVALID, "media.payload must be a base64 string")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise TapProtocolError(INVALID, "media.payload is not valid base64") from None
    timestamp = media.get("timestamp")
    try:  # Twilio sends it as a string of milliseconds
        ts = int(timestamp) if timestamp is not None else None
    except (TypeError, ValueError):
        raise TapProtocolError(INVALID, "media.timestamp must be milliseconds") from None
    return MediaChunk(str(track), ts, decode_g711(data, "ulaw"))


class TwilioStream:
    """One stream's state: the start, the call it feeds, each track's position."""

    def __init__(self, calls: TapCalls) -> None:
        self.calls = calls
        self.start: StreamStart | None = None
        self.call: LiveCall | None = None
        self._channels: dict[str, Channel] = {}
        self._next_ms: dict[str, float] = {}  # per track: the timestamp the next chunk should have
        self._ignored: set[str] = set()

    async def handle(self, text: str) -> bool:
        """One text frame; True at ``stop``."""
        message = parse_message(text)
        event = message["event"]
        if event == "media":
            await self._media(message)
        elif event == "start":
            await self._start(message)
        elif event == "stop":
            return True
        elif event in ("connected", "mark", "dtmf"):
            pass  # nothing to do: no audio goes back, so marks need no answer; digits are not logged
        elif event not in self._ignored and len(self._ignored) < 20:
            self._ignored.add(event)
            log.warning("twilio tap: unknown event ignored", extra={"event": event[:40]})
        return False

    async def _start(self, message: dict[str, Any]) -> None:
        if self.start is not None:
            raise TapProtocolError(POLICY, "a second start on one stream")
        start = parse_start(message)
        self.call = await open_tap_call(self.calls, start.meta, start.channels)
        self.start = start
        self._channels = dict(start.tracks)
        log.info(
            "twilio tap: call started", extra={"call_id": self.call.call_id, "tracks": len(start.tracks)}
        )

    async def _media(self, message: dict[str, Any]) -> None:
        if self.start is None or self.call is None:
            raise TapProtocolError(POLICY, "media before start")
        sid = message.get("streamSid")
        if sid is not None and sid != self.start.stream_sid:
            raise TapProtocolError(POLICY, "media for another streamSid")
        chunk = parse_media(message)
        channel = self._channels.get(chunk.track)
        if channel is None:
            raise TapProtocolError(
                INVALID, f"media on track {chunk.track[:20]!r}, which start did not announce"
            )
        pcm = self._place(chunk)
        if pcm.size:
            await self.call.push(channel, pcm, RATE)

    def _place(self, chunk: MediaChunk) -> Pcm16:
        """The chunk, after the silence that fills a short hole before its timestamp."""
        pcm, ts = chunk.pcm, chunk.timestamp_ms
        expected = self._next_ms.get(chunk.track)
        if ts is None:  # no timestamp: arrival order
            if expected is not None:
                self._next_ms[chunk.track] = expected + pcm.size * 1000 / RATE
            return pcm
        if expected is not None and 20 <= ts - expected <= GAP_JUMP_S * 1000:
            hole = np.zeros(round((ts - expected) * RATE / 1000), dtype=np.int16)
            pcm = np.concatenate([hole, pcm])
        self._next_ms[chunk.track] = ts + chunk.pcm.size * 1000 / RATE
        return pcm


async def _receive_text(websocket: WebSocket, timeout_s: float) -> str | None:
    """The next text frame; None when the client has gone."""
    frame = await receive_frame(websocket, timeout_s, max_text=MAX_TEXT_BYTES, max_binary=None)
    return None if isinstance(frame, Closed) else str(frame)


@router.websocket("/twilio")
async def twilio_tap(websocket: WebSocket) -> None:
    """Twilio Media Streams (``<Stream url="wss://HOST/v1/taps/twilio?access_token=...">``);
    see docs/taps/twilio.md."""
    calls = await admit(websocket)
    if calls is None:
        return
    stream = TwilioStream(calls)
    async with TapSession(websocket, log, "twilio", lambda: stream.call) as session:
        while True:
            text = await _receive_text(websocket, START_TIMEOUT_S if stream.start is None else IDLE_TIMEOUT_S)
            if text is None:
                break
            if await stream.handle(text):
                session.reason = "completed"
                await close_quietly(websocket, NORMAL, "stop received")
                break
