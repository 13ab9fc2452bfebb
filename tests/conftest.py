"""Shared fixtures: speech rendered by espeak-ng, WAV writing, the real speech engine."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from sidecar.audio import Pcm16, resample
from sidecar.engine import SpeechEngine

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def espeak(text: str, voice: str = "en-us", wpm: int = 165) -> Pcm16:
    """Render speech with espeak-ng, returned as 16 kHz int16 mono."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is not installed (apt-get install espeak-ng; .ci/run does this)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        subprocess.run(
            [exe, "-v", voice, "-s", str(wpm), "-w", str(out), text], check=True, capture_output=True
        )
        with wave.open(str(out), "rb") as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    return resample(pcm, rate)


def silence(seconds: float) -> Pcm16:
    return np.zeros(round(seconds * 16_000), dtype=np.int16)


def write_wav(path: Path, channels: Sequence[Pcm16], rate: int = 16_000) -> Path:
    """Write int16 channels (padded to the same length) as a PCM WAV."""
    n = max(c.size for c in channels)
    frames = np.zeros((n, len(channels)), dtype=np.int16)
    for i, c in enumerate(channels):
        frames[: c.size, i] = c
    with wave.open(str(path), "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames.astype("<i2").tobytes())
    return path


def dialogue(
    turns: Sequence[tuple[str, str]], gap_s: float = 0.8
) -> tuple[Pcm16, Pcm16, list[tuple[str, float, float]]]:
    """(agent, customer, timeline) for a scripted exchange; the silent side gets zeros."""
    agent: list[Pcm16] = [silence(0.3)]
    customer: list[Pcm16] = [silence(0.3)]
    t = 0.3
    timeline = []
    for who, text in turns:
        speech = espeak(text, "en-us" if who == "agent" else "en-us+f3")
        (agent if who == "agent" else customer).append(speech)
        (customer if who == "agent" else agent).append(np.zeros_like(speech))
        timeline.append((who, t, t + speech.size / 16_000))
        t += speech.size / 16_000 + gap_s
        agent.append(silence(gap_s))
        customer.append(silence(gap_s))
    return np.concatenate(agent), np.concatenate(customer), timeline


@pytest.fixture(scope="session")
def engine() -> Iterator[SpeechEngine]:
    eng = SpeechEngine()
    yield eng
    eng.close()
