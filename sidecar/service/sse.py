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
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

if TYPE_CHECKING:  # the context imports this module (through fanout)
    from sidecar.service.context import AppContext

log = logging.getLogger(__name__)
PING_S = 15.0
QUEUE_SIZE = 256
RETRY_MS = 2_000
RETRY = f"retry: {RETRY_MS}\n\n".encode()
PING = b": ping\n\n"
MAX_SEQ = 2**53  # event seqs fit a JSON number exactly
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


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


class Resync(BaseModel):
    """The ``error`` message that ends a stream whose reader fell behind what the server retains."""

    detail: str
    resync: bool = Field(description="true: re-read the state (GET), then open the stream again")


def resync_message(detail: str) -> SseMessage:
    return SseMessage(None, "error", Resync(detail=detail, resync=True).model_dump_json())


def sse_openapi(description: str, messages: dict[str, str]) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of an SSE route for ``/openapi.json``: each message's ``event`` name and the
    component schema of its JSON ``data`` (``messages``: event name -> model name), in the
    ``itemSchema`` form FastAPI gives its own event streams. The route's ``response_model`` (the
    union of those models) puts the components there; the stream itself is not validated."""
    items = []
    for event, model in messages.items():
        data = {"type": "string", "contentMediaType": "application/json",
                "contentSchema": {"$ref": f"#/components/schemas/{model}"}}  # fmt: skip
        items.append({"type": "object", "required": ["event", "data"],
                      "properties": {"id": {"type": "string"}, "event": {"const": event}, "data": data}})  # fmt: skip
    return {
        200: {"description": description, "content": {"text/event-stream": {"itemSchema": {"oneOf": items}}}}
    }


def last_event_seq(value: str | None) -> int:
    """The seq a ``Last-Event-ID`` header names (0 for none); 400 for anything else."""
    if value is None or not value.strip():
        return 0
    try:
        seq = int(value)
    except ValueError:
        raise HTTPException(400, f"Last-Event-ID must be an event seq (got {value[:40]!r})") from None
    if not 0 <= seq <= MAX_SEQ:
        raise HTTPException(400, f"Last-Event-ID must be an event seq between 0 and {MAX_SEQ}")
    return seq


def sse_response(ctx: AppContext, stream: str, body: AsyncIterator[bytes]) -> StreamingResponse:
    """An SSE response for ``body``, counted in the ``stream`` label of the open-streams gauge."""
    gauge = ctx.metrics.sse_clients.labels(stream)

    async def counted() -> AsyncIterator[bytes]:
        gauge.inc()
        try:
            async for chunk in body:
                yield chunk
        finally:
            gauge.dec()

    return StreamingResponse(counted(), media_type="text/event-stream", headers=SSE_HEADERS)


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
