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

The agent's m-line is answered ``sendrecv`` with a relay track: silence, or the barging
supervisor's voice. Listen-in tracks send the call's audio as it is pushed (``LiveCall.listeners``).

This module holds the wire (request and answer bodies), the routes and the tap's wiring into the
app; the tap's other modules, each with one job (their names are importable from here too):
``webrtc_offer`` (reading an offer, channel mapping), ``webrtc_media`` (decoding frames, the paced
outgoing track; its drop policy), ``webrtc_peer`` (peer connections, offer/answer, ``WebRtcTap``;
ICE: ``sidecar.taps.ice``), ``webrtc_call`` (a call's peer: its tracks into the call; drop policy,
ending), ``webrtc_supervisor`` (listen-in and barge-in peers).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from aiortc import MediaStreamTrack, RTCPeerConnection
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field, ValidationError

from sidecar.calls.access import Caller, TapCalls
from sidecar.calls.errors import CallNotLiveError, TooManyCallsError
from sidecar.calls.live_call import CallMeta, LiveCall
from sidecar.kernel.commands import Command, CommandReply, Handler
from sidecar.kernel.errors import ConfigError, InputError
from sidecar.kernel.events import Channel
from sidecar.taps.access import allowed, get_calls, installed_access
from sidecar.taps.ice import IceSettings
from sidecar.taps.webrtc_call import VANISHED_S, CallSession
from sidecar.taps.webrtc_media import (
    FRAME_S,
    MAX_BUFFER_S,
    PRIME_S,
    PacedAudioTrack,
    mono_downmixer,
    mono_int16,
)
from sidecar.taps.webrtc_offer import (
    RECEIVING,
    SENDING,
    OfferedAudio,
    OfferError,
    map_channels,
    offered_audio,
)
from sidecar.taps.webrtc_peer import Peer, WebRtcTap, accept_offer, answer, audio_transceivers
from sidecar.taps.webrtc_supervisor import BargePeer, ListenPeer

__all__ = [
    "CALL_ID_PATTERN",
    "FRAME_S",
    "LISTEN_RATE",
    "MAX_BUFFER_S",
    "MAX_LISTENERS",
    "MAX_SDP",
    "OFFER_ERRORS",
    "PRIME_S",
    "RECEIVING",
    "RELAY_RATE",
    "SENDING",
    "VANISHED_S",
    "AnswerOut",
    "BargePeer",
    "CallOfferIn",
    "CallSession",
    "Calls",
    "ListenPeer",
    "OfferError",
    "OfferedAudio",
    "PacedAudioTrack",
    "Peer",
    "SupervisorOfferIn",
    "Tap",
    "WebRtcTap",
    "accept_offer",
    "answer",
    "audio_transceivers",
    "barge",
    "call_offer",
    "close_webrtc_tap",
    "end_barge",
    "end_call",
    "get_tap",
    "install_webrtc_tap",
    "listen",
    "map_channels",
    "mono_downmixer",
    "mono_int16",
    "offered_audio",
    "router",
]

log = logging.getLogger("assist.taps.webrtc")
router = APIRouter(prefix="/v1/taps/webrtc", tags=["taps"])
Calls = Annotated[TapCalls, Depends(get_calls)]

MAX_SDP = 100_000
MAX_LISTENERS = 8  # per call
LISTEN_RATE = 16_000  # what LiveCall.listeners carry
RELAY_RATE = 48_000  # the barge relay: Opus's own rate
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
    calls: Calls,
    tap: Tap,
    principal: Annotated[Caller, Depends(allowed("taps.connect"))],
) -> dict[str, str]:
    """A call's offer: one audio m-line per channel (see ``channels``); the answer carries all of
    our ICE candidates. The call runs until the connection closes or fails, or DELETE."""
    return await open_offer(body, calls, tap, principal.name)


