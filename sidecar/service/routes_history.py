"""Stored calls (the call store): search and filter, a call's full record, verdicts on its alerts,
per-rule precision from the verdicts, CSV export, erasure by customer reference, the audit log.

Roles (``auth.py``): an agent sees only their own stored calls; ``qa``, supervisors and admins see
all and give verdicts; knowledge managers see per-rule precision; supervisors and admins erase and
read the audit log. Reading a call's record writes an ``open`` audit entry. Every database call runs
in a worker thread.
"""

from __future__ import annotations

import asyncio
import csv
import io
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from sidecar.service.auth import Principal
from sidecar.service.context import authorize
from sidecar.service.limits import StrictJsonRoute
from sidecar.store.feedback import with_feedback
from sidecar.store.query import MAX_LIMIT, CallQuery
from sidecar.store.repository import StoredCallSummary, StoreError
from sidecar.store.retention import erase_customer
from sidecar.store.service import CallStoreService

router = APIRouter(prefix="/v1/history", tags=["history"], route_class=StrictJsonRoute)
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL
MAX_EPOCH = 1e11
Name = Annotated[str | None, Query(max_length=128, pattern=NO_NUL)]
Epoch = Annotated[float | None, Query(ge=0, le=MAX_EPOCH, description="epoch seconds (call start)")]
Score = Annotated[float | None, Query(ge=0, le=100)]
CallId = Annotated[str, Path(max_length=128, pattern=NO_NUL)]


def get_history(request: Request) -> CallStoreService:
    service: CallStoreService | None = getattr(request.app.state, "call_store", None)
    if service is None:
        raise HTTPException(503, "the call store is starting")
    return service


History = Annotated[CallStoreService, Depends(get_history)]


class StoredCallOut(BaseModel):
    call_id: str
    agent_id: str
    queue: str
    lang: str
    source: str
    origin: str = Field(description="live (the service saw the call) or qa (assist qa run)")
    started_at: float = Field(description="epoch seconds")
    ended_at: float
    duration_s: float
    end_reason: str
    score: float | None = Field(description="the QA score, 0..100")
    alerts: dict[str, int] = Field(description="alert counts by severity")
    recording_ref: str | None


class CallListOut(BaseModel):
    total: int
    calls: list[StoredCallOut]


class WordOut(BaseModel):
    text: str
    t_start: float
    t_end: float
    probability: float


class TranscriptLineOut(BaseModel):
    seq: int
    channel: str
    t_start: float
    t_end: float
    text: str
    lang: str
    segment: int
    words: list[WordOut]


class AlertOut(BaseModel):
    alert_id: int
    ordinal: int
    category: str
    severity: str
    rule_id: str
    message: str
    evidence: str
    t_start: float
    t_end: float
    source: str
    verdict: Literal["confirmed", "not_a_violation"] | None
    comment: str
    reviewer: str
    decided_at: float | None


class ChecklistOut(BaseModel):
    step: str
    state: str
    mandatory: bool
    evidence: str
    t: float


class IntentOut(BaseModel):
    seq: int
    t_start: float
    t_end: float
    intent: str
    confidence: float
    evidence: str
    rule_id: str


class EmotionOut(BaseModel):
    t: float
    temperature: float
    utterance: float
    label: str
    drivers: list[str]
    warning: bool


class SuggestionOut(BaseModel):
    seq: int
    t: float
    snippet_id: str
    title: str
    score: float
    reason: str
    version: int
    feedback: dict[str, int] = Field(
        description="agents' feedback on it in this call: shown, used, helpful ..."
    )


class PostCallNoteOut(BaseModel):
    lines: list[str] = Field(description="the language model's post-call note, as shown")
    disposition: str | None = Field(
        description="resolved, follow-up or escalated; None: the model gave none the transcript grounds"
    )
    reason: str
    created_at: float


