"""Waiting for Redis to come back (a restart, a failover, a dropped connection).

``Reconnect.run(command)`` runs a command that is safe to repeat; when it fails because Redis
cannot be reached (refused, reset, timed out, or ``LOADING`` while a restarted Redis reads its
file), it waits for the client's one probe to see Redis answer, then tries again. The probe PINGs
with backoff (50 ms doubling to 0.5 s), so however many publishes and reads wait, a restarting
Redis gets one connection attempt at a time from this client rather than a storm of them. A
command that fails again while Redis answers pings waits a growing pause (to 0.5 s) between tries.

A bounded command gives up ``reconnect_s`` after its first failure with ``RedisUnavailableError``;
a ``patient`` one (a subscription's read: a cursor that can carry on where it was) waits as long
as it takes, until its task is cancelled. The probe logs a warning when Redis stops answering and
how long it was away when it answers again; ``outages`` counts those (a dropped connection while
Redis answers is not one).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis import asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sidecar.kernel.bus import BusUnavailableError

_T = TypeVar("_T")

log = logging.getLogger(__name__)
BACKOFF_S = (0.05, 0.5)  # first and longest wait between tries while Redis is away


class RedisUnavailableError(BusUnavailableError):
    """Redis cannot be reached (or refuses us) at the configured URL."""


class Reconnect:
    """Retries for one Redis client; ``where`` names it in errors (a URL without its password)."""

    def __init__(self, client: aioredis.Redis, where: str, reconnect_s: float) -> None:
        if reconnect_s <= 0:
            raise ValueError("reconnect_s must be positive")
        self.reconnect_s = reconnect_s
        self.outages = 0  # times Redis stopped answering and came back while a command waited
        self._client = client
        self._where = where
        self._probe: asyncio.Task[None] | None = None  # running while Redis is away

    async def run(self, command: Callable[[], Awaitable[_T]], *, patient: bool = False) -> _T:
        """``command()``, tried again each time Redis is back (see the module docstring)."""
        loop = asyncio.get_running_loop()
        give_up_at: float | None = None
        pause_s = 0.0
        while True:
            try:
                return await command()
            except (RedisConnectionError, RedisTimeoutError) as exc:  # LOADING included
                if cancelling():  # a cancel that landed inside the client surfaced as this error
                    raise asyncio.CancelledError from exc
                if give_up_at is None and not patient:
                    give_up_at = loop.time() + self.reconnect_s
                try:
                    async with asyncio.timeout_at(give_up_at):
                        await asyncio.sleep(pause_s)
                        await asyncio.shield(self._reachable())
                except TimeoutError:
                    raise RedisUnavailableError(
                        f"Redis at {self._where} was unreachable for {self.reconnect_s:g} s"
                    ) from exc
                pause_s = min(max(2 * pause_s, BACKOFF_S[0]), BACKOFF_S[1])

    def close(self) -> None:
        if self._probe is not None and not self._probe.done():
            self._probe.cancel()

    def _reachable(self) -> asyncio.Task[None]:
        """The one probe (started if none is running): done once Redis answers."""
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._probe_until_back(), name="redis-probe")
        return self._probe

    async def _probe_until_back(self) -> None:
        loop = asyncio.get_running_loop()
        began, wait_s, away = loop.time(), BACKOFF_S[0], False
        while True:
            try:
                await self._client.ping()
            except (RedisConnectionError, RedisTimeoutError, OSError):
                if not away:
                    away = True
                    log.warning("Redis is unreachable; publishes and reads wait for it")
                await asyncio.sleep(wait_s)
                wait_s = min(2 * wait_s, BACKOFF_S[1])
                continue
            except RedisError:  # it answers: the command tried again will say what is wrong
                pass
            if away:
                self.outages += 1
                log.warning("Redis is reachable again after %.1f s", loop.time() - began)
            return


def cancelling() -> bool:
    """Whether the running task has a cancel pending (retrying a read then would swallow it)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
