"""Text chat tap: ``GET /v1/taps/chat``, a live chat between an agent and a customer, coached like a
call; one socket per chat. See docs/taps/chat.md.

Protocol (JSON text frames both ways): the client's first frame is ``start`` (``call_id``,
``agent_id``, ``queue``, ``lang``, optional ``ts`` and ``dead_air``); the server answers
``started`` with the call id. Then each ``message`` (``channel`` agent|customer, ``text``, ``ts``
in milliseconds since the Unix epoch, optional ``id``) becomes a ``transcript.final`` of that
channel at the call time its ``ts`` gives, goes through the call's coach session (redaction,
violations, checklist, intents, emotion, procedure cards, board: the same ``CoachSink`` as speech),
and is answered with ``ack`` once coached. A bad message is answered with an ``error`` frame
(``code``, one-line ``message``, the message's ``id``) and dropped; the socket stays open.
``{"type": "ping"}`` is answered with ``pong``; ``{"type": "end"}`` (or a close 1000/1001) ends
the chat with ``call.ended`` reason ``completed``. Protocol errors close the socket with the codes
of the other WebSocket taps (``sidecar.taps.ws``).

Time: call time is ``(ts - origin) / 1000`` s, the origin being the start frame's ``ts`` (or the
first message's ``ts`` less the time since the start). It never runs backwards: a message whose
``ts`` is earlier than the previous message's (two devices' clocks) is placed at the previous
message's time and its ``ack`` says ``clamped``. Typing gaps are not dead air: the call's coach
session does not coach silences unless the start frame says ``"dead_air": true``.

Bounds: text frames up to ``MAX_FRAME_BYTES`` (1009 beyond), message text up to
``MAX_TEXT_CHARS`` characters (an error frame beyond), ``MAX_MESSAGES`` messages per chat, and a
rate limit per socket on every frame (``RateLimit``: a burst of ``BURST`` frames, then
``RATE_PER_S`` a second; a frame over the limit is answered with an error frame ``rate_limited``
and dropped: a message is not coached, the client may send it again later). The
tap reads the next frame only once the previous message has been coached: one message in flight
per socket, the client's socket buffers the rest (back-pressure, nothing queued here).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, cast

from fastapi import APIRouter, WebSocket

from coach.sink import CoachSink
from sidecar.calls.errors import CallNotLiveError
from sidecar.calls.live_call import CallMeta, LiveCall
from sidecar.calls.registry import LiveCalls
from sidecar.kernel.bus import BusUnavailableError
from sidecar.kernel.clock import RealtimeClock
from sidecar.kernel.events import CallEnded, CallStarted, Channel, Event, TranscriptFinal
from sidecar.replay import estimated_words, transcript_lang
from sidecar.taps.ws import (
    CALL_ID,
    INVALID,
    LANGS,
    NORMAL,
    POLICY,
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

PARTIES: tuple[Channel, ...] = ("agent", "customer")
MAX_FRAME_BYTES = 16 * 1024  # a frame over this closes the socket (1009)
MAX_TEXT_CHARS = 2000  # one chat message; longer is refused with an error frame
MAX_ID_CHARS = 64  # the client's message id, echoed in ack and error frames
MAX_MESSAGES = 2000  # per chat: the call's events (about 3-5 a message) stay within the bus's 20,000
MAX_CHAT_S = 12 * 3600.0  # a ts further than this from the chat's origin is refused
START_TIMEOUT_S = 10.0  # the start frame must arrive this soon after the handshake
IDLE_TIMEOUT_S = 600.0  # nothing at all (not even a ping) for this long closes the chat
BURST, RATE_PER_S = 20, 2.0  # per socket: 20 messages at once, then 2 a second
# ts is milliseconds since the Unix epoch (JavaScript's Date.now()): 2001-09-09 .. 2286-11-20
TS_MIN_MS, TS_MAX_MS = 1e12, 1e13


class ChatInputError(Exception):
    """A bad message: answered with an error frame (``code``, one-line ``message``), not fatal."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- frames: pure parsing ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatStart:
    meta: CallMeta
    origin_ms: float | None  # the start frame's ts
    dead_air: bool


