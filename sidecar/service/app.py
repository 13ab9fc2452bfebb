"""``assist serve``: the FastAPI application.

Startup loads everything heavy (rule pack, embedders, knowledge index, the ASR model) before the
first request; a task folds every bus event into the call board (what REST and the floor show);
another watches the rule pack. Shutdown ends running calls (``call.ended`` with reason
``aborted``) and saves the knowledge index.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coach.sink import backlog as coach_backlog
from sidecar.calls.registry import LiveCalls
from sidecar.kernel.bus import ALL_CALLS, SubscriberLaggedError
from sidecar.kernel.events import CallEnded
from sidecar.qa.watch import WARNINGS_STREAM, WarningWatch
from sidecar.service import (
    routes_calls,
    routes_history,
    routes_kb,
    routes_playback,
    routes_reports,
    routes_routed,
    routes_rules,
    routes_warnings,
)
from sidecar.service.auth import Principal
from sidecar.service.board import CallBoard
from sidecar.service.config import ServiceConfig, Services, build_services
from sidecar.service.context import AppContext, Metrics, authorize
from sidecar.service.limits import RequestGate, validation_error
from sidecar.service.logs import install_scrubber
from sidecar.service.roles import NodeRole
from sidecar.service.tap_access import tap_access
from sidecar.store.service import start_call_store
from sidecar.taps.access import install_access
from sidecar.taps.audiosocket import start_audiosocket_server
from sidecar.taps.livekit import close_livekit_tap
from sidecar.taps.routes import routers as tap_routers
from sidecar.taps.webrtc import close_webrtc_tap, install_webrtc_tap, offer_commands

log = logging.getLogger("assist.service")
access_log = logging.getLogger("assist.access")
STATIC = Path(__file__).resolve().parent.parent.parent / "widget" / "static"
CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"
WIDGET_PAGES = ("/ui/agent.html",)  # the agent widget: embedded in softphone pages (embed.js)


async def follow_bus(ctx: AppContext) -> None:
    """Fold every event into the board; after a lag (a burst longer than the bus retains),
    carry on from now: the board then misses the lost events, and says so in the log."""
    after: int | None = 0
    while True:
        try:
            async for event in ctx.services.bus.subscribe(ALL_CALLS, after_seq=after):
                ctx.metrics.events.labels(event.type).inc()
                if isinstance(event.payload, CallEnded):  # the coach's judge: how it did on this call
                    ctx.metrics.judge_misses.inc(event.payload.stats.get("judge_misses", 0.0))
                    ctx.metrics.judge_readings.inc(event.payload.stats.get("judge_readings", 0.0))
                    if "coach_wait_ms_max" in event.payload.stats:  # a live call's coach queue
                        ctx.metrics.coach_wait.observe(event.payload.stats["coach_wait_ms_max"] / 1000.0)
                if event.call_id == WARNINGS_STREAM:  # cross-call warnings (sidecar.qa), not a call
                    continue
                await ctx.board.apply(event)
            return
        except SubscriberLaggedError as exc:
            log.error("call board fell behind the bus: %s", exc)
            after = None


async def end_calls(app: FastAPI) -> None:
    """Shutdown: taps with sessions of their own leave them (a LiveKit room, WebRTC peer
    connections), then every live call
    ends with reason ``aborted``. Safe to run twice (the server runs it before the lifespan does)."""
    await close_livekit_tap(app)
    await close_webrtc_tap(app)
    ctx: AppContext | None = getattr(app.state, "ctx", None)
    if ctx is not None:
        await ctx.live.close()


def create_app(config: ServiceConfig | None = None, services: Services | None = None) -> FastAPI:
    cfg = config or ServiceConfig.from_env()
    install_scrubber()  # no query string, token or password in any log line, from any logger
    from sidecar.service import routes_llm  # the optional language model (coach/llm)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        built = services if services is not None else await asyncio.to_thread(build_services, cfg)
        live = LiveCalls(built.bus, built.coach, built.policy, cfg.recordings_dir,
                         max_calls_per_user=cfg.max_calls_per_user)  # fmt: skip
        node = NodeRole.open(cfg, built.bus, live, handlers=offer_commands(app))
        live = node.live
        ctx = AppContext(built, CallBoard(), live, Metrics())
        ctx.metrics.calls_live.set_function(ctx.board.live_count)
        ctx.metrics.node_calls.set_function(lambda: live.running)
        ctx.metrics.coach_backlog.set_function(coach_backlog)
        ping = getattr(built.bus, "ping", None)
        if ping is not None:
            await ping()  # a Redis bus that cannot be reached: fail at start, with its URL
        ctx.spawn(follow_bus(ctx), "board")
        ctx.spawn(WarningWatch.from_env(built.bus).run(), "early-warnings")
        ctx.spawn(built.coach.watch(), "rules-watch")
        if built.knowledge is not None:  # publishes by other nodes on a shared store reach this index
            ctx.spawn(built.knowledge.follow_other_writers(), "kb-follow")
        ctx.spawn(routes_llm.run_llm(app, ctx), "llm")  # summaries, replies, post-call notes
        await start_call_store(app, ctx, cfg.data_dir)  # ended calls are stored (sidecar/store)
        audiosocket = None
        taps = tap_access(ctx)  # what the taps get of the service: its calls and its token check
        if node.runs_calls:
            if cfg.preload_lang:
                await asyncio.to_thread(live.engine.preload, cfg.preload_lang)
            install_webrtc_tap(app)  # ICE settings applied (or refused) before any call
            if cfg.audiosocket_port is not None:
                audiosocket = await start_audiosocket_server(
                    taps.calls, cfg.audiosocket_host, cfg.audiosocket_port
                )
        install_access(app, taps)
        for name, job in node.jobs(ctx.board):  # a worker's heartbeat and commands, an API node's reaper
            ctx.spawn(job, name)
        app.state.ctx = ctx
        log.info("service ready", extra={"bus": type(built.bus).__name__, "role": cfg.role})
        try:
            yield
        finally:
            if audiosocket is not None:
                audiosocket.close()  # no new legs; the legs connected end with their calls
            await node.leave()  # no new calls for this node
            await end_calls(app)
            await asyncio.sleep(0.1)  # let the board fold in the calls' ends
            for task in ctx.tasks:
                task.cancel()
            await asyncio.gather(*ctx.tasks, return_exceptions=True)
            await _save_index(built)
            close = getattr(built.bus, "close", None)
            if close is not None:
                await close()

    app = FastAPI(
        title="agent-assist",
        version="0.1.0",
        summary="Live coaching for customer-service calls: calls, events (SSE), knowledge, rules.",
        lifespan=lifespan,
        docs_url=None,  # served below from the installed package: no CDN (an offline machine shows it too)
        redoc_url=None,
    )
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_middleware(RequestGate)  # body limits and a token before any body is read
    app.add_middleware(AccessLog, frame_ancestors=cfg.frame_ancestors)  # outermost: logs the gate's answers
    app.include_router(routes_calls.router)
    app.include_router(routes_kb.router)
    app.include_router(routes_rules.router)
    app.include_router(routes_llm.router)
    app.include_router(routes_history.router)
    app.include_router(routes_reports.router)  # agent and team reports (issue 15)
    app.include_router(routes_playback.router)  # a stored call's recording, for the review page
    app.include_router(routes_warnings.router)  # early warnings on the floor (SSE)
    if cfg.role != "api":  # taps terminate where calls run (an API node runs none)
        for tap in tap_routers:
            app.include_router(tap)
    else:  # a WebRTC offer (its answer is the worker's) is routed to a media worker
        app.include_router(routes_routed.router)
    _operations(app)
    app.mount("/ui", StaticFiles(directory=STATIC, html=True), name="ui")
    return app


async def _save_index(services: Services) -> None:
    if services.knowledge is None:
        return
    from knowledge.cli import index_dir

    try:
        await asyncio.to_thread(services.knowledge.index.save, index_dir(Path(services.store.path)))
    except Exception as exc:  # a failed save only costs a rebuild at the next start
        log.warning("knowledge index not saved: %s", exc)


def _operations(app: FastAPI) -> None:
    @app.get("/healthz", tags=["operations"])
    def healthz(request: Request) -> dict[str, Any]:
        ctx: AppContext | None = getattr(request.app.state, "ctx", None)
        if ctx is None:
            return {"status": "starting"}
        return {
            "status": "ok",
            "calls_live": ctx.board.live_count(),
            "bus": "redis" if type(ctx.services.bus).__name__.startswith("Redis") else "memory",
            "rules_error": bool(ctx.services.coach.last_error),
        }

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "starting or draining"}})
    def readyz(request: Request, response: Response) -> dict[str, str]:
        """Whether this node takes new calls and requests: 503 while it starts and while it drains
        its live calls before stopping (a load balancer's readiness check; ``/healthz`` says alive)."""
        ctx: AppContext | None = getattr(request.app.state, "ctx", None)
        status = "starting" if ctx is None else "draining" if ctx.live.draining else "ready"
        if status != "ready":
            response.status_code = 503
        return {"status": status}

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def metrics(request: Request) -> Response:
        ctx: AppContext | None = getattr(request.app.state, "ctx", None)
        body = generate_latest(ctx.metrics.registry) if ctx else b""
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/me", tags=["operations"], responses={401: {}})
    def me(principal: Annotated[Principal, Depends(authorize(None))]) -> dict[str, str]:
        return {"name": principal.name, "role": principal.role}

    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="agent-assist API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/")


