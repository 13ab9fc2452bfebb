"""Voice activity for every channel of every call in one ONNX run per round, off the event loop.

Each channel's transcriber asks for the probabilities of the frames it has just received and
waits (``sidecar.batching``: what arrives while a batch runs goes in the next, so batches grow
with load by themselves: one call, 2 channels a batch; 50 calls, up to 100). The batches run in a
thread of their own, not the speech pool, so a frame never queues behind a Whisper decode. A
stream's frames are consecutive: a request of k frames takes k rounds, round r holding the r-th
frame of every request that has one. The model's batch axis gives each stream exactly the
probabilities it gets alone (tests/test_vad_batch.py).

Bounds: a channel has at most one request waiting (it awaits the answer); nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from sidecar.audio import Float32
from sidecar.batching import Batcher, BatchStats
from sidecar.vad import SileroVad, VadStream

VadRequest = tuple[VadStream, Sequence[Float32]]


def run_rounds(model: SileroVad, requests: Sequence[VadRequest]) -> list[list[float]]:
    """Blocking: the probabilities of each request's frames, every stream advanced past them."""
    out: list[list[float]] = [[] for _ in requests]
    longest = max((len(frames) for _, frames in requests), default=0)
    for r in range(longest):
        active = [i for i, (_, frames) in enumerate(requests) if len(frames) > r]
        windows = np.stack([requests[i][0].window(requests[i][1][r]) for i in active])
        states = np.concatenate([requests[i][0].state for i in active], axis=1)
        probs, new_states = model.run_batch(windows, states)
        for j, i in enumerate(active):
            stream, frames = requests[i]
            stream.advance(frames[r], np.ascontiguousarray(new_states[:, j : j + 1, :]))
            out[i].append(float(probs[j]))
    return out


class VadBatcher:
    def __init__(self, model: SileroVad, max_batch: int = 256) -> None:
        self.model = model
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vad")
        self._batcher: Batcher[VadRequest, list[float]] = Batcher(
            lambda requests: run_rounds(model, requests), self._pool, max_batch=max_batch, name="vad-batcher"
        )

    @property
    def stats(self) -> BatchStats:
        """Streams per batch (a batch is one request per stream, its frames in rounds)."""
        return self._batcher.stats

    def stream(self) -> BatchedVadStream:
        return BatchedVadStream(self, VadStream(self.model))

    async def probabilities(self, stream: VadStream, frames: Sequence[Float32]) -> list[float]:
        if not frames:
            return []
        return await self._batcher.submit((stream, frames))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass(slots=True)
class BatchedVadStream:
    """One channel's ``VadChannel`` through the process's batcher."""

    batcher: VadBatcher
    stream: VadStream

    async def probabilities(self, frames: Sequence[Float32]) -> list[float]:
        return await self.batcher.probabilities(self.stream, frames)
