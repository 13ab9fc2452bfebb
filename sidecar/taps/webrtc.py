"""WebRTC tap: a call's audio arrives as WebRTC tracks (HTTP offer/answer signalling, aiortc).

Protocol (``docs/taps/webrtc.md``): ``POST /v1/taps/webrtc/offer`` takes ``{sdp, type: "offer",
call_id?, lang?, agent_id?, queue?, channels?}`` and answers ``{sdp, type: "answer", call_id}``; the
offer carries every ICE candidate (no trickle). ``DELETE /v1/taps/webrtc/{call_id}`` ends the call.
A supervisor listens in with a receive-only offer to ``POST /v1/taps/webrtc/{call_id}/listen``
(the call's two channels, mixed) and barges in with an offer carrying their microphone to
``POST /v1/taps/webrtc/{call_id}/barge`` (the agent hears them; a ``barge`` event is published);
``DELETE /v1/taps/webrtc/{call_id}/barge`` ends the barge.

Auth: the call's offer and DELETE need ``taps.connect`` (integrators, admins); listen-in and
barge-in need ``calls.control`` (supervisors, admins). Bearer token, 401/403 as everywhere.

Channel mapping: one peer connection per call with one audio m-line per channel. ``channels``
maps a track id (the ``a=msid`` track) or an m-line's ``mid`` to ``agent`` | ``customer``; without
it, the first audio m-line is the agent and the second the customer (one m-line: an agent-only
call). Opus frames (48 kHz, stereo as aiortc decodes them) are downmixed to mono int16 by FFmpeg's
resampler and pushed to ``LiveCall.push(channel, pcm, 48000)``, which resamples to 16 kHz.

The agent's m-line is answered ``sendrecv`` with a relay track: silence, or the barging
supervisor's voice. Listen-in tracks send the call's audio as it is pushed (``LiveCall.listeners``).

Drop policy: each track has its own reader task that never waits on ASR (``LiveCall.push`` only
queues; the pipeline drops the oldest audio when ASR falls behind). Outgoing tracks
(``PacedAudioTrack``) hold at most ``MAX_BUFFER_S`` per source and drop the oldest audio beyond
that (a slow or stalled consumer costs latency up to that bound, never memory).

Ending: DELETE, or the connection closing (the client's ``pc.close()``) or every track ending →
``LiveCall.end("completed")``; the connection failing, or closing after ``VANISHED_S`` without any
audio (the far side vanished and ICE consent expired: aiortc closes the connection just as for a
hang-up) → ``"dropped"``. Every peer connection of the call (listeners, barge) closes with it, in a
``finally``. ICE: ``sidecar.taps.ice`` (servers and the local addresses ICE may use).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from sidecar.audio import Pcm16
from sidecar.errors import ConfigError, InputError
from sidecar.events import CHANNELS, Channel
from sidecar.service.auth import Principal
from sidecar.service.context import AppContext, authorize, get_ctx
from sidecar.service.live import CallMeta, CallNotLiveError, LiveCall, TooManyCallsError
from sidecar.taps.ice import IceSettings, filter_candidates, restrict_ice

log = logging.getLogger("assist.taps.webrtc")
router = APIRouter(prefix="/v1/taps/webrtc", tags=["taps"])
Ctx = Annotated[AppContext, Depends(get_ctx)]

MAX_SDP = 100_000
MAX_BUFFER_S = 0.5  # per source of an outgoing track: the most latency a slow consumer can build up
PRIME_S = 0.04  # an outgoing source starts (and restarts after running dry) with this much buffered
FRAME_S = 0.02
MAX_LISTENERS = 8  # per call
VANISHED_S = 10.0  # a connection that closes after this long without audio: the far side vanished
LISTEN_RATE = 16_000  # what LiveCall.listeners carry
RELAY_RATE = 48_000  # the barge relay: Opus's own rate
SENDING = ("sendrecv", "sendonly")  # offered directions that carry the browser's audio to us
RECEIVING = ("sendrecv", "recvonly")  # offered directions that take audio from us
CALL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


# -- the wire ---------------------------------------------------------------------------------


class CallOfferIn(BaseModel):
    sdp: str = Field(min_length=1, max_length=MAX_SDP, description="the offer, with all its ICE candidates")
    type: Literal["offer"]
    call_id: str | None = Field(None, pattern=CALL_ID_PATTERN)
    lang: Literal["en", "zh", "auto"] = "en"
    agent_id: str = Field("", max_length=128)
    queue: str = Field("", max_length=128)
    channels: dict[str, Channel] | None = Field(
        None, max_length=4, description='track id or mid → "agent" | "customer" (default: m-line order)'
    )


class SupervisorOfferIn(BaseModel):
    sdp: str = Field(min_length=1, max_length=MAX_SDP)
    type: Literal["offer"]
    reason: str = Field("", max_length=500, description="barge only: why (on the barge event)")


class AnswerOut(BaseModel):
    sdp: str
    type: Literal["answer"] = "answer"
    call_id: str


class OfferError(ValueError):
    """An offer the tap cannot take (400)."""


# -- the offer --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OfferedAudio:
    mid: str
    track_id: str | None
    direction: str  # as the browser offered it


def offered_audio(sdp: str) -> list[OfferedAudio]:
    """The offer's audio m-lines (port 0, i.e. rejected ones, left out). ``OfferError`` for what
    is not an SDP offer, or carries media other than audio (a data channel is allowed)."""
    if not sdp.lstrip().startswith("v=0"):
        raise OfferError("not an SDP offer (SDP starts with v=0)")
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:  # the parser raises whatever the text makes it raise
        raise OfferError(f"unreadable SDP: {type(exc).__name__}: {exc}") from None
    out = []
    for media in description.media:
        if media.kind not in ("audio", "application"):
            raise OfferError(f"the WebRTC tap takes audio only (m={media.kind} offered)")
        if media.kind == "audio" and media.port != 0:
            if not media.rtp.muxId:
                raise OfferError("every audio m-line needs an a=mid (unified plan SDP)")
            msid = (media.msid or "").split()
            out.append(OfferedAudio(media.rtp.muxId, msid[1] if len(msid) == 2 else None,
                                    media.direction or "sendrecv"))  # fmt: skip
    if not out:
        raise OfferError("the offer has no audio m-line")
    return out


def map_channels(audio: list[OfferedAudio], declared: dict[str, Channel] | None) -> dict[str, Channel]:
    """mid → channel for the call's offer: by ``declared`` (track id or mid), else m-line order."""
    if declared is None:
        if len(audio) > 2:
            raise OfferError(f"{len(audio)} audio m-lines: declare which is which in 'channels'")
        mapping: dict[str, Channel] = dict(zip((m.mid for m in audio), CHANNELS, strict=False))
    else:
        mapping = {}
        for key, channel in declared.items():
            match = [m for m in audio if key in (m.mid, m.track_id)]
            if not match:
                raise OfferError(f"channels: no audio m-line has the track id or mid {key!r}")
            mapping[match[0].mid] = channel
        unmapped = [m.mid for m in audio if m.mid not in mapping]
        if unmapped:
            raise OfferError(f"channels: the audio m-line(s) with mid {', '.join(unmapped)} are not mapped")
    if len(set(mapping.values())) != len(mapping):
        raise OfferError("channels: two audio m-lines are mapped to the same channel")
    for media in audio:
        if media.mid in mapping and media.direction not in SENDING:
            raise OfferError(f"the {mapping[media.mid]} m-line (mid {media.mid}) sends no audio "
                             f"({media.direction})")  # fmt: skip
    return mapping


