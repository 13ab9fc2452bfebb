"""The event bus: ``publish``, ``subscribe(call_id | "*", after_seq)``, ``calls()``.

The in-memory bus is the embedded default; a Redis Streams bus satisfies the same Protocol.

Memory and drop policy: each call keeps its last ``retain_events`` events (a ring), and the bus
keeps the logs of its last ``retain_ended_calls`` ended calls. Subscribers read the log through a
cursor, so a slow subscriber costs no memory; one that falls further behind than the ring holds
gets ``SubscriberLaggedError`` (it missed events and must resync) instead of silently losing them.
Publishing never blocks and never drops.

A call id is claimed by its ``call.started``: the bus refuses that event (``CallIdInUseError``) when
the call already has events, live or ended and still retained, so two taps, two recordings or two
nodes sharing a Redis bus that start the same explicit call id get exactly one winner. The check
and the append are one step (one synchronous block here, one Lua script on Redis).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from sidecar.kernel.clock import Clock, RealtimeClock
from sidecar.kernel.errors import AssistError, InputError
from sidecar.kernel.events import Event

ALL_CALLS = "*"


class SubscriberLaggedError(Exception):
    """The subscriber's position is older than anything the bus still retains."""


class BusUnavailableError(AssistError):
    """The bus could not take (or read) an event: its server stayed away longer than the bus waits.
    A publish that raises it was not applied; the caller decides what the loss means."""


class CallIdInUseError(InputError):
    """A ``call.started`` for a call id the bus already has events of: another call holds it."""

    http_status = 409

    def __init__(self, call_id: str) -> None:
        super().__init__(f"call id {call_id} is already in use")
        self.call_id = call_id


@dataclass(frozen=True, slots=True)
class CallInfo:
    call_id: str
    last_seq: int
    ended: bool
    started_at: float


class Bus(Protocol):
    async def publish(self, event: Event) -> Event:
        """Stamp ``seq`` and ``emitted_at`` and deliver; returns the stamped event."""
        ...

    def subscribe(self, call_id: str, after_seq: int | None = 0) -> AsyncIterator[Event]:
        """Events of one call (or of every call with ``"*"``) with ``seq > after_seq``.

        ``after_seq=None`` means only events published from now on. A single-call subscription
        ends after that call's ``call.ended``; a ``"*"`` subscription runs until cancelled.
        """
        ...

    def calls(self) -> list[CallInfo]: ...


class _CallLog:
    def __init__(self, retain: int, started_at: float) -> None:
        self.events: deque[Event] = deque(maxlen=retain)
        self.last_seq = 0
        self.ended = False
        self.started_at = started_at

    def after(self, seq: int) -> list[Event]:
        """Events with ``seq`` above the cursor: the log's tail, found by arithmetic (seqs are
        consecutive), so a subscriber's wake-up costs what it reads, not the whole history."""
        if self.events and self.events[0].seq > seq + 1:
            raise SubscriberLaggedError(f"events {seq + 1}..{self.events[0].seq - 1} are no longer retained")
        new = self.last_seq - seq
        n = len(self.events)
        return [self.events[i] for i in range(max(0, n - new), n)] if new > 0 else []


class InMemoryBus:
    def __init__(
        self, clock: Clock | None = None, retain_events: int = 20_000, retain_ended_calls: int = 1_000
    ) -> None:
        self._clock = clock or RealtimeClock()
        self._retain_events = retain_events
        self._retain_ended = retain_ended_calls
        self._logs: OrderedDict[str, _CallLog] = OrderedDict()
        self._all: deque[tuple[int, Event]] = deque(maxlen=retain_events)
        self._all_index = 0
        # one condition per call (a publish wakes only that call's subscribers) and one for "*"
        self._call_changed: dict[str, asyncio.Condition] = {}
        self._all_changed = asyncio.Condition()

    async def publish(self, event: Event) -> Event:
        log = self._logs.get(event.call_id)
        if log is not None and event.type == "call.started":
            raise CallIdInUseError(event.call_id)
        if log is None:
            log = self._logs[event.call_id] = _CallLog(self._retain_events, self._clock.wall())
        if log.ended:
            raise RuntimeError(f"call {event.call_id} has ended; nothing more can be published to it")
        log.last_seq += 1
        stamped = dataclasses.replace(event, seq=log.last_seq, emitted_at=self._clock.wall())
        log.events.append(stamped)
        self._all_index += 1
        self._all.append((self._all_index, stamped))
        if stamped.type == "call.ended":
            log.ended = True
            self._forget_old_calls()
        condition = self._call_changed.get(event.call_id)
        if condition is not None:
            async with condition:
                condition.notify_all()
        async with self._all_changed:
            self._all_changed.notify_all()
        return stamped

    def _forget_old_calls(self) -> None:
        ended = [cid for cid, log in self._logs.items() if log.ended]
        for cid in ended[: max(0, len(ended) - self._retain_ended)]:
            del self._logs[cid]
            self._call_changed.pop(cid, None)

    async def subscribe(self, call_id: str, after_seq: int | None = 0) -> AsyncIterator[Event]:
        if call_id == ALL_CALLS:
            async for event in self._subscribe_all(after_seq):
                yield event
            return
        cursor = after_seq
        while True:
            log = self._logs.get(call_id)
            if cursor is None:
                cursor = log.last_seq if log else 0
            pending = log.after(cursor) if log else []
            for event in pending:
                cursor = event.seq
                yield event
            if log is not None and log.ended and cursor >= log.last_seq:
                return
            if not pending:
                condition = self._call_changed.setdefault(call_id, asyncio.Condition())
                async with condition:
                    await condition.wait_for(functools.partial(self._has_news, call_id, cursor))

    def _has_news(self, call_id: str, cursor: int | None) -> bool:
        log = self._logs.get(call_id)
        return log is not None and (log.last_seq > (cursor or 0) or log.ended)

    async def _subscribe_all(self, after_seq: int | None) -> AsyncIterator[Event]:
        # The cross-call ring is bounded like each call's log: history older than it is gone.
        position = self._all_index if after_seq is None else 0
        while True:
            new = self._all_index - position  # the ring's tail, by arithmetic (indexes are consecutive)
            n = len(self._all)
            batch = [self._all[i] for i in range(max(0, n - new), n)] if new > 0 else []
            for i, event in batch:
                position = i
                if after_seq is None or event.seq > after_seq:
                    yield event
            if not batch:
                async with self._all_changed:
                    await self._all_changed.wait_for(functools.partial(self._all_past, position))

    def _all_past(self, position: int) -> bool:
        return self._all_index > position

    def calls(self) -> list[CallInfo]:
        return [
            CallInfo(call_id=cid, last_seq=log.last_seq, ended=log.ended, started_at=log.started_at)
            for cid, log in self._logs.items()
        ]