async def open_offer(body: CallOfferIn, calls: TapCalls, tap: WebRtcTap, by: str) -> dict[str, str]:
    """The call an offer opens, on this node: its answer (``HTTPException`` when refused). The
    route runs it; on a media worker, so does the command an API node routes the offer with."""
    try:
        mapping = map_channels(offered_audio(body.sdp), body.channels)
    except OfferError as exc:
        raise HTTPException(400, str(exc)) from None
    if body.call_id is not None and calls.get(body.call_id) is not None:
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
        call = await calls.open_call(meta, tuple(ch for ch in ("agent", "customer") if ch in tracks))
    except OfferError as exc:
        await peer.close()
        raise HTTPException(400, str(exc)) from None
    except TooManyCallsError as exc:
        await peer.close()
        raise HTTPException(503, str(exc)) from None
    except InputError as exc:
        await peer.close()
        raise HTTPException(exc.http_status, str(exc)) from None
    except BaseException:
        await peer.close()
        raise
    session = CallSession(tap, call, peer, relay)
    tap.calls[call.call_id] = session
    tap.spawn(session.run(tracks), f"webrtc:{call.call_id}")
    log.info("webrtc call started", extra={"call_id": call.call_id, "by": by,
                                           "channels": ",".join(tracks)})  # fmt: skip
    return {"sdp": sdp, "type": "answer", "call_id": call.call_id}


def _sends(pc: RTCPeerConnection, track: MediaStreamTrack) -> bool:
    for transceiver in pc.getTransceivers():
        if transceiver.sender.track is track:
            return transceiver.currentDirection in SENDING
    return False


@router.delete("/{call_id}", status_code=204, responses={401: {}, 403: {}, 404: {}})
async def end_call(
    call_id: str, tap: Tap, principal: Annotated[Caller, Depends(allowed("taps.connect"))]
) -> Response:
    """End a WebRTC call now (``call.ended`` with reason ``completed`` follows on its events)."""
    stop_call(tap, call_id)
    return Response(status_code=204)


def stop_call(tap: WebRtcTap, call_id: str) -> None:
    session = tap.calls.get(call_id)
    if session is None:
        raise HTTPException(404, f"no WebRTC call {call_id}")
    session.peer.stop("completed")


def offer_commands(app: Any) -> dict[str, Handler]:
    """A media worker's answers to the WebRTC commands API nodes route to it: ``webrtc_offer``
    (args: the offer's body and ``by``) and ``webrtc_end``."""

    async def offer(command: Command) -> CommandReply:
        args = dict(command.args)
        by = str(args.pop("by", ""))
        access = installed_access(app)
        if access is None:
            return CommandReply(503, "the worker is starting")
        try:
            body = CallOfferIn.model_validate(args)
            answer = await open_offer(body, access.calls, install_webrtc_tap(app), by)
        except ValidationError as exc:
            return CommandReply(422, str(exc))
        except HTTPException as exc:
            return CommandReply(exc.status_code, str(exc.detail))
        return CommandReply(201, "", dict(answer))

    async def end(command: Command) -> CommandReply:
        try:
            stop_call(install_webrtc_tap(app), command.call_id or "")
        except HTTPException as exc:
            return CommandReply(exc.status_code, str(exc.detail))
        return CommandReply(204)

    return {"webrtc_offer": offer, "webrtc_end": end}


def _live_call(calls: TapCalls, call_id: str) -> LiveCall:
    call = calls.get(call_id)
    if call is None or call.ended:
        if calls.in_use(call_id):
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
    calls: Calls,
    tap: Tap,
    principal: Annotated[Caller, Depends(allowed("calls.control"))],
) -> dict[str, str]:
    """Listen in to any live tap call: a receive-only audio offer; the answer sends the call's two
    channels mixed (mono, Opus). Ends with the call, or when this peer connection closes."""
    call = _live_call(calls, call_id)
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
    calls: Calls,
    tap: Tap,
    principal: Annotated[Caller, Depends(allowed("calls.control"))],
) -> dict[str, str]:
    """Barge in on a WebRTC call: an offer carrying the supervisor's microphone (sendrecv: they
    also hear the call). The agent hears them through the call's relay track; a ``barge`` event is
    published for the telephony side to conference them in with the customer."""
    call = _live_call(calls, call_id)
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
        await calls.barge(call_id, call.clock.elapsed(), principal.name, body.reason.strip())
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
    call_id: str, tap: Tap, principal: Annotated[Caller, Depends(allowed("calls.control"))]
) -> Response:
    """The barging supervisor leaves: the agent hears silence from us again."""
    session = tap.calls.get(call_id)
    if session is None or session.barge is None:
        raise HTTPException(404, f"no barge-in on WebRTC call {call_id}")
    session.barge.peer.stop("completed")
    return Response(status_code=204)
