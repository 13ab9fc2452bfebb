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

import dataclasses
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, TypeAdapter
from pydantic.dataclasses import dataclass as typed_dataclass

from sidecar.kernel.bus import SubscriberLaggedError
from sidecar.kernel.events import FloorWarning
from sidecar.qa.watch import WARNINGS_STREAM
from sidecar.service.auth import Principal
from sidecar.service.callview import SCHEMA
from sidecar.service.context import AppContext, authorize_stream, get_ctx
from sidecar.service.sse import SseMessage, last_event_seq, sse_openapi, sse_response, sse_stream

router = APIRouter(prefix="/v1/floor", tags=["calls"])
WARNING_TYPES = ("warning.raised", "warning.cleared")


@dataclasses.dataclass(frozen=True)
class Published:
    seq: int
    emitted_at: float
    state: Literal["raised", "cleared"]


@typed_dataclass(frozen=True, config=SCHEMA)
class WarningMessage(Published, FloorWarning):
    """What one SSE message carries: the warning (``sidecar.kernel.events.FloorWarning``), its
    state and when it was published (its bus seq, the SSE id)."""


class WarningsReset(BaseModel):
    detail: str


MESSAGE: TypeAdapter[WarningMessage] = TypeAdapter(WarningMessage)
RESET = SseMessage(
    None, "reset", WarningsReset(detail="older warnings are no longer retained").model_dump_json()
)


def warning_message(seq: int, emitted_at: float, raised: bool, payload: FloorWarning) -> WarningMessage:
    state: Literal["raised", "cleared"] = "raised" if raised else "cleared"
    return WarningMessage(**dataclasses.asdict(payload), seq=seq, emitted_at=emitted_at, state=state)


@router.get(
    "/warnings/events",
    response_class=StreamingResponse,
    response_model=WarningMessage | WarningsReset,
    responses=sse_openapi(
        "warning.raised / warning.cleared; `reset` when the start of the stream is no longer retained",
        {"warning.raised": "WarningMessage", "warning.cleared": "WarningMessage", "reset": "WarningsReset"},
    ),
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
                        data = warning_message(event.seq, event.emitted_at, event.type == "warning.raised",
                                               event.payload)  # fmt: skip
                        yield SseMessage(event.seq, event.type, MESSAGE.dump_json(data).decode())
                return
            except SubscriberLaggedError:
                after = None
                yield RESET

    return sse_response(ctx, "warnings", sse_stream(messages(), closing=ctx.closing))
