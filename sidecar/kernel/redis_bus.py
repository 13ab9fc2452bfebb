"""The Redis Streams bus: the ``Bus`` Protocol shared by any number of processes ("nodes").

Every node that points at the same Redis and ``prefix`` sees the same calls: a call's events can
be published on one node and followed on another, and concurrent publishers of one call (on any
node) get one gap-free ``seq`` sequence, because stamping and appending happen in one Lua script.

Keys (``P`` is the prefix, ``CID`` a call id):

- ``P:meta:CID``   hash: ``last_seq``, ``ended`` (``0``/``1``), ``started_at`` (epoch seconds).
- ``P:events:CID`` stream of the call's events; entry ID ``<seq>-0``, field ``e`` = the event JSON
  (``Event.to_json``: the replay contract, ``seq`` and ``emitted_at`` included).
- ``P:all``        stream of every call's events (``*`` IDs, same ``e`` field): the floor view.
- ``P:calls``      sorted set of call ids; score ``+inf`` while the call is live, and the epoch
  second after which it is forgotten once it has ended (lets ``calls_async`` list calls without
  ``SCAN``).

Publishing runs one script (``EVALSHA``): refuse a ``call.started`` whose call id already has a hash
(the atomic claim of the id: of two nodes starting the same id, exactly one wins; the other gets
``CallIdInUseError``), refuse if the call has ended, ``seq = last_seq + 1``,
``XADD`` to both streams, update the hash. ``emitted_at`` is stamped by this node's clock (rounded
to the millisecond, as the JSON carries it) before the script runs.

Retention and drop policy, as for the in-memory bus: nothing is dropped on publish, and publishing
never waits for subscribers. Each call stream keeps about its last ``retain_events`` events and
``P:all`` about the last ``retain_events`` of all calls (``MAXLEN ~``: Redis trims whole stream
nodes, so a little more may be kept, never less). ``retain_ended_s`` after ``call.ended`` the call's
hash and stream expire. Subscribers read with their own cursor (``XREAD BLOCK``), so a slow
subscriber costs no memory; a call subscriber whose next event has been trimmed away gets
``SubscriberLaggedError`` (it missed events and must resync) instead of silently losing them.
A ``"*"`` subscriber that falls behind ``P:all`` skips what was trimmed, as with ``InMemoryBus``.

Subscribers receive events decoded from JSON, so their floats are rounded to the millisecond
(``Event.to_dict``); the event ``publish`` returns has the same ``seq`` and ``emitted_at``.

Single Redis server (or a Sentinel-managed primary) only: the publish script touches ``P:all`` and
the call's keys together, which Redis Cluster would need in one hash slot.

Redis going away (a restart, a failover, a dropped connection): what failed waits for it to come
back and is tried again (``redis_reconnect``: one probe per node, no storm of reconnects).
Publishes and one-off reads (``calls_async``) wait up to ``reconnect_s`` (default 30 s), then
raise ``RedisUnavailableError``; a subscription waits as long as it takes and carries on from its
cursor (cancel it to stop).

A retried publish is applied once. A publish whose reply was lost may or may not have been
applied, so each carries this node's id and a counter; the script keeps the last counter it
applied per node in the call's hash (``p:<node>`` = ``<counter>:<seq>``) and answers a repeat with
the seq it gave the first time. For that, one node publishes one call's events one at a time (a
lock per call; different calls run concurrently), which also keeps them in the order they were
published. With an append-only file (``deploy/k8s``) Redis writes each publish to it before it
answers, so a restart, or a crash of the Redis process, keeps every publish it acknowledged and a
call's seqs carry on gap-free and none twice (``appendfsync everysec`` may lose the last second
only if the machine itself goes down; ``always`` not even then). Without persistence a restart
loses the calls' keys, and seqs start again at 1.

Buffer and drop policy while Redis is away: nothing is dropped for ``reconnect_s``. The buffer is
the publishes waiting, each held by the task that made it (at most one in flight per call and
node; the call's other publishers wait their turn on its lock), so it is bounded by the tasks
publishing, and their callers feel back-pressure (the coach queue fills, the audio queues drop
their oldest frames, as counted there). Past ``reconnect_s`` the waiting publish raises
``RedisUnavailableError`` (a ``BusUnavailableError``): that event is not published, and the
caller decides what the loss means. The coach counts a lost coaching event (``coach_events_lost``
in ``call.ended``) and goes on; a recorded call that lost a transcript fails ("call ... failed" in
the log) and ends, once the bus takes it, with reason ``error``. An event is stamped
(``emitted_at``) when its publish first tries, so the events of a call that waited show when
they were made. The node logs a warning when Redis goes away and how long it was away when it is
back; ``outages`` counts them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import json
import math
import uuid
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from sidecar.kernel.bus import ALL_CALLS, CallIdInUseError, CallInfo, SubscriberLaggedError
from sidecar.kernel.clock import Clock, RealtimeClock
from sidecar.kernel.errors import ConfigError
from sidecar.kernel.events import Event, event_from_dict
from sidecar.kernel.redis_reconnect import Reconnect, RedisUnavailableError, cancelling

_READ_BATCH = 500  # stream entries per XREAD

# KEYS: meta, events, all, calls
# ARGV: json head, json tail, now (the emitted_at; started_at if seq is 1), retain_events, ttl_ms,
#       call_id, ends (0|1), forget_at (now + retain_ended_s), starts (0|1: a call.started, the claim),
#       node field (p:<node id>), publish counter (this node's, increasing)
# Returns {seq, started_at}; seq 0: the call has ended; seq -1: a call.started for an id in use.
# A repeat of the node's last applied publish (a retry whose first reply was lost) returns its seq.
_PUBLISH = """
local mark = redis.call('HGET', KEYS[1], ARGV[10])
if mark then
  local sep = string.find(mark, ':', 1, true)
  if string.sub(mark, 1, sep - 1) == ARGV[11] then
    return {tonumber(string.sub(mark, sep + 1)), redis.call('HGET', KEYS[1], 'started_at') or '0'}
  end
