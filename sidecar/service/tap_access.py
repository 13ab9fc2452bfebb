"""What the service hands the taps (``sidecar.taps.access.TapAccess``): its calls as a tap sees
them (``ServiceCalls``: the live calls of this process and the call board) and its token check.
"""

from __future__ import annotations

import asyncio
from functools import partial

from sidecar.calls.live_call import CallMeta, LiveCall
from sidecar.calls.registry import LiveCalls
from sidecar.kernel.bus import CallIdInUseError
from sidecar.kernel.events import Channel, Event
from sidecar.service.board import CallBoard
from sidecar.service.context import AppContext, check_token
from sidecar.taps.access import TapAccess


class ServiceCalls:
    """``sidecar.calls.access.TapCalls`` over the service's live calls and its call board."""

    def __init__(self, live: LiveCalls, board: CallBoard, closing: asyncio.Event) -> None:
        self.live = live
        self.board = board
        self._closing = closing

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def get(self, call_id: str) -> LiveCall | None:
        return self.live.calls.get(call_id)

    def in_use(self, call_id: str) -> bool:
        return call_id in self.live.calls or self.board.get(call_id) is not None

    def check_open(self, call_id: str, *, joining: int = 0) -> None:
        if self.in_use(call_id):
            raise CallIdInUseError(call_id)
        self.live.check_room(joining)

    async def open_call(
        self,
        meta: CallMeta,
        channels: tuple[Channel, ...] = ("agent", "customer"),
        *,
        kind: type[LiveCall] = LiveCall,
    ) -> LiveCall:
        return await self.live.open_call(meta, channels, kind=kind)

    async def barge(self, call_id: str, t: float, author: str, reason: str) -> Event:
        return await self.live.barge(call_id, t, author, reason)


def tap_access(ctx: AppContext) -> TapAccess:
    return TapAccess(ServiceCalls(ctx.live, ctx.board, ctx.closing), partial(check_token, ctx))