@dataclass(frozen=True, slots=True)
class ChatMessage:
    channel: Channel
    text: str
    ts_ms: float
    id: str | None


def _object(text: str) -> dict[str, Any]:
    try:
        raw = json.loads(text)
    except ValueError:
        raise ChatInputError("bad_json", "the frame is not JSON") from None
    if not isinstance(raw, dict):
        raise ChatInputError("bad_json", "the frame must be a JSON object")
    return raw


def parse_ts(value: Any) -> float:
    """A ``ts``: milliseconds since the Unix epoch, as JavaScript's ``Date.now()`` gives it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ChatInputError("bad_ts", "ts must be a number: milliseconds since the Unix epoch (Date.now())")
    if not TS_MIN_MS <= value < TS_MAX_MS:
        hint = "; this looks like seconds, send milliseconds" if 1e9 <= value < 1e10 else ""
        raise ChatInputError("bad_ts", f"ts must be milliseconds since the Unix epoch (Date.now()){hint}")
    return float(value)


def clean_text(value: Any) -> str:
    """The message's text: control characters (line breaks included) become spaces, runs of
    blanks one space; empty or over ``MAX_TEXT_CHARS`` is refused."""
    if not isinstance(value, str):
        raise ChatInputError("bad_text", "text must be a string")
    if len(value) > MAX_TEXT_CHARS:
        raise ChatInputError("text_too_long", f"text is over {MAX_TEXT_CHARS} characters")
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in value)
    text = " ".join(text.split())
    if not text:
        raise ChatInputError("bad_text", "text is empty")
    return text


def parse_start(text: str) -> ChatStart:
    """The first frame; anything wrong with it closes the socket (1007), no call is started."""
    try:
        raw = _object(text)
    except ChatInputError as exc:
        raise TapProtocolError(INVALID, f"start: {exc.message}") from None
    if raw.get("type") != "start":
        raise TapProtocolError(POLICY, 'the first frame must be {"type": "start", ...}')
    lang = raw.get("lang", "en")
    if lang not in LANGS:
        raise TapProtocolError(INVALID, f"start: lang must be one of {', '.join(LANGS)}")
    call_id = raw.get("call_id")
    if call_id is not None and (not isinstance(call_id, str) or not CALL_ID.match(call_id)):
        raise TapProtocolError(INVALID, "start: call_id: letters, digits and ._:- only, at most 128")
    agent_id, queue = raw.get("agent_id", ""), raw.get("queue", "")
    if not isinstance(agent_id, str) or not isinstance(queue, str):
        raise TapProtocolError(INVALID, "start: agent_id and queue must be strings")
    dead_air = raw.get("dead_air", False)
    if not isinstance(dead_air, bool):
        raise TapProtocolError(INVALID, "start: dead_air must be true or false")
    origin: float | None = None
    if raw.get("ts") is not None:
        try:
            origin = parse_ts(raw["ts"])
        except ChatInputError as exc:
            raise TapProtocolError(INVALID, f"start: {exc.message}") from None
    extra = (("kind", "chat"), ("dead_air", "on" if dead_air else "off"))
    meta = CallMeta("chat", call_id, str(lang), agent_id[:128], queue[:128], extra)
    return ChatStart(meta, origin, dead_air)


def parse_frame(text: str) -> ChatMessage | str:
    """A frame after the start: a message, or the type of a control frame (``ping``, ``end``)."""
    raw = _object(text)
    kind = raw.get("type", "message")
    if kind in ("ping", "end"):
        return str(kind)
    if kind != "message":
        raise ChatInputError("bad_type", 'type must be "message", "ping" or "end"')
    ident = raw.get("id")
    if ident is not None and (not isinstance(ident, (str, int)) or isinstance(ident, bool)):
        raise ChatInputError("bad_message", "id must be a string or a number")
    channel = raw.get("channel")
    if channel not in PARTIES:
        raise ChatInputError("bad_channel", 'channel must be "agent" or "customer"')
    if "ts" not in raw:
        raise ChatInputError("bad_ts", "ts is missing: milliseconds since the Unix epoch (Date.now())")
    ts = parse_ts(raw["ts"])
    return ChatMessage(cast(Channel, channel), clean_text(raw.get("text")), ts,
                       None if ident is None else str(ident)[:MAX_ID_CHARS])  # fmt: skip


def message_id(text: str) -> str | None:
    """The ``id`` of a frame that was refused, if it can be read (for the error frame)."""
    try:
        raw = json.loads(text)
    except ValueError:
        return None
    ident = raw.get("id") if isinstance(raw, dict) else None
    return (
        str(ident)[:MAX_ID_CHARS] if isinstance(ident, (str, int)) and not isinstance(ident, bool) else None
    )


# -- time and rate: pure state -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Placed:
    t: float  # call time, s
    clamped: bool  # the ts was earlier than the previous message's


class ChatTimeline:
    """Client timestamps to call time, never backwards; ``now`` for the dead-air ticker."""

    def __init__(self, origin_ms: float | None, started: float) -> None:
        self.origin_ms = origin_ms
        self.started = started  # monotonic time of the start frame
        self.last_t = 0.0
        self.last_mono = started

    def place(self, ts_ms: float, mono: float) -> Placed:
        if self.origin_ms is None:  # no ts in the start frame: the first message is as late as it came
            self.origin_ms = ts_ms - 1000 * max(0.0, mono - self.started)
        t = (ts_ms - self.origin_ms) / 1000
        if abs(t) > MAX_CHAT_S:
            raise ChatInputError("bad_ts", f"ts is more than {MAX_CHAT_S / 3600:g} h from the chat's start")
        clamped = t < self.last_t
        self.last_t = round(max(t, self.last_t), 3)
        self.last_mono = mono
        return Placed(self.last_t, clamped)

    def now(self, mono: float) -> float:
        """The call time now: the last message's, plus the wall time since it came."""
        return self.last_t + max(0.0, mono - self.last_mono)


