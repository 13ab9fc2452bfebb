"""Render the demo calls (``samples/demo/calls.json``) to the telephony WAVs ``assist serve --demo`` plays.

Each call is spoken by Kokoro-82M neural voices (one voice per agent and per customer, picked from
the call id) with the shared call-set renderer, which writes 16 kHz 16-bit stereo (agent left,
customer right); this script then resamples it to 8 kHz with libsoxr (``sidecar.audio.resample``)
and encodes it as G.711 μ-law (``sidecar.audio.encode_g711``, FFmpeg's encoder) in a WAV with
format tag 7: what a telephony tap carries, at 8 kB/s per channel.

    KOKORO_DIR=/path/to/kokoro .venv/bin/python samples/demo/render.py [--ids en-bank-02,...]
        [--renderer ../shared/callsets/synth_kokoro.py] [--cache DIR]

``KOKORO_DIR`` is a Kokoro install (``../shared/callsets/kokoro/setup.sh DIR``: the int8 ONNX model,
the voices and ``DIR/venv`` with kokoro-onnx and misaki[zh]). Renders are cached in
``~/.cache/agent-assist/demo-renders`` (``--cache``); the call set handed to the renderer is
``calls.json`` with ``samples/sample-kb.jsonl`` as its knowledge base.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from sidecar.audio import encode_g711, resample
from sidecar.wavfile import read_wav

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RATE = 8000
DEFAULT_RENDERER = REPO.parent / "shared" / "callsets" / "synth_kokoro.py"
DEFAULT_CACHE = Path.home() / ".cache" / "agent-assist" / "demo-renders"


def ulaw_wav(left: np.ndarray, right: np.ndarray) -> bytes:
    """A stereo μ-law WAV (format tag 7, 8 kHz, 8 bits): interleaved codes, a fact chunk."""
    frames = np.stack([left, right], axis=1).reshape(-1).astype(np.int16)
    data = encode_g711(frames, "ulaw")
    fmt = struct.pack("<HHIIHHH", 7, 2, RATE, RATE * 2, 2, 8, 0)
    fact = struct.pack("<I", len(data) // 2)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"fact" + struct.pack("<I", len(fact)) + fact
    body += b"data" + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def render(ids: list[str], renderer: Path, cache: Path) -> None:
    kokoro = os.environ.get("KOKORO_DIR")
    if not kokoro or not (Path(kokoro) / "venv" / "bin" / "python").exists():
        sys.exit("render.py: set KOKORO_DIR to a Kokoro install (../shared/callsets/kokoro/setup.sh DIR)")
    if not renderer.exists():
        sys.exit(f"render.py: no renderer at {renderer} (give --renderer)")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        callset = Path(tmp)
        shutil.copy(HERE / "calls.json", callset / "calls.json")
        shutil.copy(REPO / "samples" / "sample-kb.jsonl", callset / "kb.jsonl")
        cmd = [str(Path(kokoro) / "venv" / "bin" / "python"), str(renderer), str(callset), str(cache)]
        subprocess.run([*cmd, "--ids", ",".join(ids)] if ids else cmd, check=True)


def convert(call_id: str, cache: Path) -> Path:
    audio = read_wav(cache / f"{call_id}.wav")
    left, right = (resample(c, audio.sample_rate, RATE) for c in audio.channels)
    target = HERE / f"{call_id}.wav"
    target.write_bytes(ulaw_wav(left, right))
    print(f"{target.name}: {left.size / RATE:.1f} s, {target.stat().st_size // 1024} KB")
    return target


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ids", default="", help="comma-separated call ids (default: all)")
    ap.add_argument("--renderer", type=Path, default=DEFAULT_RENDERER)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--convert-only", action="store_true", help="only convert cached renders")
    args = ap.parse_args()
    calls = json.loads((HERE / "calls.json").read_text(encoding="utf-8"))["calls"]
    ids = [s for s in args.ids.split(",") if s] or [c["id"] for c in calls]
    if not args.convert_only:
        render(ids, args.renderer, args.cache)
    for call_id in ids:
        convert(call_id, args.cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
