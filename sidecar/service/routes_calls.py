"""Calls: list and detail, per-call SSE with resume, the supervisor floor, whisper, barge-in,
and starting a recorded call through the live pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from sidecar.calls.errors import CallNotLiveError, TooManyCallsError, TooManyUserCallsError
from sidecar.calls.registry import StartRequest
from sidecar.kernel.bus import SubscriberLaggedError
from sidecar.kernel.errors import InputError
from sidecar.service.auth import Principal
from sidecar.service.board import FloorLaggedError, summary_sort_key
from sidecar.service.callview import CallDetail, CallSummary, FloorAlert
from sidecar.service.context import AppContext, authorize, authorize_stream, get_ctx, visible_call
from sidecar.service.eventview import CALL_EVENTS, BargeEvent, CallEventOut, WhisperEvent, model_name
from sidecar.service.limits import StrictJsonRoute
from sidecar.service.sse import (
    MAX_SEQ,
    PING,
    PING_S,
    RETRY,
    SSE_HEADERS,
    Resync,
    SseMessage,
    last_event_seq,
    resync_message,
    sse_openapi,
    sse_response,
    sse_stream,
)

router = APIRouter(prefix="/v1", tags=["calls"], route_class=StrictJsonRoute)
Ctx = Annotated[AppContext, Depends(get_ctx)]


class WhisperIn(BaseModel):
    text: str = Field(min_length=1, max_length=1000)


class BargeIn(BaseModel):
    reason: str = Field("", max_length=500)


class StartCallIn(BaseModel):
    recording: str = Field(min_length=1, max_length=255, description="a name from GET /v1/recordings")
    realtime: bool = True
    lang: Literal["en", "zh", "auto"] = "en"
    agent_id: str = Field("", max_length=128)
    queue: str = Field("", max_length=128)
    call_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


class StartedOut(BaseModel):
    call_id: str


class RecordingOut(BaseModel):
    name: str
    kind: str
    duration_s: float


@router.get("/calls", response_model=list[CallSummary])
def list_calls(
    ctx: Ctx,
    principal: Annotated[Principal, Depends(authorize("calls.read"))],
    status: Literal["live", "ended", "all"] = "all",
) -> list[CallSummary]:
    calls = ctx.board.calls()
    if not principal.may("calls.read_all"):
        calls = [c for c in calls if c.agent_id == principal.name]
    if status != "all":
        calls = [c for c in calls if c.ended == (status == "ended")]
    return [c.summary() for c in sorted(calls, key=summary_sort_key)]


@router.get("/calls/{call_id}", response_model=CallDetail, responses={403: {}, 404: {}})
def get_call(
    call_id: str, ctx: Ctx, principal: Annotated[Principal, Depends(authorize("calls.read"))]
) -> CallDetail:
    return visible_call(ctx, principal, call_id).detail()


@router.get(
    "/calls/{call_id}/events",
    response_class=StreamingResponse,
    response_model=CallEventOut | Resync,
    responses=sse_openapi(
        "the call's events (SSE), from the first or after the seq given; `error` ends a stream that"
        " fell behind (re-read the call, then resume)",
        {**{event_type: model_name(event_type) for event_type in CALL_EVENTS}, "error": "Resync"},
    ),
)
async def call_events(
    call_id: str,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(authorize_stream("calls.read"))],
    last_event_id: Annotated[str | None, Header(description="resume after this seq")] = None,
    after: Annotated[int | None, Query(ge=0, le=MAX_SEQ, description="resume after this seq")] = None,
) -> StreamingResponse:
    visible_call(ctx, principal, call_id)
    # the header wins: a browser's EventSource reconnects to the same URL (with its first
    # ?after=) and sends the id of the last event it saw
    after_seq = last_event_seq(last_event_id) if last_event_id else (after or 0)

    gauge = ctx.metrics.sse_clients.labels("call")

    async def body() -> AsyncIterator[bytes]:
        gauge.inc()
        try:
            yield RETRY
            async for chunk in ctx.feeds.follow(call_id, after_seq, PING_S):
                yield chunk or PING
        except SubscriberLaggedError as exc:  # re-read GET /v1/calls/{id}, then resume
            yield resync_message(f"lagged: {exc}").encode()
        finally:
            gauge.dec()

    return StreamingResponse(body(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.get(
    "/floor/events",
    response_class=StreamingResponse,
    response_model=CallSummary | FloorAlert | Resync,
    responses=sse_openapi(
        "call summaries and alerts (SSE); `error` ends a stream that fell behind",
        {"call": "CallSummary", "alert": "FloorAlert", "error": "Resync"},
    ),
)
async def floor_events(
    ctx: Ctx,
    principal: Annotated[Principal, Depends(authorize_stream("floor.read"))],
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    after = last_event_seq(last_event_id) if last_event_id else None

    async def messages() -> AsyncIterator[SseMessage]:
        async for message in ctx.board.floor(after):
            yield SseMessage(message.id, message.event, message.json)

    def lagged(exc: BaseException) -> SseMessage | None:
        if isinstance(exc, FloorLaggedError):
            return resync_message(str(exc))
        return None

    return sse_response(ctx, "floor", sse_stream(messages(), on_error=lagged, closing=ctx.closing))


@router.post(
    "/calls/{call_id}/whisper",
    status_code=202,
    response_model=WhisperEvent,
    responses={403: {}, 404: {}, 409: {}},
)
async def whisper(
    call_id: str,
    body: WhisperIn,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(authorize("calls.control"))],
) -> dict[str, Any]:
    state = visible_call(ctx, principal, call_id)
    try:
        event = await ctx.live.whisper(call_id, state.duration_s, body.text.strip(), principal.name)
    except CallNotLiveError as exc:
        raise HTTPException(409, str(exc)) from None
    return event.to_dict()


@router.post(
    "/calls/{call_id}/barge",
    status_code=202,
    response_model=BargeEvent,
    responses={403: {}, 404: {}, 409: {}},
)
async def barge(
    call_id: str,
    body: BargeIn,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(authorize("calls.control"))],
) -> dict[str, Any]:
    state = visible_call(ctx, principal, call_id)
    try:
        event = await ctx.live.barge(call_id, state.duration_s, principal.name, body.reason.strip())
    except CallNotLiveError as exc:
        raise HTTPException(409, str(exc)) from None
    return event.to_dict()


@router.get("/recordings", response_model=list[RecordingOut])
def recordings(
    ctx: Ctx, principal: Annotated[Principal, Depends(authorize("calls.control"))]
) -> list[dict[str, Any]]:
    return [{"name": r.name, "kind": r.kind, "duration_s": r.duration_s} for r in ctx.live.recordings()]


@router.post("/calls", status_code=201, response_model=StartedOut, responses={400: {}, 409: {}, 429: {}})
async def start_call(
    body: StartCallIn,
    request: Request,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(authorize("calls.control"))],
) -> dict[str, str]:
    req = StartRequest(body.recording, body.realtime, body.lang, body.agent_id, body.queue, body.call_id,
                       owner=principal.name)  # fmt: skip
    try:
        call_id = await ctx.live.start_recording(req)
    except TooManyUserCallsError as exc:
        raise HTTPException(429, str(exc)) from None
    except TooManyCallsError as exc:
        raise HTTPException(503, str(exc)) from None
    except InputError as exc:
        raise HTTPException(exc.http_status, str(exc)) from None
    await ctx.board.wait_for_call(call_id, timeout_s=5.0)
    return {"call_id": call_id}
