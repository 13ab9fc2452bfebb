"""The language model's routes: capabilities, a call's hand-off note, reply drafts and their
feedback; and the post-call notes of ended calls.

``run_llm`` (spawned at start-up) builds the model service (``coach.llm``), puts it on
``app.state.llm`` and follows the bus: when a call ends and post-call notes are on, its note and
disposition are generated in the background and kept (``CallAssistant.postcall``; listeners get a
``PostCallSummary``; one listener saves it into the call store, if the service has one). At
shutdown the worker stops.

Answers: 503 when there is no model (the message says why), 429 when the model's queue is full
(``Retry-After``), 504 when a generation outlived the wait, 409 when the call has no transcript yet.
Who may ask: the call's agent and supervisors (``calls.read`` + ``visible_call``), as for the call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, Field

from coach.llm.assistant import CallAssistant, CallNote, PostCallSummary, ReplyDraft
from coach.llm.feedback import ReplyFeedbackLog
from coach.llm.prompts import Card, Lang, Turn, call_language
from coach.llm.runtime import GenerationError
from coach.llm.service import LlmBusyError, LlmConfig, LlmService, LlmUnavailableError
from sidecar.kernel.bus import ALL_CALLS, SubscriberLaggedError
from sidecar.kernel.errors import ConfigError
from sidecar.kernel.events import CallEnded
from sidecar.service.auth import Principal
from sidecar.service.callview import CallState
from sidecar.service.context import AppContext, authorize, get_ctx, visible_call
from sidecar.service.limits import StrictJsonRoute
from sidecar.store.repository import PostCallNote

log = logging.getLogger("assist.llm")
router = APIRouter(prefix="/v1", tags=["assist"], route_class=StrictJsonRoute)
Ctx = Annotated[AppContext, Depends(get_ctx)]
MAX_CARDS = 3  # the most recent distinct cards shown to the agent that a reply may follow
REPLY_TURNS = 6
ENDED_WAIT_S = 5.0  # how long a post-call job waits for the board to fold in the call's end


@dataclass
class LlmContext:
    service: LlmService
    assistant: CallAssistant
    feedback: ReplyFeedbackLog
    tasks: set[asyncio.Task[Any]]


class LlmStatusOut(BaseModel):
    available: bool = Field(
        description="summaries and replies can be asked for (UIs hide their buttons when not)"
    )
    loaded: bool
    reason: str = Field(description="why it is not available ('' when it is)")
    model: str
    device: str
    threads: int
    queued: int
    background_queued: int
    dropped: int
    load_s: float | None


class CapabilitiesOut(BaseModel):
    llm: LlmStatusOut
    summary: bool
    reply: bool


class NoteLineOut(BaseModel):
    field: str
    label: str
    text: str = Field(description="'' when the transcript states nothing for it")
    dropped: bool = Field(
        description="the model's line stated what the transcript does not, and was left out"
    )


class StatsOut(BaseModel):
    prompt_tokens: int
    cached_tokens: int
    generated_tokens: int
    prompt_s: float
    generate_s: float
    wall_s: float


class SummaryOut(BaseModel):
    call_id: str
    lang: str
    lines: list[str] = Field(
        description="the note as shown: need, verified, promised, risk (and disposition)"
    )
    fields: list[NoteLineOut]
    turns: int = Field(description="transcript finals the note was made from")
    cached: bool = Field(description="no new finals since the last note: the same note")
    final: bool = Field(description="the post-call note of an ended call")
    outcome: Literal["resolved", "follow-up", "escalated"] | None
    reason: str
    generated_at: float
    stats: StatsOut


class ReplyOut(BaseModel):
    call_id: str
    reply_id: str
    lang: str
    text: str = Field(description="what the agent may say ('' when nothing grounded was left)")
    snippet_id: str | None = Field(description="the procedure card it follows")
    dropped: int
    generated_at: float
    stats: StatsOut


class ReplyFeedbackIn(BaseModel):
    reply_id: str = Field(min_length=1, max_length=64)
    kind: Literal["used", "dismissed"]
    edited: bool = False


def get_llm(request: Request) -> LlmContext:
    llm: LlmContext | None = getattr(request.app.state, "llm", None)
    if llm is None:
        raise HTTPException(503, "the language model service is starting")
    return llm


Llm = Annotated[LlmContext, Depends(get_llm)]


def turns_of(state: CallState) -> list[Turn]:
    return [Turn(line.channel or "", line.text) for line in state.transcript if line.text.strip()]


def cards_of(state: CallState, limit: int = MAX_CARDS) -> list[Card]:
    """The newest distinct procedure cards the agent was shown."""
    cards: list[Card] = []
    for item in reversed(state.suggestions):
        sid = item.snippet_id
        if sid and all(c.snippet_id != sid for c in cards):
            cards.append(Card(sid, item.title, item.body))
        if len(cards) == limit:
            break
    return list(reversed(cards))


def _language(state: CallState, turns: list[Turn]) -> Lang:
    declared = state.lang or next((line.lang for line in state.transcript if line.lang), "")
    return call_language(declared, turns)


async def _guarded(coro: Any) -> Any:
    try:
        return await coro
    except LlmUnavailableError as exc:
        raise HTTPException(503, str(exc)) from None
    except LlmBusyError as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": "5"}) from None
    except TimeoutError:
        raise HTTPException(504, "the language model did not answer in time") from None
    except GenerationError as exc:
        raise HTTPException(502, str(exc)) from None


def _note_out(note: CallNote, *, cached: bool, final: bool) -> dict[str, Any]:
    return {
        "call_id": note.call_id, "lang": note.lang, "lines": note.rendered(),
        "fields": [asdict(line) for line in note.lines], "turns": note.turns, "cached": cached,
        "final": final, "outcome": note.outcome, "reason": note.reason,
        "generated_at": round(note.generated_at, 3), "stats": asdict(note.stats),
    }  # fmt: skip


def _reply_out(draft: ReplyDraft) -> dict[str, Any]:
    data = asdict(draft)
    data["generated_at"] = round(draft.generated_at, 3)
    return data


def _unavailable(llm: LlmContext) -> None:
    if not llm.service.available:
        raise HTTPException(503, llm.service.status().reason or "the language model is not available")


@router.get("/capabilities", response_model=CapabilitiesOut, responses={401: {}})
def capabilities(
    request: Request, principal: Annotated[Principal, Depends(authorize(None))]
) -> dict[str, Any]:
    """What this service can do for the caller's UI: whether the language model is available (the
    Summary and Reply buttons are hidden when it is not)."""
    llm: LlmContext | None = getattr(request.app.state, "llm", None)
    if llm is None:
        status = {"available": False, "loaded": False, "reason": "starting", "model": "", "device": "",
                  "threads": 0, "queued": 0, "background_queued": 0, "dropped": 0, "load_s": None}  # fmt: skip
    else:
        status = asdict(llm.service.status())
    return {"llm": status, "summary": status["available"], "reply": status["available"]}


@router.get("/calls/{call_id}/summary", response_model=SummaryOut,
            responses={403: {}, 404: {}, 409: {}, 429: {}, 503: {}, 504: {}})  # fmt: skip
async def call_summary(
    call_id: str, ctx: Ctx, llm: Llm, principal: Annotated[Principal, Depends(authorize("calls.read"))]
) -> dict[str, Any]:
    """The call's hand-off note: need, verified facts, promises made, open risk; in the call's
    language, from its redacted transcript only. An ended call's post-call note carries its disposition."""
    state = visible_call(ctx, principal, call_id)
    _unavailable(llm)
    turns = turns_of(state)
    if state.ended:
        await llm.assistant.wait_final(call_id)
    final = llm.assistant.final_note(call_id)
    if final is not None and final.turns == len(turns):
        return _note_out(final, cached=True, final=True)
    if not turns:
        raise HTTPException(409, "this call has no transcript yet")
    note, cached = await _guarded(llm.assistant.note(call_id, _language(state, turns), turns))
    return _note_out(note, cached=cached, final=False)


