"""Genesys Cloud AudioHook Monitor tap: ``WS /v1/taps/audiohook``.

Protocol: AudioHook v2 as published by Genesys (the protocol specification and their reference
server, ``purecloudlabs/audiohook-reference-implementation``). Genesys Cloud is the *client*:

- It opens the WebSocket with ``X-API-KEY``, ``Audiohook-Organization-Id``,
  ``Audiohook-Correlation-Id`` and ``Audiohook-Session-Id`` headers (plus an optional HTTP message
  signature, ``Signature``/``Signature-Input``, which this tap does **not** verify: see
  ``docs/taps/audiohook.md``).
- Text frames are JSON messages ``{version: "2", type, seq, id, parameters}``; the client's also
  carry ``serverseq`` (the last server ``seq`` it saw) and ``position``; the server's carry
  ``clientseq``. Each side numbers its own messages 1, 2, 3, ...
- ``open`` → ``opened`` (the one media format chosen), sent at once: the call (model loading
  included) starts in the background and audio that arrives meanwhile waits in a bounded buffer.
  ``ping`` → ``pong``; ``paused``/``resumed`` are noted (nothing is sent back; the hole in the
  audio is skipped by ``LiveCall``'s wall-clock alignment); ``update``, ``dtmf``, ``error`` and
  ``discarded`` are logged; ``close`` → ``closed``, after which the client closes the socket.
- Binary frames are audio in the chosen format: PCMU (μ-law, 1 byte a sample) or L16 (16-bit
  little-endian) at 8 kHz, one channel or two interleaved in the order of ``channels``.
- On a protocol error the server sends ``disconnect`` (``reason`` ``error`` or ``unauthorized``,
  with ``info``), then waits briefly for the client's ``close``, answers ``closed`` and closes.

Channel mapping: ``external`` (the customer side of the conversation) → ``customer``; ``internal``
(the agent side) → ``agent``.

Auth: ``X-API-KEY`` is a service token (looked up in the token table in constant time) whose role
may ``taps.connect`` (``integrator`` or ``admin``). No key or an unknown one: the upgrade is
refused with HTTP 401; a key without the permission: 403; no valid ``Audiohook-Session-Id``: 400.
An ``organizationId`` in ``open`` that differs from the header: ``disconnect`` ``unauthorized``.

Drop policy: the reader never waits on ASR. ``LiveCall`` queues are bounded and drop the oldest
audio; before the call has started, at most ``PENDING_S`` of audio per channel is kept (oldest
dropped). Ends (``call.ended`` reason): ``close`` with reason ``end`` → ``completed`` (its other
reasons: ``disconnected``, ``error``, ``reconnect``); a socket that goes away without ``close`` →
``dropped``; a ``disconnect`` the server sent → ``protocol_error`` (or ``unauthorized``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from starlette.types import Message

from sidecar.audio import Pcm16, decode_g711, split_channels
from sidecar.calls.access import AccessDeniedError, TapCalls
from sidecar.calls.errors import CallNotLiveError, TooManyCallsError
from sidecar.calls.live_call import CallMeta, LiveCall
from sidecar.kernel.errors import InputError
from sidecar.kernel.events import Channel
from sidecar.taps.access import WS_POLICY_VIOLATION, TapAccess, installed_access
from sidecar.taps.hold import HeldAudio

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/taps", tags=["taps"])

VERSION = "2"
RATE = 8000
MAX_TEXT_CHARS = 65_535  # as Genesys' reference server
MAX_AUDIO_BYTES = 65_536  # one binary frame: 2 s of stereo L16, 4 s of stereo PCMU
PENDING_S = 8.0  # audio kept per channel while the call starts (below the pipeline's 10 s queue)
OPEN_TIMEOUT_S = 10.0  # from the upgrade to ``open``
IDLE_TIMEOUT_S = 60.0  # no message at all for this long (Genesys pings far more often)
CLOSE_GRACE_S = 5.0  # after ``disconnect``: how long the client has to start its ``close``
SUPPORTED_LANGUAGES = ["en-US", "zh-CN"]
CHANNEL_MAP: dict[str, Channel] = {"external": "customer", "internal": "agent"}
CLOSE_REASONS = {"end": "completed", "disconnect": "disconnected", "error": "error", "reconnect": "reconnect"}
CALL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
POSITION = re.compile(r"^PT(?:\d*\.)?\d+S$")

State = Literal["preparing", "active", "paused", "disconnecting", "closed"]


class ProtocolError(Exception):
    """What the client did wrong; answered with ``disconnect`` (reason ``error`` unless given)."""

    def __init__(self, info: str, reason: Literal["error", "unauthorized"] = "error") -> None:
        super().__init__(info)
        self.info = info
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MediaFormat:
    """One AudioHook media entry we accept: PCMU or L16 at 8 kHz, one or two channels."""

    format: Literal["PCMU", "L16"]
    channels: tuple[str, ...]  # AudioHook names, in interleaving order

    def as_json(self) -> dict[str, Any]:
        return {"type": "audio", "format": self.format, "channels": list(self.channels), "rate": RATE}

    @property
    def call_channels(self) -> tuple[Channel, ...]:
        mapped = {CHANNEL_MAP[c] for c in self.channels}
        return tuple(ch for ch in ("agent", "customer") if ch in mapped)

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample on every channel."""
        return (1 if self.format == "PCMU" else 2) * len(self.channels)


