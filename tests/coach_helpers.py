"""A scripted call replayed through the coach sink and the bus, as ``assist replay`` wires it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from coach.engine import Coach
from coach.sink import CoachSink
from sidecar.callfile import load_call
from sidecar.kernel.bus import InMemoryBus
from sidecar.kernel.clock import FastClock, RealtimeClock
from sidecar.kernel.events import Event
from sidecar.replay import replay_transcript

Turn = tuple[str, str, float, float]  # channel, text, start_s, end_s


def jsonl(path: Path, turns: list[Turn]) -> Path:
    """Write ``turns`` as a call file (one JSON object a line)."""
    path.write_text(
        "".join(
            json.dumps({"channel": c, "text": t, "start_s": s, "end_s": e}) + "\n" for c, t, s, e in turns
        ),
        encoding="utf-8",
    )
    return path


async def replay_coached(
    coach: Coach,
    path: Path,
    *,
    realtime: bool = False,
    background: bool = False,
    timeout_s: float | None = None,
) -> list[Event]:
    """Every event of the call in ``path`` (call id ``c1``, English), coached by ``coach``'s sink
    (``background``: in the call's own worker), as the bus delivers them."""
    clock = RealtimeClock() if realtime else FastClock()
    bus = InMemoryBus(clock)
    events: list[Event] = []

    async def collect() -> None:
        async for ev in bus.subscribe("c1", after_seq=0):
            events.append(ev)

    task = asyncio.create_task(collect())
    await asyncio.sleep(0)
    call = load_call(path, "customer")
    await replay_transcript(call, call_id="c1", bus=bus, clock=clock, lang="en", realtime=realtime,  # type: ignore[arg-type]
                            emit=CoachSink(coach, bus, background=background))  # fmt: skip
    await asyncio.wait_for(task, timeout_s)
    return events
