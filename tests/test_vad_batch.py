"""Every channel's VAD in one batch: the real silero model gives each stream exactly what it gives
that stream alone, whatever the batch, and the batcher keeps frames in order, off the loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from sidecar.audio import Float32, to_float
from sidecar.engine import load_vad
from sidecar.vad import FRAME_SAMPLES, SileroVad, VadStream
from sidecar.vad_batch import VadBatcher, run_rounds
from tests.conftest import espeak, silence

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    from models.registry import resolve_model

    return load_vad(resolve_model("vad"))


@pytest.fixture(scope="module")
def channels() -> list[Float32]:
    """Four different channels: speech at different offsets, and silence."""
    speech = to_float(espeak("Thank you for calling, how can I help you today?"))
    quiet = to_float(silence(1.0))
    return [
        np.concatenate([quiet, speech]),
        np.concatenate([speech, quiet, speech]),
        np.concatenate([quiet, quiet, speech[: speech.size // 2]]),
        np.concatenate([quiet, quiet]),
    ]


def _frames(audio: Float32) -> list[Float32]:
    return [audio[i : i + FRAME_SAMPLES] for i in range(0, audio.size - FRAME_SAMPLES + 1, FRAME_SAMPLES)]


def _alone(vad: SileroVad, audio: Float32) -> list[float]:
    stream = VadStream(vad)
    return [stream.probability(f) for f in _frames(audio)]


def test_a_batch_gives_each_stream_what_it_gets_alone(vad: SileroVad, channels: list[Float32]):
    expected = [_alone(vad, a) for a in channels]
    assert max(expected[0]) > 0.5 > max(expected[3])  # speech and silence, told apart
    streams = [VadStream(vad) for _ in channels]
    frames = [_frames(a) for a in channels]
    got: list[list[float]] = [[] for _ in channels]
    # uneven requests: 1, 3, 5 and 7 frames at a time, so rounds hold 1-4 streams
    cursor = [0] * len(channels)
    while any(c < len(f) for c, f in zip(cursor, frames, strict=True)):
        requests: list[tuple[VadStream, Sequence[Float32]]] = []
        owners = []
        for i, step in enumerate((1, 3, 5, 7)):
            if cursor[i] < len(frames[i]):
                requests.append((streams[i], frames[i][cursor[i] : cursor[i] + step]))
                owners.append(i)
                cursor[i] += step
        for i, probs in zip(owners, run_rounds(vad, requests), strict=True):
            got[i].extend(probs)
    for g, e in zip(got, expected, strict=True):
        assert g == pytest.approx(e, abs=1e-6)


async def test_the_batcher_answers_every_channel_in_order_off_the_loop(
    vad: SileroVad, channels: list[Float32]
):
    batcher = VadBatcher(vad)
    threads: set[str] = set()
    original = vad.run_batch

    def spy(windows: Float32, states: Float32) -> tuple[Float32, Float32]:
        threads.add(threading.current_thread().name)
        return original(windows, states)

    vad.run_batch = spy  # type: ignore[method-assign]
    try:

        async def channel(audio: Float32) -> list[float]:
            stream, out = batcher.stream(), []
            frames = _frames(audio)
            for i in range(0, len(frames), 2):  # two frames at a time, like a 64 ms tap packet
                out.extend(await stream.probabilities(frames[i : i + 2]))
            return out

        got = await asyncio.gather(*(channel(a) for a in channels))
    finally:
        del vad.run_batch
        batcher.close()
    for g, audio in zip(got, channels, strict=True):
        assert g == pytest.approx(_alone(vad, audio), abs=1e-6)
    assert threads
    assert all(name.startswith("vad") for name in threads)
    assert batcher.stats.largest == len(channels)  # the four channels shared batches
    requests = sum(-(-len(_frames(a)) // 2) for a in channels)
    assert batcher.stats.items == requests
    assert batcher.stats.batches < requests


async def test_a_failing_model_fails_every_caller_of_its_batch_and_the_next_batch_runs(vad: SileroVad):
    """A named fault: the model raising once (onnxruntime cannot be made to fail on demand)."""
    batcher = VadBatcher(vad)
    original, calls = vad.run_batch, []

    def fail_once(windows: Float32, states: Float32) -> tuple[Float32, Float32]:
        calls.append(windows.shape[0])
        if len(calls) == 1:
            raise RuntimeError("onnxruntime: fault injected")
        return original(windows, states)

    vad.run_batch = fail_once  # type: ignore[method-assign]
    frame = to_float(silence(FRAME_SAMPLES / 16000))
    try:
        first = await asyncio.gather(
            batcher.stream().probabilities([frame]),
            batcher.stream().probabilities([frame]),
            return_exceptions=True,
        )
        assert all(isinstance(r, RuntimeError) for r in first)
        assert len(await batcher.stream().probabilities([frame, frame])) == 2
    finally:
        del vad.run_batch
        batcher.close()


def test_a_batcher_outlives_the_event_loop_that_used_it(vad: SileroVad):
    batcher = VadBatcher(vad)
    frame = to_float(silence(FRAME_SAMPLES / 16000))
    try:
        for _ in range(2):  # two loops, one after the other (tests, a restarted service)
            probs = asyncio.run(batcher.stream().probabilities([frame] * 3))
            assert len(probs) == 3
            assert max(probs) < 0.5
    finally:
        batcher.close()


def test_two_event_loops_in_two_threads_share_one_batcher(vad: SileroVad, channels: list[Float32]):
    """A process may run loops in threads (a tap's server, a test's client): each loop's callers
    are answered on their own loop, and every stream still gets its own probabilities."""
    batcher = VadBatcher(vad)
    results: dict[int, list[list[float]]] = {}

    async def run(audios: list[Float32]) -> list[list[float]]:
        async def channel(audio: Float32) -> list[float]:
            stream, out = batcher.stream(), []
            for frame in _frames(audio):
                out.extend(await stream.probabilities([frame]))
            return out

        return list(await asyncio.gather(*(channel(a) for a in audios)))

    def thread(i: int) -> None:
        results[i] = asyncio.run(run(channels[2 * i : 2 * i + 2]))

    workers = [threading.Thread(target=thread, args=(i,)) for i in range(2)]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=120)
    finally:
        batcher.close()
    got = results[0] + results[1]
    assert len(got) == len(channels)
    for g, audio in zip(got, channels, strict=True):
        assert g == pytest.approx(_alone(vad, audio), abs=1e-6)