class StoredCallDetail(StoredCallOut):
    transcript: list[TranscriptLineOut]
    alert_list: list[AlertOut]
    checklist: list[ChecklistOut]
    intents: list[IntentOut]
    emotion: list[EmotionOut]
    suggestions: list[SuggestionOut]
    scorecard: dict[str, Any] | None
    stats: dict[str, float]
    summary: PostCallNoteOut | None = Field(None, description="the post-call note, when one was made")


class VerdictIn(BaseModel):
    verdict: Literal["confirmed", "not_a_violation"]
    comment: str = Field("", max_length=2000, pattern=NO_NUL)


class RulePrecisionOut(BaseModel):
    rule_id: str
    category: str
    alerts: int = Field(description="alerts of this rule in stored calls")
    reviewed: int
    confirmed: int
    not_a_violation: int
    precision: float | None = Field(description="confirmed / reviewed; null when none reviewed")


class ErasureIn(BaseModel):
    customer_ref: str = Field(min_length=1, max_length=128, pattern=NO_NUL)


class ErasureOut(BaseModel):
    erased: int


class AuditOut(BaseModel):
    id: int
    at: float
    actor: str
    role: str
    action: str
    call_id: str | None
    detail: str


def _query(principal: Principal, *, agent: str | None, queue: str | None, lang: str | None, since: float | None,
           until: float | None, category: str | None, severity: str | None, rule_id: str | None,
           intent: str | None, score_min: float | None, score_max: float | None, q: str | None,
           limit: int, offset: int) -> CallQuery:  # fmt: skip
    if not principal.may("history.read_all"):
        if agent is not None and agent != principal.name:
            raise HTTPException(403, "an agent sees only their own calls")
        agent = principal.name
    return CallQuery(agent_id=agent, queue=queue, lang=lang, since=since, until=until, category=category,
                     severity=severity, rule_id=rule_id, intent=intent, score_min=score_min, score_max=score_max,
                     text=q, limit=limit, offset=offset)  # fmt: skip


