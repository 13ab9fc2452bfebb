"""Between the media pipeline and the bus: raw transcripts go through the call's coach session,
whatever it returns (redacted transcripts, alerts, checklist, intents, emotion, score) is published.

Two modes, the same events:

- **inline** (the default: ``assist replay``, the QA runs, the benches): each event is redacted
  and coached before the next one is taken; the emitter waits for it. A call's events come in
  exactly the order of ``CoachSession.process``.
- **background** (the service's live calls): a transcript is redacted and published at once, on
  the event loop (regular expressions, well under a millisecond); its coaching (matching,
  embedding, the judge, retrieval) goes to the call's own ordered worker, which runs it in a
  small thread pool shared by every call (numpy, ONNX Runtime and FAISS release the GIL), so one
  call's retrieval never holds up another call's transcripts. A call's coaching events keep
  their order and follow the transcript they belong to; ``call.ended`` comes after all of them.

Drop policy: nothing is dropped. A call's worker queue holds at most ``max_pending`` events; when
it is full the emitter waits (back-pressure on the ASR side, whose audio queues are bounded and
drop the oldest frame). The wait is measured: ``call.ended`` carries ``coach_queue_max`` (deepest
queue), ``coach_wait_ms_p50/p95/max`` (enqueue to start of coaching) and ``coach_errors``;
the one loss is the bus's: a coaching event it gave up on (``BusUnavailableError``: Redis away
longer than the bus waits) is logged and counted in ``coach_events_lost``, and the worker goes on;
``backlog()`` is the number of events waiting in every call's queue right now (``/metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from coach.engine import Coach
from coach.session import CoachSession
from coach.suggestions import SuggestionPolicy
from sidecar.kernel.bus import Bus, BusUnavailableError
from sidecar.kernel.events import CallEnded, CallStarted, Event
from sidecar.kernel.settings import usable_cores

log = logging.getLogger(__name__)
MAX_PENDING = 512  # events one call's coach may have waiting before its emitter waits


def _threads() -> int:
    """``ASSIST_COACH_THREADS``: the coach pool's size (default: the usable cores, 2 to 4)."""
    try:
        return max(1, int(os.environ.get("ASSIST_COACH_THREADS", "")))
    except ValueError:
        return min(4, max(2, usable_cores()))


_pool = ThreadPoolExecutor(max_workers=_threads(), thread_name_prefix="coach")
_live: weakref.WeakSet[CoachSink] = weakref.WeakSet()  # background sinks with a worker running


def backlog() -> int:
    """Events waiting for their call's coach, over every live call of the process."""
    return sum(s.pending for s in list(_live))


@dataclass(slots=True)
class _Item:
    event: Event | None  # None: a dead-air tick at call time ``now``
    now: float
    queued_at: float
    done: asyncio.Future[Event] | None = None  # call.ended: resolved once it is published


@dataclass(slots=True)
class QueueStats:
    """One call's coach queue: how deep it got, how long events waited, what failed."""

    max_depth: int = 0
    waits_s: list[float] = field(default_factory=list)
    errors: int = 0
    lost: int = 0  # coaching events the bus gave up on

    def as_stats(self) -> dict[str, float]:
        waits = np.asarray(self.waits_s or [0.0]) * 1000.0
        return {
            "coach_queue_max": float(self.max_depth),
            "coach_wait_ms_p50": round(float(np.percentile(waits, 50)), 1),
            "coach_wait_ms_p95": round(float(np.percentile(waits, 95)), 1),
            "coach_wait_ms_max": round(float(waits.max()), 1),
            "coach_errors": float(self.errors),
            "coach_events_lost": float(self.lost),
        }


