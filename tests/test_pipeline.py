"""The call pipeline: same results at any pace, the live drop policy, errors surfaced."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from sidecar.asr import DecodeRequest, Hypothesis, Recognizer
from sidecar.audio import Float32, Pcm16
from sidecar.call import CallPipeline
from sidecar.callfile import AudioCall
from sidecar.engine import SpeechEngine
from sidecar.frames import AudioFrame
from sidecar.kernel.bus import InMemoryBus
from sidecar.kernel.clock import FastClock, RealtimeClock
from sidecar.kernel.events import CallEnded, Event, TranscriptFinal, Word
from sidecar.kernel.settings import AsrSettings, Settings, StreamSettings
from sidecar.replay import replay_audio
from tests.conftest import dialogue, espeak, silence


async def _collect(bus: InMemoryBus, call_id: str) -> list[Event]:
    return [e async for e in bus.subscribe(call_id, after_seq=0)]


async def _replay(engine: SpeechEngine, call: AudioCall, realtime: bool) -> list[Event]:
    clock = RealtimeClock() if realtime else FastClock()
    bus = InMemoryBus(clock)
    collector = asyncio.create_task(_collect(bus, "c"))
    await asyncio.sleep(0)
    await replay_audio(call, call_id="c", bus=bus, engine=engine, clock=clock, lang="en", realtime=realtime)
    return await collector


@pytest.mark.model
@pytest.mark.espeak
async def test_fast_and_realtime_replay_run_the_same_code_to_the_same_finals(engine, tmp_path):
    agent, customer, _ = dialogue(
        [("agent", "How can I help you today?"), ("customer", "I would like to cancel my order, please.")],
        gap_s=0.6,
    )
    call = AudioCall(tmp_path / "c.wav", {"agent": agent, "customer": customer}, 16000, "pcm16")
    fast = await _replay(engine, call, realtime=False)
    started = asyncio.get_running_loop().time()
    live = await _replay(engine, call, realtime=True)
    assert asyncio.get_running_loop().time() - started >= call.duration_s - 0.1  # paced by the clock

    def finals(events: list[Event]) -> list[tuple[str | None, str]]:
        return [(e.channel, e.payload.text) for e in events if isinstance(e.payload, TranscriptFinal)]

    assert finals(fast) == finals(live)
    assert finals(fast) == [
        ("agent", "How can I help you today?"),
        ("customer", "I would like to cancel my order, please."),
    ]


class BlockedRecognizer:
    """A fake recogniser, slower than real time on purpose: the fault a live overflow needs."""

    multilingual = False

    def __init__(self) -> None:
        self.release = threading.Event()

    def recognize(
        self, audio: Float32, *, lang: str | None, prompt: str | None = None, prefix: str | None = None
    ) -> Hypothesis:
        self.release.wait(timeout=30)
        return Hypothesis((), "", "en", 0.0, 0.0, 1000, 0.0)


class FailingRecognizer:
    """A fake recogniser that fails: how a broken model surfaces."""

    multilingual = False

    def recognize(
        self, audio: Float32, *, lang: str | None, prompt: str | None = None, prefix: str | None = None
    ) -> Hypothesis:
        raise RuntimeError("decoder exploded")


class EngineWith(SpeechEngine):
    def __init__(self, recognizer: Recognizer, queue_s: float = 10.0) -> None:
        super().__init__(Settings(stream=StreamSettings(queue_s=queue_s)))
        self._fake = recognizer

    def recognizer(self, lang: str) -> Recognizer:
        return self._fake


@pytest.mark.model
@pytest.mark.espeak
async def test_live_overflow_drops_the_oldest_audio_and_counts_it():
    blocked = BlockedRecognizer()
    engine = EngineWith(blocked, queue_s=1.0)  # 50 frames of 20 ms
    bus = InMemoryBus(FastClock())
    pipeline = CallPipeline("live", bus=bus, engine=engine, channels=("customer",), overflow="drop_oldest")
    await pipeline.start("test", realtime=True)
    speech = np.concatenate(
        [espeak("I have been waiting for a very long time to talk to someone."), silence(0.5)]
    )
    for i in range(0, speech.size - 320, 320):  # pushed without pause: the decoder cannot keep up
        await pipeline.push(AudioFrame("live", "customer", speech[i : i + 320], i / 16000))
        await asyncio.sleep(0)
    assert pipeline.frames_dropped > 0
    blocked.release.set()
    await pipeline.end()
    ended = [e async for e in bus.subscribe("live", after_seq=0)][-1].payload
    assert isinstance(ended, CallEnded)
    assert ended.stats["frames_dropped"] == pipeline.frames_dropped
    engine.close()


@pytest.mark.model
@pytest.mark.espeak
async def test_a_failing_channel_ends_the_call_and_raises():
    engine = EngineWith(FailingRecognizer())
    bus = InMemoryBus(FastClock())
    pipeline = CallPipeline("bad", bus=bus, engine=engine, channels=("agent",), overflow="block")
    await pipeline.start("test", realtime=False)
    speech = np.concatenate([espeak("Hello there, how are you doing today?"), silence(1.0)])

    async def feed_and_end() -> None:
        for i in range(0, speech.size, 320):
            await pipeline.push(AudioFrame("bad", "agent", speech[i : i + 320], i / 16000))
        await pipeline.end()

    with pytest.raises(RuntimeError, match="decoder exploded"):
        await feed_and_end()
    await pipeline.end()  # idempotent once ended
    events = [e async for e in bus.subscribe("bad", after_seq=0)]
    assert events[-1].type == "call.ended"
    assert isinstance(events[-1].payload, CallEnded)
    assert events[-1].payload.reason in ("error", "aborted")
    engine.close()


async def test_decodes_waiting_for_a_worker_are_counted():
    blocked = BlockedRecognizer()
    engine = SpeechEngine(Settings(asr=AsrSettings(workers=1)))
    engine._recognizers["asr-en"] = blocked  # a fake recogniser held until released
    decode = engine.decoder("en")
    asks = [
        asyncio.ensure_future(decode(DecodeRequest(np.zeros(16_000, np.float32), "en"))) for _ in range(3)
    ]
    await asyncio.sleep(0.2)
    # one on the worker, two waiting for it; every worker busy
    assert (engine.decodes_waiting, engine.saturated) == (2, True)
    blocked.release.set()
    await asyncio.gather(*asks)
    assert (engine.decodes_waiting, engine.saturated) == (0, False)
    engine.close()


class SaturatedEngine(SpeechEngine):
    """The real engine, reporting every worker always busy: the fault of a saturated recogniser
    (other calls' decodes), which one test call cannot cause by itself."""

    @property
    def saturated(self) -> bool:
        return True


async def play_customer(
    engine: SpeechEngine, speech: Pcm16, *, lang: str = "en", realtime: bool = True, pace_s: float = 0.0
) -> tuple[list[Event], dict[str, float]]:
    """``speech`` on the customer channel of a one-channel call, 20 ms frames ``pace_s`` apart
    (0: as fast as they are taken); the call's events and its stats. The engine is closed after."""
    bus = InMemoryBus(FastClock())
    pipeline = CallPipeline("c", bus=bus, engine=engine, lang=lang, channels=("customer",), overflow="block")
    await pipeline.start("test", realtime=realtime)
    for i in range(0, speech.size - 320, 320):
        await pipeline.push(AudioFrame("c", "customer", speech[i : i + 320], i / 16000))
        if pace_s:
            await asyncio.sleep(pace_s)
    await pipeline.end()
    engine.close()
    return [e async for e in bus.subscribe("c", after_seq=0)], pipeline.stats()


@pytest.mark.model
@pytest.mark.espeak
async def test_a_live_call_skips_partials_while_the_recogniser_is_saturated_but_never_finals():
    speech = np.concatenate(
        [espeak("I have been waiting for a very long time to talk to someone."), silence(1.0)]
    )

    events, stats = await play_customer(SaturatedEngine(), speech, pace_s=0.002)
    assert stats["customer_partials"] == 0
    assert stats["customer_skipped_partials"] > 0
    finals = [e.payload.text for e in events if isinstance(e.payload, TranscriptFinal)]
    assert finals == ["I have been waiting for a very long time to talk to someone."]
    _, quiet = await play_customer(SpeechEngine(), speech, pace_s=0.002)
    assert quiet["customer_partials"] > 0  # the same call, nothing waiting: partials as usual


class CountingRecognizer:
    """A fake recogniser that hears nothing at once and counts its passes (the cadence, not the words)."""

    multilingual = True

    def __init__(self) -> None:
        self.passes = 0

    def recognize(
        self, audio: Float32, *, lang: str | None, prompt: str | None = None, prefix: str | None = None
    ) -> Hypothesis:
        self.passes += 1
        return Hypothesis((), "", lang or "en", 0.0, 0.0, 1000, 0.0)


@pytest.mark.model
@pytest.mark.espeak
async def test_mandarin_partials_come_half_as_often_as_english_ones() -> None:
    """The multilingual model's passes cost about three of tiny.en's: a Mandarin call decodes its
    open segment every 2 s of speech (``ASSIST_PARTIAL_INTERVAL_ZH_S``), an English one every 1 s."""
    speech = np.concatenate(
        [
            espeak(
                "I have been waiting for a very long time to talk to someone about my bill and nobody calls me back"
            ),
            silence(1.0),
        ]
    )

    async def passes(lang: str) -> int:
        recognizer = CountingRecognizer()
        # twice real time: nothing waits (no partial is skipped)
        _, stats = await play_customer(EngineWith(recognizer), speech, lang=lang, pace_s=0.01)
        assert stats["customer_skipped_partials"] == 0
        return recognizer.passes

    english, mandarin = await passes("en"), await passes("zh")
    assert english >= 6  # about 6 s of speech: a partial at 0.6 s, then every second, and the final
    assert 2 <= mandarin <= english - 2


class PrefixRecorder:
    """A fake recogniser that hears one word spanning whatever it is given, and records the
    prefix (the context's words) each pass was asked to continue."""

    multilingual = True

    def __init__(self) -> None:
        self.prefixes: list[str | None] = []

    def recognize(
        self, audio: Float32, *, lang: str | None, prompt: str | None = None, prefix: str | None = None
    ) -> Hypothesis:
        self.prefixes.append(prefix)
        end = audio.size / 16000
        return Hypothesis(
            (Word("word", max(0.0, end - 0.5), end),), "word", lang or "en", 0.0, 0.0, 1000, 0.0
        )


@pytest.mark.model
@pytest.mark.espeak
async def test_english_finals_are_decoded_after_their_context_and_mandarin_ones_alone() -> None:
    """``ASSIST_CONTEXT_S`` (8 s) in English; ``ASSIST_CONTEXT_ZH_S`` (0) in Mandarin, where the
    context cost more delay than the characters it saved."""
    turn = np.concatenate([espeak("I would like to ask about my bill please"), silence(1.0)])
    speech = np.concatenate([turn, turn])

    async def prefixes(lang: str) -> list[str | None]:
        recognizer = PrefixRecorder()
        await play_customer(EngineWith(recognizer), speech, lang=lang, realtime=False)
        return recognizer.prefixes

    english, mandarin = await prefixes("en"), await prefixes("zh")
    assert "word" in english  # the second turn's final continues the first's words
    assert "word" not in mandarin
    assert None in english  # the first turn: nothing before it
    assert mandarin.count(None) == len(mandarin)