# -- media ------------------------------------------------------------------------------------


def mono_int16(frame: av.AudioFrame, downmix: av.AudioResampler) -> list[tuple[Pcm16, int]]:
    """A decoded frame as int16 mono PCM at its own rate (FFmpeg downmixes stereo)."""
    return [(f.to_ndarray().reshape(-1).astype(np.int16, copy=False), f.sample_rate)
            for f in downmix.resample(frame)]  # fmt: skip


def mono_downmixer() -> av.AudioResampler:
    return av.AudioResampler(format="s16", layout="mono")


class _Source:
    """One source's bounded FIFO of samples (drop oldest beyond ``limit``), primed before playing."""

    def __init__(self, limit: int, prime: int) -> None:
        self.chunks: deque[Pcm16] = deque()
        self.size = 0
        self.limit = limit
        self.prime = prime
        self.playing = False
        self.dropped = 0

    def feed(self, pcm: Pcm16) -> None:
        if pcm.size == 0:
            return
        self.chunks.append(pcm)
        self.size += pcm.size
        while self.size > self.limit:
            over = self.size - self.limit
            head = self.chunks[0]
            if head.size <= over:
                self.chunks.popleft()
                self.size -= head.size
                self.dropped += head.size
            else:
                self.chunks[0] = head[over:]
                self.size -= over
                self.dropped += over

    def take(self, n: int) -> Pcm16 | None:
        if not self.playing:
            if self.size < self.prime:
                return None
            self.playing = True
        out = np.zeros(n, dtype=np.int16)
        filled = 0
        while filled < n and self.chunks:
            head = self.chunks[0]
            k = min(n - filled, head.size)
            out[filled : filled + k] = head[:k]
            filled += k
            self.size -= k
            if k == head.size:
                self.chunks.popleft()
            else:
                self.chunks[0] = head[k:]
        if filled < n:
            self.playing = False  # ran dry: prime again before playing on
        return out


