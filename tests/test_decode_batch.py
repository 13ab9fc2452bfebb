"""Speech recognition batched across calls gives every request the transcript it gets alone.

Real models (tiny.en, multilingual base), real speech (the Kokoro fixtures and espeak-ng),
requests of different lengths, with and without a forced prefix, in one batch; then the same
through the scheduler and a whole call pipeline with batching on and off.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from sidecar.asr import DecodeRequest, Hypothesis, Recognizer
from sidecar.audio import Float32, to_float
from sidecar.callfile import AudioCall
from sidecar.engine import SpeechEngine
from sidecar.kernel.events import Event, TranscriptFinal
from sidecar.kernel.settings import AsrSettings, Settings
from sidecar.wavfile import read_wav
from tests.conftest import dialogue, espeak, silence
from tests.test_pipeline import _replay

pytestmark = [pytest.mark.model, pytest.mark.espeak]

SPEECH = Path(__file__).parent / "fixtures" / "speech"
UTTERANCES = json.loads((SPEECH / "utterances.json").read_text())["utterances"]


def _fixture(name: str) -> Float32:
    return to_float(read_wav(SPEECH / f"{name}.wav").channels[0])


def _alone(recognizer: Recognizer, r: DecodeRequest) -> Hypothesis:
    return recognizer.recognize(r.audio, lang=r.lang, prompt=r.prompt, prefix=r.prefix)


def _same(a: Hypothesis, b: Hypothesis) -> None:
    assert b.text == a.text
    assert b.lang == a.lang
    assert [w.text for w in b.words] == [w.text for w in a.words]
    for x, y in zip(a.words, b.words, strict=True):
        assert y.t_start == pytest.approx(x.t_start, abs=0.02)
        assert y.t_end == pytest.approx(x.t_end, abs=0.02)


def test_an_english_batch_gives_each_request_its_own_transcript(engine: SpeechEngine):
    recognizer = engine.recognizer("en")
    sentences = [
        "Thank you for calling. How can I help you today?",
        "I would like to cancel my order, please.",
        "Let me check that for you.",
    ]
    audio = [to_float(espeak(s)) for s in sentences] + [_fixture("en-router"), _fixture("en-callback")]
    requests = [DecodeRequest(a, "en") for a in audio]
    requests.append(DecodeRequest(audio[0], "en", prefix="Thank you for calling."))  # a forced prefix
    requests.append(DecodeRequest(to_float(silence(1.5)), "en"))  # nothing said
    requests.append(DecodeRequest(np.concatenate([audio[1], audio[2]]), "en", prompt="An order question."))
    batch = recognizer.recognize_batch(requests)  # type: ignore[attr-defined]
    assert len(batch) == len(requests)
    for request, got in zip(requests, batch, strict=True):
        _same(_alone(recognizer, request), got)
    assert batch[1].text == sentences[1]
    assert batch[6].words == ()


def test_a_mandarin_batch_gives_each_request_its_own_transcript(engine: SpeechEngine):
    recognizer = engine.recognizer("zh")
    names = [u["name"] for u in UTTERANCES if u["lang"] == "zh"]
    requests = [DecodeRequest(_fixture(n), "zh") for n in names]
    requests.append(DecodeRequest(_fixture(names[0]), None))  # the language detected: decoded alone
    batch = recognizer.recognize_batch(requests)  # type: ignore[attr-defined]
    for request, got in zip(requests, batch, strict=True):
        _same(_alone(recognizer, request), got)
    assert batch[-1].lang == "zh"


async def test_decodes_waiting_on_a_busy_worker_run_as_one_batch():
    engine = SpeechEngine(Settings(asr=AsrSettings(workers=1, batch=8)))
    try:
        decode = engine.decoder("en")
        sentences = [
            "Good morning.",
            "Your parcel is on its way.",
            "Can I have your name, please?",
            "Thanks.",
        ]
        requests = [DecodeRequest(to_float(espeak(s)), "en") for s in sentences]
        got = await asyncio.gather(*(decode(r) for r in requests))
        scheduler = engine._schedulers[engine.model_key("en")]
        # the first ran alone on the one worker; the other three waited and ran together
        assert scheduler.stats.largest >= 2
        assert scheduler.stats.items == len(requests)
        recognizer = engine.recognizer("en")
        for request, hyp in zip(requests, got, strict=True):
            _same(_alone(recognizer, request), hyp)
    finally:
        engine.close()


async def test_a_call_with_batching_on_has_the_finals_it_has_with_batching_off(
    engine: SpeechEngine, tmp_path
):
    agent, customer, _ = dialogue(
        [
            ("agent", "Thank you for calling, how can I help you today?"),
            ("customer", "My internet has been down since this morning."),
            ("agent", "I am sorry to hear that, let me run a line test."),
        ],
        gap_s=0.5,
    )
    call = AudioCall(tmp_path / "c.wav", {"agent": agent, "customer": customer}, 16000, "pcm16")
    batched = SpeechEngine(Settings(asr=AsrSettings(workers=1, batch=4)))
    try:

        def finals(events: list[Event]) -> list[tuple[str | None, str]]:
            return [(e.channel, e.payload.text) for e in events if isinstance(e.payload, TranscriptFinal)]

        off = finals(await _replay(engine, call, realtime=False))
        on = finals(await _replay(batched, call, realtime=False))
    finally:
        batched.close()
    assert on == off
    assert len(off) == 3