def framing_headers(path: str, frame_ancestors: str | None) -> list[tuple[bytes, bytes]]:
    """Who may frame a page: nobody, except the agent widget (any page, or the configured
    ``ASSIST_FRAME_ANCESTORS`` origins, e.g. the softphone's)."""
    if path in WIDGET_PAGES:
        if frame_ancestors is None:
            return []
        return [(b"content-security-policy", f"frame-ancestors 'self' {frame_ancestors}".strip().encode())]
    return [(b"x-frame-options", b"DENY"), (b"content-security-policy", b"frame-ancestors 'none'")]


class AccessLog:
    """One JSON log line per request (route template, status, time; never the query string, a
    token or call content) and the request histogram; security headers on every answer."""

    def __init__(self, app: ASGIApp, frame_ancestors: str | None = None) -> None:
        self.app = app
        self.frame_ancestors = frame_ancestors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                if scope["path"].startswith("/ui"):
                    headers.append((b"content-security-policy", CSP.encode()))
                headers += framing_headers(scope["path"], self.frame_ancestors)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapped)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or ("/ui" if scope["path"].startswith("/ui") else "other")
            elapsed = time.perf_counter() - start
            app = scope.get("app")
            ctx: AppContext | None = getattr(getattr(app, "state", None), "ctx", None)
            if ctx is not None:
                ctx.metrics.requests.labels(scope["method"], template, str(status)).observe(elapsed)
            access_log.info(
                "request",
                extra={"method": scope["method"], "route": template, "status": status,
                       "ms": round(elapsed * 1000, 1)},
            )  # fmt: skip
