"""Emotion (words, voice against the caller's baseline, smoothing) and the QA scorecard."""

from __future__ import annotations

import pytest

from coach.emotion import EmotionCurve, label_for, word_score
from coach.scorecard import AlertRecord, CallSummary, scorecard
from sidecar.kernel.events import Prosody

pytestmark = pytest.mark.unit


def voice(loudness: float = -30.0, pitch: float = 110.0, rate: float = 4.0) -> Prosody:
    return Prosody(2.0, loudness, loudness + 6, pitch, 3.0, 0.6, rate, 2.5)


@pytest.mark.parametrize(
    ("text", "lang", "sign"),
    [
        ("Thanks so much, that's brilliant, you've been really helpful.", "en", 1),
        ("This is ridiculous, it's the third time I'm calling and nobody tells me anything.", "en", -1),
        ("My card was stolen this morning.", "en", -1),
        ("太好了，谢谢你。", "zh", 1),
        ("你们这服务太差了，到底管不管？", "zh", -1),
    ],
)
def test_word_valence(text: str, lang: str, sign: int) -> None:
    score, drivers = word_score(text, lang)
    assert score * sign > 0.1, (score, drivers)


def test_voice_counts_against_the_callers_own_baseline() -> None:
    calm = EmotionCurve()
    for _ in range(3):
        calm, _reading = calm.update("The order number is on the email.", "en", voice())
    _, same = calm.update("The order number is on the email.", "en", voice())
    _, louder = calm.update(
        "The order number is on the email.", "en", voice(loudness=-18.0, pitch=150.0, rate=5.5)
    )
    assert louder.utterance < same.utterance - 0.2
    assert any("louder than usual" in d for d in louder.drivers)
    # a naturally loud caller is not angry: their baseline is loud
    loud = EmotionCurve()
    for _ in range(3):
        loud, _reading = loud.update("The order number is on the email.", "en", voice(loudness=-18.0))
    _, reading = loud.update("The order number is on the email.", "en", voice(loudness=-18.0))
    assert not any("louder" in d for d in reading.drivers)


def test_curve_is_smoothed_and_warns_on_a_fast_fall() -> None:
    curve = EmotionCurve()
    curve, first = curve.update("Great, thank you, lovely.", "en", None)
    curve, second = curve.update("No, that's not okay.", "en", None, ["complaint"])
    curve, third = curve.update(
        "This is outrageous, get me your manager!", "en", None, ["escalation_request"]
    )
    assert first.temperature > 0 > second.temperature > third.temperature
    assert third.warning
    assert third.label in ("angry", "negative")
    assert label_for(-0.8) == "angry"
    assert label_for(0.5) == "positive"


def test_scorecard_weights_and_evidence() -> None:
    clean = scorecard(CallSummary(300, 120, 100, [], [("recording_notice", 2.0), ("closing_check", 290.0)], [],
                                  [(10.0, -0.2), (280.0, 0.4)]))  # fmt: skip
    assert clean.total > 90
    assert sum(i.weight for i in clean.items) == pytest.approx(1.0)
    bad = scorecard(CallSummary(
        900, 120, 100,
        [AlertRecord("abuse", "fatal", 40.0), AlertRecord("dead_air", "general", 70.0),
         AlertRecord("missing_disclosure", "serious", 5.0)],
        [("closing_check", 880.0)], [("recording_notice", 5.0)], [(10.0, 0.0), (800.0, -0.7)],
    ))  # fmt: skip
    assert bad.total < clean.total - 30
    items = {i.name: i for i in bad.items}
    assert items["politeness"].evidence_s == (40.0,)
    assert items["dead_air"].evidence_s == (70.0,)
    assert items["disclosures"].evidence_s == (5.0,)
    assert set(bad.sections) == {"service_quality", "efficiency", "customer_experience"}