class PacedAudioTrack(MediaStreamTrack):
    """An outgoing audio track: 20 ms mono frames at ``rate``, in real time, mixing what was fed
    per source (``feed`` never blocks; each source keeps at most ``MAX_BUFFER_S``, oldest dropped;
    a source with nothing buffered is silence)."""

    kind = "audio"

    def __init__(self, rate: int) -> None:
        super().__init__()
        self.rate = rate
        self.samples = round(rate * FRAME_S)
        self._sources: dict[str, _Source] = {}
        self._start: float | None = None
        self._pts = 0

    def feed(self, source: str, pcm: Pcm16) -> None:
        buffer = self._sources.get(source)
        if buffer is None:
            buffer = self._sources[source] = _Source(
                round(self.rate * MAX_BUFFER_S), round(self.rate * PRIME_S)
            )
        buffer.feed(pcm)

    def clear(self, source: str) -> None:
        self._sources.pop(source, None)

    @property
    def dropped_samples(self) -> int:
        return sum(s.dropped for s in self._sources.values())

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._pts += self.samples
            wait = self._start + self._pts / self.rate - now
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -MAX_BUFFER_S:  # the consumer stalled: carry on from now, no burst
                self._start = now - self._pts / self.rate
        mix = np.zeros(self.samples, dtype=np.int32)
        for source in self._sources.values():
            pcm = source.take(self.samples)
            if pcm is not None:
                mix += pcm
        frame = av.AudioFrame.from_ndarray(
            np.clip(mix, -32768, 32767).astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self.rate
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.rate)
        return frame


# -- peers ------------------------------------------------------------------------------------


class Peer:
    """A peer connection's life: ``over`` is set when it fails (reason ``dropped``) or closes
    (``closed``), or when ``stop`` is called."""

    def __init__(self, pc: RTCPeerConnection, label: str) -> None:
        self.pc = pc
        self.label = label
        self.over = asyncio.Event()
        self.reason = "completed"
        pc.on("connectionstatechange", self._state_changed)

    def _state_changed(self) -> None:
        if self.pc.connectionState == "failed":
            self.stop("dropped")
        elif self.pc.connectionState == "closed":
            self.stop("closed")

    def stop(self, reason: str) -> None:
        if not self.over.is_set():
            self.reason = reason
            self.over.set()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.pc.close()


async def answer(pc: RTCPeerConnection) -> str:
    """Create and apply the answer (gathers our candidates: they are all in the answer)."""
    try:
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as exc:  # an offer aiortc accepted but cannot answer
        raise OfferError(f"no answer to this offer: {type(exc).__name__}: {exc}") from None
    local = pc.localDescription
    assert local is not None
    return local.sdp


async def accept_offer(pc: RTCPeerConnection, sdp: str) -> None:
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
    except Exception as exc:  # aiortc raises ValueError, OperationError, ... for what it refuses
        raise OfferError(f"the offer was refused: {type(exc).__name__}: {exc}") from None


def audio_transceivers(pc: RTCPeerConnection) -> list[RTCRtpTransceiver]:
    return [t for t in pc.getTransceivers() if t.kind == "audio"]


