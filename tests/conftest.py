"""Shared fixtures: speech rendered by espeak-ng, WAV writing, the real speech engine, Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
import wave
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from redis import asyncio as aioredis

from sidecar.audio import Pcm16, resample
from sidecar.engine import SpeechEngine
from sidecar.kernel.redis_bus import RedisStreamsBus
from tests.browser_helpers import browser_fixture

pytest_plugins = ["tests.service_helpers"]

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


# headless Debian Chromium (Playwright), per test; a module without async tests may launch one
# for the module instead: ``browser = browser_fixture("module")``
browser = browser_fixture()


@pytest.fixture(scope="session")
def engine() -> Iterator[SpeechEngine]:
    eng = SpeechEngine()
    yield eng
    eng.close()


REDIS_TEST_URL = os.environ.get("ASSIST_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A reachable Redis (``ASSIST_TEST_REDIS_URL``, default 127.0.0.1:6379/0).

    Without one the test is skipped, unless ``CI`` is set: there it fails, so the Redis suite
    cannot silently stop running.
    """
    try:
        with redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2) as client:
            client.ping()
    except (redis.RedisError, OSError) as exc:
        message = f"Redis is not reachable at {REDIS_TEST_URL}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set, so the Redis tests must run: start redis-server)")
        pytest.skip(message)
    return REDIS_TEST_URL


class RedisBusFactory:
    """Makes ``RedisStreamsBus``es on one fresh key ``prefix`` (two of them are two nodes)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"test-{uuid.uuid4().hex}"
        self.made: list[RedisStreamsBus] = []

    def __call__(self, **kwargs: Any) -> RedisStreamsBus:
        kwargs.setdefault("prefix", self.prefix)
        bus = RedisStreamsBus(self.url, **kwargs)
        self.made.append(bus)
        return bus

    async def cleanup(self) -> None:
        for bus in self.made:
            await bus.close()
        client = aioredis.Redis.from_url(self.url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{self.prefix}:*", count=1000)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


@pytest.fixture
async def redis_bus_factory(redis_url: str) -> AsyncIterator[RedisBusFactory]:
    """``RedisBusFactory`` on a fresh prefix; its buses are closed and its keys deleted after."""
    factory = RedisBusFactory(redis_url)
    yield factory
    await factory.cleanup()


_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """After the summary is printed, leave without the interpreter's teardown: a full run once
    passed every test and then died with SIGSEGV while native libraries (llama.cpp's server
    thread, ONNX Runtime, CTranslate2 pools) were being torn down in an order they do not
    support, and `make test` reported the crash instead of the result. Only a finished session
    leaves this way, with its own exit status; a crash during the tests still shows."""
    import sys

    if _EXIT_STATUS and os.environ.get("ASSIST_TEST_HARD_EXIT", "1") == "1":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[-1])