class RateLimit:
    """Token bucket: ``burst`` messages at once, refilled at ``per_s`` a second."""

    def __init__(self, burst: int = BURST, per_s: float = RATE_PER_S, now: float = 0.0) -> None:
        self.burst = burst
        self.per_s = per_s
        self.tokens = float(burst)
        self.at = now

    def allow(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.per_s)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


# -- the call ------------------------------------------------------------------------------------


class ChatCall(LiveCall):
    """A chat as a live call: no audio pipeline and no speech models; each message goes to the
    call's coach sink as a ``transcript.final`` (the sink redacts it and coaches it as speech)."""

    speech = False

    def __init__(self, live: LiveCalls, call_id: str, meta: CallMeta, channels: tuple[Channel, ...]) -> None:
        # no super().__init__(): that builds the speech pipeline; this sets what LiveCall's users read
        self.live = live
        self.call_id = call_id
        self.meta = meta
        self.channels = channels
        self.clock = RealtimeClock()
        self.dead_air = dict(meta.extra).get("dead_air") == "on"
        self.sink = CoachSink(live.coach, live.bus, knowledge=live.knowledge, dead_air=self.dead_air)
        self.ended = False
        self.listeners = []  # nobody listens to a chat
        self.timeline = ChatTimeline(None, time.monotonic())
        self.segments: dict[Channel, int] = {ch: 0 for ch in channels}
        self.refused = 0  # messages answered with an error frame

    async def start(self) -> None:
        payload = CallStarted("chat", self.meta.lang, self.channels, True, self.meta.as_meta())
        await self.sink(Event("call.started", self.call_id, None, 0.0, 0.0, payload))
        if self.dead_air:
            self.sink.start_ticking(lambda: self.timeline.now(time.monotonic()))

    async def push(self, channel: Channel, pcm: Any, rate: int) -> None:
        raise CallNotLiveError(f"call {self.call_id} is a text chat: it takes no audio")

    @property
    def messages(self) -> int:
        return sum(self.segments.values())

    async def say(self, message: ChatMessage) -> tuple[Placed, int]:
        """One message through the coach: its call time and its segment (the channel's count)."""
        if self.ended:
            raise CallNotLiveError(f"call {self.call_id} has ended")
        if self.messages >= MAX_MESSAGES:
            raise TapProtocolError(POLICY, f"a chat may carry at most {MAX_MESSAGES} messages")
        placed = self.timeline.place(message.ts_ms, time.monotonic())
        self.segments[message.channel] += 1
        segment = self.segments[message.channel]
        lang = transcript_lang(message.text, self.meta.lang)
        words = estimated_words(message.text, lang, placed.t, placed.t)
        payload = TranscriptFinal(message.text, words, lang, segment, None, "estimated")
        await self.sink(Event("transcript.final", self.call_id, message.channel, placed.t, placed.t, payload))
        return placed, segment

    async def end(self, reason: str = "completed") -> None:
        if self.ended:
            return
        self.ended = True
        try:
            t = max(self.timeline.last_t, 0.0)
            stats = {f"{ch}_messages": float(n) for ch, n in self.segments.items()}
            stats["refused_messages"] = float(self.refused)
            try:
                await self.sink(Event("call.ended", self.call_id, None, 0.0, t, CallEnded(reason, t, stats)))
            except BusUnavailableError:
                await self.end_without_bus(t, reason, stats)
        finally:
            await self.sink.stop_ticking()
            self.live.forget(self.call_id)


