"""The VAD state machine on probability sequences (no model)."""

import pytest

from sidecar.vad import FRAME_S, SpeechEnd, SpeechSegmenter, SpeechStart, VadConfig

pytestmark = pytest.mark.unit
CFG = VadConfig(
    threshold=0.5, neg_threshold=0.35, min_silence_s=0.3, min_speech_s=0.25, start_pad_s=0.1, end_pad_s=0.1
)


def run(probs: list[float], cfg: VadConfig = CFG) -> list[SpeechStart | SpeechEnd]:
    seg = SpeechSegmenter(cfg)
    out: list[SpeechStart | SpeechEnd] = [t for p in probs if (t := seg.feed(p)) is not None]
    if (end := seg.flush()) is not None:
        out.append(end)
    return out


def test_silence_gives_nothing():
    assert run([0.01] * 100) == []


def test_one_segment_with_padding_and_hangover():
    probs = [0.0] * 10 + [0.9] * 30 + [0.0] * 20
    start, end = run(probs)
    assert isinstance(start, SpeechStart)
    assert isinstance(end, SpeechEnd)
    assert start.t == pytest.approx(10 * FRAME_S - 0.1)
    assert end.t_end == pytest.approx(40 * FRAME_S + 0.1)
    assert end.keep


def test_end_is_reported_after_min_silence():
    seg = SpeechSegmenter(CFG)
    for p in [0.9] * 20:
        seg.feed(p)
    frames_to_end = 0
    while seg.feed(0.0) is None:
        frames_to_end += 1
    assert (frames_to_end + 1) * FRAME_S == pytest.approx(0.3, abs=FRAME_S)


def test_short_pause_does_not_split():
    probs = [0.9] * 20 + [0.1] * 5 + [0.9] * 20 + [0.0] * 20  # 160 ms dip
    result = run(probs)
    assert len(result) == 2


def test_between_thresholds_keeps_speech_going():
    probs = [0.9] * 10 + [0.4] * 30 + [0.0] * 20
    _start, end = run(probs)
    assert isinstance(end, SpeechEnd)
    assert end.t_end == pytest.approx(40 * FRAME_S + 0.1)


def test_a_click_is_marked_not_kept():
    _start, end = run([0.0] * 5 + [0.9] * 3 + [0.0] * 20)
    assert isinstance(end, SpeechEnd)
    assert not end.keep


def test_two_segments():
    probs = ([0.9] * 20 + [0.0] * 20) * 2
    kinds = [type(t).__name__ for t in run(probs)]
    assert kinds == ["SpeechStart", "SpeechEnd", "SpeechStart", "SpeechEnd"]


def test_flush_closes_open_speech():
    result = run([0.9] * 20)
    assert isinstance(result[-1], SpeechEnd)
    assert result[-1].t_end == pytest.approx(20 * FRAME_S)
