"""Agent and team reports from the call store (``reports.py``): ``GET /v1/reports``.

An agent gets only their own figures (their calls, whatever filter they ask for; another agent's
name is 403); supervisors, QA reviewers and admins get every agent's and team's. A team is a
queue. The targets (``ASSIST_REPORT_TARGETS``, or per request) are returned with the figures so the
charts can draw them. The store is read in a worker thread; each stored call's facts are kept in
a bounded cache, so a report parses only the calls it has not seen.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from sidecar.kernel.errors import ConfigError
from sidecar.service.auth import Principal
from sidecar.service.context import authorize
from sidecar.service.limits import StrictJsonRoute
from sidecar.service.reports import MAX_CALLS, FactsCache, Targets, aggregate, read_facts
from sidecar.service.routes_history import Epoch, History, Name
from sidecar.store.query import CallQuery

router = APIRouter(prefix="/v1", tags=["reports"], route_class=StrictJsonRoute)


class TargetsOut(BaseModel):
    politeness: float = Field(description="share of calls without a rude remark, 0..1")
    fcr: float = Field(description="first-contact resolution proxy, 0..1")
    first_response_s: float = Field(description="seconds to the agent's first utterance")
    satisfaction: float = Field(description="mean customer temperature at the end (-1..1), a proxy")


class FiguresOut(BaseModel):
    calls: int
    qa_score: float | None = Field(description="mean QA score, 0..100")
    violations: dict[str, dict[str, int]] = Field(description="alerts by category, then severity")
    violations_total: int
    disclosure: float | None = Field(description="required steps done / done or missed, 0..1")
    disclosure_steps: int
    politeness: float | None = Field(description="share of calls without a rude remark, 0..1")
    handle_time_s: float | None
    dead_air_s: float | None = Field(description="mean seconds of flagged dead air per call")
    temp_start: float | None = Field(description="mean customer temperature at the first reading, -1..1")
    temp_end: float | None = Field(description="... and at the last")
    first_response_s: float | None
    first_response_ok: float | None = Field(description="share of calls within the first-response target")
    fcr: float | None = Field(description="share of calls with a customer reference and no repeat in 7 days")
    fcr_calls: int = Field(description="calls with a customer reference")
    repeat_calls: int


class BucketOut(BaseModel):
    key: str = Field(description="2026-12-01 (day) or 2026-W49 (ISO week)")
    start: float = Field(description="epoch seconds")
    end: float
    figures: FiguresOut


class GroupOut(BaseModel):
    key: str = Field(description="the agent id, or the queue (team)")
    figures: FiguresOut
    series: list[BucketOut]


class ReportOut(BaseModel):
    group_by: Literal["agent", "team"]
    period: Literal["day", "week"]
    utc_offset_min: int
    targets: TargetsOut
    truncated: bool = Field(description=f"more than {MAX_CALLS} calls matched: the newest are counted")
    overall: FiguresOut
    groups: list[GroupOut]


def _targets(politeness: float | None, fcr: float | None, first_response_s: float | None,
             satisfaction: float | None) -> Targets:  # fmt: skip
    try:
        base = Targets.from_env()
    except ConfigError as exc:
        raise HTTPException(500, str(exc)) from None
    given = {"politeness": politeness, "fcr": fcr, "first_response_s": first_response_s,
             "satisfaction": satisfaction}  # fmt: skip
    return replace(base, **{k: v for k, v in given.items() if v is not None})


def facts_cache(request: Request) -> FactsCache:
    """The service's cache of stored calls' facts (made on the first report)."""
    cache: FactsCache | None = getattr(request.app.state, "report_facts", None)
    if cache is None:
        cache = request.app.state.report_facts = FactsCache()
    return cache


@router.get("/reports", response_model=ReportOut, responses={403: {}})
async def report(
    history: History,
    cache: Annotated[FactsCache, Depends(facts_cache)],
    principal: Annotated[Principal, Depends(authorize("history.read"))],
    group: Annotated[Literal["agent", "team"], Query(description="per agent, or per team (queue)")] = "agent",
    period: Annotated[Literal["day", "week"], Query()] = "day",
    since: Epoch = None,
    until: Epoch = None,
    agent: Name = None,
    queue: Name = None,
    utc_offset_min: Annotated[int, Query(ge=-840, le=840, description="days begin at local midnight")] = 0,
    target_politeness: Annotated[float | None, Query(ge=0, le=1)] = None,
    target_fcr: Annotated[float | None, Query(ge=0, le=1)] = None,
    target_first_response_s: Annotated[float | None, Query(ge=0, le=3600)] = None,
    target_satisfaction: Annotated[float | None, Query(ge=-1, le=1)] = None,
) -> dict[str, Any]:
    """Per agent or team, per day or week: QA score, violations, disclosure compliance, politeness,
    handle time, dead air, customer temperature at start and end, first response, repeat contacts."""
    if not principal.may("history.read_all"):
        if agent is not None and agent != principal.name:
            raise HTTPException(403, "an agent sees only their own figures")
        agent = principal.name
    if since is not None and until is not None and until <= since:
        # the shape of any other query problem (the documented 422), not a bare string
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "until"), "msg": "until must be after since"}]
        )
    targets = _targets(target_politeness, target_fcr, target_first_response_s, target_satisfaction)
    query = CallQuery(agent_id=agent, queue=queue, since=since, until=until)
    facts, truncated = await asyncio.to_thread(read_facts, history.store, query, MAX_CALLS, cache)
    built = aggregate(facts, group_by=group, period=period, targets=targets, utc_offset_min=utc_offset_min,
                      truncated=truncated)  # fmt: skip
    return asdict(built)
