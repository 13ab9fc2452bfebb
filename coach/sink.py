"""Between the media pipeline and the bus: raw transcripts go through the call's coach session,
whatever it returns (redacted transcripts, alerts, checklist, intents, emotion, score) is published.

The session's work (matching, embedding) runs in a single worker thread, so the event loop never
waits on it and one call's events keep their order. Every call's events pass through here:
nothing is dropped; if the coach falls behind, the transcript publisher waits (back-pressure on
the ASR side, which has its own bounded, drop-oldest audio queues).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from coach.engine import Coach
from coach.session import CoachSession
from knowledge.policy import SuggestionPolicy
from sidecar.bus import Bus
from sidecar.events import CallStarted, Event

_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coach")


class CoachSink:
    """``emit`` for one call: an async callable taking raw events."""

    def __init__(
        self,
        coach: Coach,
        bus: Bus,
        *,
        tick_s: float = 0.5,
        knowledge: SuggestionPolicy | None = None,
        dead_air: bool = True,
    ) -> None:
        self.coach = coach
        self.dead_air = dead_air  # coach silences (off for a text chat)
        self.knowledge = knowledge
        self.bus = bus
        self.tick_s = tick_s
        self.session: CoachSession | None = None
        self._lock = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None

    async def __call__(self, event: Event) -> Event:
        loop = asyncio.get_running_loop()
        async with self._lock:
            if event.type == "call.started":
                assert isinstance(event.payload, CallStarted)
                self.session = self.coach.session(
                    event.call_id, event.payload.lang, self.knowledge, dead_air=self.dead_air
                )
                published = await self.bus.publish(event)
                for extra in await loop.run_in_executor(_pool, self.session.started):
                    await self.bus.publish(extra)
                return published
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

    def start_ticking(self, now: Callable[[], float]) -> None:
        """Live calls: check for dead air while nobody speaks (``now`` gives call time)."""
        self._ticker = asyncio.create_task(self._tick(now))

    async def stop_ticking(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None

    async def _tick(self, now: Callable[[], float]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick_s)
            async with self._lock:
                if self.session is None:
                    continue
                for item in await loop.run_in_executor(_pool, self.session.tick, now()):
                    await self.bus.publish(item)
