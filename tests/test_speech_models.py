"""Real models from their PyPI packages: tiny.en, silero-vad (ONNX), prosody on real speech."""

import numpy as np
import pytest

from sidecar.audio import to_float
from sidecar.engine import SpeechEngine
from sidecar.prosody import measure_prosody
from sidecar.vad import FRAME_S, FRAME_SAMPLES, SpeechEnd, SpeechSegmenter, SpeechStart
from tests.conftest import espeak, silence

pytestmark = [pytest.mark.model, pytest.mark.espeak]


@pytest.mark.parametrize(
    "sentence",
    ["Thank you for calling. How can I help you today?", "I would like to cancel my order, please."],
)
def test_tiny_en_transcribes_an_espeak_utterance_exactly(engine: SpeechEngine, sentence: str):
    hyp = engine.recognizer("en").recognize(to_float(espeak(sentence)), lang="en")
    assert hyp.text == sentence
    assert hyp.lang == "en"
    starts = [w.t_start for w in hyp.words]
    assert starts == sorted(starts)
    assert hyp.window_frames < 3000  # the short decode window was used


def test_silence_decodes_to_nothing(engine: SpeechEngine):
    hyp = engine.recognizer("en").recognize(np.zeros(16000 * 2, dtype=np.float32), lang="en")
    assert hyp.words == ()


def _segments(engine: SpeechEngine, pcm: np.ndarray) -> list[tuple[float, float]]:
    stream, seg = engine.vad.stream(), SpeechSegmenter()
    spans, start = [], None
    for i in range(0, pcm.size - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        t = seg.feed(stream.probability(to_float(pcm[i : i + FRAME_SAMPLES])))
        if isinstance(t, SpeechStart):
            start = t.t
        elif isinstance(t, SpeechEnd) and t.keep:
            spans.append((start or 0.0, t.t_end))
    if (end := seg.flush()) is not None and end.keep:
        spans.append((start or 0.0, end.t_end))
    return spans


def test_vad_finds_speech_in_generated_audio(engine: SpeechEngine):
    one, two = espeak("Hello, I need help with my bill."), espeak("Sure, let me check that for you.")
    pcm = np.concatenate([silence(1.0), one, silence(1.5), two, silence(1.0)])
    spans = _segments(engine, pcm)
    truth = [(1.0, 1.0 + one.size / 16000), (2.5 + one.size / 16000, 2.5 + (one.size + two.size) / 16000)]
    assert len(spans) == len(truth)
    for (s, e), (ts, te) in zip(spans, truth, strict=True):
        assert abs(s - ts) < 0.4 + FRAME_S
        assert abs(e - te) < 0.4 + FRAME_S


@pytest.mark.parametrize(
    "signal",
    [
        np.zeros(16000 * 3, dtype=np.int16),
        (np.random.default_rng(0).normal(0, 300, 16000 * 3)).astype(np.int16),  # quiet hiss
        (np.sin(2 * np.pi * 1000 * np.arange(48000) / 16000) * 3000).astype(np.int16),  # a steady tone
    ],
    ids=["silence", "noise", "tone"],
)
def test_vad_stays_quiet_without_speech(engine: SpeechEngine, signal: np.ndarray):
    assert _segments(engine, signal) == []


def test_prosody_of_real_speech_is_plausible_and_tracks_loudness():
    speech = espeak("I have been waiting on hold for forty minutes.")
    normal = measure_prosody(to_float(speech))
    loud = measure_prosody(to_float((speech.astype(np.int32) * 4).clip(-32768, 32767).astype(np.int16)))
    assert 60 < normal.pitch_hz < 300
    assert 2 < normal.syllable_rate < 9
    assert loud.loudness_db > normal.loudness_db + 10
    assert normal.duration_s == pytest.approx(speech.size / 16000)


@pytest.mark.unit
def test_prosody_pitch_of_a_synthetic_voice():
    t = np.arange(16000) / 16000
    harmonics = np.array([np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 6)])
    voiced = (harmonics.sum(axis=0) * 0.2).astype(np.float32)
    p = measure_prosody(voiced)
    assert p.pitch_hz == pytest.approx(150, rel=0.03)
    assert p.voiced_ratio > 0.9
    assert measure_prosody(np.zeros(100, dtype=np.float32)).pitch_hz == 0.0
