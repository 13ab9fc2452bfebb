"""Play a WAV into agent-assist as jambonz ``listen`` (or FreeSWITCH mod_audio_fork) would.

    python examples/taps/l16_client.py --url ws://127.0.0.1:8000/v1/taps/l16 --token TOKEN call.wav

The WAV is stereo, left = agent, right = customer (any rate, any format ``sidecar.wavfile`` reads).
First a JSON metadata text frame, then 16-bit little-endian PCM at ``--rate`` in 20 ms binary
frames, in real time; then a normal close. ``--mix stereo`` (default) sends both channels
interleaved with ``channels: ["agent", "customer"]`` (the file's order); ``--mix mono`` sends the
customer alone; ``--mix mixed`` sends both summed into one channel (who spoke is lost). Prints the
call id to follow (``GET /v1/calls/ID/events``). See docs/taps/l16.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from sidecar.audio import Pcm16, resample
from sidecar.wavfile import read_wav


def wire_audio(path: Path, rate: int, mix: str) -> tuple[Pcm16, str]:
    """The samples to send (interleaved for stereo) and the mix type; a mono file is sent mono."""
    wav = read_wav(path)
    channels = [resample(c, wav.sample_rate, rate) for c in wav.channels]
    if len(channels) == 1:
        return channels[0], "mono"
    agent, customer = channels
    if mix == "mono":
        return customer, mix
    if mix == "mixed":
        return np.clip(agent.astype(np.int32) + customer, -32768, 32767).astype(np.int16), mix
    return np.stack([agent, customer], axis=1).reshape(-1), mix


async def stream(args: argparse.Namespace) -> int:
    pcm, mix = wire_audio(args.wav, args.rate, args.mix)
    call_id = args.call_id or f"l16-{uuid.uuid4().hex[:12]}"
    metadata: dict[str, Any] = {"callSid": call_id.removeprefix("l16-"), "call_id": call_id,
                                "sampleRate": args.rate, "mixType": mix, "agent_id": args.agent_id,
                                "queue": args.queue, "lang": args.lang}  # fmt: skip
    if mix == "stereo":
        metadata["channels"] = ["agent", "customer"]
    frame_bytes = args.rate // 50 * 2 * (2 if mix == "stereo" else 1)  # 20 ms
    data = pcm.astype("<i2").tobytes()
    url = f"{args.url}?access_token={args.token}"
    async with connect(
        url, subprotocols=[Subprotocol("audio.jambonz.org")], compression=None, open_timeout=30
    ) as ws:
        print(f"call id: {call_id}", flush=True)
        try:
            await ws.send(json.dumps(metadata))
            start = time.monotonic()
            for i, offset in enumerate(range(0, len(data), frame_bytes)):
                await ws.send(data[offset : offset + frame_bytes])
                await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - time.monotonic()))
            await ws.close()
        except ConnectionClosed:
            pass
        print(f"closed: {ws.close_code} {ws.close_reason or ''}".rstrip(), flush=True)
        return 0 if ws.close_code == 1000 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8000/v1/taps/l16")
    parser.add_argument("--token", required=True, help="an integrator token")
    parser.add_argument("--rate", type=int, default=16000, choices=[8000, 16000])
    parser.add_argument("--mix", default="stereo", choices=["stereo", "mono", "mixed"])
    parser.add_argument("--agent-id", default="alice")
    parser.add_argument("--queue", default="demo")
    parser.add_argument("--lang", default="en", choices=["en", "zh", "auto"])
    parser.add_argument("--call-id", default=None, help="default: l16-<random>")
    parser.add_argument("wav", type=Path, help="stereo WAV: left = agent, right = customer")
    return asyncio.run(stream(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
