"""Server-sent events: framing, keep-alive pings, and a bounded hand-off from the bus.

A pump task reads the source (the supervisors' floor feed) into a bounded queue; the response
reads the queue and writes a ``: ping`` comment whenever nothing came for ``ping_s``. (A call's
own event stream goes through ``fanout.Feeds`` instead: one bus subscription per call.)

Drop policy: none. When the client reads slower than messages arrive the queue fills and the
pump waits; the source is a cursor over a retained ring, so waiting costs no memory, and a
client too far behind gets an ``error`` message saying it lagged (then re-reads the state)
instead of a silent gap. When the client goes away the pump is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)
PING_S = 15.0
QUEUE_SIZE = 256
RETRY_MS = 2_000
RETRY = f"retry: {RETRY_MS}\n\n".encode()
PING = b": ping\n\n"


@dataclass(frozen=True, slots=True)
class SseMessage:
    id: int | None
    event: str
    data: str  # JSON text

    def encode(self) -> bytes:
        head = f"id: {self.id}\n" if self.id is not None else ""
        # JSON never holds a raw newline, so one data line carries it
        return f"{head}event: {self.event}\ndata: {self.data}\n\n".encode()


def json_message(id_: int | None, event: str, data: Any) -> SseMessage:
    return SseMessage(id_, event, json.dumps(data, ensure_ascii=False, separators=(",", ":")))


_END = object()


async def sse_stream(
    source: AsyncIterator[SseMessage],
    *,
    ping_s: float = PING_S,
    on_error: Callable[[BaseException], SseMessage | None] | None = None,
    closing: asyncio.Event | None = None,
) -> AsyncIterator[bytes]:
    """Encode ``source`` as an SSE body with pings; ends when the source ends, or at once when
    ``closing`` is set (the service is shutting down)."""
    queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)

    async def pump() -> None:
        try:
            async for message in source:
                await queue.put(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            last = on_error(exc) if on_error else None
            if last is None:
                log.exception("event stream failed")
            else:
                await queue.put(last)
        await queue.put(_END)

    task = asyncio.create_task(pump())
    closed = asyncio.ensure_future(closing.wait()) if closing is not None else None
    getter: asyncio.Future[Any] | None = None
    try:
        yield RETRY
        while True:
            if queue.empty():  # the slow path: wait for news, a ping's worth of time, or closing
                getter = asyncio.ensure_future(queue.get())
                waiting = {getter} if closed is None else {getter, closed}
                done, _ = await asyncio.wait(waiting, timeout=ping_s, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    if closed is not None and closed in done:
                        return
                    yield PING
                    continue
                item = getter.result()
            else:  # a busy stream takes what is queued without a task or timer per message
                item = queue.get_nowait()
            if item is _END:
                return
            yield item.encode()
    finally:
        task.cancel()
        if closed is not None:
            closed.cancel()
        if getter is not None:  # a client that left while we waited: no pending task left behind
            getter.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