@router.post("/calls/{call_id}/reply", response_model=ReplyOut,
             responses={403: {}, 404: {}, 409: {}, 429: {}, 503: {}, 504: {}})  # fmt: skip
async def call_reply(
    call_id: str, ctx: Ctx, llm: Llm, principal: Annotated[Principal, Depends(authorize("calls.read"))]
) -> dict[str, Any]:
    """A draft of the agent's next words from the last turns and the procedure cards shown
    (``snippet_id`` names the card it follows). The agent edits and copies it, then reports
    ``used`` or ``dismissed``."""
    state = visible_call(ctx, principal, call_id)
    _unavailable(llm)
    turns = turns_of(state)
    if not turns:
        raise HTTPException(409, "this call has no transcript yet")
    lang = _language(state, turns)
    draft = await _guarded(llm.assistant.reply(call_id, lang, turns[-REPLY_TURNS:], cards_of(state)))
    return _reply_out(draft)


@router.post("/calls/{call_id}/reply/feedback", status_code=204, response_class=Response,
             responses={403: {}, 404: {}})  # fmt: skip
async def reply_feedback(
    call_id: str,
    body: ReplyFeedbackIn,
    ctx: Ctx,
    llm: Llm,
    principal: Annotated[Principal, Depends(authorize("kb.feedback"))],
) -> Response:
    """Used (``edited`` when changed before use) or dismissed: one row a report."""
    visible_call(ctx, principal, call_id)
    draft = llm.assistant.draft(body.reply_id)
    if draft is None or draft.call_id != call_id:
        raise HTTPException(404, f"no reply {body.reply_id} in call {call_id}")
    await asyncio.to_thread(llm.feedback.record, call_id, body.reply_id, body.kind,
                            snippet_id=draft.snippet_id or "", edited=body.edited, actor=principal.name)  # fmt: skip
    return Response(status_code=204)


