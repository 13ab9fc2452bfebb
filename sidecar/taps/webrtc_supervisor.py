"""WebRTC tap: a supervisor's peer connections: listening in (hearing the call's two channels,
mixed) and barging in (their microphone relayed to the agent).
"""

from __future__ import annotations

import asyncio
import contextlib

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from sidecar.audio import Pcm16
from sidecar.calls.live_call import LiveCall
from sidecar.kernel.events import Channel
from sidecar.taps.webrtc_call import CallSession
from sidecar.taps.webrtc_media import PacedAudioTrack, mono_int16
from sidecar.taps.webrtc_peer import Peer, WebRtcTap


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
