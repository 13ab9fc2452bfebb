"""Knowledge: snippets (CRUD, history, rollback, publish), agent search, feedback, analytics,
audit, and dry-runs of draft snippets against recorded transcripts.

Thin over ``knowledge``: the store versions and audits every change, and the live index follows
the store, so a published edit reaches running calls at their next suggestion. Writes and
searches are plain ``def`` routes: FastAPI runs them in its thread pool (embedding a snippet or a
query never blocks the event loop).
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import BaseModel, Field

from knowledge.policy import agent_search
from knowledge.snippets import KnowledgeError, Snippet, snippet_problems
from knowledge.store import SnippetNotFoundError
from sidecar.kb_try import offline_suggester, try_drafts
from sidecar.kernel.errors import InputError
from sidecar.service.auth import Principal
from sidecar.service.context import AppContext, authorize, get_ctx, visible_call
from sidecar.service.limits import StrictJsonRoute

router = APIRouter(prefix="/v1/kb", tags=["knowledge"], route_class=StrictJsonRoute)
Ctx = Annotated[AppContext, Depends(get_ctx)]


class SnippetOut(BaseModel):
    id: str
    title: str
    body: str
    tags: list[str]
    lang: str
    triggers: list[str]
    version: int
    status: Literal["draft", "published"]
    updated_by: str
    updated_at: float


class SnippetIn(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    body: str = Field(min_length=1, max_length=20_000)
    tags: list[str] = Field(default_factory=list, max_length=50)
    lang: str = Field("en", max_length=16)
    triggers: list[str] = Field(default_factory=list, max_length=100)
    status: Literal["draft", "published"] = "draft"


class DraftSnippet(SnippetIn):
    id: str = Field(min_length=1, max_length=128)
    status: Literal["draft", "published"] = "published"


class RollbackIn(BaseModel):
    version: int = Field(ge=1, le=2**31 - 1)


class FeedbackIn(BaseModel):
    call_id: str = Field(min_length=1, max_length=128)
    snippet_id: str = Field(min_length=1, max_length=128)
    kind: Literal["shown", "used", "dismissed", "helpful", "not_helpful"]


class SearchHitOut(BaseModel):
    snippet_id: str
    title: str
    body: str
    score: float
    version: int


class TryIn(BaseModel):
    snippets: list[DraftSnippet] = Field(min_length=1, max_length=5_000)
    calls: list[str] | None = Field(None, description="transcript names (.jsonl) from GET /v1/recordings")


def _out(s: Snippet) -> dict[str, Any]:
    return s.to_json_dict(full=True) | {"triggers": list(s.triggers)}


def _field_problems(problems: list[str]) -> list[dict[str, str]]:
    out = []
    for problem in problems:
        m = re.match(r'field "(\w+)"', problem)
        out.append({"field": m.group(1) if m else "status", "message": problem})
    return out


def _not_found(exc: Exception) -> HTTPException:
    return HTTPException(404, str(exc))


@router.get("/snippets", response_model=list[SnippetOut])
def list_snippets(
    ctx: Ctx,
    principal: Annotated[Principal, Depends(authorize("kb.read"))],
    status: Literal["draft", "published"] | None = None,
    lang: str | None = Query(None, max_length=16),
    q: str | None = Query(None, max_length=200, description="words in the title, body or tags"),
) -> list[dict[str, Any]]:
    snippets = ctx.services.store.list(status=status, lang=lang)
    if q:
        words = q.lower().split()
        snippets = [s for s in snippets if all(w in f"{s.id} {s.title} {s.body} {' '.join(s.tags)}".lower()
                                               for w in words)]  # fmt: skip
    return [_out(s) for s in snippets]


@router.get("/snippets/{snippet_id}", response_model=SnippetOut, responses={404: {}})
def get_snippet(
    snippet_id: str, ctx: Ctx, principal: Annotated[Principal, Depends(authorize("kb.read"))]
) -> dict[str, Any]:
    snippet = ctx.services.store.get(snippet_id)
    if snippet is None:
        raise HTTPException(404, f'no snippet "{snippet_id}"')
    return _out(snippet)


@router.get("/snippets/{snippet_id}/history", response_model=list[SnippetOut], responses={404: {}})
def snippet_history(
    snippet_id: str, ctx: Ctx, principal: Annotated[Principal, Depends(authorize("kb.read"))]
) -> list[dict[str, Any]]:
    versions = ctx.services.store.history(snippet_id)
    if not versions:
        raise HTTPException(404, f'no snippet "{snippet_id}" (never saved)')
    return [_out(s) for s in versions]


@router.put("/snippets/{snippet_id}", response_model=SnippetOut, responses={422: {}})
def put_snippet(
    snippet_id: str,
    body: SnippetIn,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(authorize("kb.write"))],
) -> dict[str, Any]:
    snippet = Snippet(
        id=snippet_id,
        title=body.title.strip(),
        body=body.body.strip(),
        tags=tuple(t.strip() for t in body.tags if t.strip()),
        lang=body.lang.strip(),
        triggers=tuple(t.strip() for t in body.triggers if t.strip()),
        status=body.status,
    )
    problems = snippet_problems(snippet)
    if problems:
        raise HTTPException(422, _field_problems(problems))
    try:
        return _out(ctx.services.store.upsert(snippet, actor=principal.name))
    except KnowledgeError as exc:
        raise HTTPException(422, _field_problems(list(exc.problems))) from None


@router.post("/snippets/{snippet_id}/publish", response_model=SnippetOut, responses={404: {}})
def publish_snippet(
    snippet_id: str, ctx: Ctx, principal: Annotated[Principal, Depends(authorize("kb.write"))]
) -> dict[str, Any]:
    try:
        return _out(ctx.services.store.publish(snippet_id, actor=principal.name))
    except SnippetNotFoundError as exc:
        raise _not_found(exc) from None


@router.delete("/snippets/{snippet_id}", status_code=204, response_class=Response, responses={404: {}})
def delete_snippet(
    snippet_id: str, ctx: Ctx, principal: Annotated[Principal, Depends(authorize("kb.write"))]
) -> Response:
    try:
        ctx.services.store.delete(snippet_id, actor=principal.name)
    except SnippetNotFoundError as exc:
        raise _not_found(exc) from None
    return Response(status_code=204)


@router.post("/snippets/{snippet_id}/rollback", response_model=SnippetOut, responses={404: {}})
def rollback_snippet(
    snippet_id: str,
    body: RollbackIn,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(authorize("kb.write"))],
) -> dict[str, Any]:
    try:
        return _out(ctx.services.store.rollback(snippet_id, body.version, actor=principal.name))
    except SnippetNotFoundError as exc:
        raise _not_found(exc) from None


@router.get("/search", response_model=list[SearchHitOut], responses={503: {}})
def search(
    ctx: Ctx,
    principal: Annotated[Principal, Depends(authorize("kb.search"))],
    q: str = Query(min_length=1, max_length=500),
    lang: str | None = Query(None, max_length=16),
    k: int = Query(5, ge=1, le=20),
) -> list[dict[str, Any]]:
    knowledge, policy = ctx.services.knowledge, ctx.services.policy
    if knowledge is None or policy is None:
        raise HTTPException(503, "knowledge search is off in this service")
    ctx.metrics.kb_searches.inc()
    out = []
    for hit in agent_search(knowledge, q, k=k, lang=lang, reranker=policy.reranker):
        snippet = knowledge.get(hit.snippet_id)
        if snippet is not None:
            out.append({"snippet_id": snippet.id, "title": snippet.title, "body": snippet.body,
                        "score": round(hit.score, 3), "version": snippet.version})  # fmt: skip
    return out


@router.post("/feedback", status_code=204, response_class=Response, responses={403: {}, 404: {}})
def feedback(
    body: FeedbackIn, ctx: Ctx, principal: Annotated[Principal, Depends(authorize("kb.feedback"))]
) -> Response:
    """Feedback on a suggestion in a call the caller may see: an agent's own call, any call for a
    supervisor (404 for an unknown call, 403 for another agent's)."""
    visible_call(ctx, principal, body.call_id)
    try:
        ctx.services.feedback.record(body.call_id, body.snippet_id, body.kind, actor=principal.name)
    except SnippetNotFoundError as exc:
        raise _not_found(exc) from None
    except KnowledgeError as exc:
        raise HTTPException(422, str(exc)) from None
    return Response(status_code=204)


@router.get("/analytics")
def analytics(
    ctx: Ctx,
    principal: Annotated[Principal, Depends(authorize("kb.read"))],
    since: float | None = Query(None, ge=0, le=1e11, allow_inf_nan=False, description="epoch seconds"),
) -> list[dict[str, Any]]:
    return [dataclasses.asdict(s) for s in ctx.services.feedback.analytics(since)]


@router.get("/audit")
def audit(
    ctx: Ctx,
    principal: Annotated[Principal, Depends(authorize("kb.write"))],
    limit: int = Query(100, ge=1, le=1000),
    snippet_id: str | None = Query(None, max_length=128),
) -> list[dict[str, Any]]:
    return [dataclasses.asdict(a) for a in ctx.services.store.audit(limit=limit, snippet_id=snippet_id)]


_suggester_lock = threading.Lock()


@router.post("/try", responses={400: {}, 422: {}})
def try_draft(
    body: TryIn, ctx: Ctx, principal: Annotated[Principal, Depends(authorize("kb.write"))]
) -> dict[str, Any]:
    """Which draft snippets would have fired where, on the service's recorded transcripts."""
    recordings = ctx.live.recordings_dir
    if recordings is None:
        raise HTTPException(400, "this service has no recorded calls to try drafts on")
    names = body.calls or sorted(p.name for p in recordings.glob("*.jsonl"))
    with tempfile.TemporaryDirectory(prefix="kb-try-") as tmp:
        calls_dir = Path(tmp) / "calls"
        calls_dir.mkdir()
        for name in names:
            try:
                source = ctx.live.recording_path(name)
            except InputError as exc:
                raise HTTPException(400, str(exc)) from None
            if source.suffix != ".jsonl":
                raise HTTPException(400, f"{name}: dry-runs take transcripts (.jsonl)")
            (calls_dir / name).symlink_to(source.resolve())
        draft = Path(tmp) / "draft.jsonl"
        lines = [json.dumps(s.model_dump(exclude={"status"}), ensure_ascii=False) for s in body.snippets]
        draft.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            with _suggester_lock:  # one dry-run at a time: it runs the whole coach per call
                report = try_drafts(draft, calls_dir, lambda: _suggester(ctx))
        except InputError as exc:
            raise HTTPException(422, str(exc)) from None
    return {
        "calls": [
            {
                "call": c.path.name,
                "duration_s": c.duration_s,
                "firings": [dataclasses.asdict(f) for f in c.firings],
            }
            for c in report.calls
        ],
        "totals": [dataclasses.asdict(t) for t in report.totals()],
        "never_fired": [s.id for s in report.never_fired()],
    }


def _suggester(ctx: AppContext) -> Any:
    if ctx.suggester is None:
        ctx.suggester = offline_suggester()
    return ctx.suggester
