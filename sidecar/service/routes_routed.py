"""On an API node (``--role api``): the tap requests whose answer must come from the media worker
that runs the call, routed to it through Redis (``sidecar.service.roles.ApiCalls.route``).

- ``POST /v1/taps/webrtc/offer``: the call starts on the live worker with the most room; the
  answer (the worker's SDP and ICE candidates) comes back as the worker wrote it, so the media
  flows between the caller and that worker.
- ``DELETE /v1/taps/webrtc/{call_id}``: to the worker that owns the call.

The other taps are long-lived connections (WebSocket, TCP): integrators point them at the media
workers' service directly.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response

from sidecar.kernel.commands import Command, CommandReply
from sidecar.service.auth import Principal
from sidecar.service.context import AppContext, authorize, get_ctx
from sidecar.service.roles import ApiCalls
from sidecar.taps.webrtc import OFFER_ERRORS, AnswerOut, CallOfferIn

router = APIRouter(prefix="/v1/taps/webrtc", tags=["taps"])
Ctx = Annotated[AppContext, Depends(get_ctx)]


def _api_calls(ctx: AppContext) -> ApiCalls:
    if not isinstance(ctx.live, ApiCalls):  # mounted on API nodes only
        raise HTTPException(500, "not an API node")
    return ctx.live


def _answer(reply: CommandReply) -> dict[str, Any]:
    if not reply.ok:
        raise HTTPException(reply.status, reply.detail)
    return reply.data


@router.post("/offer", response_model=AnswerOut, responses=OFFER_ERRORS | {504: {}})
async def routed_offer(
    body: CallOfferIn, ctx: Ctx, principal: Annotated[Principal, Depends(authorize("taps.connect"))]
) -> dict[str, Any]:
    """As on a media worker (see there); the call runs on the worker that answers."""
    command = Command("webrtc_offer", body.call_id, {**body.model_dump(), "by": principal.name})
    return _answer(await _api_calls(ctx).route(command))


@router.delete("/{call_id}", status_code=204, responses={401: {}, 403: {}, 404: {}, 504: {}})
async def routed_end(
    call_id: str, ctx: Ctx, principal: Annotated[Principal, Depends(authorize("taps.connect"))]
) -> Response:
    _answer(await _api_calls(ctx).route(Command("webrtc_end", call_id), call_id=call_id))
    return Response(status_code=204)
