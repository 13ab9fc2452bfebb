"""Commands between nodes on a real Redis: an API node's request reaches the worker it names and
its reply comes back; timeouts, failures, heartbeats and call ownership."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from sidecar.kernel.commands import (
    Command,
    CommandReply,
    CommandTimeoutError,
    NoWorkerError,
    RedisCommands,
)
from tests.redis_helpers import delete_prefix

pytestmark = pytest.mark.redis
STALE_S = 4.0  # a heartbeat this old is a dead worker (long enough for a busy machine's stalls)


@pytest.fixture
async def commands(redis_url: str) -> AsyncIterator[RedisCommands]:
    prefix = f"test-{uuid.uuid4().hex}"
    made = RedisCommands.from_url(redis_url, prefix=prefix, stale_s=STALE_S)
    yield made
    await made.close()
    delete_prefix(redis_url, prefix)


@contextlib.asynccontextmanager
async def serving(commands: RedisCommands, worker: str, handled: list[Command]) -> AsyncIterator[None]:
    async def handle(command: Command) -> CommandReply:
        handled.append(command)
        if command.kind == "explode":
            raise RuntimeError("the handler failed")
        if command.kind == "whisper" and command.call_id != "c1":
            return CommandReply(404, f"call {command.call_id} is not on {worker}")
        return CommandReply(200, "done", {"worker": worker, "text": command.args.get("text", "")})

    ready = asyncio.Event()
    task = asyncio.create_task(commands.serve(worker, handle, ready))
    await asyncio.wait_for(ready.wait(), 10)  # from here on no command to it is missed
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_command_reaches_the_worker_it_names_and_the_reply_comes_back(commands: RedisCommands):
    handled_a: list[Command] = []
    handled_b: list[Command] = []
    async with serving(commands, "w-a", handled_a), serving(commands, "w-b", handled_b):
        reply = await commands.request("w-b", Command("whisper", "c1", {"text": "offer the callback"}), 5)
        assert reply.ok
        assert reply.data == {"worker": "w-b", "text": "offer the callback"}
        refused = await commands.request("w-b", Command("whisper", "c9"), 5)
        assert refused.status == 404
        assert "c9" in refused.detail
        failed = await commands.request("w-a", Command("explode"), 5)
        assert failed.status == 500
        assert "the handler failed" in failed.detail
    assert [c.kind for c in handled_b] == ["whisper", "whisper"]
    assert [c.kind for c in handled_a] == ["explode"]


async def test_a_command_nobody_answers_times_out(commands: RedisCommands):
    started = time.monotonic()
    with pytest.raises(CommandTimeoutError, match="w-gone"):
        await commands.request("w-gone", Command("end_call", "c1"), timeout_s=1)
    assert time.monotonic() - started < 5


async def test_commands_sent_one_after_another_are_answered_in_order(commands: RedisCommands):
    handled: list[Command] = []
    async with serving(commands, "w-a", handled):
        replies = await asyncio.gather(
            *(commands.request("w-a", Command("whisper", "c1", {"text": str(i)}), 5) for i in range(5))
        )
    assert sorted(r.data["text"] for r in replies) == ["0", "1", "2", "3", "4"]
    assert len(handled) == 5


async def test_calls_go_to_the_live_worker_with_the_most_room(commands: RedisCommands):
    with pytest.raises(NoWorkerError):
        await commands.pick_worker()
    await commands.heartbeat("w-a", ["a1", "a2", "a3"], capacity=4)
    await commands.heartbeat("w-b", ["b1"], capacity=4)
    assert await commands.pick_worker() == "w-b"
    await commands.heartbeat("w-b", ["b1", "b2", "b3", "b4"], capacity=4)  # full
    assert await commands.pick_worker() == "w-a"
    assert await commands.owner("b3") == "w-b"  # a tap's call: found in its worker's heartbeat
    await commands.leave("w-a")
    with pytest.raises(NoWorkerError):
        await commands.pick_worker()
    await commands.leave("w-b")
    await commands.heartbeat("w-c", ["c1"], capacity=4)
    assert await commands.stale_workers() == []
    await asyncio.sleep(STALE_S + 0.3)  # silent for longer than stale_s: gone
    assert await commands.workers() == []
    (stale,) = await commands.stale_workers()
    assert (stale.worker, stale.calls) == ("w-c", ("c1",))
    assert not await commands.forget_worker("w-c", stale.at + 1)  # it beat again since: kept
    assert await commands.forget_worker("w-c", stale.at)
    assert await commands.stale_workers() == []


async def test_a_call_has_one_owner_until_it_ends(commands: RedisCommands):
    assert await commands.owner("c1") is None
    await commands.own("c1", "w-a")
    assert await commands.owner("c1") == "w-a"
    await commands.disown("c1")
    assert await commands.owner("c1") is None
