"""``assist serve --role``: what one node runs.

- ``all`` (the embedded default): everything in one process, as a single machine wants it.
- ``media``: a worker that owns calls. The taps terminate here; each call's pipeline (VAD, ASR),
  coach and suggestions run here and publish to the Redis bus. ``MediaWorker`` beats its heart on
  Redis (its live calls and its room) and answers the commands API nodes send it (start a recorded
  call). It serves the API too (any node serves any call from the bus). Stopped with SIGTERM and
  ``ASSIST_DRAIN_S`` set (a scale-down, a rolling update), it drains: it goes on beating with no
  room, so new calls go to other workers while its own run to their end (``serve.py``).
- ``api``: a node that runs no calls. REST, SSE and the UIs are served from the bus; a recorded
  call is started on the live worker with the most room (``ApiCalls``); whisper and barge-in are
  events on the call's stream, published from here as from any node; the tap endpoints are not
  mounted (integrators point taps at the media workers). ``WorkerReaper`` ends the calls of a
  worker that stopped beating (``call.ended``, reason ``worker_lost``), so no call stays "live" on
  the floor after its worker died.

Roles other than ``all`` need the Redis bus (``REDIS_URL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
from collections.abc import Coroutine
from typing import Any, Literal

from sidecar.calls.errors import TooManyCallsError, TooManyUserCallsError
from sidecar.calls.live_call import CallMeta, LiveCall
from sidecar.calls.registry import LiveCalls, StartRequest
from sidecar.kernel.bus import Bus, CallIdInUseError
from sidecar.kernel.commands import (
    HEARTBEAT_S,
    Command,
    CommandReply,
    CommandTimeoutError,
    Handler,
    NoWorkerError,
    RedisCommands,
)
from sidecar.kernel.errors import ConfigError, InputError
from sidecar.kernel.events import CallEnded, Event
from sidecar.service.board import CallBoard
from sidecar.service.config import ServiceConfig

log = logging.getLogger(__name__)
Role = Literal["all", "media", "api"]
ROLES: tuple[Role, ...] = ("all", "media", "api")
WORKER_LOST = "worker_lost"


def parse_role(value: str) -> Role:
    for role in ROLES:
        if value == role:
            return role
    raise ConfigError(f"--role {value!r}: choose one of {', '.join(ROLES)}")


def node_id() -> str:
    """This process's name among the nodes: ``ASSIST_NODE_ID``, else host and pid."""
    return os.environ.get("ASSIST_NODE_ID") or f"{socket.gethostname()}-{os.getpid()}"


class MediaWorker:
    """A media worker's presence on Redis: its heartbeat and the commands it answers."""

    def __init__(
        self,
        live: LiveCalls,
        commands: RedisCommands,
        worker: str,
        heartbeat_s: float = HEARTBEAT_S,
        handlers: dict[str, Handler] | None = None,
    ) -> None:
        self.live = live
        self.commands = commands
        self.worker = worker
        self.heartbeat_s = heartbeat_s
        self.handlers = dict(handlers or {})  # the taps' commands (a WebRTC offer), by kind
        self._owned: set[str] = set()  # calls started on command (their owner key set)

    async def run(self) -> None:
        ready = asyncio.Event()
        serving = asyncio.create_task(
            self.commands.serve(self.worker, self.handle, ready), name="worker-commands"
        )
        waiting = asyncio.create_task(ready.wait())
        beating: asyncio.Task[None] | None = None
        try:
            await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if serving.done():
                serving.result()  # it failed before it was ready: its error
            # listed (the heartbeat) only once every command sent from now on will be answered
            beating = asyncio.create_task(self._beat(), name="worker-heartbeat")
            await serving
        finally:
            for task in (serving, waiting, beating):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _beat(self) -> None:
        """Every ``heartbeat_s``: this worker's live calls and room; the calls that ended since
        the last beat give up their owner key."""
        before: set[str] = set()
        while True:
            calls = {*self.live.calls, *self.live.recorded_calls}  # taps' and recordings
            room = 0 if self.live.draining else self.live.max_calls  # draining: alive, but full
            try:
                await self.commands.heartbeat(self.worker, sorted(calls), room)
                for call_id in (before | self._owned) - calls:
                    await self.commands.disown(call_id)
                before, self._owned = calls, self._owned & calls
            except Exception as exc:  # Redis restarting: the next beat tries again
                log.warning("heartbeat not sent: %s", exc)
            await asyncio.sleep(self.heartbeat_s)

    async def leave(self) -> None:
        with contextlib.suppress(Exception):
            await self.commands.leave(self.worker)

    async def handle(self, command: Command) -> CommandReply:
        handler = self.handlers.get(command.kind)
        if handler is not None:
            reply = await handler(command)
            call_id = reply.data.get("call_id")
            if reply.ok and isinstance(call_id, str):
                await self._own(call_id)
            return reply
        if command.kind != "start_call":
            return CommandReply(400, f"unknown command {command.kind!r}")
        try:
            request = StartRequest(**command.args)
        except TypeError as exc:
            return CommandReply(400, f"start_call: {exc}")
        try:
            call_id = await self.live.start_recording(request)
        except TooManyUserCallsError as exc:
            return CommandReply(429, str(exc))
        except TooManyCallsError as exc:
            return CommandReply(503, str(exc))
        except InputError as exc:
            return CommandReply(exc.http_status, str(exc))
        await self._own(call_id)
        return CommandReply(201, "", {"call_id": call_id, "worker": self.worker})

    async def _own(self, call_id: str) -> None:
        self._owned.add(call_id)
        await self.commands.own(call_id, self.worker)


