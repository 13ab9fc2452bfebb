"""Stream a stereo WAV into agent-assist's WebRTC tap with aiortc (left = agent, right = customer).

    python examples/taps/webrtc_client.py --url http://127.0.0.1:8000 --token TOKEN call.wav

Two audio tracks (20 ms Opus frames, in real time), declared by track id in the offer's
``channels`` map; the agent's m-line is ``sendrecv``, so what the tap sends to the agent (silence,
or a barging supervisor) arrives here too: ``--record agent.wav`` keeps it. The offer is posted
with all its ICE candidates (no trickle) to ``POST /v1/taps/webrtc/offer``; the answer's are
applied; when the file has played the peer connection closes and the call ends (``call.ended``,
reason ``completed``). ``--ice-address 127.0.0.1`` keeps this client's ICE on loopback (use it with
a service run with ``ASSIST_ICE_ADDRESSES=127.0.0.1``). Prints the call id to follow
(``GET /v1/calls/ID/events``). See docs/taps/webrtc.md.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import sys
import time
from pathlib import Path

import av
import httpx
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaBlackhole, MediaRecorder
from aiortc.mediastreams import MediaStreamError

from sidecar.audio import Pcm16, resample
from sidecar.taps.ice import IceSettings, restrict_ice
from sidecar.wavfile import read_wav

RATE = 48_000
FRAME = RATE // 50  # 20 ms


class SharedStart:
    """The moment the first frame was asked for: both tracks pace from it, so they stay in step."""

    def __init__(self) -> None:
        self.at: float | None = None

    def __call__(self) -> float:
        if self.at is None:
            self.at = time.monotonic()
        return self.at


class WavChannelTrack(MediaStreamTrack):
    """One channel of the file as an audio track: 20 ms mono frames at 48 kHz, in real time from
    when the connection starts sending; the track ends after the last frame."""

    kind = "audio"

    def __init__(self, pcm: Pcm16, start: SharedStart) -> None:
        super().__init__()
        self.pcm = pcm
        self.start = start
        self.pts = 0
        self.done = asyncio.Event()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live" or self.pts >= self.pcm.size:
            self.done.set()
            self.stop()
            raise MediaStreamError
        delay = self.start() + self.pts / RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        chunk = np.zeros(FRAME, dtype=np.int16)
        part = self.pcm[self.pts : self.pts + FRAME]
        chunk[: part.size] = part
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self.pts
        frame.time_base = fractions.Fraction(1, RATE)
        self.pts += FRAME
        return frame


async def stream(args: argparse.Namespace) -> int:
    wav = read_wav(args.wav)
    if len(wav.channels) != 2:
        print(f"{args.wav}: expected a stereo WAV (left: agent, right: customer)", file=sys.stderr)
        return 2
    agent_pcm, customer_pcm = (resample(c, wav.sample_rate, RATE) for c in wav.channels)
    if args.ice_address:
        restrict_ice(IceSettings(addresses=tuple(args.ice_address)))
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # never aiortc's default public STUN
    start = SharedStart()
    agent, customer = WavChannelTrack(agent_pcm, start), WavChannelTrack(customer_pcm, start)
    pc.addTransceiver(agent, direction="sendrecv")  # the tap sends the agent silence or a supervisor
    pc.addTransceiver(customer, direction="sendonly")
    sink: MediaBlackhole | MediaRecorder = (
        MediaRecorder(str(args.record)) if args.record else MediaBlackhole()
    )

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        sink.addTrack(track)

    await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers every candidate here
    assert pc.localDescription is not None
    body = {"sdp": pc.localDescription.sdp, "type": "offer", "call_id": args.call_id, "lang": args.lang,
            "agent_id": args.agent_id, "queue": args.queue,
            "channels": {agent.id: "agent", customer.id: "customer"}}  # fmt: skip
    headers = {"Authorization": f"Bearer {args.token}"}
    async with httpx.AsyncClient(base_url=args.url, headers=headers, timeout=30) as client:
        r = await client.post("/v1/taps/webrtc/offer", json=body)
    if r.status_code != 200:
        print(f"the tap refused the offer: {r.status_code} {r.text}", file=sys.stderr)
        await pc.close()
        return 1
    answer = r.json()
    print(answer["call_id"], flush=True)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    await sink.start()
    try:
        await asyncio.wait_for(asyncio.gather(agent.done.wait(), customer.done.wait()), timeout=args.timeout)
        await asyncio.sleep(1.0)  # the last packets on their way
    finally:
        await sink.stop()
        await pc.close()  # the tap sees the connection close: the call ends
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the service's base URL")
    p.add_argument("--token", required=True, help="an integrator (or admin) token")
    p.add_argument("wav", type=Path, help="stereo WAV: left = agent, right = customer")
    p.add_argument("--call-id", default=None)
    p.add_argument("--agent-id", default="")
    p.add_argument("--queue", default="")
    p.add_argument("--lang", default="en", choices=["en", "zh", "auto"])
    p.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    p.add_argument("--record", type=Path, default=None, help="save what the tap sends to the agent (WAV)")
    p.add_argument("--ice-address", action="append", default=[],
                   help="a local address (or interface) this client's ICE may use; repeatable")  # fmt: skip
    return asyncio.run(stream(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