@router.get("/replies/analytics", responses={403: {}})
async def reply_analytics(
    llm: Llm, principal: Annotated[Principal, Depends(authorize("kb.read"))]
) -> dict[str, int]:
    """How drafted replies were received: used, used after editing, dismissed."""
    return await asyncio.to_thread(llm.feedback.counts)


# ---------------------------------------------------------------------------------------- lifecycle


def _service(app: FastAPI) -> LlmService:
    config: LlmConfig | None = getattr(app.state, "llm_config", None)  # tests and embedders set it
    try:
        return LlmService(config or LlmConfig.from_env())
    except ConfigError as exc:
        log.error("language model off: %s", exc)
        return LlmService(LlmConfig(mode="off"))


async def run_llm(app: FastAPI, ctx: AppContext) -> None:
    """Start-up to shutdown: the model service on ``app.state.llm``, post-call notes as calls end."""
    service = _service(app)
    store = ctx.services.store
    llm = LlmContext(service, CallAssistant(service), ReplyFeedbackLog(store.connection, store.lock), set())
    app.state.llm = llm
    llm.assistant.add_listener(functools.partial(store_postcall, app))
    if service.config.mode == "startup":
        service.start()
    try:
        await _follow_call_ends(ctx, llm)
    finally:
        for task in llm.tasks:
            task.cancel()
        await asyncio.to_thread(service.close, 5.0)


def store_postcall(app: FastAPI, summary: PostCallSummary) -> None:
    """A ``CallAssistant`` listener: the note into the call store (``app.state.call_store``, looked
    up per note, so the order the two start in does not matter), saved in a worker thread."""
    history = getattr(app.state, "call_store", None)
    if history is None:
        return
    history.save_note_soon(PostCallNote(summary.call_id, summary.lines, summary.outcome, summary.reason,
                                        summary.generated_at))  # fmt: skip


async def _follow_call_ends(ctx: AppContext, llm: LlmContext) -> None:
    while True:
        try:
            async for event in ctx.services.bus.subscribe(ALL_CALLS, after_seq=None):
                if isinstance(event.payload, CallEnded) and llm.service.postcall_enabled():
                    task = asyncio.create_task(_postcall(ctx, llm, event.call_id), name="llm-postcall")
                    llm.assistant.track_final(event.call_id, task)
                    llm.tasks.add(task)
                    task.add_done_callback(llm.tasks.discard)
            return
        except SubscriberLaggedError:
            continue  # a burst longer than the bus retains: carry on from now


async def _postcall(ctx: AppContext, llm: LlmContext, call_id: str) -> PostCallSummary | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ENDED_WAIT_S
    state = ctx.board.get(call_id)
    while (state is None or not state.ended) and loop.time() < deadline:
        await asyncio.sleep(0.1)
        state = ctx.board.get(call_id)
    if state is None:
        return None
    turns = turns_of(state)
    if not turns:
        return None
    try:
        return await llm.assistant.summarise_ended(call_id, _language(state, turns), turns)
    except (LlmUnavailableError, LlmBusyError, GenerationError) as exc:
        log.warning("no post-call note: %s", type(exc).__name__)
        return None
