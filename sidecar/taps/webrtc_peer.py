"""WebRTC tap: peer connections: a connection's life (``Peer``), offer/answer, and ``WebRtcTap``,
which makes them with the ICE settings and keeps the service's WebRTC calls and tasks.

ICE: ``sidecar.taps.ice`` (servers and the local addresses ICE may use).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from aiortc import RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription

from sidecar.calls.live_call import LiveCall
from sidecar.taps.ice import IceSettings, filter_candidates, restrict_ice
from sidecar.taps.webrtc_offer import OfferError

if TYPE_CHECKING:
    from sidecar.taps.webrtc_call import CallSession

log = logging.getLogger("assist.taps.webrtc")


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
