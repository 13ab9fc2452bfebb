"""Play a WAV into agent-assist as Genesys Cloud AudioHook Monitor would (protocol v2).

    python examples/taps/audiohook_client.py --url ws://127.0.0.1:8000/v1/taps/audiohook --api-key TOKEN call.wav

The WAV is stereo, left = agent, right = customer (any rate, any format ``sidecar.wavfile`` reads);
a mono WAV is sent as the customer (``external``) alone. The client sends the AudioHook headers
and ``open`` (offering the stereo format, then the mono ones), waits for ``opened``, then streams
8 kHz audio in real time, 20 ms per binary frame: PCMU (μ-law) by default or ``--format L16``,
channels interleaved in the order ``external`` (customer), ``internal`` (agent). It sends a
``ping`` every 5 s and ``close`` at the end, and answers a server ``disconnect`` with ``close``.
Prints the call id, how long ``opened`` took, and the server's messages. See docs/taps/audiohook.md.
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
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from sidecar.audio import Pcm16, encode_g711, resample
from sidecar.wavfile import read_wav

RATE = 8000
CHUNK = 160  # 20 ms at 8 kHz


def load(path: Path) -> list[Pcm16]:
    """The channels to send at 8 kHz, in AudioHook order: [customer, agent] or [customer]."""
    wav = read_wav(path)
    channels = [resample(c, wav.sample_rate, RATE) for c in wav.channels]
    return [channels[0]] if len(channels) == 1 else [channels[1], channels[0]]


def frames(channels: list[Pcm16], fmt: str) -> list[bytes]:
    """20 ms binary frames, channels interleaved sample by sample."""
    n = max(c.size for c in channels)
    n += -n % CHUNK
    interleaved = np.zeros((n, len(channels)), dtype=np.int16)
    for i, c in enumerate(channels):
        interleaved[: c.size, i] = c
    flat = interleaved.reshape(-1)
    step = CHUNK * len(channels)
    if fmt == "PCMU":
        return [encode_g711(flat[i : i + step], "ulaw") for i in range(0, flat.size, step)]
    return [flat[i : i + step].astype("<i2").tobytes() for i in range(0, flat.size, step)]


class Session:
    def __init__(self, ws: ClientConnection, session_id: str) -> None:
        self.ws = ws
        self.id = session_id
        self.seq = 0
        self.serverseq = 0
        self.samples = 0
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.disconnected = asyncio.Event()

    async def send(self, kind: str, parameters: dict[str, Any]) -> None:
        self.seq += 1
        await self.ws.send(json.dumps({
            "version": "2", "type": kind, "seq": self.seq, "serverseq": self.serverseq, "id": self.id,
            "position": f"PT{self.samples / RATE:.3f}S", "parameters": parameters}))  # fmt: skip

    async def read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                self.serverseq = message.get("seq", self.serverseq)
                print(f"<- {message['type']} {json.dumps(message.get('parameters', {}))}", flush=True)
                if message["type"] == "disconnect":
                    self.disconnected.set()
                await self.replies.put(message)
        except ConnectionClosed:
            pass
        self.disconnected.set()

    async def expect(self, kind: str, timeout_s: float) -> dict[str, Any] | None:
        try:
            while True:
                message = await asyncio.wait_for(self.replies.get(), timeout_s)
                if message["type"] == kind:
                    return message
                if message["type"] == "disconnect":
                    return None
        except TimeoutError:
            return None


async def stream(args: argparse.Namespace) -> int:
    channels = load(args.wav)
    names = ["external"] if len(channels) == 1 else ["external", "internal"]
    offer = [{"type": "audio", "format": args.format, "channels": names, "rate": RATE}]
    offer += [
        {"type": "audio", "format": args.format, "channels": [n], "rate": RATE}
        for n in names
        if len(names) > 1
    ]
    conversation, session_id, org = str(uuid.uuid4()), str(uuid.uuid4()), args.organization_id
    custom: dict[str, Any] = {"agent_id": args.agent_id, "queue": args.queue}
    if args.call_id:
        custom["call_id"] = args.call_id
    headers = {"X-API-KEY": args.api_key, "Audiohook-Organization-Id": org,
               "Audiohook-Correlation-Id": str(uuid.uuid4()), "Audiohook-Session-Id": session_id}  # fmt: skip
    async with connect(args.url, additional_headers=headers, compression=None, open_timeout=30) as ws:
        session = Session(ws, session_id)
        reader = asyncio.create_task(session.read())
        print(f"call id: {args.call_id or 'audiohook-' + conversation}", flush=True)
        started = time.monotonic()
        await session.send("open", {
            "organizationId": org, "conversationId": conversation, "language": args.lang,
            "participant": {"id": str(uuid.uuid4()), "ani": "", "aniName": "", "dnis": ""},
            "media": offer, "customConfig": custom})  # fmt: skip
        opened = await session.expect("opened", 5.0)
        if opened is None:
            print("no opened within 5 s", flush=True)
            await session.send("close", {"reason": "error"})
            await session.expect("closed", 5.0)
            return 1
        print(f"opened after {(time.monotonic() - started) * 1000:.0f} ms", flush=True)
        chosen = opened["parameters"]["media"][0]["channels"]
        to_send = [channels[names.index(n)] for n in chosen]
        start, last_ping = time.monotonic(), time.monotonic()
        for i, frame in enumerate(frames(to_send, opened["parameters"]["media"][0]["format"])):
            if session.disconnected.is_set():
                break
            await ws.send(frame)
            session.samples += CHUNK
            if time.monotonic() - last_ping >= 5.0:
                last_ping = time.monotonic()
                await session.send("ping", {})
            await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - time.monotonic()))
        reason = "disconnect" if session.disconnected.is_set() else "end"
        try:
            await session.send("close", {"reason": reason})
            closed = await session.expect("closed", 5.0)
        except ConnectionClosed:
            closed = None
        reader.cancel()
        return 0 if closed is not None and reason == "end" else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8000/v1/taps/audiohook")
    parser.add_argument("--api-key", required=True, help="an integrator token (sent as X-API-KEY)")
    parser.add_argument("--organization-id", default=str(uuid.uuid4()))
    parser.add_argument("--agent-id", default="alice")
    parser.add_argument("--queue", default="demo")
    parser.add_argument("--lang", default="en-US", help="AudioHook language tag: en-US, zh-CN, ...")
    parser.add_argument("--call-id", default=None, help="default: audiohook-<generated conversationId>")
    parser.add_argument("--format", default="PCMU", choices=["PCMU", "L16"])
    parser.add_argument("wav", type=Path, help="stereo WAV: left = agent, right = customer")
    return asyncio.run(stream(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