# -- the socket ----------------------------------------------------------------------------------


async def _send(websocket: WebSocket, frame: dict[str, Any]) -> None:
    """Send a frame; a client that has gone is seen by the next receive (a close), not here."""
    with contextlib.suppress(Exception):
        await websocket.send_text(json.dumps(frame, ensure_ascii=False))


async def _error(websocket: WebSocket, exc: ChatInputError, ident: str | None) -> None:
    await _send(websocket, {"type": "error", "code": exc.code, "message": exc.message, "id": ident})


async def _converse(websocket: WebSocket, call: ChatCall) -> str:
    """Messages until the chat ends; the call's end reason."""
    limit = RateLimit(now=time.monotonic())
    while True:
        frame = await receive_frame(websocket, IDLE_TIMEOUT_S, max_text=MAX_FRAME_BYTES, max_binary=None)
        if isinstance(frame, Closed):
            return frame.reason
        assert isinstance(frame, str)  # max_binary=None: a binary frame is a protocol error
        try:
            if not limit.allow(time.monotonic()):  # every frame counts, pings and bad ones too
                raise ChatInputError("rate_limited", f"over {BURST} frames at once or {RATE_PER_S:g} a second: "
                                     "this frame was dropped (a message was not coached): send it again later")  # fmt: skip
            parsed = parse_frame(frame)
            if parsed == "ping":
                await _send(websocket, {"type": "pong"})
                continue
            if parsed == "end":
                await close_quietly(websocket, NORMAL, "chat ended")
                return "completed"
            assert isinstance(parsed, ChatMessage)
            placed, segment = await call.say(parsed)
        except ChatInputError as exc:
            call.refused += 1
            await _error(websocket, exc, message_id(frame))
            continue
        await _send(websocket, {"type": "ack", "id": parsed.id, "channel": parsed.channel, "t": placed.t,
                                "segment": segment, "clamped": placed.clamped})  # fmt: skip


@router.websocket("/chat")
async def chat_tap(websocket: WebSocket) -> None:
    """A live text chat, coached like a call: JSON frames (start, then messages); see
    docs/taps/chat.md."""
    calls = await admit(websocket)
    if calls is None:
        return
    call: ChatCall | None = None
    async with TapSession(websocket, log, "chat", lambda: call) as session:
        first = await receive_frame(websocket, START_TIMEOUT_S, max_text=MAX_FRAME_BYTES, max_binary=None)
        if isinstance(first, Closed):
            return
        assert isinstance(first, str)
        start = parse_start(first)
        opened = await open_tap_call(calls, start.meta, PARTIES, kind=ChatCall)
        assert isinstance(opened, ChatCall)
        call = opened
        call.timeline = ChatTimeline(start.origin_ms, time.monotonic())
        log.info("chat tap: call started", extra={"call_id": call.call_id, "dead_air": start.dead_air})
        await _send(websocket, {"type": "started", "call_id": call.call_id, "dead_air": start.dead_air,
                                "limits": {"max_text_chars": MAX_TEXT_CHARS, "max_frame_bytes": MAX_FRAME_BYTES,
                                           "burst": BURST, "per_s": RATE_PER_S, "max_messages": MAX_MESSAGES}})  # fmt: skip
        session.reason = await _converse(websocket, call)
