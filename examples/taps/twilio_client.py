"""Play a WAV into agent-assist as a Twilio Media Stream would (``track="both_tracks"``).

    python examples/taps/twilio_client.py --url ws://127.0.0.1:8000/v1/taps/twilio --token TOKEN call.wav

The WAV is stereo, left = agent, right = customer (any rate, any format ``sidecar.wavfile`` reads);
a mono WAV is sent as the customer alone. It goes out in real time: every 20 ms one ``media``
message per track (160 bytes of 8 kHz μ-law, base64), the customer as Twilio's ``inbound``
track and the agent as ``outbound``, then ``stop``. Prints the call id to follow
(``GET /v1/calls/ID/events``) and how the service closed the socket. See docs/taps/twilio.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from sidecar.audio import Pcm16, encode_g711, resample
from sidecar.wavfile import read_wav

RATE = 8000
CHUNK = 160  # 20 ms at 8 kHz


def load(path: Path) -> tuple[Pcm16 | None, Pcm16]:
    """(agent, customer) at 8 kHz; agent None for a mono file."""
    wav = read_wav(path)
    channels = [resample(c, wav.sample_rate, RATE) for c in wav.channels]
    if len(channels) == 1:
        return None, channels[0]
    return channels[0], channels[1]


async def stream(args: argparse.Namespace) -> int:
    agent, customer = load(args.wav)
    call_sid, stream_sid = f"CA{uuid.uuid4().hex}", f"MZ{uuid.uuid4().hex}"
    tracks = {"inbound": customer} if agent is None else {"inbound": customer, "outbound": agent}
    params = {"agent_id": args.agent_id, "queue": args.queue, "lang": args.lang}
    if args.call_id:
        params["call_id"] = args.call_id
    seq = 0

    async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
        nonlocal seq
        seq += 1
        await ws.send(json.dumps({**message, "sequenceNumber": str(seq)}))

    url = f"{args.url}?access_token={args.token}"
    async with connect(url, compression=None, open_timeout=30) as ws:
        print(f"call id: {args.call_id or 'twilio-' + call_sid}", flush=True)
        try:
            await send(ws, {"event": "connected", "protocol": "Call", "version": "1.0.0"})
            await send(ws, {"event": "start", "streamSid": stream_sid, "start": {
                "accountSid": "AC" + "0" * 32, "streamSid": stream_sid, "callSid": call_sid,
                "tracks": list(tracks), "customParameters": params,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1}}})  # fmt: skip
            steps = max(-(-pcm.size // CHUNK) for pcm in tracks.values())
            start = time.monotonic()
            for i in range(steps):
                for track, pcm in tracks.items():
                    chunk = np.zeros(CHUNK, dtype=np.int16)
                    piece = pcm[i * CHUNK : (i + 1) * CHUNK]
                    chunk[: piece.size] = piece
                    payload = base64.b64encode(encode_g711(chunk, "ulaw")).decode()
                    await send(ws, {"event": "media", "streamSid": stream_sid, "media": {
                        "track": track, "chunk": str(i + 1), "timestamp": str(i * 20), "payload": payload}})  # fmt: skip
                await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - time.monotonic()))
            await send(ws, {"event": "stop", "streamSid": stream_sid,
                            "stop": {"accountSid": "AC" + "0" * 32, "callSid": call_sid}})  # fmt: skip
            await ws.wait_closed()
        except ConnectionClosed:
            pass
        print(f"closed: {ws.close_code} {ws.close_reason or ''}".rstrip(), flush=True)
        return 0 if ws.close_code == 1000 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8000/v1/taps/twilio")
    parser.add_argument("--token", required=True, help="an integrator token")
    parser.add_argument("--agent-id", default="alice")
    parser.add_argument("--queue", default="demo")
    parser.add_argument("--lang", default="en", choices=["en", "zh", "auto"])
    parser.add_argument("--call-id", default=None, help="default: twilio-<generated CallSid>")
    parser.add_argument("wav", type=Path, help="stereo WAV: left = agent, right = customer")
    return asyncio.run(stream(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
