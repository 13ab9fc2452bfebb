"""Commands between nodes: an API node asks the media worker that owns a call to act on it.

Media workers (``assist serve --role media``) own calls: the taps terminate there and the call's
pipeline, coach and suggestions run there. API nodes (``--role api``) serve REST, SSE and the UIs
from the bus, and route what must happen on a worker (start a recorded call, a WebRTC offer, end
a WebRTC call) through Redis; whisper and barge-in are events on the call's stream, published from
any node:

- ``P:cmd:W``      stream of commands for worker ``W`` (field ``c``: the command's JSON); the worker
  reads it with ``XREAD BLOCK`` from the stream's last entry when it started, and beats its first
  heartbeat only after, so no command sent to it once it is listed is missed (older ones were for
  an earlier run of the worker: their senders have timed out).
- ``P:reply:ID``   list the worker pushes the command's reply to (``RPUSH``, expiring after
  ``REPLY_TTL_S``); the sender waits on it with ``BLPOP`` up to its timeout.
- ``P:workers``    hash: worker id -> its heartbeat (JSON: its live calls, capacity, when), written
  every ``HEARTBEAT_S``; a worker silent for ``stale_s`` is not offered calls, and an API node
  ends the calls it last reported (``sidecar.service.roles.WorkerReaper``).
- ``P:owner:CID``  the worker that owns a call (set when the worker starts it, deleted at its end).

Bounds and drop policy: each worker's stream keeps about its last ``MAX_COMMANDS`` commands
(``MAXLEN ~``); a command nobody answers in time is a ``CommandTimeoutError`` for the sender (504),
never retried behind its back (whisper twice would say it twice).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from sidecar.kernel.errors import AssistError

log = logging.getLogger(__name__)
HEARTBEAT_S = 2.0
REPLY_TTL_S = 30
MAX_COMMANDS = 1000
OWNER_TTL_S = 24 * 3600


class CommandTimeoutError(AssistError):
    """No worker answered a command in time (it may be gone, or busy)."""


class NoWorkerError(AssistError):
    """No live media worker to give a call to."""


@dataclass(frozen=True, slots=True)
class Command:
    kind: str  # start_call, whisper, barge, end_call, webrtc_offer, ...
    call_id: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, data: str) -> Command:
        raw = json.loads(data)
        return cls(str(raw["kind"]), raw.get("call_id"), dict(raw.get("args") or {}), str(raw["id"]))


@dataclass(frozen=True, slots=True)
class CommandReply:
    status: int  # HTTP-like: 200 done, 4xx refused (detail says why), 5xx failed
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status < 400


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    worker: str
    calls: tuple[str, ...]  # the worker's live calls at its heartbeat
    capacity: int
    at: float  # epoch seconds of the heartbeat

    @property
    def live_calls(self) -> int:
        return len(self.calls)

    @property
    def free(self) -> int:
        return self.capacity - self.live_calls


Handler = Callable[[Command], Awaitable[CommandReply]]


class RedisCommands:
    """Commands, heartbeats and call ownership on one Redis, under ``prefix`` (the bus's)."""

    def __init__(
        self, redis: aioredis.Redis, prefix: str = "assist", stale_s: float = 3 * HEARTBEAT_S
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self.stale_s = stale_s
        self._forget = redis.register_script(_FORGET)

    @classmethod
    def from_url(cls, url: str, prefix: str = "assist", stale_s: float = 3 * HEARTBEAT_S) -> RedisCommands:
        """Its own connection pool: a sender blocked on a reply holds one connection while it waits."""
        client = aioredis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=5.0, socket_timeout=REPLY_TTL_S + 30.0
        )
        return cls(client, prefix, stale_s)

    async def close(self) -> None:
        await self._redis.aclose()

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    # ---- sender (API node) ------------------------------------------------------------------

    async def request(self, worker: str, command: Command, timeout_s: float = 10.0) -> CommandReply:
        await self._redis.xadd(
            self._key("cmd", worker), {"c": command.to_json()}, maxlen=MAX_COMMANDS, approximate=True
        )
        timeout = min(max(1, round(timeout_s)), REPLY_TTL_S)
        reply = await self._redis.blpop([self._key("reply", command.id)], timeout=timeout)
        if reply is None:
            raise CommandTimeoutError(
                f"worker {worker} did not answer {command.kind} within {timeout_s:.0f} s"
            )
        raw = json.loads(reply[1])
        return CommandReply(int(raw["status"]), str(raw.get("detail", "")), dict(raw.get("data") or {}))

    async def _beats(self) -> list[WorkerInfo]:
        out = []
        for worker, data in (await self._redis.hgetall(self._key("workers"))).items():
            raw = json.loads(data)
            calls = tuple(str(c) for c in raw.get("calls", ()))
            out.append(WorkerInfo(_text(worker), calls, int(raw["capacity"]), float(raw["at"])))
        return out

    async def workers(self) -> list[WorkerInfo]:
        """Live workers (a heartbeat within ``stale_s``), the least loaded first."""
        now = time.time()
        live = [w for w in await self._beats() if now - w.at <= self.stale_s]
        return sorted(live, key=lambda w: (-w.free, w.live_calls, w.worker))

    async def stale_workers(self) -> list[WorkerInfo]:
        """Workers whose last heartbeat is older than ``stale_s``: gone (or cut off), with the
        calls they last reported."""
        now = time.time()
        return [w for w in await self._beats() if now - w.at > self.stale_s]

    async def forget_worker(self, worker: str, at: float) -> bool:
        """Drop a stale worker's heartbeat, unless it has beaten again since ``at``."""
        return bool(await self._forget(keys=[self._key("workers")], args=[worker, repr(at)]))

    async def pick_worker(self) -> str:
        live = [w for w in await self.workers() if w.free > 0]
        if not live:
            raise NoWorkerError("no media worker with room for a call (none live, or all full)")
        return live[0].worker

    async def owner(self, call_id: str) -> str | None:
        """The worker running a call: the one that started it on command, else the live worker
        whose heartbeat lists it (a tap's call)."""
        value = await self._redis.get(self._key("owner", call_id))
        if value is not None:
            return _text(value)
        return next((w.worker for w in await self.workers() if call_id in w.calls), None)

    # ---- worker (media node) ----------------------------------------------------------------

    async def own(self, call_id: str, worker: str) -> None:
        await self._redis.set(self._key("owner", call_id), worker, ex=OWNER_TTL_S)

    async def disown(self, call_id: str) -> None:
        await self._redis.delete(self._key("owner", call_id))

    async def heartbeat(self, worker: str, calls: list[str], capacity: int) -> None:
        beat = {"calls": calls, "capacity": capacity, "at": round(time.time(), 3)}
        await self._redis.hset(self._key("workers"), worker, json.dumps(beat))

    async def leave(self, worker: str) -> None:
        """A worker going away: no new calls for it."""
        await self._redis.hdel(self._key("workers"), worker)

    async def serve(self, worker: str, handle: Handler, ready: asyncio.Event | None = None) -> None:
        """Answer this worker's commands until cancelled; one at a time, in order. Every command
        sent after the stream's position is read here is answered (``ready`` is set then: a
        worker announces itself only after), however late the first ``XREAD`` comes; older ones
        were for an earlier run of this worker and are skipped."""
        key = self._key("cmd", worker)
        position = await self._last_id(key)
        if ready is not None:
            ready.set()
        while True:
            try:
                reply: Any = await self._redis.xread({key: position}, block=1000, count=16)
            except RedisError as exc:  # Redis restarting: try again shortly, the sender times out
                log.warning("command stream unavailable: %s", exc)
                await asyncio.sleep(0.5)
                continue
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    position = _text(entry_id)
                    await self._answer(handle, _text(fields.get("c", "")))

    async def _last_id(self, key: str) -> str:
        while True:
            try:
                last: Any = await self._redis.xrevrange(key, count=1)
                return _text(last[0][0]) if last else "0-0"
            except RedisError as exc:
                log.warning("command stream unavailable: %s", exc)
                await asyncio.sleep(0.5)

    async def _answer(self, handle: Handler, data: str) -> None:
        try:
            command = Command.from_json(data)
        except (ValueError, KeyError, TypeError):
            log.warning("a malformed command was skipped")
            return
        try:
            result = await handle(command)
        except Exception as exc:  # the sender gets the failure, not a timeout
            log.exception("command %s failed", command.kind)
            result = CommandReply(500, f"{type(exc).__name__}: {exc}")
        key = self._key("reply", command.id)
        payload = json.dumps({"status": result.status, "detail": result.detail, "data": result.data})
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, payload)
            pipe.expire(key, REPLY_TTL_S)
            await pipe.execute()


# HDEL a worker's heartbeat only if it is still the one read (its "at" unchanged)
_FORGET = """
local beat = redis.call('HGET', KEYS[1], ARGV[1])
if not beat then return 0 end
if tostring(cjson.decode(beat)['at']) ~= tostring(tonumber(ARGV[2])) then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
