"""Replaying a call file through the live code paths, paced by the injected clock.

Audio goes through ``CallPipeline`` exactly as a tap's frames would (20 ms frames per channel,
each pushed when its last sample would have arrived). A transcript goes straight to
``transcript.final`` events at each turn's end: text-chat coaching, and evaluating the coach
without ASR.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

from sidecar.call import CallPipeline
from sidecar.callfile import AudioCall, TranscriptCall
from sidecar.engine import SpeechEngine
from sidecar.frames import AudioFrame
from sidecar.kernel.bus import Bus
from sidecar.kernel.clock import Clock
from sidecar.kernel.events import CallEnded, CallStarted, Event, TranscriptFinal, Word

Emit = Callable[[Event], Awaitable[Event]]

FRAME_S = 0.02
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def new_call_id(prefix: str = "call") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def replay_audio(
    call: AudioCall,
    *,
    call_id: str,
    bus: Bus,
    engine: SpeechEngine,
    clock: Clock,
    lang: str,
    realtime: bool,
    emit: Emit | None = None,
    meta: dict[str, str] | None = None,
) -> CallPipeline:
    pipeline = CallPipeline(
        call_id,
        bus=bus,
        engine=engine,
        lang=lang,
        channels=tuple(call.channels),
        overflow="block",
        catch_up=realtime,
        emit=emit,
    )
    await pipeline.start(
        str(call.path),
        realtime=realtime,
        meta={**(meta or {}), "encoding": call.source_encoding, "sample_rate": str(call.source_rate)},
    )
    step = round(FRAME_S * 16_000)
    total = max(pcm.size for pcm in call.channels.values())
    try:
        for start in range(0, total, step):
            t0 = start / 16_000
            await clock.sleep_until(t0 + FRAME_S)
            for channel, pcm in call.channels.items():
                chunk = pcm[start : start + step]
                if chunk.size:
                    await pipeline.push(AudioFrame(call_id, channel, chunk, t0))
    except BaseException:
        await pipeline.abort()
        raise
    await pipeline.end()
    return pipeline


def transcript_lang(text: str, requested: str) -> str:
    """A turn's language: Chinese script is Chinese whatever was requested; otherwise the request
    (``auto`` meaning English for Latin script)."""
    chars = sum(1 for ch in text if not ch.isspace())
    if chars and len(_CJK.findall(text)) / chars >= 0.3:
        return "zh"
    return "en" if requested in ("auto", "zh") else requested


def estimated_words(text: str, lang: str, start: float, end: float) -> tuple[Word, ...]:
    """Spread a turn's words evenly over its time span (no ASR timing is available)."""
    tokens = [ch for ch in text if not ch.isspace()] if lang == "zh" else text.split()
    if not tokens:
        return ()
    step = (end - start) / len(tokens)
    return tuple(Word(tok, start + i * step, start + (i + 1) * step) for i, tok in enumerate(tokens))


async def replay_transcript(
    call: TranscriptCall,
    *,
    call_id: str,
    bus: Bus,
    clock: Clock,
    lang: str,
    realtime: bool,
    emit: Emit | None = None,
    meta: dict[str, str] | None = None,
) -> None:
    publish = emit or bus.publish
    meta = {**(meta or {}), "mode": "transcript"}
    await publish(
        Event("call.started", call_id, None, 0.0, 0.0,
              CallStarted(str(call.path), lang, ("agent", "customer"), realtime, meta))
    )  # fmt: skip
    segments = {"agent": 0, "customer": 0}
    for turn in call.turns:
        await clock.sleep_until(turn.end_s)
        segments[turn.channel] += 1
        turn_lang = transcript_lang(turn.text, lang)
        words = estimated_words(turn.text, turn_lang, turn.start_s, turn.end_s)
        payload = TranscriptFinal(
            turn.text.strip(), words, turn_lang, segments[turn.channel], None, "estimated"
        )
        await publish(Event("transcript.final", call_id, turn.channel, turn.start_s, turn.end_s, payload))
    await publish(
        Event("call.ended", call_id, None, 0.0, call.duration_s,
              CallEnded("completed", call.duration_s, {"turns": float(len(call.turns))}))
    )  # fmt: skip
