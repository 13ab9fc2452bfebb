"""The bundled demo calls (samples/demo) and the loop ``assist serve --demo`` plays them with."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import pytest

from sidecar.calls.registry import StartRequest
from sidecar.service.serve import (
    DEMO_DIR,
    DemoCall,
    add_serve_parser,
    demo_calls,
    run_demo,
    service_config,
)
from sidecar.wavfile import read_wav

pytestmark = pytest.mark.unit
MAX_TOTAL_BYTES = 6 * 1024 * 1024


def _manifest() -> list[dict[str, object]]:
    calls: list[dict[str, object]] = json.loads((DEMO_DIR / "calls.json").read_text(encoding="utf-8"))[
        "calls"
    ]
    return calls


def test_bundled_calls_are_small_stereo_mulaw_at_8khz() -> None:
    calls = _manifest()
    assert len(calls) >= 3
    total = 0
    for call in calls:
        path = DEMO_DIR / f"{call['id']}.wav"
        audio = read_wav(path)
        assert (audio.sample_rate, audio.encoding, len(audio.channels)) == (8000, "ulaw", 2), path.name
        assert 55 <= audio.duration_s <= 130, f"{path.name}: {audio.duration_s:.0f} s"
        for channel in audio.channels:
            assert int(abs(channel.astype("int32")).max()) > 2000, f"{path.name}: a silent channel"
        total += path.stat().st_size
    assert total <= MAX_TOTAL_BYTES


def test_bundled_calls_differ_in_agent_queue_and_language() -> None:
    calls = demo_calls(DEMO_DIR / "calls.json", "demo-agent")
    assert len({c.agent_id for c in calls}) == len(calls)
    assert len({c.queue for c in calls}) == len(calls)
    assert {c.lang for c in calls} == {"en", "zh"}
    assert "demo-agent" in {c.agent_id for c in calls}  # the agent widget's own call


def test_a_file_that_is_not_a_demo_call_set_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "calls.json").write_text('{"calls": [{"lang": "en"}]}', encoding="utf-8")
    with pytest.raises(ValueError, match="not a demo call set"):
        demo_calls(tmp_path / "calls.json", "demo-agent")


class _Floor:
    """A fake of the service's call starts and ends (named as such): records each start request
    and when it came on its call's own clock (the sum of the loop's sleeps), and ends every call
    at once, so the loop runs without playing audio."""

    def __init__(self, starts: int, fail: str = "") -> None:
        self.clocks: dict[asyncio.Task[object] | None, float] = {}
        self.started: list[tuple[float, StartRequest]] = []
        self.fail = fail
        self.starts = starts
        self.enough = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        task = asyncio.current_task()
        self.clocks[task] = self.clocks.get(task, 0.0) + seconds
        await asyncio.sleep(0)

    async def start(self, request: StartRequest) -> str:
        if request.recording == self.fail:
            raise RuntimeError("no such model")
        self.started.append((self.clocks.get(asyncio.current_task(), 0.0), request))
        if len(self.started) >= self.starts:
            self.enough.set()
        return f"rec-{len(self.started)}"

    async def ended(self, call_id: str) -> None:
        await asyncio.sleep(0)


async def _play(floor: _Floor, calls: list[DemoCall]) -> None:
    demo = run_demo(calls, floor.start, floor.ended, stagger_s=15, pause_s=10, sleep=floor.sleep)
    task = asyncio.create_task(demo)
    await asyncio.wait_for(floor.enough.wait(), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_demo_starts_each_bundled_call_live_with_its_agent_queue_and_language(
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls = demo_calls(DEMO_DIR / "calls.json", "demo-agent")
    floor = _Floor(starts=3 * len(calls))
    asyncio.run(_play(floor, calls))
    first: dict[str, tuple[float, StartRequest]] = {}
    for at, request in floor.started:
        first.setdefault(request.recording, (at, request))
    for index, call in enumerate(calls):
        at, request = first[call.recording]
        assert at == pytest.approx(15 * index)  # staggered
        assert (request.lang, request.agent_id, request.queue, request.realtime) == (
            call.lang, call.agent_id, call.queue, True,
        )  # fmt: skip
    replays = [at for at, r in floor.started if r.recording == calls[0].recording]
    assert replays[:2] == [0.0, 10.0]  # again after the pause
    printed = capsys.readouterr().err
    assert all(f"is live: {c.recording}" in printed for c in calls)


def test_a_demo_call_that_cannot_start_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    calls = [DemoCall("a.wav", "en", "x", "q1"), DemoCall("b.wav", "zh", "y", "q2")]
    floor = _Floor(starts=3, fail="a.wav")
    asyncio.run(_play(floor, calls))
    assert {r.recording for _, r in floor.started} == {"b.wav"}
    assert "demo call a.wav could not start: no such model" in caplog.text


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers())
    return parser.parse_args(["serve", *argv])


def test_demo_serves_the_bundled_calls_and_demo_call_keeps_the_recordings_directory(tmp_path: Path) -> None:
    assert service_config(_args("--demo")).recordings_dir == DEMO_DIR
    assert service_config(_args("--demo", "--demo-call", "sample-call.wav")).recordings_dir == DEMO_DIR.parent
    assert service_config(_args("--demo", "--recordings", str(tmp_path))).recordings_dir == tmp_path


class _LongCalls(_Floor):
    """The fake floor, with calls that stay live until the test ends one."""

    def __init__(self, starts: int) -> None:
        super().__init__(starts)
        self.live: dict[str, asyncio.Event] = {}

    async def ended(self, call_id: str) -> None:
        self.live[call_id] = asyncio.Event()
        await self.live[call_id].wait()


def test_no_more_demo_calls_are_live_than_the_cores_hold() -> None:
    calls = [DemoCall(f"{n}.wav", "en", f"agent-{n}", f"q{n}") for n in range(4)]
    floor = _LongCalls(starts=3)

    async def scenario() -> None:
        demo = asyncio.create_task(run_demo(calls, floor.start, floor.ended, max_live=2, sleep=floor.sleep))
        while len(floor.live) < 2:  # noqa: ASYNC110 (the fake floor has no event for this)
            await asyncio.sleep(0)
        for _ in range(50):  # the others are due but wait for a slot
            await asyncio.sleep(0)
        assert [r.recording for _, r in floor.started] == ["0.wav", "1.wav"]
        floor.live["rec-1"].set()  # one ends: the next due call takes its place
        await asyncio.wait_for(floor.enough.wait(), timeout=30)
        assert [r.recording for _, r in floor.started] == ["0.wav", "1.wav", "2.wav"]
        demo.cancel()
        with pytest.raises(asyncio.CancelledError):
            await demo

    asyncio.run(scenario())
