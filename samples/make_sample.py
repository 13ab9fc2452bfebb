"""Render the bundled demo call: ``samples/sample-call.wav``.

A short scripted exchange spoken by espeak-ng, written as telephony audio: 8 kHz G.711 μ-law,
stereo (agent left, customer right), so the demo also exercises μ-law decoding and resampling.

    python samples/make_sample.py            (needs espeak-ng and sox)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RATE = 8000
GAP_S = 0.7
SCRIPT = [
    ("agent", "Thanks for calling. This call may be recorded for quality purposes. How can I help?"),
    ("customer", "Hi. My order is two weeks late and nobody has called me back."),
    ("agent", "I am sorry about that. Can I have your order number, please?"),
    ("customer", "It is four five seven two. I would like a refund."),
]


def speak(text: str, voice: str, tmp: Path) -> np.ndarray:
    raw, out = tmp / "raw.wav", tmp / "8k.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "165", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(out)], check=True)
    with wave.open(str(out)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


def main() -> int:
    left: list[np.ndarray] = [np.zeros(RATE // 2, dtype=np.int16)]
    right: list[np.ndarray] = [np.zeros(RATE // 2, dtype=np.int16)]
    with tempfile.TemporaryDirectory() as tmp:
        for who, text in SCRIPT:
            pcm = speak(text, "en-us" if who == "agent" else "en-us+m3", Path(tmp))
            gap = np.zeros(round(GAP_S * RATE), dtype=np.int16)
            (left if who == "agent" else right).extend([pcm, gap])
            (right if who == "agent" else left).extend([np.zeros_like(pcm), gap])
        stereo = np.stack([np.concatenate(left), np.concatenate(right)], axis=1).astype("<i2")
        pcm_path = Path(tmp) / "pcm.wav"
        with wave.open(str(pcm_path), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(stereo.tobytes())
        target = HERE / "sample-call.wav"
        subprocess.run(["sox", str(pcm_path), "-e", "u-law", "-b", "8", str(target)], check=True)
    print(f"wrote {target} ({target.stat().st_size // 1024} KB, {stereo.shape[0] / RATE:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
