"""Gather requests from many callers into batches run by one blocking function off the event loop.

Callers ``await submit(request)``. What arrives while earlier batches run waits for the next one,
so batches grow with load by themselves and a quiet process still runs each request at once: no
timer, no added latency. At most ``max_in_flight`` batches run at a time (each in the executor),
each of at most ``max_batch`` requests, in arrival order.

Bounds and drop policy: each caller awaits its answer, so the queue holds at most one request per
caller (a channel); nothing is dropped. A request whose caller was cancelled is skipped if it
has not started, and its answer discarded if it has. A failing batch fails each of its callers
with the error; the next batch runs.

One process may run several event loops in threads (a tap's server, a test's client): each loop
has its own lane, and its futures are resolved on that loop only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
Req = TypeVar("Req")
Res = TypeVar("Res")


@dataclass(slots=True)
class BatchStats:
    batches: int = 0
    items: int = 0
    largest: int = 0
    compute_s: float = 0.0  # wall time of the batches, summed
    sizes: list[int] = field(default_factory=list)  # items per batch, the newest 10 000

    def record(self, size: int, seconds: float) -> None:
        self.batches += 1
        self.items += size
        self.largest = max(self.largest, size)
        self.compute_s += seconds
        self.sizes.append(size)
        if len(self.sizes) > 10_000:
            del self.sizes[:5_000]


@dataclass(slots=True)
class _Waiting(Generic[Req, Res]):
    request: Req
    future: asyncio.Future[Res]


@dataclass(slots=True)
class _Lane(Generic[Req, Res]):
    waiting: list[_Waiting[Req, Res]] = field(default_factory=list)
    drainer: asyncio.Task[None] | None = None
    running: set[asyncio.Task[None]] = field(default_factory=set)
    slots: asyncio.Semaphore | None = None


class Batcher(Generic[Req, Res]):
    def __init__(
        self,
        run: Callable[[Sequence[Req]], Sequence[Res]],
        executor: Executor,
        *,
        max_batch: int,
        max_in_flight: int = 1,
        name: str = "batcher",
    ) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        self._run = run
        self._executor = executor
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self.name = name
        self.stats = BatchStats()
        self._lanes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Lane[Req, Res]] = (
            weakref.WeakKeyDictionary()
        )
        self._lanes_lock = threading.Lock()

    async def submit(self, request: Req) -> Res:
        loop = asyncio.get_running_loop()
        with self._lanes_lock:
            lane = self._lanes.setdefault(loop, _Lane())
        future: asyncio.Future[Res] = loop.create_future()
        lane.waiting.append(_Waiting(request, future))
        if lane.drainer is None or lane.drainer.done():
            lane.drainer = loop.create_task(self._drain(lane), name=self.name)
        return await future

    async def _drain(self, lane: _Lane[Req, Res]) -> None:
        if lane.slots is None:
            lane.slots = asyncio.Semaphore(self.max_in_flight)
        while lane.waiting:
            await lane.slots.acquire()
            batch = [w for w in lane.waiting[: self.max_batch] if not w.future.done()]
            del lane.waiting[: self.max_batch]
            if not batch:
                lane.slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run_batch(lane, batch), name=self.name)
            lane.running.add(task)
            task.add_done_callback(lane.running.discard)

    async def _run_batch(self, lane: _Lane[Req, Res], batch: list[_Waiting[Req, Res]]) -> None:
        loop = asyncio.get_running_loop()
        try:
            started = loop.time()
            results = await loop.run_in_executor(self._executor, self._run, [w.request for w in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{self.name}: {len(results)} answers to a batch of {len(batch)}")
            self.stats.record(len(batch), loop.time() - started)
        except Exception as exc:  # every caller of the batch sees why; the next batch runs
            log.exception("%s: a batch of %d failed", self.name, len(batch))
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(exc)
            return
        finally:
            assert lane.slots is not None
            lane.slots.release()
        for w, result in zip(batch, results, strict=True):
            if not w.future.done():  # a caller cancelled: its answer is not wanted
                w.future.set_result(result)
