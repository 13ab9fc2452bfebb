"""Speech recognition batched across calls: the decodes of every channel of every call a worker
holds, gathered while its decode threads are busy and run as CTranslate2 batches.

A quiet worker decodes each request at once, one per thread, as before. When every thread is
busy, requests wait (``sidecar.batching``: one per channel at most, nothing dropped) and the next
free thread takes all that waited, up to ``ASSIST_ASR_BATCH``, as one batch:
``WhisperRecognizer.recognize_batch`` runs the encoder, the decoder and the word alignment once
for the lot, and gives each request the transcript it gets alone. On a GPU that is what lets one
device hold hundreds of calls; on CPU bench/load.py and bench/decode_batch.py report the effect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from typing import Protocol, runtime_checkable

from sidecar.asr import DecodeRequest, Hypothesis
from sidecar.batching import Batcher, BatchStats

Decode = Callable[[DecodeRequest], Awaitable[Hypothesis]]


@runtime_checkable
class BatchRecognizer(Protocol):
    def recognize_batch(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]: ...


class DecodeScheduler:
    """One recogniser's decodes for every call of the process (one per model)."""

    def __init__(
        self, recognizer: BatchRecognizer, executor: Executor, *, max_batch: int, workers: int
    ) -> None:
        self._batcher: Batcher[DecodeRequest, Hypothesis] = Batcher(
            recognizer.recognize_batch,
            executor,
            max_batch=max_batch,
            max_in_flight=workers,
            name="asr-batcher",
        )

    @property
    def stats(self) -> BatchStats:
        return self._batcher.stats

    async def decode(self, request: DecodeRequest) -> Hypothesis:
        return await self._batcher.submit(request)
