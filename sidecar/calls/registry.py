"""The live calls of this process: calls fed by a media tap (``open_call`` → ``LiveCall``), a
recorded call played through the live pipeline, and the supervisor's whisper and barge-in.

A tap's call and a recording run the same way: real-time clock, ASR for audio (bounded,
drop-oldest queues: a tap never waits on the recogniser), the call's coach session
(``CoachSink``) with the service's knowledge base, dead-air ticks. At most ``max_calls`` calls run
at once; one more is refused with ``TooManyCallsError`` (taps answer with their protocol's error).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coach.engine import Coach
from coach.sink import CoachSink
from knowledge.policy import SuggestionPolicy
from sidecar.callfile import AudioCall, TranscriptCall, load_call
from sidecar.calls.errors import CallNotLiveError, TooManyCallsError, TooManyUserCallsError
from sidecar.calls.live_call import CallMeta, LiveCall
from sidecar.engine import SpeechEngine
from sidecar.kernel.bus import Bus, BusUnavailableError, CallIdInUseError
from sidecar.kernel.clock import Clock, FastClock, RealtimeClock
from sidecar.kernel.errors import InputError
from sidecar.kernel.events import Barge, CallEnded, Channel, Event, Whisper
from sidecar.replay import new_call_id, replay_audio, replay_transcript

log = logging.getLogger(__name__)
AUDIO_SUFFIXES = (".wav",)
TRANSCRIPT_SUFFIXES = (".jsonl",)
DRAIN_PROGRESS_S = 10.0  # how often a draining node says how many calls it waits for


def _plain_file(path: Path) -> bool:
    """A regular file that is not a symbolic link: a link in the recordings directory could point
    anywhere on the machine, so it is never followed."""
    return not path.is_symlink() and path.is_file()


@dataclass(frozen=True, slots=True)
class Recording:
    name: str
    kind: str  # "audio" | "transcript"
    duration_s: float


@dataclass(frozen=True, slots=True)
class StartRequest:
    recording: str
    realtime: bool = True
    lang: str = "en"
    agent_id: str = ""
    queue: str = ""
    call_id: str | None = None
    owner: str = ""  # who started it (a user's name): at most max_calls_per_user each


class LiveCalls:
    def __init__(
        self,
        bus: Bus,
        coach: Coach,
        knowledge: SuggestionPolicy | None,
        recordings_dir: Path | None,
        engine_factory: Callable[[], SpeechEngine] = SpeechEngine,
        max_calls: int = 50,
        max_calls_per_user: int = 10,
    ) -> None:
        self.bus = bus
        self.coach = coach
        self.knowledge = knowledge
        self.recordings_dir = recordings_dir
        self.max_calls = max_calls
        self.max_calls_per_user = max_calls_per_user
        self._owners: dict[str, str] = {}  # recorded call id -> who started it
        self._engine_factory = engine_factory
        self._engine: SpeechEngine | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.calls: dict[str, LiveCall] = {}  # calls fed by taps, by id
        self._starting: set[str] = set()  # ids admitted, their calls not registered yet
        self.draining = False  # shutting down: the live calls go on, no new call is taken
        self._ending: set[asyncio.Task[None]] = set()  # tap calls' ends waiting for the bus

    @property
    def engine(self) -> SpeechEngine:
        if self._engine is None:
            self._engine = self._engine_factory()
        return self._engine

    # -- recordings ----------------------------------------------------------------------------

    def recordings(self) -> list[Recording]:
        if self.recordings_dir is None or not self.recordings_dir.is_dir():
            return []
        out = []
        for path in sorted(self.recordings_dir.iterdir()):
            if path.suffix not in AUDIO_SUFFIXES + TRANSCRIPT_SUFFIXES or not _plain_file(path):
                continue
            try:
                call = load_call(path, "customer")
            except InputError as exc:
                log.warning("recording %s skipped: %s", path.name, exc)
                continue
            kind = "audio" if isinstance(call, AudioCall) else "transcript"
            out.append(Recording(path.name, kind, round(call.duration_s, 3)))
        return out

    def recording_path(self, name: str) -> Path:
        """A recording by its bare name inside the recordings directory (no paths, no escapes)."""
        if self.recordings_dir is None:
            raise InputError("this service has no recordings directory")
        if "/" in name or "\\" in name or name.startswith("."):
            raise InputError(f"recording {name!r}: give a bare file name from GET /v1/recordings")
        path = self.recordings_dir / name
        if not _plain_file(path) or path.suffix not in AUDIO_SUFFIXES + TRANSCRIPT_SUFFIXES:
            raise InputError(f"recording {name!r}: no such recording")
        return path

    def load_recording(self, path: Path) -> AudioCall | TranscriptCall:
        """The recording's call; its errors name the file, not where the directory is."""
        try:
            return load_call(path, "customer")
        except InputError as exc:
            raise InputError(str(exc).replace(str(path), path.name)) from None

    # -- calls ---------------------------------------------------------------------------------

    async def open_call(
        self,
        meta: CallMeta,
        channels: tuple[Channel, ...] = ("agent", "customer"),
        *,
        kind: type[LiveCall] = LiveCall,
    ) -> LiveCall:
        """A tap's new call, started (``call.started`` published) and ready for ``push``;
        ``kind``: the call's class (a text chat's has no audio pipeline)."""
        call_id = self._admit(meta.call_id or new_call_id(meta.source))
        try:
            if kind.speech:
                await asyncio.to_thread(self.engine.preload, meta.lang)  # loading a model is not call time
            call = kind(self, call_id, meta, channels)
            self.calls[call_id] = call
        finally:
            self._starting.discard(call_id)
        try:
            await call.start()
        except BaseException:
            if self.calls.get(call_id) is call:
                del self.calls[call_id]
            raise
        return call

    def _admit(self, call_id: str) -> str:
        """Room for one more call, under an id no call (tap, recording, starting, or on the bus) has.
        The id is reserved until the caller registers its call (and releases it from
        ``_starting``): two starts of one id in this process never both pass the awaits between
        admission and registration. Across nodes, the bus's claim on ``call.started`` decides."""
        self.check_room(len(self._starting))
        if (
            call_id in self.calls
            or call_id in self._tasks
            or call_id in self._starting
            or any(c.call_id == call_id for c in self.bus.calls())
        ):
            raise CallIdInUseError(call_id)
        self._starting.add(call_id)
        return call_id

    def check_room(self, joining: int = 0) -> None:
        """``TooManyCallsError`` unless one more call fits beside the running ones and ``joining``
        (calls admitted or being set up, not running yet)."""
        if self.draining:
            raise TooManyCallsError(
                "this node is shutting down: it finishes its live calls and takes no new one"
            )
        if self.running + joining >= self.max_calls:
            raise TooManyCallsError(f"this service runs at most {self.max_calls} calls at once")

    def forget(self, call_id: str) -> None:
        self.calls.pop(call_id, None)

    async def start_recording(self, request: StartRequest) -> str:
        """Start playing a recording as a live call; returns once ``call.started`` is published."""
        path = self.recording_path(request.recording)
        call = self.load_recording(path)
        if request.owner and self.running_for(request.owner) >= self.max_calls_per_user:
            raise TooManyUserCallsError(
                f"{request.owner} already runs {self.max_calls_per_user} recorded calls (the most one user may)"
            )
        call_id = self._admit(request.call_id or new_call_id("rec"))
        if isinstance(call, AudioCall):
            try:
                await asyncio.to_thread(self.engine.preload, request.lang)  # model loading is not call time
            except BaseException:
                self._starting.discard(call_id)
                raise
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # played in real time: coached like a tap's call, in its own worker; a fast replay inline
        sink = CoachSink(self.coach, self.bus, knowledge=self.knowledge, background=request.realtime)
        ended = False

        async def emit(event: Event) -> Event:
            nonlocal ended
            stamped = await sink(event)
            if event.type == "call.started" and not started.done():
                started.set_result(None)
            ended = ended or event.type == "call.ended"
            return stamped

        clock: Clock | None = RealtimeClock() if request.realtime else None
        meta = {"agent_id": request.agent_id, "queue": request.queue, "recording": path.name}

        async def run() -> None:
            play_clock: Clock = clock or FastClock()
            sink.start_ticking(play_clock.elapsed)
            try:
                if isinstance(call, AudioCall):
                    await replay_audio(call, call_id=call_id, bus=self.bus, engine=self.engine,
                                       clock=play_clock, lang=request.lang, realtime=request.realtime,
                                       emit=emit, meta=meta)  # fmt: skip
                else:
                    await replay_transcript(call, call_id=call_id, bus=self.bus, clock=play_clock,
                                            lang=request.lang, realtime=request.realtime, emit=emit,
                                            meta=meta)  # fmt: skip
            except asyncio.CancelledError:
                if started.done() and not ended:  # the service is stopping: the call still ends
                    t = play_clock.elapsed()
                    await emit(Event("call.ended", call_id, None, 0.0, t, CallEnded("aborted", t)))
                raise
            except BusUnavailableError:  # the bus gave up on an event: the call cannot go on
                if started.done() and not ended:  # it still ends, once the bus takes it
                    await sink.abandon(call_id)
                    await self._end_when_bus_back(call_id, play_clock.elapsed())
                raise
            finally:
                await sink.stop_ticking()

        task = asyncio.create_task(run(), name=f"call:{call_id}")
        self._tasks[call_id] = task
        self._starting.discard(call_id)  # registered: _admit sees the task from now on
        if request.owner:
            self._owners[call_id] = request.owner
        task.add_done_callback(lambda t: self._finished(call_id, t))
        await self._await_start(started, task)
        return call_id

    async def _await_start(self, started: asyncio.Future[None], task: asyncio.Task[None]) -> None:
        done, _ = await asyncio.wait({started, task}, return_when=asyncio.FIRST_COMPLETED)
        if started not in done:
            task.result()  # the call failed before it started: its error
            raise RuntimeError("the call ended before it started")

    def end_when_bus_back(self, call_id: str, t: float, reason: str, stats: dict[str, float]) -> None:
        """A tap's call whose ``call.ended`` the bus gave up on: published in the background once
        the bus is back (a follower never waits for a call that ended), cancelled at shutdown."""
        task = asyncio.create_task(self._end_when_bus_back(call_id, t, reason, stats), name=f"end-{call_id}")
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    async def _end_when_bus_back(
        self, call_id: str, t: float, reason: str = "error", stats: dict[str, float] | None = None
    ) -> None:
        """Publish the failed call's ``call.ended`` (``bus_unavailable``: 1 in its stats), trying
        again each time the bus gives up, so that no follower waits for a call that died."""
        payload = CallEnded(reason, t, {**(stats or {}), "bus_unavailable": 1.0})
        end = Event("call.ended", call_id, None, 0.0, t, payload)
        while True:
            try:
                await self.bus.publish(end)
                return
            except BusUnavailableError:
                log.warning("call %s ended and its end waits for the bus", call_id)
                await asyncio.sleep(1.0)
            except RuntimeError:  # it has ended already
                return

    def _finished(self, call_id: str, task: asyncio.Task[None]) -> None:
        self._tasks.pop(call_id, None)
        self._owners.pop(call_id, None)
        error = None if task.cancelled() else task.exception()
        if isinstance(
            error, CallIdInUseError
        ):  # refused by the bus (another node has the id): the caller is told
            log.info("call %s not started: %s", call_id, error)
        elif error is not None:
            log.error("call %s failed: %r", call_id, error)

    def running_for(self, owner: str) -> int:
        """Recorded calls that ``owner`` started and that are still running."""
        return sum(1 for call_id, who in self._owners.items() if who == owner and call_id in self._tasks)

    @property
    def running(self) -> int:
        return len(self._tasks) + len(self.calls)

    @property
    def recorded_calls(self) -> list[str]:
        """Ids of the recordings playing as live calls."""
        return list(self._tasks)

    async def whisper(self, call_id: str, t: float, text: str, author: str) -> Event:
        """``t``: the call time the note belongs to (the call's latest event)."""
        return await self._publish(Event("whisper", call_id, "agent", t, t, Whisper(text, author)))

    async def barge(self, call_id: str, t: float, author: str, reason: str) -> Event:
        return await self._publish(Event("barge", call_id, None, t, t, Barge(author, reason)))

    async def _publish(self, event: Event) -> Event:
        try:
            return await self.bus.publish(event)
        except RuntimeError as exc:  # the bus refuses events for an ended call
            raise CallNotLiveError(str(exc)) from None

    async def drain(self, timeout_s: float, *, give_up: Callable[[], bool] = lambda: False) -> int:
        """Shutdown, first part: take no new call and wait up to ``timeout_s`` for the running
        ones to end by themselves (``give_up``: stop waiting now, e.g. a second Ctrl-C). Returns
        how many are still running (``close`` ends them)."""
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        said = -DRAIN_PROGRESS_S
        while self.running and loop.time() < deadline and not give_up():
            if loop.time() - said >= DRAIN_PROGRESS_S:
                said = loop.time()
                log.info("draining: %d live calls, up to %.0f s more", self.running, deadline - said)
            await asyncio.sleep(0.2)
        return self.running

    async def close(self) -> None:
        """Shutdown: every running call ends (``call.ended`` with reason ``aborted``)."""
        for call in list(self.calls.values()):
            with contextlib.suppress(Exception):
                await call.end("aborted")
        tasks = [*self._tasks.values(), *self._ending]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._engine is not None:
            self._engine.close()