class CallSession:
    """A call's peer connection, its readers, its relay to the agent, and its supervisors' peers."""

    def __init__(self, tap: WebRtcTap, call: LiveCall, peer: Peer, relay: PacedAudioTrack | None) -> None:
        self.tap = tap
        self.call = call
        self.peer = peer
        self.relay = relay  # None: no agent m-line, or it takes no audio (offered sendonly)
        self.listeners: set[ListenPeer] = set()
        self.barge: BargePeer | None = None
        self.last_audio = time.monotonic()

    async def run(self, tracks: dict[Channel, MediaStreamTrack]) -> None:
        readers = [asyncio.create_task(self._read(ch, tr), name=f"webrtc:{self.call.call_id}:{ch}")
                   for ch, tr in tracks.items()]  # fmt: skip
        for reader in readers:
            reader.add_done_callback(lambda _: self._reader_done(readers))
        reason = "aborted"
        try:
            reason = await self.tap.wait_over(self.peer, self.call)
            if reason == "closed":  # hung up, or gone: aiortc closes both the same way
                silent_s = time.monotonic() - self.last_audio
                reason = "dropped" if silent_s > VANISHED_S else "completed"
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await self.close(reason)

    def _reader_done(self, readers: list[asyncio.Task[None]]) -> None:
        if all(r.done() for r in readers):
            self.peer.stop("closed")  # every track ended

    async def _read(self, channel: Channel, track: MediaStreamTrack) -> None:
        downmix = mono_downmixer()
        try:
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.AudioFrame)
                self.last_audio = time.monotonic()
                for pcm, rate in mono_int16(frame, downmix):
                    await self.call.push(channel, pcm, rate)
        except (MediaStreamError, CallNotLiveError):
            return
        except Exception:
            log.exception("webrtc call %s: the %s track failed", self.call.call_id, channel)
            self.peer.stop("dropped")

    async def close(self, reason: str) -> None:
        """The media stops at once (every peer of the call closes), then the call ends (ASR
        finishes what it has, ``call.ended`` is published)."""
        try:
            for peer in [*self.listeners, *([self.barge] if self.barge else [])]:
                peer.peer.stop("completed")
            if self.relay is not None:
                self.relay.stop()
            await self.peer.close()
        finally:
            self.tap.calls.pop(self.call.call_id, None)
            with contextlib.suppress(Exception):
                await self.call.end(reason)
            log.info("webrtc call ended", extra={"call_id": self.call.call_id, "reason": reason})


class ListenPeer:
    """A supervisor's peer connection that hears the call (and, when barging, is heard by the agent)."""

    def __init__(self, tap: WebRtcTap, call: LiveCall, peer: Peer, out: PacedAudioTrack | None) -> None:
        self.tap = tap
        self.call = call
        self.peer = peer
        self.out = out

    def _hear(self, channel: Channel, pcm: Pcm16) -> None:
        if self.out is not None:
            self.out.feed(channel, pcm)

    async def run(self) -> None:
        if self.out is not None:
            self.call.listeners.append(self._hear)
        try:
            await self.tap.wait_over(self.peer, self.call)
        finally:
            with contextlib.suppress(ValueError):
                self.call.listeners.remove(self._hear)
            if self.out is not None:
                self.out.stop()
            await self.peer.close()
            self.closed()

    def closed(self) -> None:
        session = self.tap.calls.get(self.call.call_id)
        if session is not None:
            session.listeners.discard(self)


class BargePeer(ListenPeer):
    """The barging supervisor: their microphone goes to the agent through the call's relay."""

    def __init__(self, tap: WebRtcTap, session: CallSession, relay: PacedAudioTrack, peer: Peer,
                 out: PacedAudioTrack | None, mic: MediaStreamTrack) -> None:  # fmt: skip
        super().__init__(tap, session.call, peer, out)
        self.session = session
        self.relay = relay
        self.mic = mic

    async def run(self) -> None:
        relay = self.relay
        reader = asyncio.create_task(self._relay(relay), name=f"webrtc:{self.call.call_id}:barge")
        try:
            await super().run()
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            relay.clear("supervisor")

    async def _relay(self, relay: PacedAudioTrack) -> None:
        downmix = av.AudioResampler(format="s16", layout="mono", rate=relay.rate)
        try:
            while True:
                frame = await self.mic.recv()
                assert isinstance(frame, av.AudioFrame)
                for pcm, _ in mono_int16(frame, downmix):
                    relay.feed("supervisor", pcm)
        except MediaStreamError:
            self.peer.stop("completed")

    def closed(self) -> None:
        if self.session.barge is self:
            self.session.barge = None


