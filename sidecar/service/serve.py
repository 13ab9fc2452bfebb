"""``assist serve``: run the service with uvicorn and print a URL per role; ``--demo`` also plays
the bundled demo calls (``samples/demo``: English and Mandarin, clean, fatal and angry, each with
its own agent and queue) as live calls, started a little apart and each looped after a pause, so
the supervisor floor shows calls of different risk at once. ``--demo-call NAME`` plays only that
recording (from the recordings directory) for the demo agent instead."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from sidecar.calls.registry import StartRequest
from sidecar.kernel.errors import ConfigError
from sidecar.service.app import create_app, end_calls
from sidecar.service.auth import Role
from sidecar.service.config import SAMPLES, ServiceConfig
from sidecar.service.context import AppContext
from sidecar.service.limits import header_timeout_protocol, websocket_protocol
from sidecar.service.logs import configure
from sidecar.service.roles import parse_role

log = logging.getLogger("assist.service")
DEMO_DIR = SAMPLES / "demo"  # the bundled demo calls: <id>.wav and calls.json (who, which queue)
DEMO_STAGGER_S = 15.0  # between the starts of the demo calls
DEMO_PAUSE_S = 10.0  # before a demo call plays again
DEMO_MAX_LIVE = 3  # demo calls live at once: what 2 cores transcribe in real time (samples/demo/README.md)


def add_serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the service: REST + SSE API and the browser UIs")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--data", type=Path, default=None, help="data directory (default: $ASSIST_DATA or .assist)"
    )
    p.add_argument("--recordings", type=Path, default=None, help="recorded calls that may be played")
    p.add_argument("--role", choices=["all", "media", "api"], default=None,
                   help="what this node runs: all (default; or $ASSIST_ROLE), media (calls: taps, speech, "
                   "coach) or api (REST, SSE and UIs from the Redis bus); media and api need REDIS_URL")  # fmt: skip
    p.add_argument("--demo", action="store_true", help="play the bundled demo calls live, over and over")
    p.add_argument("--demo-call", default=None,
                   help="play only this recording (a name in the recordings directory) for the demo agent")  # fmt: skip


def service_config(args: argparse.Namespace) -> ServiceConfig:
    """The environment's configuration with the command line's directories; the bundled demo
    plays from (and lists) ``samples/demo`` unless ``--recordings`` names a directory."""
    config = ServiceConfig.from_env()
    if args.data is not None:
        config.data_dir = args.data
    if args.role is not None:
        config.role = args.role
    parse_role(config.role)  # a bad $ASSIST_ROLE: one line, before anything loads
    if config.role != "all" and not config.redis_url:
        raise ConfigError(f"--role {config.role} needs the Redis bus: set REDIS_URL (the nodes meet there)")
    if args.demo and config.role == "api":
        raise ConfigError("--demo plays calls: run it on a media worker (or --role all), not an API node")
    if args.recordings is not None:
        config.recordings_dir = args.recordings
    elif args.demo and args.demo_call is None:
        config.recordings_dir = DEMO_DIR
    return config


def serve(args: argparse.Namespace) -> int:
    configure()
    config = service_config(args)
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
                demo = asyncio.create_task(_demo_loop(ctx, args.demo_call, config.recordings_dir or DEMO_DIR))
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
            await self.drain(ctx)
            await end_calls(app)
            await asyncio.sleep(0.05)  # let the streams write the calls' ends
            ctx.closing.set()
            await ctx.feeds.close()
        await super().shutdown(sockets)

    async def drain(self, ctx: AppContext) -> None:
        """With ``ASSIST_DRAIN_S``: before anything closes, the live calls go on (taps connected,
        streams served, ``/readyz`` 503, the worker's heartbeat with no room) until they end or the
        time is up; a second SIGTERM or Ctrl-C stops waiting. What is left then is aborted."""
        drain_s = ctx.services.config.drain_s
        if drain_s <= 0 or not ctx.live.running:
            ctx.live.draining = True
            return
        log.info("shutting down: draining %d live calls (up to %.0f s)", ctx.live.running, drain_s)
        left = await ctx.live.drain(drain_s, give_up=lambda: self.force_exit)
        if left:
            log.warning("drain over: %d calls still live are aborted", left)
        else:
            log.info("drained: every live call ended")


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


@dataclass(frozen=True, slots=True)
class DemoCall:
    recording: str  # a bare name in the recordings directory
    lang: str
    agent_id: str
    queue: str


def demo_calls(manifest: Path, default_agent: str) -> list[DemoCall]:
    """The calls of a demo call set (``calls.json``: ``id``, ``lang``, ``agent_id``, ``queue``),
    each played from ``<id>.wav``; an empty ``agent_id`` is the signed-in demo agent, so the agent
    widget follows that call."""
    try:
        calls = json.loads(manifest.read_text(encoding="utf-8"))["calls"]
        return [
            DemoCall(
                f"{c['id']}.wav", c["lang"], c.get("agent_id") or default_agent, c.get("queue") or "demo"
            )
            for c in calls
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{manifest}: not a demo call set: {exc}") from None


async def run_demo(
    calls: list[DemoCall],
    start: Callable[[StartRequest], Awaitable[str]],
    ended: Callable[[str], Awaitable[None]],
    *,
    stagger_s: float = DEMO_STAGGER_S,
    pause_s: float = DEMO_PAUSE_S,
    max_live: int = DEMO_MAX_LIVE,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Each call ``stagger_s`` after the one before it, live in real time; when one ends, a pause,
    then it plays again. At most ``max_live`` play at once (a call due to start waits for one to
    end). A call that cannot start is logged and dropped; the others play on."""
    slots = asyncio.Semaphore(max_live)

    async def loop(index: int, call: DemoCall) -> None:
        await sleep(index * stagger_s)
        request = StartRequest(call.recording, realtime=True, lang=call.lang, agent_id=call.agent_id,
                               queue=call.queue)  # fmt: skip
        while True:
            async with slots:
                try:
                    call_id = await start(request)
                except Exception as exc:
                    log.error("demo call %s could not start: %s", call.recording, exc)
                    return
                print(f"demo: call {call_id} is live: {call.recording} ({call.lang}, agent {call.agent_id}, "
                      f"queue {call.queue})", file=sys.stderr, flush=True)  # fmt: skip
                await ended(call_id)
            await sleep(pause_s)

    async with asyncio.TaskGroup() as group:
        for index, call in enumerate(calls):
            group.create_task(loop(index, call))


async def _demo_loop(ctx: AppContext, recording: str | None, recordings_dir: Path) -> None:
    """The bundled demo calls (or only ``recording``, in English, for the demo agent), live."""
    agent = next((e.principal.name for e in ctx.services.tokens.entries if e.principal.role == "agent"), "")
    if recording is not None:
        calls = [DemoCall(recording, "en", agent, "demo")]
    else:
        try:
            calls = demo_calls(recordings_dir / "calls.json", agent)
        except ValueError as exc:
            log.error("no demo calls: %s", exc)
            return

    async def ended(call_id: str) -> None:
        async for event in ctx.services.bus.subscribe(call_id, after_seq=None):
            del event  # the subscription ends with the call

    await run_demo(calls, ctx.live.start_recording, ended)
