"""One bus subscription per call, however many browsers follow it.

A ``CallFeed`` reads its call from the bus once, encodes each event once as SSE bytes, and keeps
them in a ring as long as the bus's own (``retain``). Each SSE stream is a cursor over that ring:
when it wakes it takes everything past its cursor as one chunk, so a stream that fell behind
catches up in one write, and a busy call costs each subscriber one wake-up per batch rather than
a task, a queue and a serialisation per event.

A ``transcript.redacted`` correction (a number read across two utterances, redacted after the
first was sent) also rewrites the ring's copies of that segment's partials and final, so a stream
that starts or resumes later replays the redacted text only.

Drop policy: none. A cursor older than the ring gets ``SubscriberLaggedError`` (the stream tells
the browser to re-read the call). A feed is dropped as soon as nobody follows it (a later
follower starts a new one from the bus's retained log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import replace

from sidecar.kernel.bus import Bus, SubscriberLaggedError
from sidecar.kernel.events import Event, TranscriptFinal, TranscriptPartial, TranscriptRedacted
from sidecar.service.sse import SseMessage

log = logging.getLogger(__name__)
RETAIN = 20_000
SEGMENTS = 16  # recent speech segments whose transcript events a correction may rewrite


def _encode(event: Event) -> bytes:
    return SseMessage(event.seq, event.type, event.to_json()).encode()


class CallFeed:
    def __init__(self, bus: Bus, call_id: str, retain: int = RETAIN) -> None:
        self.call_id = call_id
        self._ring: deque[tuple[int, bytes]] = deque(maxlen=retain)
        self.last_seq = 0
        self.ended = False
        self.failed: BaseException | None = None
        self._waiters: set[asyncio.Future[None]] = set()
        self._segments: OrderedDict[tuple[str | None, int], list[Event]] = OrderedDict()
        self.followers = 0
        self._task = asyncio.create_task(self._read(bus), name=f"feed:{call_id}")

    async def _read(self, bus: Bus) -> None:
        try:
            async for event in bus.subscribe(self.call_id, after_seq=0):
                self._keep_segment(event)
                self._ring.append((event.seq, _encode(event)))
                self.last_seq = event.seq
                self._wake()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # e.g. the bus lagged: every follower hears of it
            log.warning("feed of call %s failed: %s", self.call_id, exc)
            self.failed = exc
        self.ended = True
        self._wake()

    def _keep_segment(self, event: Event) -> None:
        """Remember the recent segments' transcript events; apply a correction to those sent."""
        p = event.payload
        if isinstance(p, TranscriptPartial | TranscriptFinal):
            key = (event.channel, p.segment)
            self._segments.setdefault(key, []).append(event)
            self._segments.move_to_end(key)
            while len(self._segments) > SEGMENTS:
                self._segments.popitem(last=False)
        elif isinstance(p, TranscriptRedacted):
            for old in self._segments.get((event.channel, p.segment), []):
                q = old.payload
                if isinstance(q, TranscriptPartial):
                    new = replace(old, payload=replace(q, text=p.text, stable_text=p.text, words=p.words))
                elif isinstance(q, TranscriptFinal):
                    new = replace(old, payload=replace(q, text=p.text, words=p.words))
                else:
                    continue
                i = old.seq - self._ring[0][0] if self._ring else -1
                if 0 <= i < len(self._ring) and self._ring[i][0] == old.seq:
                    self._ring[i] = (old.seq, _encode(new))

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def after(self, seq: int) -> list[bytes]:
        """Encoded events with a seq above ``seq`` (seqs are consecutive: found by arithmetic)."""
        if self._ring and self._ring[0][0] > seq + 1:
            raise SubscriberLaggedError(f"events {seq + 1}..{self._ring[0][0] - 1} are no longer retained")
        new = self.last_seq - seq
        n = len(self._ring)
        return [self._ring[i][1] for i in range(max(0, n - new), n)] if new > 0 else []

    async def wait(self, timeout_s: float, closing: asyncio.Event | None) -> None:
        """Until there is news, ``timeout_s`` passed (TimeoutError), or the service is closing."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        if closing is not None and closing.is_set():
            return
        self._waiters.add(waiter)
        # a plain timer, not asyncio.timeout(): this runs once per event per follower
        timer = loop.call_later(timeout_s, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiters.discard(waiter)

    def wake_all(self) -> None:
        self._wake()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._wake()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Feeds:
    """The feeds of the calls being followed, created on the first follower."""

    def __init__(self, bus: Bus, closing: asyncio.Event) -> None:
        self.bus = bus
        self._feeds: dict[str, CallFeed] = {}
        self.closing = closing  # set at shutdown: every stream ends

    def __len__(self) -> int:
        return len(self._feeds)

    async def follow(self, call_id: str, after: int, ping_s: float) -> AsyncIterator[bytes]:
        """SSE chunks of the call's events after ``after``; ``b""`` when ``ping_s`` passed quietly."""
        feed = self._feeds.get(call_id)
        if feed is None:
            feed = self._feeds[call_id] = CallFeed(self.bus, call_id)
        feed.followers += 1
        cursor = after
        try:
            while not self.closing.is_set():
                batch = feed.after(cursor)
                if batch:
                    cursor += len(batch)
                    yield b"".join(batch)
                    continue
                if feed.ended:
                    if feed.failed is not None:
                        raise feed.failed
                    return
                try:
                    await feed.wait(ping_s, self.closing)
                except TimeoutError:
                    yield b""
        finally:
            feed.followers -= 1
            if feed.followers == 0:
                self._feeds.pop(call_id, None)
                await feed.close()

    async def close(self) -> None:
        """Shutdown: every stream ends now."""
        self.closing.set()
        for feed in list(self._feeds.values()):
            feed.wake_all()
