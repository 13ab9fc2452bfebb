"""VAD for many channels: one stream at a time on the event loop (before) against every
channel's frames batched in the VAD thread (``sidecar.vad_batch``, now).

    .venv/bin/python bench/vad_batch.py [--channels 2 8 32 100] [--seconds 20]

Each channel is a real recorded demo call's channel (samples/demo), fed as fast as it goes in
64 ms packets (what a tap delivers), all channels concurrently. Per channel-second of audio it
prints the event loop's CPU (what the loop cannot spend on SSE and taps), the VAD compute, the
streams per ONNX round (p50 / max), and whether every probability equals the one-stream-at-a-
time probability.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.registry import resolve_model  # noqa: E402
from sidecar.audio import Float32, resample, to_float  # noqa: E402
from sidecar.engine import load_vad  # noqa: E402
from sidecar.vad import FRAME_SAMPLES, SileroVad, VadStream  # noqa: E402
from sidecar.vad_batch import VadBatcher  # noqa: E402
from sidecar.wavfile import read_wav  # noqa: E402

PACKET = 2  # VAD frames per tap packet (64 ms)


def demo_channels(count: int, seconds: float) -> list[list[Float32]]:
    sources: list[Float32] = []
    for path in sorted((ROOT / "samples" / "demo").glob("*.wav")):
        wav = read_wav(path)
        sources.extend(to_float(resample(c, wav.sample_rate)) for c in wav.channels)
    frames_each = int(seconds * 16_000 / FRAME_SAMPLES)
    out = []
    for i in range(count):
        audio = sources[i % len(sources)]
        start = (i // len(sources)) * 16_000 * 3 % max(1, audio.size - frames_each * FRAME_SAMPLES)
        out.append(
            [audio[start + k * FRAME_SAMPLES : start + (k + 1) * FRAME_SAMPLES] for k in range(frames_each)]
        )
    return out


async def inline(vad: SileroVad, channels: list[list[Float32]]) -> tuple[float, list[list[float]]]:
    async def one(frames: list[Float32]) -> list[float]:
        stream, out = VadStream(vad), []
        for i in range(0, len(frames), PACKET):
            out.extend(await stream.probabilities(frames[i : i + PACKET]))
            await asyncio.sleep(0)  # the next packet comes from the network
        return out

    cpu = time.thread_time()
    probs = await asyncio.gather(*(one(f) for f in channels))
    return time.thread_time() - cpu, list(probs)


async def batched(batcher: VadBatcher, channels: list[list[Float32]]) -> tuple[float, list[list[float]]]:
    async def one(frames: list[Float32]) -> list[float]:
        stream, out = batcher.stream(), []
        for i in range(0, len(frames), PACKET):
            out.extend(await stream.probabilities(frames[i : i + PACKET]))
        return out

    cpu = time.thread_time()
    probs = await asyncio.gather(*(one(f) for f in channels))
    return time.thread_time() - cpu, list(probs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--channels", type=int, nargs="+", default=[2, 8, 32, 100])
    ap.add_argument("--seconds", type=float, default=20.0, help="audio per channel")
    args = ap.parse_args()
    vad = load_vad(resolve_model("vad"))
    print(
        f"{'channels':>8}  {'inline loop ms/ch-s':>19}  {'batched loop ms/ch-s':>20}  "
        f"{'VAD thread ms/ch-s':>18}  {'streams/batch p50 max':>21}  {'loop ratio':>10}  equal"
    )
    for n in args.channels:
        channels = demo_channels(n, args.seconds)
        audio_s = n * args.seconds
        loop_inline, probs_inline = asyncio.run(inline(vad, channels))
        batcher = VadBatcher(vad)
        try:
            loop_batched, probs_batched = asyncio.run(batched(batcher, channels))
        finally:
            batcher.close()
        stats = batcher.stats
        equal = all(
            np.allclose(a, b, atol=1e-6, rtol=0) for a, b in zip(probs_inline, probs_batched, strict=True)
        )
        print(
            f"{n:>8}  {1e3 * loop_inline / audio_s:>19.2f}  {1e3 * loop_batched / audio_s:>20.2f}  "
            f"{1e3 * stats.compute_s / audio_s:>18.2f}  "
            f"{int(np.median(stats.sizes)):>13} {stats.largest:>7}  "
            f"{loop_batched / max(loop_inline, 1e-9):>10.2f}  {'yes' if equal else 'NO'}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