@dataclass(frozen=True, slots=True)
class ClientMessage:
    type: str
    seq: int
    serverseq: int
    id: str
    parameters: dict[str, Any]


def _seq(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_client_message(text: str) -> ClientMessage:
    """A client text frame, checked for the fields every AudioHook client message has."""
    if len(text) > MAX_TEXT_CHARS:
        raise ProtocolError(f"text message of {len(text)} characters is over the {MAX_TEXT_CHARS} limit")
    try:
        data = json.loads(text)
    except ValueError:
        raise ProtocolError("text message is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError("a message must be a JSON object")
    if data.get("version") != VERSION:
        raise ProtocolError(
            f"unsupported protocol version {str(data.get('version'))[:20]!r} (this server speaks '2')"
        )
    kind, params, msg_id = data.get("type"), data.get("parameters"), data.get("id")
    if not isinstance(kind, str) or not kind:
        raise ProtocolError("message has no type")
    if not _seq(data.get("seq")) or not _seq(data.get("serverseq")):
        raise ProtocolError(f"'{kind[:40]}' message: seq and serverseq must be non-negative integers")
    if not isinstance(msg_id, str) or not isinstance(params, dict):
        raise ProtocolError(f"'{kind[:40]}' message: id must be a string and parameters an object")
    position = data.get("position")
    if position is not None and not (isinstance(position, str) and POSITION.match(position)):
        raise ProtocolError(f"'{kind[:40]}' message: position must be an ISO 8601 duration such as PT1.5S")
    return ClientMessage(kind, data["seq"], data["serverseq"], msg_id, params)


def _media_entry(entry: object) -> MediaFormat | None:
    if not isinstance(entry, dict) or entry.get("type") != "audio" or entry.get("rate") != RATE:
        return None
    fmt, channels = entry.get("format"), entry.get("channels")
    if fmt not in ("PCMU", "L16") or not isinstance(channels, list) or not 1 <= len(channels) <= 2:
        return None
    if not all(isinstance(c, str) for c in channels):  # [[1], [2]] would not even hash
        return None
    if len(set(channels)) != len(channels) or any(c not in CHANNEL_MAP for c in channels):
        return None
    return MediaFormat(fmt, tuple(channels))


def choose_media(offered: object) -> MediaFormat | None:
    """The first offered format with both channels, else the first mono one we take."""
    if not isinstance(offered, list):
        raise ProtocolError("open: media must be a list of offered formats")
    usable = [m for m in (_media_entry(e) for e in offered) if m is not None]
    return next((m for m in usable if len(m.channels) == 2), usable[0] if usable else None)


def call_language(code: object) -> str:
    """AudioHook language tag (``en-US``, ``zh-CN``, ``cmn-Hans-CN``) → the pipeline's language."""
    if code is None or code == "":
        return "en"
    if not isinstance(code, str):
        raise ProtocolError("open: language must be a string")
    base = code.split("-")[0].lower()
    if base == "en":
        return "en"
    if base in ("zh", "cmn"):
        return "zh"
    raise ProtocolError(
        f"language {code[:20]!r} is not supported (supported: {', '.join(SUPPORTED_LANGUAGES)})"
    )


def _text(value: object, what: str, limit: int = 128) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise ProtocolError(f"open: {what} must be a string of at most {limit} characters")
    return value


def call_meta(session_id: str, correlation_id: str, params: dict[str, Any]) -> CallMeta:
    """The call a session feeds: id ``audiohook-<conversationId>`` unless ``customConfig.call_id``."""
    conversation = params.get("conversationId")
    if not isinstance(conversation, str) or not conversation:
        raise ProtocolError("open: conversationId is missing")
    custom = params.get("customConfig") or {}
    if not isinstance(custom, dict):
        raise ProtocolError("open: customConfig must be an object")
    participant = params.get("participant") or {}
    if not isinstance(participant, dict):
        raise ProtocolError("open: participant must be an object")
    call_id = _text(custom.get("call_id"), "customConfig.call_id") or f"audiohook-{conversation}"
    if not CALL_ID.match(call_id):
        raise ProtocolError("call id must be 1-128 letters, digits and . _ : - (set customConfig.call_id)")
    extra = {
        "audiohook_session": session_id,
        "conversation_id": _text(conversation, "conversationId"),
        "organization_id": _text(params.get("organizationId"), "organizationId"),
        "correlation_id": correlation_id[:128],
        "participant_id": _text(participant.get("id"), "participant.id"),
    }
    return CallMeta(
        source="audiohook",
        call_id=call_id,
        lang=call_language(params.get("language")),
        agent_id=_text(custom.get("agent_id"), "customConfig.agent_id"),
        queue=_text(custom.get("queue"), "customConfig.queue"),
        extra=tuple((k, v) for k, v in extra.items() if v),
    )


def decode_audio(data: bytes, media: MediaFormat) -> list[tuple[Channel, Pcm16]]:
    """One binary frame → int16 PCM per pipeline channel."""
    if len(data) % media.frame_bytes:
        raise ProtocolError(
            f"audio frame of {len(data)} bytes is not a whole number of {media.format} samples "
            f"on {len(media.channels)} channel(s)"
        )
    pcm = decode_g711(data, "ulaw") if media.format == "PCMU" else np.frombuffer(data, "<i2").astype(np.int16)
    parts = split_channels(pcm, len(media.channels))
    return [(CHANNEL_MAP[name], part) for name, part in zip(media.channels, parts, strict=True)]


class AudioHookSession:
    """One WebSocket: the protocol state machine and the call it feeds."""

    def __init__(
        self, calls: TapCalls, ws: WebSocket, session_id: str, org_id: str, correlation_id: str
    ) -> None:
        self.calls = calls
        self.ws = ws
        self.session_id = session_id
        self.org_id = org_id
        self.correlation_id = correlation_id
        self.state: State = "preparing"
        self.seq = 0
        self.clientseq = 0
        self.media: MediaFormat | None = None
        self.call: LiveCall | None = None
        self.call_id: str | None = None
        self.opening: asyncio.Task[None] | None = None
        self.held = HeldAudio(PENDING_S)
        self.end_reason = "dropped"  # what call.ended says unless the client closes properly
        self.socket_closed = False
        self.disconnect_deadline = 0.0
        self._send_lock = asyncio.Lock()

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._loop()
        finally:
            await self._finish()

    async def _loop(self) -> None:
        """Read frames; every half second without one, look at the deadlines (a ``disconnect``
        sent from the call's start-up task has one too)."""
        receiving: asyncio.Future[Message] | None = None
        last = time.monotonic()
        try:
            while self.state != "closed":
                if receiving is None:
                    receiving = asyncio.ensure_future(self.ws.receive())
                done, _ = await asyncio.wait({receiving}, timeout=0.5)
                if not done:
                    if time.monotonic() < self._deadline(last):
                        continue
                    if self.state == "disconnecting":
                        return
                    await self._disconnect("error", "no message from the client in time")
                    continue
                message, receiving, last = receiving.result(), None, time.monotonic()
                if message["type"] == "websocket.disconnect":
                    self.socket_closed = True
                    return
                try:
                    if message.get("text") is not None:
                        await self._on_text(message["text"])
                    elif message.get("bytes") is not None:
                        await self._on_audio(message["bytes"])
                except ProtocolError as exc:
                    await self._disconnect(exc.reason, exc.info)
        finally:
            if receiving is not None and not receiving.done():
                receiving.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await receiving

    def _deadline(self, last: float) -> float:
        if self.state == "preparing":
            return last + OPEN_TIMEOUT_S
        if self.state == "disconnecting":
            return self.disconnect_deadline
        return last + IDLE_TIMEOUT_S

    async def _finish(self) -> None:
        if self.state == "closed" and not self.socket_closed:  # ``closed`` sent: the client hangs up
            with contextlib.suppress(Exception):
                while (await asyncio.wait_for(self.ws.receive(), 2.0))["type"] != "websocket.disconnect":
                    pass
                self.socket_closed = True
        if not self.socket_closed:
            with contextlib.suppress(Exception):
                await self.ws.close(1000)
        if self.opening is not None:
            with contextlib.suppress(Exception):
                await self.opening
        if self.call is not None and not self.call.ended:
            try:
                await self.call.end(self.end_reason)
            except Exception:
                log.exception("audiohook: ending the call failed", extra={"call_id": self.call_id})
        if self.held.dropped_s:
            log.warning("audiohook: %.1f s of audio dropped while the call started",
                        self.held.dropped_s, extra={"call_id": self.call_id})  # fmt: skip

    # -- sending -------------------------------------------------------------------------------

    async def _send(self, kind: str, parameters: dict[str, Any]) -> None:
        async with self._send_lock:
            self.seq += 1
            message = {"version": VERSION, "type": kind, "seq": self.seq, "clientseq": self.clientseq,
                       "id": self.session_id, "parameters": parameters}  # fmt: skip
            with contextlib.suppress(Exception):  # a socket already gone: nothing to tell
                await self.ws.send_text(json.dumps(message))

    async def _disconnect(self, reason: str, info: str) -> None:
        if self.state in ("disconnecting", "closed"):
            return
        log.warning("audiohook: disconnect (%s): %s", reason, info, extra={"call_id": self.call_id})
        self.state = "disconnecting"
        self.end_reason = "protocol_error" if reason != "unauthorized" else "unauthorized"
        self.disconnect_deadline = time.monotonic() + CLOSE_GRACE_S
        await self._send("disconnect", {"reason": reason, "info": info})

    # -- text messages ---------------------------------------------------------------------------

    async def _on_text(self, text: str) -> None:
        if self.state == "disconnecting":  # only the client's close transaction matters now
            with contextlib.suppress(ProtocolError):
                message = parse_client_message(text)
                self.clientseq = message.seq
                if message.type == "close":
                    await self._close()
            return
        message = parse_client_message(text)
        if message.seq != self.clientseq + 1:
            raise ProtocolError(f"seq {message.seq} is out of order (expected {self.clientseq + 1})")
        self.clientseq = message.seq
        if message.serverseq > self.seq:
            raise ProtocolError(f"serverseq {message.serverseq} is ahead of the server's seq {self.seq}")
        if message.id != self.session_id:
            raise ProtocolError("message id does not match the Audiohook-Session-Id header")
        params = message.parameters
        match message.type:
            case "open":
                await self._open(params)
            case "ping":
                await self._send("pong", {})
            case "close":
                reason = params.get("reason")
                self.end_reason = (
                    CLOSE_REASONS.get(reason, "completed") if isinstance(reason, str) else "completed"
                )
                await self._close()
            case "paused":
                if self.state == "active":
                    self.state = "paused"
            case "resumed":
                if self.state == "paused":
                    self.state = "active"
            case "update" | "dtmf" | "discarded":
                log.info("audiohook: %s message noted", message.type, extra={"call_id": self.call_id})
            case "error":
                code = params.get("code")
                log.warning(
                    "audiohook: the client reports error %s", str(code)[:10], extra={"call_id": self.call_id}
                )
            case _:
                raise ProtocolError(f"'{message.type[:40]}' is not a supported client message")

    async def _open(self, params: dict[str, Any]) -> None:
        if self.state != "preparing":
            log.warning("audiohook: a second open is ignored", extra={"call_id": self.call_id})
            return
        org = params.get("organizationId")
        if self.org_id and org != self.org_id:
            raise ProtocolError(
                "organizationId does not match the Audiohook-Organization-Id header", "unauthorized"
            )
        media = choose_media(params.get("media"))
        if media is None:
            raise ProtocolError("none of the offered media formats is supported "
                                "(supported: PCMU or L16, 8000 Hz, channels external and/or internal)")  # fmt: skip
        meta = call_meta(self.session_id, self.correlation_id, params)
        assert meta.call_id is not None
        try:
            self.calls.check_open(meta.call_id)
        except (TooManyCallsError, InputError) as exc:  # no room, or the call id is in use
            raise ProtocolError(str(exc)) from None
        self.media, self.call_id, self.state = media, meta.call_id, "active"
        opened: dict[str, Any] = {"media": [media.as_json()], "startPaused": False}
        if params.get("supportedLanguages") is True:
            opened["supportedLanguages"] = SUPPORTED_LANGUAGES
        await self._send("opened", opened)
        self.opening = asyncio.create_task(
            self._start_call(meta, media), name=f"audiohook-open:{meta.call_id}"
        )

    async def _start_call(self, meta: CallMeta, media: MediaFormat) -> None:
        """In the background: open the call (loading a model if needed), then hand it the audio
        that arrived meanwhile, in one piece per channel so its call time lines up."""
        try:
            call = await self.calls.open_call(meta, media.call_channels)
        except (TooManyCallsError, InputError) as exc:
            await self._disconnect("error", str(exc))
            return
        except Exception:
            log.exception("audiohook: the call could not start", extra={"call_id": meta.call_id})
            await self._disconnect("error", "the call could not start")
            return
        try:
            await self.held.hand_over(call)
        except Exception:
            log.exception("audiohook: the call failed", extra={"call_id": meta.call_id})
            await self._disconnect("error", "the call failed")
        finally:
            self.call = call  # set with no await since the last look at ``pending``

    # -- audio ---------------------------------------------------------------------------------

    async def _on_audio(self, data: bytes) -> None:
        if self.state == "preparing":
            raise ProtocolError("audio before the open transaction")
        if self.state == "paused":
            raise ProtocolError("audio while the stream is paused")
        if self.state != "active" or self.media is None:
            return  # disconnecting or closed: the client may still have frames in flight
        if len(data) > MAX_AUDIO_BYTES:
            raise ProtocolError(f"audio frame of {len(data)} bytes is over the {MAX_AUDIO_BYTES} byte limit")
        parts = decode_audio(data, self.media)
        if self.call is None:
            for channel, pcm in parts:
                self.held.hold(channel, pcm, RATE)
            return
        for channel, pcm in parts:
            try:
                await self.call.push(channel, pcm, RATE)
            except CallNotLiveError:
                raise ProtocolError("the call has ended (the service is stopping)") from None
            except Exception:
                log.exception("audiohook: the call failed", extra={"call_id": self.call_id})
                raise ProtocolError("the call failed") from None

    async def _close(self) -> None:
        await self._send("closed", {})
        self.state = "closed"


def _upgrade_refusal(access: TapAccess, ws: WebSocket) -> tuple[int, str] | None:
    try:
        access.authorize(ws.headers.get("x-api-key") or None, "taps.connect")
    except AccessDeniedError as exc:
        if exc.status == 401:
            return 401, "missing or unknown X-API-KEY"
        return 403, f"the {exc.role} role may not connect a media tap"
    try:
        uuid.UUID(ws.headers.get("audiohook-session-id", ""))
    except ValueError:
        return 400, "Audiohook-Session-Id header missing or not a UUID"
    return None


async def _refuse(ws: WebSocket, status: int, detail: str) -> None:
    """Refuse the upgrade with an HTTP status (the servers we run on support it); else 1008."""
    headers = {"WWW-Authenticate": 'APIKey header="X-API-KEY"'} if status == 401 else None
    try:
        await ws.send_denial_response(JSONResponse({"detail": detail}, status_code=status, headers=headers))
    except RuntimeError:
        await ws.close(WS_POLICY_VIOLATION, detail)


@router.websocket("/audiohook")
async def audiohook(websocket: WebSocket) -> None:
    """Genesys Cloud AudioHook Monitor (protocol v2). See ``docs/taps/audiohook.md``."""
    access = installed_access(websocket.app)
    if access is None:
        await _refuse(websocket, 503, "the service is starting")
        return
    refusal = _upgrade_refusal(access, websocket)
    if refusal is not None:
        await _refuse(websocket, *refusal)
        return
    await websocket.accept()
    headers = websocket.headers
    session = AudioHookSession(
        access.calls,
        websocket,
        session_id=headers["audiohook-session-id"],
        org_id=headers.get("audiohook-organization-id", ""),
        correlation_id=headers.get("audiohook-correlation-id", ""),
    )
    await session.run()
