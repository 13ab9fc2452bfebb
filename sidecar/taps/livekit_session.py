"""LiveKit tap: the sessions, one room joined for one call (connecting → live → ended, or
failed), and the service's sessions by call id.

Ending: the call starts (``call.started``) once the room is joined, and ends (``call.ended``) when
a participant of the customer channel leaves (``completed``), when the room disconnects us
(``completed`` for a deleted or closed room or our removal, ``dropped`` otherwise), on DELETE
(``completed``), or with the service (``aborted``); the pumps stop, the call ends and the room is
left, in that order, in a ``finally``. A join that fails leaves the session ``failed`` with the
SDK's error and no call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from livekit import rtc

from sidecar.calls.access import TapCalls
from sidecar.calls.errors import TooManyCallsError
from sidecar.calls.live_call import CallMeta, LiveCall
from sidecar.kernel.errors import InputError
from sidecar.taps.livekit_feed import CallFeed
from sidecar.taps.livekit_room import RoomEvent, RoomLink, StopRequested
from sidecar.taps.livekit_routing import ChannelMapping, TrackRouter

log = logging.getLogger("assist.taps.livekit")

MAX_SESSIONS = 20  # sessions joining or live at once, per service
KEPT_FINISHED = 200  # ended / failed sessions kept for GET (oldest forgotten first)
JOIN_TIMEOUT_S = 60.0  # the whole join, retries included: past this the session fails
STOP_WAIT_S = 10.0  # DELETE waits this long for the room to be left and the call ended
POLL_S = 0.5  # how often a live session checks that its call has not been ended elsewhere

SessionState: TypeAlias = Literal["connecting", "live", "ended", "failed"]


@dataclass(frozen=True, slots=True)
class SessionRequest:
    url: str
    token: str
    room: str
    identity: str  # the tap's own, from the token
    call_id: str
    mapping: ChannelMapping
    lang: str = "en"
    agent_id: str = ""
    queue: str = ""

    def meta(self) -> CallMeta:
        return CallMeta("livekit", self.call_id, self.lang, self.agent_id, self.queue, (("room", self.room),))


class LiveKitSession:
    """One room joined for one call: connecting → live → ended, or failed."""

    def __init__(self, tap: LiveKitTap, request: SessionRequest) -> None:
        self.tap = tap
        self.request = request
        self.state: SessionState = "connecting"
        self.error: str | None = None
        self.ended_reason: str | None = None
        self.events: asyncio.Queue[RoomEvent] = asyncio.Queue()
        self.feed: CallFeed | None = None
        self.call: LiveCall | None = None
        self.finished_at: float | None = None
        self._stop = asyncio.Event()
        self.done = asyncio.Event()

    @property
    def call_id(self) -> str:
        return self.request.call_id

    @property
    def active(self) -> bool:
        return self.state in ("connecting", "live")

    def stop(self, reason: str = "completed") -> None:
        if not self._stop.is_set():
            self._stop.set()
            self.events.put_nowait(StopRequested(reason))

    def describe(self) -> dict[str, Any]:
        feed = self.feed
        return {
            "call_id": self.call_id,
            "state": self.state,
            "room": self.request.room,
            "error": self.error,
            "ended_reason": self.ended_reason,
            "channels": feed.router.feeders() if feed and self.state == "live" else {},
            "ignored": list(feed.ignored) if feed else [],
        }

    def _fail(self, error: str) -> None:
        self.state = "failed"
        self.error = error
        log.warning("livekit session failed", extra={"call_id": self.call_id, "error": error[:300]})

    async def run(self) -> None:
        link: RoomLink | None = None
        try:
            link = RoomLink(self.events)
            if await self._join(link):
                try:
                    await self._serve(link)
                finally:
                    await link.leave()
        except Exception as exc:
            log.exception("livekit session %s failed", self.call_id)
            if self.state != "ended":
                self._fail(f"the tap failed: {type(exc).__name__}")
        finally:
            if self.active:  # cancelled (the service is stopping)
                self.state = "ended"
                self.ended_reason = self.ended_reason or "aborted"
            self.finished_at = time.monotonic()
            self.done.set()

    async def _join(self, link: RoomLink) -> bool:
        """True once the room is joined; False (state set) when it could not be, or DELETE came."""
        connect = asyncio.create_task(link.connect(self.request.url, self.request.token),
                                      name=f"livekit:{self.call_id}:connect")  # fmt: skip
        stopped = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait(
                {connect, stopped}, timeout=JOIN_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopped.cancel()
            if not connect.done():  # given up on: should it join after all, leave at once
                connect.add_done_callback(lambda t: self._late_join(t, link))
        if not connect.done():
            if self._stop.is_set():
                self.state, self.ended_reason = "ended", "stopped before the room was joined"
            else:
                self._fail(f"no answer from the LiveKit server within {JOIN_TIMEOUT_S:.0f} s")
            return False
        exc = connect.exception()
        if isinstance(exc, rtc.ConnectError):
            self._fail(f"could not join the LiveKit room: {exc.message}")
            return False
        if exc is not None:
            self._fail(f"could not join the LiveKit room: {type(exc).__name__}: {exc}")
            return False
        if self._stop.is_set():
            await link.leave()
            self.state, self.ended_reason = "ended", "stopped before the room was joined"
            return False
        return True

    def _late_join(self, task: asyncio.Task[None], link: RoomLink) -> None:
        if not task.cancelled() and task.exception() is None:
            self.tap.spawn(link.leave(), f"livekit:{self.call_id}:late-leave")

    async def _serve(self, link: RoomLink) -> None:
        calls = self.tap.calls
        if calls.closing:
            self._fail("the service is stopping")
            return
        if link.room_name and link.room_name != self.request.room:
            log.warning("livekit: joined another room than the token names", extra={"call_id": self.call_id})
        router = TrackRouter(self.request.mapping, own_identity=link.own_identity or self.request.identity)
        try:
            call = await calls.open_call(self.request.meta())
        except (TooManyCallsError, InputError) as exc:
            self._fail(str(exc))
            return
        self.call = call
        feed = self.feed = CallFeed(call, router, link.open_frames)
        self.state = "live"
        log.info("livekit call started", extra={"call_id": self.call_id})
        reason = "error"
        try:
            reason = await self._follow(feed, call)
        except asyncio.CancelledError:
            reason = "aborted"
            raise
        finally:
            await feed.close()
            try:
                await call.end(reason)
            except Exception:
                log.exception("livekit: ending call %s failed", self.call_id)
            self.state, self.ended_reason = "ended", reason
            log.info("livekit call ended", extra={"call_id": self.call_id, "reason": reason})

    async def _follow(self, feed: CallFeed, call: LiveCall) -> str:
        while True:
            if call.ended:
                return "aborted"  # ended by the service (shutting down)
            try:
                event = await asyncio.wait_for(self.events.get(), POLL_S)
            except TimeoutError:
                continue
            reason = await feed.handle(event)
            if reason is not None:
                return reason


class SessionConflictError(Exception):
    """The call id is in use (409)."""


class LiveKitTap:
    """The service's LiveKit sessions by call id: at most ``max_sessions`` joining or live."""

    def __init__(self, calls: TapCalls, max_sessions: int = MAX_SESSIONS) -> None:
        self.calls = calls
        self.max_sessions = max_sessions
        self.sessions: dict[str, LiveKitSession] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def active(self) -> list[LiveKitSession]:
        return [s for s in self.sessions.values() if s.active]

    def start(self, request: SessionRequest) -> LiveKitSession:
        """A new session, joining in the background. ``SessionConflictError``: the call id is in
        use; ``TooManyCallsError``: no room for another session or call."""
        existing = self.sessions.get(request.call_id)
        if existing is not None and existing.active:
            raise SessionConflictError(f"a LiveKit session for call {request.call_id} is running")
        active = self.active()
        connecting = sum(1 for s in active if s.state == "connecting")
        try:
            self.calls.check_open(request.call_id, joining=connecting)
        except InputError as exc:  # the call id is in use
            raise SessionConflictError(str(exc)) from None
        if len(active) >= self.max_sessions:
            raise TooManyCallsError(f"this service runs at most {self.max_sessions} LiveKit sessions at once")
        session = LiveKitSession(self, request)
        self.sessions.pop(request.call_id, None)
        self.sessions[request.call_id] = session
        self._prune()
        self.spawn(session.run(), f"livekit:{request.call_id}")
        return session

    def _prune(self) -> None:
        finished = sorted((s for s in self.sessions.values() if not s.active and s.finished_at is not None),
                          key=lambda s: s.finished_at or 0.0)  # fmt: skip
        for session in finished[: max(0, len(finished) - KEPT_FINISHED)]:
            self.sessions.pop(session.call_id, None)

    async def stop(self, session: LiveKitSession, timeout_s: float = STOP_WAIT_S) -> None:
        session.stop("completed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.done.wait(), timeout_s)

    async def close(self) -> None:
        """Shutdown: every session leaves its room and ends its call (``aborted``)."""
        for session in self.active():
            session.stop("aborted")
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=STOP_WAIT_S)