# -- the tap ----------------------------------------------------------------------------------


class WebRtcTap:
    """The service's WebRTC calls by id, and the ICE settings (applied when the tap starts)."""

    POLL_S = 0.5  # how often a peer checks that its call has not ended elsewhere (shutdown, ...)

    def __init__(self, settings: IceSettings) -> None:
        self.settings = settings
        restrict_ice(settings)
        self.calls: dict[str, CallSession] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("webrtc task %s failed: %r", task.get_name(), task.exception())

    async def wait_over(self, peer: Peer, call: LiveCall) -> str:
        """Until the peer fails ("dropped"), closes ("closed") or is stopped (the reason given), or
        the call ends elsewhere ("completed")."""
        while not peer.over.is_set():
            if call.ended:
                return "completed"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(peer.over.wait(), self.POLL_S)
        return peer.reason

    def new_peer(self, label: str) -> Peer:
        return Peer(RTCPeerConnection(self.settings.configuration()), label)

    def offer_sdp(self, sdp: str) -> str:
        kept, dropped = filter_candidates(sdp, self.settings)
        if dropped:
            log.info("dropped %d offered ICE candidate(s) outside ASSIST_ICE_ADDRESSES' reach", dropped)
        return kept

    async def close(self) -> None:
        """Shutdown: every call ends ("aborted") and every peer connection closes."""
        for session in list(self.calls.values()):
            session.peer.stop("aborted")
        tasks = list(self.tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=10)


def install_webrtc_tap(app: Any) -> WebRtcTap:
    """The app's WebRTC tap, made once from the environment (``ASSIST_ICE_SERVERS``,
    ``ASSIST_ICE_ADDRESSES``); the service calls it at start, so a bad setting stops the start
    with its message and ICE is restricted before any peer connection exists."""
    tap: WebRtcTap | None = getattr(app.state, "webrtc_tap", None)
    if tap is None:
        tap = app.state.webrtc_tap = WebRtcTap(IceSettings.from_env())
    return tap


async def get_tap(request: Request) -> WebRtcTap:  # async: on the event loop, so created once
    try:
        return install_webrtc_tap(request.app)
    except ConfigError as exc:
        raise HTTPException(503, f"the WebRTC tap is misconfigured: {exc}") from None


async def close_webrtc_tap(app: Any) -> None:
    """For the service's shutdown: end the WebRTC calls and close their peer connections.
    (Without it, ``LiveCalls.close`` ending the calls is enough: each session then closes its own
    peer connections within ``WebRtcTap.POLL_S``.)"""
    tap: WebRtcTap | None = getattr(app.state, "webrtc_tap", None)
    if tap is not None:
        await tap.close()


Tap = Annotated[WebRtcTap, Depends(get_tap)]


# -- routes -----------------------------------------------------------------------------------

OFFER_ERRORS: dict[int | str, dict[str, Any]] = {400: {}, 401: {}, 403: {}, 409: {}, 503: {}}


