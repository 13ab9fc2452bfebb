"""What every route reaches: the services, the call board, live calls, metrics, and the caller.

``authorize(permission)`` is the one auth dependency: it reads the bearer token (or, for the SSE
routes, ``?access_token=``), answers 401 for none or an unknown token and 403 when the caller's
role lacks the permission. ``visible_call`` adds the per-call rule: an agent sees only the calls
assigned to them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sidecar.calls.access import AccessDeniedError
from sidecar.calls.registry import LiveCalls
from sidecar.service.auth import Permission, Principal
from sidecar.service.board import CallBoard
from sidecar.service.callview import CallState
from sidecar.service.config import Services
from sidecar.service.fanout import Feeds


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Histogram(
            "assist_http_request_seconds", "HTTP requests by route", ["method", "route", "status"], registry=r
        )
        self.events = Counter("assist_events_total", "Events on the bus, by type", ["type"], registry=r)
        self.sse_clients = Gauge("assist_sse_clients", "Open SSE streams", ["stream"], registry=r)
        self.calls_live = Gauge(
            "assist_calls_live", "Calls in progress (every node's, from the bus)", registry=r
        )
        self.node_calls = Gauge(
            "assist_node_calls",
            "Calls this node runs (its taps' and recordings; 0 on an API node): what a media worker's "
            "HorizontalPodAutoscaler scales on",
            registry=r,
        )
        self.kb_searches = Counter("assist_kb_searches_total", "Agent knowledge searches", registry=r)
        self.auth_failures = Counter(
            "assist_auth_failures_total", "401 and 403 answers", ["status"], registry=r
        )
        self.judge_misses = Counter(
            "assist_judge_misses_total",
            "Utterances the coach's judge did not read in its time budget (or failed on): exact matchers only",
            registry=r,
        )
        self.judge_readings = Counter("assist_judge_readings_total", "Utterances the judge read", registry=r)
        self.coach_backlog = Gauge(
            "assist_coach_backlog_events",
            "Events waiting for their call's coach, over live calls",
            registry=r,
        )
        self.coach_wait = Histogram(
            "assist_coach_call_wait_max_seconds",
            "Per ended call: the longest an event waited in the call's coach queue",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )


@dataclass
class AppContext:
    services: Services
    board: CallBoard
    live: LiveCalls
    metrics: Metrics
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    suggester: Any = None  # the dry-run's offline coach, built on first use
    closing: asyncio.Event = field(default_factory=asyncio.Event)  # set at shutdown: streams end
    feeds: Feeds = field(init=False)

    def __post_init__(self) -> None:
        self.feeds = Feeds(self.services.bus, self.closing)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self.tasks.append(asyncio.create_task(coro, name=name))


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext | None = getattr(request.app.state, "ctx", None)
    if ctx is None:
        raise HTTPException(503, "the service is starting")
    return ctx


_bearer = HTTPBearer(auto_error=False, description="a token from the tokens file (see docs/api.md)")


def check_token(ctx: AppContext, token: str | None, permission: Permission | None) -> Principal:
    """The caller holding ``token``, who must hold ``permission`` (None: any known token); else
    ``AccessDeniedError`` (401 or 403), counted. The taps' auth (``sidecar.taps.access``) too."""
    principal = ctx.services.tokens.lookup(token) if token else None
    if principal is None:
        ctx.metrics.auth_failures.labels("401").inc()
        raise AccessDeniedError(401, "missing or unknown bearer token")
    if permission is not None and not principal.may(permission):
        ctx.metrics.auth_failures.labels("403").inc()
        raise AccessDeniedError(
            403, f"the {principal.role} role may not do this ({permission})", principal.role
        )
    return principal


def _principal(ctx: AppContext, token: str | None, permission: Permission | None) -> Principal:
    try:
        return check_token(ctx, token, permission)
    except AccessDeniedError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        raise HTTPException(exc.status, str(exc), headers=headers) from None


def authorize(permission: Permission | None) -> Callable[..., Principal]:
    """The caller, who must hold ``permission`` (None: any known token)."""

    def dependency(
        ctx: AppContext = Depends(get_ctx),  # noqa: B008
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> Principal:
        return _principal(ctx, credentials.credentials if credentials else None, permission)

    return dependency


def authorize_stream(permission: Permission) -> Callable[..., Principal]:
    """For SSE: a browser's EventSource cannot send headers, so ``?access_token=`` also works."""

    def dependency(
        ctx: AppContext = Depends(get_ctx),  # noqa: B008
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
        access_token: str | None = Query(None, description="the bearer token, for EventSource clients"),
    ) -> Principal:
        token = credentials.credentials if credentials else access_token
        return _principal(ctx, token, permission)

    return dependency


def visible_call(ctx: AppContext, principal: Principal, call_id: str) -> CallState:
    """The call's state if this caller may see it: 404 unknown, 403 another agent's call."""
    state = ctx.board.get(call_id)
    if state is None:
        raise HTTPException(404, f"no call {call_id}")
    if not principal.may("calls.read_all") and state.agent_id != principal.name:
        ctx.metrics.auth_failures.labels("403").inc()
        raise HTTPException(403, "this call is assigned to another agent")
    return state
