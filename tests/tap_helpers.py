"""Helpers for media-tap tests, whatever the tap: G.711 encoding (a test helper: the service only
decodes), fixed-size chunks, real-time pacing, following a call's events over SSE from a
background thread, and a loose word-overlap check for transcripts.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, TypeVar

import httpx
import numpy as np

from sidecar.audio import G711Law, Pcm16, encode_g711
from tests.service_helpers import read_sse

T = TypeVar("T")
Message = dict[str, Any]


# -- audio -------------------------------------------------------------------------------------


def g711_encode(pcm: Pcm16, law: G711Law = "ulaw") -> bytes:
    """int16 samples to μ-law (``ulaw``) or A-law bytes, one byte per sample."""
    return encode_g711(pcm, law)


def mulaw_encode(pcm: Pcm16) -> bytes:
    return g711_encode(pcm, "ulaw")


def chunks(pcm: Pcm16, size: int) -> list[Pcm16]:
    """``pcm`` in chunks of ``size`` samples, the last one padded with silence."""
    n = -(-pcm.size // size)
    padded = np.zeros(n * size, dtype=np.int16)
    padded[: pcm.size] = pcm
    return [padded[i * size : (i + 1) * size] for i in range(n)]


def interleave(*channels: Pcm16) -> Pcm16:
    """Channels (padded to the longest) as interleaved frames: L R L R ..."""
    n = max(c.size for c in channels)
    frames = np.zeros((n, len(channels)), dtype=np.int16)
    for i, c in enumerate(channels):
        frames[: c.size, i] = c
    return frames.reshape(-1)


async def paced(items: Iterable[T], interval_s: float) -> AsyncIterator[T]:
    """Yield ``items`` one per ``interval_s`` on the wall clock, without drift (a late step does
    not delay the ones after it)."""
    start = time.monotonic()
    for i, item in enumerate(items):
        delay = start + i * interval_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        yield item


# -- following a call ----------------------------------------------------------------------------


class CallFollower:
    """Follows ``GET /v1/calls/{id}/events`` in a background thread from the call's first event:
    it waits for the call to exist (404 until a tap has started it), then reads with ``after=0``,
    so nothing is missed however late it connects. The stream ends after ``call.ended``."""

    def __init__(self, base: str, token: str, call_id: str, appear_timeout_s: float = 60.0) -> None:
        self.base = base
        self.token = token
        self.call_id = call_id
        self.appear_timeout_s = appear_timeout_s
        self.messages: list[Message] = []
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"follow:{call_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            with httpx.Client(base_url=self.base, headers=headers, timeout=60.0) as client:
                deadline = time.monotonic() + self.appear_timeout_s
                while client.get(f"/v1/calls/{self.call_id}").status_code == 404:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"call {self.call_id} never appeared")
                    time.sleep(0.1)
                url = f"/v1/calls/{self.call_id}/events"
                with client.stream("GET", url, params={"after": 0}) as response:
                    response.raise_for_status()
                    for message in read_sse(response):
                        with self._changed:
                            self.messages.append(message)
                            self._changed.notify_all()
        except BaseException as exc:  # surfaced by the waits
            self.error = exc
        finally:
            self._done.set()
            with self._changed:
                self._changed.notify_all()

    def wait_for(self, predicate: Callable[[Message], bool], timeout_s: float) -> Message:
        """The first message (seen so far or to come) that ``predicate`` accepts."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = next((m for m in self.messages if predicate(m)), None)
                if found is not None:
                    return found
                if self._done.is_set():
                    raise AssertionError(f"call {self.call_id}: stream ended without it ({self.error!r})")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"call {self.call_id}: not seen within {timeout_s} s")
                self._changed.wait(left)

    def wait_ended(self, timeout_s: float = 60.0) -> list[Message]:
        """Every message of the call, once ``call.ended`` has come."""
        self.wait_for(lambda m: m["event"] == "call.ended", timeout_s)
        self._thread.join(timeout=5)
        return list(self.messages)

    async def ended(self, timeout_s: float = 60.0) -> list[Message]:
        return await asyncio.to_thread(self.wait_ended, timeout_s)

    async def seen(self, predicate: Callable[[Message], bool], timeout_s: float) -> Message:
        return await asyncio.to_thread(self.wait_for, predicate, timeout_s)


def of_type(messages: Sequence[Message], event: str) -> list[Message]:
    return [m for m in messages if m["event"] == event]


def finals_text(messages: Sequence[Message], channel: str) -> str:
    """Every ``transcript.final`` of ``channel``, joined."""
    return " ".join(
        m["data"]["payload"]["text"]
        for m in messages
        if m["event"] == "transcript.final" and m["data"]["channel"] == channel
    )


# -- transcripts ---------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    """Lower-case words without punctuation (apostrophes dropped: "don't" is "dont")."""
    return re.findall(r"[a-z0-9]+", text.lower().replace("'", "").replace("\u2019", ""))


def word_overlap(expected: str, heard: str) -> float:
    """The share of ``expected``'s distinct words found anywhere in ``heard`` (0..1)."""
    want = set(words(expected))
    return len(want & set(words(heard))) / len(want) if want else 1.0
