"""Speech a person could understand: neural-voice utterances committed under tests/fixtures/speech
(Kokoro-82M, rendered by its render.py) and a real two-speaker telephone recording.

The recording is ``pyannote/audio/sample/sample.wav`` (30 s, 16 kHz mono, two people on a phone
line) with its speaker turns (``sample.rttm``) and transcript (``sample.stm``), read at test time
out of the ``pyannote.audio`` wheel that ``make install`` downloads into ``.venv/fixtures`` (the
wheel is MIT; the recording's own licence is not stated, so it is not committed here).
"""

from __future__ import annotations

import asyncio
import json
import sys
import zipfile
from pathlib import Path

import pytest

from bench.wer import error_rate, normalize_words
from sidecar.audio import Float32, to_float
from sidecar.callfile import load_audio
from sidecar.engine import SpeechEngine
from sidecar.kernel.bus import InMemoryBus
from sidecar.kernel.clock import FastClock
from sidecar.kernel.events import TranscriptFinal
from sidecar.replay import replay_audio
from sidecar.wavfile import read_wav

pytestmark = pytest.mark.model

SPEECH = Path(__file__).parent / "fixtures" / "speech"
UTTERANCES = json.loads((SPEECH / "utterances.json").read_text())["utterances"]
PYANNOTE_WHEEL = Path(sys.prefix) / "fixtures" / "pyannote_audio-4.0.7-py3-none-any.whl"
_TRADITIONAL_ONLY = set("們這個說為會時後麼還對來過無與請謝問題實現應該經發顛")


def _utterance(name: str) -> tuple[dict[str, str], Float32]:
    item = next(u for u in UTTERANCES if u["name"] == name)
    return item, to_float(read_wav(SPEECH / f"{name}.wav").channels[0])


@pytest.mark.parametrize("name", ["zh-parcel", "en-router", "en-callback"])
def test_a_neural_voice_is_transcribed_exactly(engine: SpeechEngine, name: str) -> None:
    item, audio = _utterance(name)
    hyp = engine.recognizer(item["lang"]).recognize(audio, lang=item["lang"])
    assert hyp.text == item["text"]
    assert hyp.lang == item["lang"]


def test_mandarin_sentences_come_back_close_and_in_simplified_characters(engine: SpeechEngine) -> None:
    recognizer = engine.recognizer("zh")
    assert recognizer.multilingual
    errors = chars = 0
    for item in (u for u in UTTERANCES if u["lang"] == "zh"):
        _, audio = _utterance(item["name"])
        hyp = recognizer.recognize(audio, lang="zh")
        err, n = error_rate("zh", item["text"], hyp.text)
        assert err / n <= 0.25, (item["text"], hyp.text)
        assert not (set(hyp.text) & _TRADITIONAL_ONLY), hyp.text
        errors, chars = errors + err, chars + n
        detected = recognizer.recognize(audio, lang=None)
        assert detected.lang == "zh", detected  # --lang auto hears Mandarin as Mandarin
    assert errors / chars <= 0.15  # measured 4/48 with Whisper base


def _sample() -> tuple[bytes, str, str]:
    if not PYANNOTE_WHEEL.exists():
        pytest.fail(
            f"{PYANNOTE_WHEEL} is missing: make install downloads it "
            "(pip download --no-deps pyannote.audio==4.0.7 -d .venv/fixtures)"
        )
    with zipfile.ZipFile(PYANNOTE_WHEEL) as whl:
        files = [whl.read(f"pyannote/audio/sample/sample.{ext}") for ext in ("wav", "rttm", "stm")]
    return files[0], files[1].decode(), files[2].decode()


def test_a_real_telephone_conversation_streams_through_vad_and_asr(
    engine: SpeechEngine, tmp_path: Path
) -> None:
    wav, rttm, stm = _sample()
    (tmp_path / "sample.wav").write_bytes(wav)
    call = load_audio(tmp_path / "sample.wav")  # mono: both speakers on one channel
    turns = [(float(f[3]), float(f[3]) + float(f[4])) for f in (line.split() for line in rttm.splitlines())]
    reference = " ".join(" ".join(line.split()[5:]) for line in stm.splitlines())

    async def stream() -> list[TranscriptFinal]:
        bus = InMemoryBus(FastClock())
        finals: list[TranscriptFinal] = []

        async def collect() -> None:
            async for event in bus.subscribe("sample", after_seq=0):
                if isinstance(event.payload, TranscriptFinal):
                    finals.append(event.payload)

        task = asyncio.create_task(collect())
        await asyncio.sleep(0)
        await replay_audio(
            call, call_id="sample", bus=bus, engine=engine, clock=FastClock(), lang="en", realtime=False
        )
        await task
        return finals

    finals = asyncio.run(stream())
    words = [w for f in finals for w in f.words]
    assert words
    # segments against the speaker turns: every word lies in (or at the edge of) a turn ...
    inside = [any(a - 0.5 <= (w.t_start + w.t_end) / 2 <= b + 0.5 for a, b in turns) for w in words]
    assert sum(inside) / len(inside) >= 0.95
    # ... and the finals cover the turns: speech time inside some final's span
    spans = [(f.words[0].t_start, f.words[-1].t_end) for f in finals if f.words]
    step, covered, total = 0.05, 0, 0
    for a, b in turns:
        t = a
        while t < b:
            total += 1
            covered += any(s - 0.3 <= t <= e + 0.3 for s, e in spans)
            t += step
    assert covered / total >= 0.85, covered / total
    # a plausible transcript against the recording's own reference
    hyp = " ".join(f.text for f in finals)
    err, n = error_rate("en", reference, hyp)
    assert err / n <= 0.35, (err / n, hyp)
    said = set(normalize_words(hyp))
    assert {"jersey", "chicago", "texas"} <= said, hyp