class CoachSink:
    """``emit`` for one call: an async callable taking raw events."""

    def __init__(
        self,
        coach: Coach,
        bus: Bus,
        *,
        tick_s: float = 0.5,
        knowledge: SuggestionPolicy[Any] | None = None,
        dead_air: bool = True,
        background: bool = False,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.coach = coach
        self.dead_air = dead_air  # coach silences (off for a text chat)
        self.knowledge = knowledge
        self.bus = bus
        self.tick_s = tick_s
        self.background = background  # coaching in the call's own worker (see the module's note)
        self.session: CoachSession | None = None
        self.queue_stats = QueueStats()
        self._lock = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(max(1, max_pending))
        self._worker: asyncio.Task[None] | None = None
        self._ending = False  # call.ended is queued: no more ticks
        self._tick_queued = False

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def __call__(self, event: Event) -> Event:
        if event.type == "call.started":
            return await self._started(event)
        if self.background and self.session is not None:
            return await self._queued(event)
        loop = asyncio.get_running_loop()
        async with self._lock:
            if self.session is None:
                return await self.bus.publish(event)
            out = await loop.run_in_executor(_pool, self.session.process, event)
            if event.type == "call.ended":
                await self.stop_ticking()
                self.coach.close_session(event.call_id)
            last = event
            for item in out:
                stamped = await self.bus.publish(item)
                if item is event:
                    last = stamped
            return last

    async def _started(self, event: Event) -> Event:
        assert isinstance(event.payload, CallStarted)
        loop = asyncio.get_running_loop()
        async with self._lock:
            published = await self.bus.publish(event)  # first: the bus may refuse an id in use
            self.session = self.coach.session(
                event.call_id, event.payload.lang, self.knowledge, dead_air=self.dead_air
            )
            for extra in await loop.run_in_executor(_pool, self.session.started):
                await self.bus.publish(extra)
            if self.background and self._worker is None:
                self._worker = asyncio.create_task(self._work(self.session), name=f"coach:{event.call_id}")
                # a failure is reported through call.ended's future; retrieved here, not logged twice
                self._worker.add_done_callback(lambda t: t.cancelled() or t.exception())
                _live.add(self)
            return published

    async def _queued(self, event: Event) -> Event:
        """Background mode: publish what can go now, queue the coaching (waits while the queue is full)."""
        assert self.session is not None
        done: asyncio.Future[Event] | None = None
        async with self._lock:  # the call's channels: redacted and queued in one order
            if self._ending:
                if event.type == "call.ended":  # ended twice (cancelled while ending): once is enough
                    return event
                raise RuntimeError(f"call {event.call_id} has ended; nothing more can be coached")
            published = event
            for i, item in enumerate(self.session.redact(event)):
                stamped = await self.bus.publish(item)
                if i == 0:
                    published = stamped
            if event.type == "call.ended":
                self._ending = True
                done = asyncio.get_running_loop().create_future()
            await self._enqueue(_Item(event, 0.0, time.monotonic(), done))
        if done is None:
            return published
        try:
            return await done  # the worker returns once call.ended is out (its error is ``done``'s)
        finally:
            await self.stop_ticking()
            self.coach.close_session(event.call_id)

    async def _enqueue(self, item: _Item) -> None:
        await self._queue.put(item)
        self.queue_stats.max_depth = max(self.queue_stats.max_depth, self._queue.qsize())

    async def _work(self, session: CoachSession) -> None:
        """The call's worker: its queued coaching, one event at a time, in order, until call.ended."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                item = await self._queue.get()
                if item.event is None:
                    self._tick_queued = False
                    out = await self._run(loop, session.tick, item.now)
                    await self._publish_all(out)
                    continue
                event = item.event
                self.queue_stats.waits_s.append(time.monotonic() - item.queued_at)
                out = await self._run(loop, session.coach, event)
                if item.done is None:
                    await self._publish_all(out)
                    continue
                await self._finish(event, out, item.done)
                return
        finally:
            _live.discard(self)

    async def _run(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[..., list[Event]], arg: object
    ) -> list[Event]:
        try:
            return await loop.run_in_executor(_pool, fn, arg)
        except Exception:  # one event's coaching failed: counted; the call's transcripts went out already
            self.queue_stats.errors += 1
            log.exception("coach failed on one event of a call; its coaching is skipped")
            return []

    async def _publish_all(self, out: list[Event]) -> None:
        for item in out:
            try:
                await self.bus.publish(item)
            except RuntimeError:  # the call ended under us (aborted): nothing more goes out
                self.queue_stats.errors += 1
                log.warning("a coaching event came after its call ended; not published")
            except BusUnavailableError:  # the bus waited for its server and gave up: lost, counted
                self.queue_stats.lost += 1
                log.error("the bus gave up on a coaching event of a call; it is lost")

    async def _finish(self, event: Event, out: list[Event], done: asyncio.Future[Event]) -> None:
        """Publish the end's coaching, then ``call.ended`` with the queue's figures."""
        ended = next((e for e in out if e.type == "call.ended"), event)
        rest = [e for e in out if e is not ended]
        try:
            await self._publish_all(rest)
            assert isinstance(ended.payload, CallEnded)
            stats = {**ended.payload.stats, **self.queue_stats.as_stats()}
            stamped = await self.bus.publish(replace(ended, payload=replace(ended.payload, stats=stats)))
        except BaseException as exc:
            if not done.done():
                done.set_exception(exc)
            raise
        if not done.done():
            done.set_result(stamped)

    async def abandon(self, call_id: str) -> None:
        """The call cannot go on (the bus gave up on one of its transcripts): stop the ticks and
        the worker, close the coach session. Its ``call.ended`` goes on the bus directly."""
        await self.stop_ticking()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
        if self.session is not None:
            self.coach.close_session(call_id)

    def start_ticking(self, now: Callable[[], float]) -> None:
        """Live calls: check for dead air while nobody speaks (``now`` gives call time)."""
        self._ticker = asyncio.create_task(self._tick(now))

    async def stop_ticking(self) -> None:
        if self._ticker is not None:
            if self._ticker is not asyncio.current_task():
                self._ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._ticker
            self._ticker = None

    async def _tick(self, now: Callable[[], float]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick_s)
            if self.background and self._worker is not None:
                # queued behind the call's events; one at a time (a later tick covers a skipped one)
                if not (self._ending or self._tick_queued or self._queue.full()):
                    self._tick_queued = True
                    self._queue.put_nowait(_Item(None, now(), time.monotonic()))
                continue
            async with self._lock:
                if self.session is None:
                    continue
                for item in await loop.run_in_executor(_pool, self.session.tick, now()):
                    await self.bus.publish(item)