class ApiCalls(LiveCalls):
    """The live calls of an API node: none of its own. A recorded call starts on a media worker;
    whisper and barge-in are published to the bus, as on any node; a tap cannot open a call here."""

    def __init__(self, bus: Bus, commands: RedisCommands, live: LiveCalls, timeout_s: float = 30.0) -> None:
        super().__init__(bus, live.coach, None, live.recordings_dir, max_calls=0,
                         max_calls_per_user=live.max_calls_per_user)  # fmt: skip
        self.commands = commands
        self.timeout_s = timeout_s

    async def start_recording(self, request: StartRequest) -> str:
        self.recording_path(request.recording)  # a bad name is refused here, before any worker
        try:
            worker = await self.commands.pick_worker()
        except NoWorkerError as exc:
            raise TooManyCallsError(str(exc)) from None
        args = dataclasses.asdict(request)
        reply = await self.commands.request(
            worker, Command("start_call", request.call_id, args), self.timeout_s
        )
        if reply.status == 429:
            raise TooManyUserCallsError(reply.detail)
        if reply.status == 503:
            raise TooManyCallsError(reply.detail)
        if reply.status == CallIdInUseError.http_status and request.call_id:
            raise CallIdInUseError(request.call_id)  # the worker's refusal, with its own words
        if not reply.ok:
            raise InputError(reply.detail)
        return str(reply.data["call_id"])

    async def route(self, command: Command, call_id: str | None = None) -> CommandReply:
        """A command for a call's owner (``call_id``), else for the live worker with most room."""
        if call_id is not None:
            worker = await self.commands.owner(call_id)
            if worker is None:
                return CommandReply(404, f"no live call {call_id} on any worker")
        else:
            try:
                worker = await self.commands.pick_worker()
            except NoWorkerError as exc:
                return CommandReply(503, str(exc))
        try:
            return await self.commands.request(worker, command, self.timeout_s)
        except CommandTimeoutError as exc:
            return CommandReply(504, str(exc))

    async def open_call(
        self,
        meta: CallMeta,
        channels: tuple[str, ...] = ("agent", "customer"),
        *,
        kind: type[LiveCall] = LiveCall,
    ) -> LiveCall:
        raise TooManyCallsError("this is an API node: taps connect to the media workers")

    async def close(self) -> None:
        await self.commands.close()


class WorkerReaper:
    """On an API node: a worker that stopped beating takes its calls with it. Each live call it
    last reported is ended on the bus (reason ``worker_lost``), once, whichever API node does it."""

    def __init__(
        self, bus: Bus, board: CallBoard, commands: RedisCommands, every_s: float = HEARTBEAT_S
    ) -> None:
        self.bus = bus
        self.board = board
        self.commands = commands
        self.every_s = every_s

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:  # Redis restarting: the next sweep tries again
                log.warning("worker sweep failed: %s", exc)
            await asyncio.sleep(self.every_s)

    async def sweep(self) -> list[str]:
        """End the calls of every stale worker; returns the call ids ended."""
        ended = []
        for beat in await self.commands.stale_workers():
            for call_id in beat.calls:
                state = self.board.get(call_id)
                if state is None or state.ended:
                    continue
                t = state.duration_s
                event = Event("call.ended", call_id, None, 0.0, t, CallEnded(WORKER_LOST, t))
                try:
                    await self.bus.publish(event)
                except RuntimeError:  # another API node ended it first
                    continue
                ended.append(call_id)
                log.warning(
                    "call ended: its worker stopped", extra={"call_id": call_id, "worker": beat.worker}
                )
            await self.commands.forget_worker(beat.worker, beat.at)
        return ended


@dataclasses.dataclass
class NodeRole:
    """What this node runs, by ``--role``: its live calls and its background jobs."""

    role: Role
    live: LiveCalls
    commands: RedisCommands | None = None
    worker: MediaWorker | None = None

    @property
    def runs_calls(self) -> bool:
        return self.role != "api"

    @classmethod
    def open(
        cls, config: ServiceConfig, bus: Bus, live: LiveCalls, handlers: dict[str, Handler] | None = None
    ) -> NodeRole:
        role = parse_role(config.role)
        if role == "all":
            return cls(role, live)
        if not config.redis_url:
            raise ConfigError(f"--role {role} needs the Redis bus: set REDIS_URL (nodes meet there)")
        commands = RedisCommands.from_url(config.redis_url, prefix=config.redis_prefix)
        if role == "api":
            return cls(role, ApiCalls(bus, commands, live), commands)
        worker = MediaWorker(live, commands, config.node_id or node_id(), handlers=handlers)
        return cls(role, live, commands, worker)

    def jobs(self, board: CallBoard) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        if self.worker is not None:
            return [("media-worker", self.worker.run())]
        if self.role == "api" and self.commands is not None:
            return [("worker-reaper", WorkerReaper(self.live.bus, board, self.commands).run())]
        return []

    async def leave(self) -> None:
        if self.worker is not None:
            await self.worker.leave()
            await self.worker.commands.close()
