"""WebRTC tap: a call's own peer connection: reading each channel's track into the call, the
relay to the agent, and ending the call with its supervisors' peers.

Opus frames (48 kHz, stereo as aiortc decodes them) are downmixed to mono int16 by FFmpeg's
resampler and pushed to ``LiveCall.push(channel, pcm, 48000)``, which resamples to 16 kHz.

Drop policy: each track has its own reader task that never waits on ASR (``LiveCall.push`` only
queues; the pipeline drops the oldest audio when ASR falls behind).

Ending: DELETE, or the connection closing (the client's ``pc.close()``) or every track ending →
``LiveCall.end("completed")``; the connection failing, or closing after ``VANISHED_S`` without any
audio (the far side vanished and ICE consent expired: aiortc closes the connection just as for a
hang-up) → ``"dropped"``. Every peer connection of the call (listeners, barge) closes with it, in a
``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from sidecar.calls.errors import CallNotLiveError
from sidecar.calls.live_call import LiveCall
from sidecar.kernel.events import Channel
from sidecar.taps.webrtc_media import PacedAudioTrack, mono_downmixer, mono_int16
from sidecar.taps.webrtc_peer import Peer, WebRtcTap

if TYPE_CHECKING:
    from sidecar.taps.webrtc_supervisor import BargePeer, ListenPeer

log = logging.getLogger("assist.taps.webrtc")

VANISHED_S = 10.0  # a connection that closes after this long without audio: the far side vanished


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