@router.post("/offer", response_model=AnswerOut, responses=OFFER_ERRORS)
async def call_offer(
    body: CallOfferIn,
    ctx: Ctx,
    tap: Tap,
    principal: Annotated[Principal, Depends(authorize("taps.connect"))],
) -> dict[str, str]:
    """A call's offer: one audio m-line per channel (see ``channels``); the answer carries all of
    our ICE candidates. The call runs until the connection closes or fails, or DELETE."""
    try:
        mapping = map_channels(offered_audio(body.sdp), body.channels)
    except OfferError as exc:
        raise HTTPException(400, str(exc)) from None
    if body.call_id is not None and body.call_id in ctx.live.calls:
        raise HTTPException(409, f"call id {body.call_id} is already in use")
    peer = tap.new_peer("call")
    try:
        await accept_offer(peer.pc, tap.offer_sdp(body.sdp))
        tracks: dict[Channel, MediaStreamTrack] = {}
        relay: PacedAudioTrack | None = None
        for transceiver in audio_transceivers(peer.pc):
            channel = mapping.get(transceiver.mid or "")
            if channel is None or transceiver.receiver.track is None:
                continue
            tracks[channel] = transceiver.receiver.track
            if channel == "agent":  # what the agent hears from us: silence, or a barging supervisor
                relay = PacedAudioTrack(RELAY_RATE)
                transceiver.sender.replaceTrack(relay)
                transceiver.direction = "sendrecv"
        sdp = await answer(peer.pc)
        if relay is not None and not _sends(peer.pc, relay):
            relay = None  # the agent's m-line was offered sendonly: nothing can reach the agent
        meta = CallMeta("webrtc", body.call_id, body.lang, body.agent_id, body.queue)
        call = await ctx.live.open_call(meta, tuple(ch for ch in ("agent", "customer") if ch in tracks))
    except OfferError as exc:
        await peer.close()
        raise HTTPException(400, str(exc)) from None
    except TooManyCallsError as exc:
        await peer.close()
        raise HTTPException(503, str(exc)) from None
    except InputError as exc:
        await peer.close()
        raise HTTPException(409 if "already in use" in str(exc) else 400, str(exc)) from None
    except BaseException:
        await peer.close()
        raise
    session = CallSession(tap, call, peer, relay)
    tap.calls[call.call_id] = session
    tap.spawn(session.run(tracks), f"webrtc:{call.call_id}")
    log.info("webrtc call started", extra={"call_id": call.call_id, "by": principal.name,
                                           "channels": ",".join(tracks)})  # fmt: skip
    return {"sdp": sdp, "type": "answer", "call_id": call.call_id}


def _sends(pc: RTCPeerConnection, track: MediaStreamTrack) -> bool:
    for transceiver in pc.getTransceivers():
        if transceiver.sender.track is track:
            return transceiver.currentDirection in SENDING
    return False


@router.delete("/{call_id}", status_code=204, responses={401: {}, 403: {}, 404: {}})
async def end_call(
    call_id: str, tap: Tap, principal: Annotated[Principal, Depends(authorize("taps.connect"))]
) -> Response:
    """End a WebRTC call now (``call.ended`` with reason ``completed`` follows on its events)."""
    session = tap.calls.get(call_id)
    if session is None:
        raise HTTPException(404, f"no WebRTC call {call_id}")
    session.peer.stop("completed")
    return Response(status_code=204)


def _live_call(ctx: AppContext, call_id: str) -> LiveCall:
    call = ctx.live.calls.get(call_id)
    if call is None or call.ended:
        if ctx.board.get(call_id) is not None:
            raise HTTPException(409, f"call {call_id} is not a live tap call (ended, or a recording)")
        raise HTTPException(404, f"no call {call_id}")
    if call.meta.source == "chat":
        raise HTTPException(409, f"call {call_id} is a text chat: it has no audio to listen to or barge into")
    return call


def _supervisor_audio(sdp: str, *, needs: tuple[str, ...], what: str) -> list[OfferedAudio]:
    try:
        audio = offered_audio(sdp)
    except OfferError as exc:
        raise HTTPException(400, str(exc)) from None
    if not any(m.direction in needs for m in audio):
        raise HTTPException(400, f"the offer needs an audio m-line that {what}")
    return audio


@router.post("/{call_id}/listen", response_model=AnswerOut, responses=OFFER_ERRORS | {404: {}})
async def listen(
    call_id: str,
    body: SupervisorOfferIn,
    ctx: Ctx,
    tap: Tap,
    principal: Annotated[Principal, Depends(authorize("calls.control"))],
) -> dict[str, str]:
    """Listen in to any live tap call: a receive-only audio offer; the answer sends the call's two
    channels mixed (mono, Opus). Ends with the call, or when this peer connection closes."""
    call = _live_call(ctx, call_id)
    offered = _supervisor_audio(body.sdp, needs=RECEIVING, what="receives (recvonly or sendrecv)")
    session = tap.calls.get(call_id)
    if session is not None and len(session.listeners) >= MAX_LISTENERS:
        raise HTTPException(409, f"call {call_id} already has {MAX_LISTENERS} listeners")
    peer = tap.new_peer("listen")
    try:
        await accept_offer(peer.pc, tap.offer_sdp(body.sdp))
        out = _attach_call_audio(peer.pc, offered, send_only=True)
        sdp = await answer(peer.pc)
    except OfferError as exc:
        await peer.close()
        raise HTTPException(400, str(exc)) from None
    except BaseException:
        await peer.close()
        raise
    listener = ListenPeer(tap, call, peer, out)
    if session is not None:
        session.listeners.add(listener)
    tap.spawn(listener.run(), f"webrtc:{call_id}:listen")
    log.info("webrtc listen-in", extra={"call_id": call_id, "by": principal.name})
    return {"sdp": sdp, "type": "answer", "call_id": call_id}