def call_filter(
    principal: Annotated[Principal, Depends(authorize("history.read"))],
    agent: Name = None,
    queue: Name = None,
    lang: Name = None,
    since: Epoch = None,
    until: Epoch = None,
    category: Name = None,
    severity: Annotated[Literal["fatal", "serious", "general"] | None, Query()] = None,
    rule_id: Name = None,
    intent: Name = None,
    score_min: Score = None,
    score_max: Score = None,
    q: Annotated[
        str | None, Query(max_length=200, pattern=NO_NUL, description="text in the transcript")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> CallQuery:
    return _query(principal, agent=agent, queue=queue, lang=lang, since=since, until=until, category=category,
                  severity=severity, rule_id=rule_id, intent=intent, score_min=score_min, score_max=score_max,
                  q=q, limit=limit, offset=offset)  # fmt: skip


Filter = Annotated[CallQuery, Depends(call_filter)]


@router.get("/calls", response_model=CallListOut, responses={403: {}})
async def search_calls(history: History, query: Filter) -> dict[str, Any]:
    def run() -> tuple[int, list[StoredCallSummary]]:
        return history.store.count(query), history.store.search(query)

    total, found = await asyncio.to_thread(run)
    return {"total": total, "calls": [asdict(s) for s in found]}


CSV_COLUMNS = ("call_id", "agent_id", "queue", "lang", "origin", "started_at", "duration_s", "end_reason", "score",
               "alerts_fatal", "alerts_serious", "alerts_general", "source", "recording_ref")  # fmt: skip


@router.get("/calls.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}, 403: {}})
async def export_calls(history: History, query: Filter) -> Response:
    """The filtered list as CSV (up to ``limit`` calls, 1,000 at most per request; page with ``offset``)."""
    found = await asyncio.to_thread(history.store.search, query)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for s in found:
        writer.writerow([_csv_safe(v) for v in (s.call_id, s.agent_id, s.queue, s.lang, s.origin, s.started_at,
                         s.duration_s, s.end_reason, "" if s.score is None else s.score, s.alerts["fatal"],
                         s.alerts["serious"], s.alerts["general"], s.source, s.recording_ref or "")])  # fmt: skip
    headers = {"Content-Disposition": 'attachment; filename="calls.csv"'}
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


def _csv_safe(value: object) -> object:
    """No spreadsheet formula injection: a text cell that starts like a formula gets a leading quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@router.get("/calls/{call_id}", response_model=StoredCallDetail, responses={403: {}, 404: {}})
async def get_stored_call(
    call_id: CallId, history: History, principal: Annotated[Principal, Depends(authorize("history.read"))]
) -> dict[str, Any]:
    """A stored call's full record; the read is written to the audit log (who opened which call)."""

    def run() -> dict[str, Any]:
        stored = history.store.get(call_id)
        if stored is None:
            raise HTTPException(404, f"no stored call {call_id}")
        if not principal.may("history.read_all") and stored.summary.agent_id != principal.name:
            raise HTTPException(403, "this call is assigned to another agent")
        history.store.audit(principal.name, principal.role, "open", call_id)
        record = stored.record
        if history.feedback is not None:  # feedback given after the call was stored counts too
            record = with_feedback(record, history.feedback(call_id))
        data = record.to_json_dict()
        return {**asdict(stored.summary), "transcript": data["transcript"],
                "alert_list": [asdict(a) for a in stored.alerts], "checklist": data["checklist"],
                "intents": data["intents"], "emotion": data["emotion"], "suggestions": data["suggestions"],
                "scorecard": data["scorecard"], "stats": data["stats"],
                "summary": None if stored.note is None else {
                    "lines": list(stored.note.lines), "disposition": stored.note.disposition,
                    "reason": stored.note.reason, "created_at": stored.note.created_at}}  # fmt: skip

    return await asyncio.to_thread(run)


@router.put(
    "/calls/{call_id}/alerts/{alert_id}/verdict", response_model=AlertOut, responses={403: {}, 404: {}}
)
async def put_verdict(
    call_id: CallId,
    alert_id: Annotated[int, Path(ge=1, le=2**62)],
    body: VerdictIn,
    history: History,
    principal: Annotated[Principal, Depends(authorize("history.review"))],
) -> dict[str, Any]:
    """A reviewer's verdict on one alert: ``confirmed`` or ``not_a_violation``, with a comment."""
    try:
        review = await asyncio.to_thread(history.store.set_verdict, call_id, alert_id, body.verdict,
                                         body.comment.strip(), principal.name, principal.role)  # fmt: skip
    except StoreError as exc:
        raise HTTPException(404, str(exc)) from None
    return asdict(review)


@router.get("/rules/precision", response_model=list[RulePrecisionOut])
async def rule_precision(
    history: History,
    principal: Annotated[Principal, Depends(authorize("history.rules"))],
    since: Epoch = None,
    until: Epoch = None,
) -> list[dict[str, Any]]:
    """Per rule: its alerts in stored calls and reviewers' verdicts decided in [since, until)."""
    return [asdict(r) for r in await asyncio.to_thread(history.store.rule_precision, since, until)]


@router.post("/erasure", response_model=ErasureOut, responses={403: {}})
async def erase(
    body: ErasureIn, history: History, principal: Annotated[Principal, Depends(authorize("history.erase"))]
) -> dict[str, int]:
    """Erase every stored call of a customer reference (right to erasure); an audit entry records
    who did it, when and how many calls (with a SHA-256 of the reference, never the reference)."""
    if not body.customer_ref.strip():
        raise HTTPException(422, "erasure needs a customer reference")
    n = await asyncio.to_thread(
        erase_customer, history.store, body.customer_ref, principal.name, principal.role
    )
    return {"erased": n}


@router.get("/audit", response_model=list[AuditOut], responses={403: {}})
async def audit(
    history: History,
    principal: Annotated[Principal, Depends(authorize("history.audit"))],
    call_id: Name = None,
    action: Annotated[Literal["open", "verdict", "erase", "purge"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> list[dict[str, Any]]:
    return [asdict(e) for e in await asyncio.to_thread(history.store.audit_entries, call_id, action, limit)]
