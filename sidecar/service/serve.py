"""``assist serve``: run the service with uvicorn; ``--demo`` also plays the bundled sample call,
again and again, as a live call for the demo agent, and prints a URL per role."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from sidecar.service.app import create_app, end_calls
from sidecar.service.auth import Role
from sidecar.service.config import ServiceConfig
from sidecar.service.context import AppContext
from sidecar.service.limits import header_timeout_protocol, websocket_protocol
from sidecar.service.live import StartRequest
from sidecar.service.logs import configure

log = logging.getLogger("assist.service")
DEMO_PAUSE_S = 5.0


def add_serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the service: REST + SSE API and the browser UIs")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--data", type=Path, default=None, help="data directory (default: $ASSIST_DATA or .assist)"
    )
    p.add_argument("--recordings", type=Path, default=None, help="recorded calls that may be played")
    p.add_argument("--demo", action="store_true", help="play the sample call live, over and over")
    p.add_argument("--demo-call", default="sample-call.wav", help="the recording the demo plays")


def serve(args: argparse.Namespace) -> int:
    configure()
    config = ServiceConfig.from_env()
    if args.data is not None:
        config.data_dir = args.data
    if args.recordings is not None:
        config.recordings_dir = args.recordings
    if args.demo:  # a person is reading this terminal: the URLs matter, not one line per request
        logging.getLogger("assist.access").setLevel(logging.WARNING)
    app = create_app(config)
    server = make_server(app, args.host, args.port)

    async def main() -> None:
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():  # noqa: ASYNC110 (uvicorn has only a flag)
            await asyncio.sleep(0.1)
        if server.started:
            ctx: AppContext = app.state.ctx
            _print_urls(ctx, f"http://{args.host}:{args.port}")
            if args.demo:
                demo = asyncio.create_task(_demo_loop(ctx, args.demo_call))
                serving.add_done_callback(lambda _: demo.cancel())
        await serving

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(main())
    return 0 if server.started else 1


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (uvicorn[standard] brings it): about half the CPU per SSE delivery."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


class AssistServer(uvicorn.Server):
    """uvicorn, ending live calls and open event streams before it waits for connections to
    close: subscribers get the calls' ``call.ended`` (reason ``aborted``) and a clean end of
    stream instead of being cut off after the grace period."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.app
        ctx: AppContext | None = getattr(getattr(app, "state", None), "ctx", None)
        if ctx is not None and isinstance(app, FastAPI):
            await end_calls(app)
            await asyncio.sleep(0.05)  # let the streams write the calls' ends
            ctx.closing.set()
            await ctx.feeds.close()
        await super().shutdown(sockets)


def make_server(app: FastAPI, host: str, port: int) -> AssistServer:
    """uvicorn with a header timeout (``limits.HEADER_TIMEOUT_S``) and a 5 s keep-alive idle timeout."""
    return AssistServer(
        uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                       timeout_graceful_shutdown=5, backlog=2048, http=header_timeout_protocol(), ws=websocket_protocol(),
                       timeout_keep_alive=5, h11_max_incomplete_event_size=64 * 1024)
    )  # fmt: skip


def _print_urls(ctx: AppContext, base: str) -> None:
    """A URL per role; with the tokens only when they were generated at this start (demo tokens):
    configured tokens are never printed (whoever configured them has them)."""
    tokens = ctx.services.tokens
    pages: list[tuple[str, Role, str]] = [
        ("agent widget", "agent", "/ui/agent.html?follow=1"),
        ("supervisor console", "supervisor", "/ui/supervisor.html"),
        ("knowledge manager", "knowledge_manager", "/ui/knowledge.html"),
    ]
    lines = [f"agent-assist is serving on {base}  (API: {base}/docs)"]
    for label, role, path in pages:
        token = tokens.token_for(role)
        if token is None:
            lines.append(f"  {label:19} (no {role} token)")
        elif tokens.generated:
            lines.append(f"  {label:19} {base}{path}#token={token}")
        else:
            lines.append(f"  {label:19} {base}{path}  (sign in with your configured {role} token)")
    admin = tokens.token_for("admin")
    if admin and tokens.generated:
        lines.append(f"  admin token         {admin}")
    print("\n".join(lines), file=sys.stderr, flush=True)


async def _demo_loop(ctx: AppContext, recording: str) -> None:
    """The sample call, live, for the demo agent; when it ends, a pause, then again."""
    agent = next((e.principal.name for e in ctx.services.tokens.entries if e.principal.role == "agent"), "")
    while True:
        try:
            call_id = await ctx.live.start_recording(
                StartRequest(recording, realtime=True, lang="en", agent_id=agent, queue="demo")
            )
        except Exception as exc:
            log.error("demo call could not start: %s", exc)
            return
        print(f"demo: call {call_id} is live (agent {agent})", file=sys.stderr, flush=True)
        async for event in ctx.services.bus.subscribe(call_id, after_seq=None):
            del event  # the subscription ends with the call
        await asyncio.sleep(DEMO_PAUSE_S)
