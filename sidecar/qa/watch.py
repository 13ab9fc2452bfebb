"""The running service's early warnings: follow the bus, fold each call into a digest, feed the
engine when the call ends, publish what it raises or clears as ``warning.raised`` /
``warning.cleared`` events on the ``WARNINGS_STREAM`` id (the supervisor floor's, not a call's).

Memory: one ``DigestFold`` per live call (counts and short lists), at most ``max_calls`` of them;
past that the oldest call's fold is dropped (counted in ``dropped_calls``; that call is not
counted by the detectors). Counting a customer turn's negative words may load a lexicon (jieba
for Chinese takes a second), so transcript events and the call's end are folded in a worker
thread, one at a time, in bus order. Several API nodes on one Redis bus each run a watch: the
episode id (kind, key, time raised) is the same on every node, so the floor can de-duplicate.

Thresholds: ``ASSIST_EARLY_WARNINGS`` names a YAML file (``sidecar.qa.config.load_config``); it is
re-read when its modification time changes (checked at each call's end), and a file with an error
keeps the thresholds in force and logs the error (file and key, no call data).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from pathlib import Path

from sidecar.kernel.bus import ALL_CALLS, Bus, SubscriberLaggedError
from sidecar.kernel.events import Event, EventType, FloorWarning
from sidecar.qa.config import EarlyWarningConfig, load_config
from sidecar.qa.digest import DigestFold
from sidecar.qa.engine import WarningEngine
from sidecar.qa.warning import EarlyWarning

WARNINGS_STREAM = "floor.warnings"
CONFIG_ENV = "ASSIST_EARLY_WARNINGS"
log = logging.getLogger("assist.qa")


def warning_event(warning: EarlyWarning) -> Event:
    payload = FloorWarning(
        kind=warning.kind,
        key=warning.key,
        message=warning.message,
        episode=warning.episode,
        call_ids=warning.call_ids,
        window_start=warning.window_start,
        window_end=warning.window_end,
        value=warning.value,
        threshold=warning.threshold,
    )
    etype: EventType = "warning.raised" if warning.state == "raised" else "warning.cleared"
    return Event(etype, WARNINGS_STREAM, None, 0.0, 0.0, payload)


class WarningWatch:
    def __init__(
        self,
        bus: Bus,
        engine: WarningEngine | None = None,
        max_calls: int = 10_000,
        config_path: Path | None = None,
    ) -> None:
        self.bus = bus
        self.config_path = config_path
        self._config_mtime: float | None = None
        self.config_error = ""
        self.engine = engine or WarningEngine()
        self._reload()
        self.max_calls = max_calls
        self.folds: OrderedDict[str, DigestFold] = OrderedDict()
        self.dropped_calls = 0
        self.published = 0

    @classmethod
    def from_env(cls, bus: Bus) -> WarningWatch:
        path = os.environ.get(CONFIG_ENV)
        return cls(bus, config_path=Path(path) if path else None)

    def _reload(self) -> None:
        """Read the thresholds file when it changed since it was last read."""
        if self.config_path is None:
            return
        try:
            mtime = self.config_path.stat().st_mtime
        except OSError:
            mtime = None
        if mtime == self._config_mtime:
            return
        self._config_mtime = mtime
        try:
            config = load_config(self.config_path) if mtime is not None else EarlyWarningConfig()
        except ValueError as exc:
            self.config_error = str(exc)
            log.error("early-warning thresholds not reloaded: %s", exc)
            return
        self.config_error = ""
        self.engine.reconfigure(config)

    def step(self, event: Event) -> list[EarlyWarning]:
        """Fold one event in (synchronous); the warnings a call's end produced."""
        if event.call_id == WARNINGS_STREAM:
            return []
        fold = self.folds.get(event.call_id)
        if fold is None:
            fold = self.folds[event.call_id] = DigestFold(event.call_id)
            if len(self.folds) > self.max_calls:
                self.folds.popitem(last=False)
                self.dropped_calls += 1
        fold.apply(event)
        if not fold.ended:
            return []
        del self.folds[event.call_id]
        self._reload()
        return self.engine.feed(fold.digest())

    async def apply(self, event: Event) -> list[EarlyWarning]:
        heavy = event.type in ("transcript.final", "transcript.redacted", "call.ended")
        try:
            warnings = await asyncio.to_thread(self.step, event) if heavy else self.step(event)
        except ValueError as exc:  # a digest that contradicts itself: that call is not counted
            log.warning("early warnings skipped a call: %s", type(exc).__name__)
            return []
        for warning in warnings:
            await self.bus.publish(warning_event(warning))
            self.published += 1
        return warnings

    async def run(self) -> None:
        """Follow every call from now on, until cancelled; after a lag, carry on from now."""
        while True:
            try:
                async for event in self.bus.subscribe(ALL_CALLS, after_seq=None):
                    await self.apply(event)
                return
            except SubscriberLaggedError:
                log.error("early warnings fell behind the bus; the calls it missed are not counted")
