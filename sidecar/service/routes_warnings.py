"""The supervisor floor's early warnings (``sidecar.qa``): ``GET /v1/floor/warnings/events`` (SSE).

The stream replays the ``floor.warnings`` stream the bus retains (``warning.raised`` /
``warning.cleared``, each with its bus seq as the SSE id), then follows it; the console folds the
events by ``episode`` into the active warnings (raised and not yet cleared). A reconnecting
browser sends ``Last-Event-ID`` and resumes after it. Several API nodes each publish the same
episode: the episode id de-duplicates them. When the bus no longer retains the start of the
stream, a ``reset`` message says so and the stream carries on from now (older active warnings
are then not shown until they clear or re-raise).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi.responses import StreamingResponse

from sidecar.kernel.bus import SubscriberLaggedError
from sidecar.kernel.events import FloorWarning
from sidecar.qa.watch import WARNINGS_STREAM
from sidecar.service.auth import Principal
from sidecar.service.context import AppContext, authorize_stream, get_ctx
from sidecar.service.sse import SseMessage, json_message, last_event_seq, sse_response, sse_stream

router = APIRouter(prefix="/v1/floor", tags=["calls"])
WARNING_TYPES = ("warning.raised", "warning.cleared")


def warning_data(seq: int, emitted_at: float, event_type: str, payload: FloorWarning) -> dict[str, Any]:
    """What one SSE message carries: the warning, its state and when it was published."""
    data = asdict(payload)
    data.update(seq=seq, emitted_at=emitted_at, state=event_type.removeprefix("warning."))
    return data


@router.get(
    "/warnings/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "warning.raised / warning.cleared"}
    },
)
async def warning_events(
    ctx: Annotated[AppContext, Depends(get_ctx)],
    principal: Annotated[Principal, Depends(authorize_stream("floor.read"))],
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    after: int | None = last_event_seq(last_event_id)

    async def messages() -> AsyncIterator[SseMessage]:
        nonlocal after
        while True:
            try:
                async for event in ctx.services.bus.subscribe(WARNINGS_STREAM, after_seq=after):
                    after = event.seq
                    if event.type in WARNING_TYPES and isinstance(event.payload, FloorWarning):
                        data = warning_data(event.seq, event.emitted_at, event.type, event.payload)
                        yield json_message(event.seq, event.type, data)
                return
            except SubscriberLaggedError:
                after = None
                yield json_message(None, "reset", {"detail": "older warnings are no longer retained"})

    return sse_response(ctx, "warnings", sse_stream(messages(), closing=ctx.closing))