end
if ARGV[9] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  return {-1, redis.call('HGET', KEYS[1], 'started_at') or '0'}
end
if redis.call('HGET', KEYS[1], 'ended') == '1' then
  return {0, redis.call('HGET', KEYS[1], 'started_at')}
end
local seq = tonumber(redis.call('HGET', KEYS[1], 'last_seq') or '0') + 1
local event = ARGV[1] .. seq .. ARGV[2]
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], seq .. '-0', 'e', event)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'e', event)
redis.call('HSET', KEYS[1], 'last_seq', seq, ARGV[10], ARGV[11] .. ':' .. seq)
if seq == 1 then
  redis.call('HSET', KEYS[1], 'started_at', ARGV[3], 'ended', '0')
  redis.call('ZADD', KEYS[4], '+inf', ARGV[6])
end
if ARGV[7] == '1' then
  redis.call('HSET', KEYS[1], 'ended', '1')
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
  redis.call('ZADD', KEYS[4], ARGV[8], ARGV[6])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[3])
end
return {seq, redis.call('HGET', KEYS[1], 'started_at')}
"""


@dataclass(slots=True)
class _Seen:
    last_seq: int
    ended: bool
    started_at: float
    exact_start: bool  # started_at came from Redis or from the call's first event
    ended_at: float = math.inf  # wall clock when this node saw it end


class RedisStreamsBus:
    """A ``Bus`` on Redis Streams; see the module docstring for keys and retention.

    ``calls()`` is synchronous (the Protocol's signature), so it cannot ask Redis: it returns what
    *this node* has seen, i.e. the calls it published to, read events of, or listed with
    ``calls_async()``, with the last ``seq`` and state it saw. ``calls_async()`` is the cluster-wide
    truth, read from Redis (and refreshes that cache). Use it wherever every node's calls matter.

    ``close()`` (or ``async with``) releases the connection pool. Each blocked subscriber holds one
    pooled connection while it waits, so ``max_connections`` bounds concurrent subscribers.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "assist",
        clock: Clock | None = None,
        retain_events: int = 20_000,
        retain_ended_s: float = 3600,
        block_ms: int = 1000,
        max_connections: int = 10_000,
        reconnect_s: float = 30.0,
    ) -> None:
        if retain_events < 1 or retain_ended_s <= 0 or block_ms < 1 or reconnect_s <= 0:
            raise ValueError("retain_events, retain_ended_s, block_ms and reconnect_s must be positive")
        self.url = url
        self._prefix = prefix
        self._clock = clock or RealtimeClock()
        self._retain_events = retain_events
        self._retain_ended_s = retain_ended_s
        self._block_ms = block_ms
        self._node = uuid.uuid4().hex[:12]
        self._counter = itertools.count(1)
        self._call_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # URL query options (e.g. ?socket_timeout=) override these defaults. No retries at the
        # connection level: self._reconnect retries (the publish script applies a repeat once). A
        # blocked XREAD must not outlast the socket timeout (redis-py's default is 5 s).
        pool = aioredis.ConnectionPool.from_url(
            url,
            decode_responses=True,
            max_connections=max_connections,
            socket_connect_timeout=5.0,
            socket_timeout=block_ms / 1000 + 10.0,
        )
        socket_timeout = pool.connection_kwargs.get("socket_timeout")
        if socket_timeout is not None and float(socket_timeout) * 1000 <= block_ms:
            raise ConfigError(
                f"Redis URL {redact_url(url)}: socket_timeout must be longer than block_ms ({block_ms})"
            )
        self._redis = aioredis.Redis.from_pool(pool)
        self._publish_script = self._redis.register_script(_PUBLISH)
        self._reconnect = Reconnect(self._redis, redact_url(url), reconnect_s)
        self._seen: dict[str, _Seen] = {}

    # keys ---------------------------------------------------------------------------------

    def _meta_key(self, call_id: str) -> str:
        return f"{self._prefix}:meta:{call_id}"

    def _events_key(self, call_id: str) -> str:
        return f"{self._prefix}:events:{call_id}"

    @property
    def _all_key(self) -> str:
        return f"{self._prefix}:all"

    @property
    def _calls_key(self) -> str:
        return f"{self._prefix}:calls"

    # lifecycle ----------------------------------------------------------------------------

    @property
    def outages(self) -> int:
        """Times Redis went away and came back while this node waited for it."""
        return self._reconnect.outages

    async def ping(self) -> None:
        """Check that Redis answers; raises ``RedisUnavailableError`` naming the URL if not."""
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise RedisUnavailableError(
                f"cannot reach Redis at {redact_url(self.url)}: {exc or type(exc).__name__}"
            ) from exc

    async def close(self) -> None:
        self._reconnect.close()
        await self._redis.aclose()

    async def __aenter__(self) -> RedisStreamsBus:
        await self.ping()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # publish ------------------------------------------------------------------------------

    async def publish(self, event: Event) -> Event:
        """Stamp and append ``event``; while Redis is away, wait for it (see the module docstring)."""
        lock = self._call_locks.get(event.call_id)
        if lock is None:
            lock = self._call_locks[event.call_id] = asyncio.Lock()
        async with lock:  # one publish of a call at a time from this node: a retry is told apart
            return await self._publish(event)

    async def _publish(self, event: Event) -> Event:
        now = self._clock.wall()
        stamped = dataclasses.replace(event, seq=0, emitted_at=round(now, 3))
        head, tail = _json_around_seq(stamped)
        ends = stamped.type == "call.ended"
        keys = [
            self._meta_key(event.call_id),
            self._events_key(event.call_id),
            self._all_key,
            self._calls_key,
        ]
        args: list[str | int] = [
            head,
            tail,
            repr(stamped.emitted_at),  # started_at, when this is the call's first event
            self._retain_events,
            max(1, round(self._retain_ended_s * 1000)),
            event.call_id,
            1 if ends else 0,
            repr(now + self._retain_ended_s),
            1 if stamped.type == "call.started" else 0,
            f"p:{self._node}",
            next(self._counter),  # the same on every try of this publish
        ]
        reply = await self._reconnect.run(lambda: self._publish_script(keys=keys, args=args))
        seq, started_at = int(reply[0]), float(reply[1])
        if seq == -1:
            raise CallIdInUseError(event.call_id)
        if seq == 0:
            raise RuntimeError(f"call {event.call_id} has ended; nothing more can be published to it")
        stamped = dataclasses.replace(stamped, seq=seq)
        self._remember(event.call_id, seq, ends, started_at, exact=True, replace=seq == 1)
        return stamped

    # subscribe ----------------------------------------------------------------------------

    async def subscribe(self, call_id: str, after_seq: int | None = 0) -> AsyncIterator[Event]:
        """Events of one call (or of every call with ``"*"``) with ``seq > after_seq``.

        ``after_seq=None``: only events published from now on. A call subscription ends after
        ``call.ended`` and raises ``SubscriberLaggedError`` if an event it still needs was trimmed.
        A ``"*"`` subscription runs until cancelled; with ``after_seq=N`` it first replays what
        ``P:all`` retains with ``seq > N`` (of any call).
        """
        if call_id == ALL_CALLS:
            async for event in self._subscribe_all(after_seq):
                yield event
            return
        meta = await self._reconnect.run(
            lambda: self._redis.hmget(self._meta_key(call_id), ["last_seq", "ended"]), patient=True
        )
        last_seq, ended = int(meta[0] or 0), meta[1] == "1"
        cursor = last_seq if after_seq is None else max(0, after_seq)
        if ended and cursor >= last_seq:
            return
        key = self._events_key(call_id)
        while True:
            position = f"{cursor}-0"
            for entry_id, data in await self._xread(key, position):
                seq = int(entry_id.partition("-")[0])
                if seq > cursor + 1:
                    raise SubscriberLaggedError(
                        f"events {cursor + 1}..{seq - 1} of call {call_id} are no longer retained"
                    )
                event = self._decode(data)
                cursor = seq
                yield event
                if event.type == "call.ended":
                    return

    async def _subscribe_all(self, after_seq: int | None) -> AsyncIterator[Event]:
        position = "0-0"
        if after_seq is None:
            newest = await self._reconnect.run(
                lambda: self._redis.xrevrange(self._all_key, count=1), patient=True
            )
            if newest:
                position = str(newest[0][0])
        while True:
            for entry_id, data in await self._xread(self._all_key, position):
                position = entry_id
                event = self._decode(data)
                if after_seq is None or event.seq > after_seq:
                    yield event

    async def _xread(self, key: str, position: str) -> list[tuple[str, str]]:
        reply = await self._reconnect.run(
            lambda: self._redis.xread({key: position}, count=_READ_BATCH, block=self._block_ms), patient=True
        )
        if cancelling():  # a cancel the client swallowed and retried past: the subscriber stops here
            raise asyncio.CancelledError
        return _entries(reply)

    def _decode(self, data: str) -> Event:
        event = event_from_dict(json.loads(data))
        ends = event.type == "call.ended"
        self._remember(event.call_id, event.seq, ends, event.emitted_at, exact=event.seq == 1)
        return event

    # calls --------------------------------------------------------------------------------

    def calls(self) -> list[CallInfo]:
        """The calls *this node* has published to, read from or listed (see the class docstring).

        ``started_at`` is exact for calls this node published to or listed, or whose first event
        it read; otherwise it is the ``emitted_at`` of the first event it read. Ended calls are
        forgotten ``retain_ended_s`` after this node saw them end.
        """
        self._forget_ended()
        return [
            CallInfo(call_id=cid, last_seq=s.last_seq, ended=s.ended, started_at=s.started_at)
            for cid, s in sorted(self._seen.items(), key=lambda item: item[1].started_at)
        ]

    async def calls_async(self) -> list[CallInfo]:
        """Every call Redis knows (live, and ended within ``retain_ended_s``), oldest first."""
        now = self._clock.wall()
        await self._reconnect.run(lambda: self._redis.zremrangebyscore(self._calls_key, "-inf", f"({now!r}"))
        call_ids = [
            str(c) for c in await self._reconnect.run(lambda: self._redis.zrange(self._calls_key, 0, -1))
        ]
        found: list[CallInfo] = []
        gone: list[str] = []
        for start in range(0, len(call_ids), 500):
            chunk = call_ids[start : start + 500]
            rows = await self._reconnect.run(functools.partial(self._meta_rows, chunk))
            for cid, (last_seq, ended, started_at) in zip(chunk, rows, strict=True):
                if last_seq is None:
                    gone.append(cid)  # its keys expired
                    continue
                info = CallInfo(cid, int(last_seq), ended == "1", float(started_at or 0.0))
                found.append(info)
                self._remember(cid, info.last_seq, info.ended, info.started_at, exact=True, replace=True)
        if gone:
            await self._reconnect.run(lambda: self._redis.zrem(self._calls_key, *gone))
        listed = {c.call_id for c in found}
        for cid in [cid for cid, s in self._seen.items() if s.ended and cid not in listed]:
            del self._seen[cid]  # expired in Redis
        found.sort(key=lambda c: c.started_at)
        return found

    async def _meta_rows(self, call_ids: list[str]) -> list[list[str | None]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for cid in call_ids:
                pipe.hmget(self._meta_key(cid), ["last_seq", "ended", "started_at"])
            rows: list[list[str | None]] = await pipe.execute()
        return rows

    def _remember(
        self, call_id: str, seq: int, ended: bool, started_at: float, *, exact: bool, replace: bool = False
    ) -> None:
        """Update this node's view of a call (see ``calls``)."""
        now = self._clock.wall()
        seen = self._seen.get(call_id)
        if seen is not None and seen.ended and exact and seen.exact_start and started_at != seen.started_at:
            replace = True  # the id of an ended call was reused by a new call
        if seen is None or replace:
            ended_at = seen.ended_at if seen is not None and seen.ended and ended else now
            self._seen[call_id] = _Seen(seq, ended, started_at, exact, ended_at if ended else math.inf)
            self._forget_ended()
            return
        if exact and not seen.exact_start:
            seen.started_at, seen.exact_start = started_at, True
        seen.last_seq = max(seen.last_seq, seq)
        if ended and not seen.ended:
            seen.ended, seen.ended_at = True, now

    def _forget_ended(self) -> None:
        horizon = self._clock.wall() - self._retain_ended_s
        for cid in [cid for cid, s in self._seen.items() if s.ended and s.ended_at < horizon]:
            del self._seen[cid]


def _json_around_seq(event: Event) -> tuple[str, str]:
    """The event's JSON split where ``seq`` goes: ``head + str(seq) + tail`` is valid JSON."""
    data = event.to_dict()
    del data["seq"]
    head = {k: data.pop(k) for k in ("type", "call_id")}
    return _dumps(head)[:-1] + ',"seq":', "," + _dumps(data)[1:]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _entries(reply: Any) -> list[tuple[str, str]]:
    """``(entry_id, event json)`` from an XREAD reply of one stream (RESP2 list or RESP3 dict)."""
    if not reply:
        return []
    streams = reply.values() if isinstance(reply, dict) else (s[1] for s in reply)
    out: list[tuple[str, str]] = []
    for entries in streams:
        if entries and entries[0] and not isinstance(entries[0][0], (str, bytes)):
            entries = entries[0]  # RESP3 nests each stream's entries one level deeper
        out.extend((str(entry_id), str(fields["e"])) for entry_id, fields in entries)
    return out


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