def _attach_call_audio(
    pc: RTCPeerConnection, offered: list[OfferedAudio], *, send_only: bool
) -> PacedAudioTrack | None:
    """The call's audio on the first audio m-line that receives; with ``send_only`` (listen-in),
    every audio m-line answered sendonly or inactive (we take no audio from a listener)."""
    directions = {m.mid: m.direction for m in offered}
    out: PacedAudioTrack | None = None
    for transceiver in audio_transceivers(pc):
        if out is None and directions.get(transceiver.mid or "") in RECEIVING:
            out = PacedAudioTrack(LISTEN_RATE)
            transceiver.sender.replaceTrack(out)
            transceiver.direction = "sendonly" if send_only else "sendrecv"
        elif send_only:
            transceiver.direction = "inactive"
    return out


@router.post("/{call_id}/barge", response_model=AnswerOut, responses=OFFER_ERRORS | {404: {}})
async def barge(
    call_id: str,
    body: SupervisorOfferIn,
    ctx: Ctx,
    tap: Tap,
    principal: Annotated[Principal, Depends(authorize("calls.control"))],
) -> dict[str, str]:
    """Barge in on a WebRTC call: an offer carrying the supervisor's microphone (sendrecv: they
    also hear the call). The agent hears them through the call's relay track; a ``barge`` event is
    published for the telephony side to conference them in with the customer."""
    call = _live_call(ctx, call_id)
    session = tap.calls.get(call_id)
    if session is None:
        raise HTTPException(409, f"call {call_id} is not a WebRTC call: use POST /v1/calls/{call_id}/barge")
    relay = session.relay
    if relay is None:
        raise HTTPException(
            409, "this call sends no audio to the agent (no agent m-line, or it was offered sendonly)"
        )
    if session.barge is not None:
        raise HTTPException(409, f"{session.barge.peer.label} is already barged in on call {call_id}")
    offered = _supervisor_audio(
        body.sdp, needs=SENDING, what="sends the supervisor's audio (sendrecv or sendonly)"
    )
    peer = tap.new_peer(principal.name)
    try:
        await accept_offer(peer.pc, tap.offer_sdp(body.sdp))
        mic = next((t.receiver.track for t in audio_transceivers(peer.pc) if t.receiver.track), None)
        if mic is None:
            raise OfferError("the offer carries no audio track")
        out = _attach_call_audio(peer.pc, offered, send_only=False)
        sdp = await answer(peer.pc)
        if session.barge is not None:  # another barge won the race while we negotiated
            raise HTTPException(409, f"{session.barge.peer.label} is already barged in on call {call_id}")
        await ctx.live.barge(call_id, call.clock.elapsed(), principal.name, body.reason.strip())
    except OfferError as exc:
        await peer.close()
        raise HTTPException(400, str(exc)) from None
    except CallNotLiveError as exc:
        await peer.close()
        raise HTTPException(409, str(exc)) from None
    except BaseException:
        await peer.close()
        raise
    barger = BargePeer(tap, session, relay, peer, out, mic)
    session.barge = barger
    tap.spawn(barger.run(), f"webrtc:{call_id}:barge")
    log.info("webrtc barge-in", extra={"call_id": call_id, "by": principal.name})
    return {"sdp": sdp, "type": "answer", "call_id": call_id}


@router.delete("/{call_id}/barge", status_code=204, responses={401: {}, 403: {}, 404: {}})
async def end_barge(
    call_id: str, tap: Tap, principal: Annotated[Principal, Depends(authorize("calls.control"))]
) -> Response:
    """The barging supervisor leaves: the agent hears silence from us again."""
    session = tap.calls.get(call_id)
    if session is None or session.barge is None:
        raise HTTPException(404, f"no barge-in on WebRTC call {call_id}")
    session.barge.peer.stop("completed")
    return Response(status_code=204)
