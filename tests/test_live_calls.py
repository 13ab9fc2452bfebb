"""The live-call registry: two starts of one call id inside one process, racing through the await
between admission and registration (a model load), have exactly one winner, and the winner stays
registered (listen-in, barge-in and the call limit find it)."""

from __future__ import annotations

import asyncio
import time

import pytest

from coach.engine import Coach
from sidecar.calls.live_call import CallMeta, LiveCall
from sidecar.calls.registry import LiveCalls
from sidecar.engine import SpeechEngine
from sidecar.kernel.bus import CallIdInUseError, InMemoryBus
from sidecar.kernel.clock import RealtimeClock

pytestmark = pytest.mark.model


class SlowLoadingEngine:
    """Fault injection (named as such): the real engine, whose model preload takes 0.3 s, so both
    starts are admitted before either registers its call. Everything else is the real engine."""

    def __init__(self, engine: SpeechEngine) -> None:
        self._engine = engine

    def preload(self, lang: str) -> None:
        time.sleep(0.3)
        self._engine.preload(lang)

    def __getattr__(self, name: str) -> object:
        return getattr(self._engine, name)


async def test_two_taps_opening_one_call_id_at_once_have_one_winner(engine: SpeechEngine) -> None:
    bus = InMemoryBus(RealtimeClock())
    live = LiveCalls(bus, Coach(embedder=None, judge=False), None, None, engine_factory=lambda: SlowLoadingEngine(engine))  # type: ignore[arg-type,return-value]  # fmt: skip
    meta = CallMeta("twilio", call_id="one-id")
    results = await asyncio.gather(live.open_call(meta), live.open_call(meta), return_exceptions=True)
    winners = [r for r in results if isinstance(r, LiveCall)]
    refused = [r for r in results if isinstance(r, CallIdInUseError)]
    assert len(winners) == 1, results
    assert len(refused) == 1, results
    assert live.calls == {"one-id": winners[0]}
    assert live.running == 1
    again = await asyncio.gather(live.open_call(meta), return_exceptions=True)  # while it runs
    assert isinstance(again[0], CallIdInUseError)
    await winners[0].end()
    started = [c for c in bus.calls() if c.call_id == "one-id"]
    assert len(started) == 1
    assert started[0].ended
