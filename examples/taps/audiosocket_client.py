"""Play a WAV into agent-assist as Asterisk would over AudioSocket: one TCP leg per party.

    python examples/taps/audiosocket_client.py --url http://127.0.0.1:8000 --token TOKEN --port 9092 call.wav

The WAV is stereo, left = agent, right = customer (any rate, any format ``sidecar.wavfile`` reads);
a mono WAV is sent as the customer's leg alone. For each leg the client registers a fresh UUID
(``POST /v1/taps/audiosocket/legs``, one call id for both), opens a TCP connection to the
service's AudioSocket port, sends the UUID message (``0x01``), then 20 ms audio messages in real
time (``0x10``: 8 kHz 16-bit little-endian; ``--rate 16000`` sends ``0x12``), then a hangup
(``0x00``). Prints the call id to follow (``GET /v1/calls/ID/events``). See docs/taps/audiosocket.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

from sidecar.audio import Pcm16, resample
from sidecar.wavfile import read_wav

KINDS = {8000: 0x10, 16000: 0x12}


def message(kind: int, payload: bytes = b"") -> bytes:
    """type (1 byte), payload length (2 bytes, big-endian), payload."""
    return bytes([kind]) + len(payload).to_bytes(2, "big") + payload


def load(path: Path, rate: int) -> dict[str, Pcm16]:
    """The legs to play, by channel."""
    wav = read_wav(path)
    channels = [resample(c, wav.sample_rate, rate) for c in wav.channels]
    return (
        {"customer": channels[0]} if len(channels) == 1 else {"agent": channels[0], "customer": channels[1]}
    )


async def play_leg(host: str, port: int, leg: uuid.UUID, pcm: Pcm16, rate: int) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(message(0x01, leg.bytes))
    chunk = rate // 50  # 20 ms
    start = time.monotonic()
    for i in range(-(-pcm.size // chunk)):
        frame = np.zeros(chunk, dtype=np.int16)
        piece = pcm[i * chunk : (i + 1) * chunk]
        frame[: piece.size] = piece
        writer.write(message(KINDS[rate], frame.astype("<i2").tobytes()))
        await writer.drain()
        if reader.at_eof():
            print(f"leg {leg}: the service closed the connection", flush=True)
            break
        await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - time.monotonic()))
    writer.write(message(0x00))
    writer.close()
    await writer.wait_closed()


async def run(args: argparse.Namespace) -> int:
    legs = load(args.wav, args.rate)
    call_id = args.call_id or f"ast-{uuid.uuid4().hex[:12]}"
    uuids = {channel: uuid.uuid4() for channel in legs}
    async with httpx.AsyncClient(
        base_url=args.url, headers={"Authorization": f"Bearer {args.token}"}
    ) as http:
        for channel, leg in uuids.items():
            body = {"uuid": str(leg), "call_id": call_id, "channel": channel, "agent_id": args.agent_id,
                    "queue": args.queue, "lang": args.lang}  # fmt: skip
            r = await http.post("/v1/taps/audiosocket/legs", json=body)
            if r.status_code != 201:
                print(f"registering the {channel} leg: {r.status_code} {r.text}", file=sys.stderr)
                return 1
    print(f"call id: {call_id}", flush=True)
    await asyncio.gather(
        *(play_leg(args.host, args.port, uuids[ch], pcm, args.rate) for ch, pcm in legs.items())
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the service's HTTP base URL")
    parser.add_argument("--token", required=True, help="an integrator token (for the registrations)")
    parser.add_argument("--host", default="127.0.0.1", help="the AudioSocket server's address")
    parser.add_argument("--port", type=int, default=9092, help="ASSIST_AUDIOSOCKET_PORT of the service")
    parser.add_argument("--agent-id", default="alice")
    parser.add_argument("--queue", default="demo")
    parser.add_argument("--lang", default="en", choices=["en", "zh", "auto"])
    parser.add_argument("--call-id", default=None, help="default: a generated ast-... id")
    parser.add_argument(
        "--rate", type=int, default=8000, choices=sorted(KINDS), help="8000 (0x10) or 16000 (0x12)"
    )
    parser.add_argument("wav", type=Path, help="stereo WAV: left = agent, right = customer")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
