"""The call board: every call's view (``callview.CallState``) and the supervisor floor's feed,
folded from the bus's events.

The board follows the bus's ``"*"`` stream, so any API node that reads the same bus shows the same
board. Memory: each call's lists are bounded (``callview.MAX_ITEMS``), and only the last
``retain_ended`` ended calls are kept.

The floor feed is a bounded ring of ``call`` (the call's ``CallSummary``) and ``alert``
(``FloorAlert``) messages with a floor-wide id; a supervisor's stream reads it through a cursor and
resumes by id. A reader too far behind gets ``FloorLaggedError`` and re-reads the call list.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from pydantic import TypeAdapter

from sidecar.kernel.events import Alert, Event
from sidecar.service.callview import CallState, CallSummary, FloorAlert


class FloorLaggedError(Exception):
    """The floor reader's position is older than the ring still holds."""


@dataclass(frozen=True, slots=True)
class FloorMessage:
    id: int
    event: Literal["call", "alert"]
    data: CallSummary | FloorAlert
    json: str  # data as JSON, serialised once for every supervisor's stream


FLOOR_DATA: TypeAdapter[CallSummary | FloorAlert] = TypeAdapter(CallSummary | FloorAlert)


class CallBoard:
    def __init__(self, retain_ended: int = 500, floor_ring: int = 10_000) -> None:
        self._calls: OrderedDict[str, CallState] = OrderedDict()
        self._retain_ended = retain_ended
        self._floor: deque[FloorMessage] = deque(maxlen=floor_ring)
        self._floor_id = 0
        self._changed = asyncio.Condition()
        self.events_seen = 0

    def get(self, call_id: str) -> CallState | None:
        return self._calls.get(call_id)

    def calls(self) -> list[CallState]:
        return list(self._calls.values())

    def live_count(self) -> int:
        return sum(1 for c in self._calls.values() if not c.ended)

    async def apply(self, event: Event) -> None:
        state = self._calls.get(event.call_id)
        if state is None:
            state = self._calls[event.call_id] = CallState(event.call_id, started_at=event.emitted_at)
        elif event.seq <= state.last_seq and event.type != "call.started":
            return  # already folded in (a resumed subscription)
        self.events_seen += 1
        notify = state.apply(event)
        if isinstance(event.payload, Alert):
            self._post("alert", FloorAlert(call_id=event.call_id, **dataclasses.asdict(state.alerts[-1])))
        if notify:
            self._post("call", state.summary())
        if state.ended:
            self._forget_old()
        if notify:
            async with self._changed:
                self._changed.notify_all()

    def _post(self, kind: Literal["call", "alert"], data: CallSummary | FloorAlert) -> None:
        self._floor_id += 1
        self._floor.append(FloorMessage(self._floor_id, kind, data, FLOOR_DATA.dump_json(data).decode()))

    def _forget_old(self) -> None:
        ended = [cid for cid, c in self._calls.items() if c.ended]
        for cid in ended[: max(0, len(ended) - self._retain_ended)]:
            del self._calls[cid]

    async def wait_for_call(self, call_id: str, timeout_s: float) -> bool:
        """Wait until the board has folded in the call's start (it follows the bus a moment behind)."""
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(lambda: call_id in self._calls)
        except TimeoutError:
            return False
        return True

    async def floor(self, after: int | None) -> AsyncIterator[FloorMessage]:
        """Floor messages with ``id > after`` (``None``: from now on), until cancelled."""
        cursor = self._floor_id if after is None else after
        while True:
            if self._floor and self._floor[0].id > cursor + 1 and cursor < self._floor_id:
                raise FloorLaggedError(f"floor messages after {cursor} are no longer retained")
            batch = [m for m in self._floor if m.id > cursor]
            for message in batch:
                cursor = message.id
                yield message
            if not batch:
                async with self._changed:
                    await self._changed.wait_for(functools.partial(self._floor_past, cursor))

    def _floor_past(self, cursor: int) -> bool:
        return self._floor_id > cursor


def summary_sort_key(state: CallState) -> tuple[float, float]:
    return (-state.risk, -state.started_at)
