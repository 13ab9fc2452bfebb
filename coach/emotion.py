"""Customer emotion: a temperature in -1..1 per utterance from words and voice, smoothed per call.

Words: VADER for English (with the call-centre cues it lacks: "still haven't", "nobody tells me",
"third time"), a small lexicon for Chinese; the intents found in the same utterance weigh in
(a cancel threat is heated whatever the words). Voice: loudness, pitch and pace against the
caller's own baseline (their first utterances), so a naturally loud caller is not "angry", plus
talking over the agent and having waited through silence. The call's curve is an exponential
moving average; a fast fall raises a warning before abuse happens. ``DETECTOR`` is how the session
runs it (``coach.detectors``): one ``EmotionTracker`` per call, stepped on the customer's finals
after the intents are read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any, Literal

from coach.compiled import CompiledRules
from coach.detector import CallEnd, Detector, EmotionFinding, IntentFinding, UtteranceContext
from sidecar.kernel.events import Prosody

Label = Literal["angry", "negative", "neutral", "positive"]

_EN_NEG_CUES = tuple(
    re.compile(p)
    for p in (
        r"\bstill (have not|has not|not|no|nothing|waiting)\b", r"\bnobody\b", r"\bno one\b",
        r"\b(second|third|fourth|fifth) time\b", r"\bagain\b.*\?", r"\b(late|delayed|overdue)\b",
        r"\b(broken|damaged|smashed|faulty|stolen|lost|nicked|missing|down|outage|no signal)\b",
        r"\b(never|not) (got|received|arrived|made|authori[sz]ed)\b", r"\bcharged (me )?(twice|two times|again)\b",
        r"\b(ridiculous|outrageous|unacceptable|joke|useless|rubbish|disgrace|fed up|sick of|done waiting)\b",
        r"\b(hello|anyone) (are you|there|still)\b", r"\bwhat (is|was) the catch\b", r"\bexcuse me\b",
        r"\bbeg your pardon\b", r"\bnot (okay|ok|happy|comfortable|fair|good enough)\b", r"\bi do not believe\b",
        r"\bwill believe it when\b", r"\bout of pocket\b", r"\bwhere is my\b", r"\bwhat a day\b",
    )
)  # fmt: skip
_ZH_NEG = (
    "还没", "没收到", "没到", "坏了", "坏", "丢了", "丢", "不是我", "怎么回事", "太差", "破", "要命", "投诉", "生气",
    "气死", "什么态度", "不放心", "亏", "跳闸", "根本", "到底", "凭什么", "离谱", "差劲", "没法用", "断", "没信号",
    "打不", "不想要", "领导", "怎么办", "等了", "拖了", "又", "总得", "不会吧", "难道", "搞什么", "受不了", "失望",
    "麻烦", "骗", "乱扣", "扣了", "没了", "算了", "你说什么", "有什么关系", "不用把",
)  # fmt: skip
_ZH_POS = (
    "谢谢", "太好了", "满意", "不错", "好的", "可以", "行", "还差不多", "明白", "放心了", "感谢", "辛苦", "挺好", "好吧",
    "再见",
)  # fmt: skip
_ZH_STRONG = ("什么态度", "领导", "投诉", "凭什么", "气死", "受不了", "骗子", "要命", "！")
JUDGED_TONE_WEIGHT = 0.5  # how much the judge's reading of the tone counts against the lexicon's
_INTENT_WEIGHT = {
    "complaint": -0.45, "implicit_complaint": -0.5, "cancel_threat": -0.65, "escalation_request": -0.75,
    "refund_request": -0.3,
}  # fmt: skip


@cache
def _vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def word_score(text: str, lang: str) -> tuple[float, list[str]]:
    """Valence of the words in -1..1, and the drivers that moved it."""
    drivers: list[str] = []
    if lang == "zh":
        neg = sum(1 for w in _ZH_NEG if w in text)
        pos = sum(1 for w in _ZH_POS if w in text)
        strong = sum(1 for w in _ZH_STRONG if w in text)
        score = math.tanh(0.45 * pos - 0.5 * neg - 0.4 * strong)
        if neg:
            drivers.append("negative words")
        if pos and score > 0:
            drivers.append("positive words")
        return score, drivers
    from sidecar.kernel.text import normalise

    compound = float(_vader().polarity_scores(text)["compound"])
    norm = normalise(text)
    cues = sum(1 for p in _EN_NEG_CUES if p.search(norm))
    score = compound - 0.35 * cues
    if cues:
        drivers.append("complaint cues")
    if compound <= -0.2:
        drivers.append("negative words")
    elif compound >= 0.2 and score > 0:
        drivers.append("positive words")
    if text.count("!") >= 1 and score < 0:
        score -= 0.15
    return max(-1.0, min(1.0, score)), drivers


@dataclass(frozen=True, slots=True)
class VoiceBaseline:
    """The caller's own voice: medians over their first utterances."""

    samples: tuple[Prosody, ...] = ()
    size: int = 3

    def add(self, p: Prosody) -> VoiceBaseline:
        if len(self.samples) >= self.size or p.duration_s < 0.6:
            return self
        return replace(self, samples=(*self.samples, p))

    def ready(self) -> bool:
        return len(self.samples) >= 2

    def median(self, name: str) -> float:
        values = sorted(float(getattr(p, name)) for p in self.samples)
        return values[len(values) // 2] if values else 0.0


def voice_arousal(p: Prosody | None, base: VoiceBaseline) -> tuple[float, list[str]]:
    """How much more agitated than usual the voice sounds: 0 (as usual) .. 1."""
    if p is None or not base.ready() or p.duration_s < 0.4:
        return 0.0, []
    drivers, arousal = [], 0.0
    loud = p.loudness_db - base.median("loudness_db")
    if loud > 4.0:
        arousal += min(0.5, (loud - 4.0) / 12.0 + 0.15)
        drivers.append(f"louder than usual (+{loud:.0f} dB)")
    if (bp := base.median("pitch_hz")) > 0 and p.pitch_hz > 0 and (rise := p.pitch_hz / bp - 1.0) > 0.15:
        arousal += min(0.4, rise)
        drivers.append(f"higher pitch (+{rise:.0%})")
    rate_name = "words_per_s" if p.words_per_s > 0 and base.median("words_per_s") > 0 else "syllable_rate"
    if (br := base.median(rate_name)) > 0 and (pace := getattr(p, rate_name) / br - 1.0) > 0.2:
        arousal += min(0.3, pace)
        drivers.append(f"faster pace (+{pace:.0%})")
    return min(1.0, arousal), drivers


def label_for(temperature: float) -> Label:
    if temperature <= -0.55:
        return "angry"
    if temperature <= -0.12:
        return "negative"
    if temperature >= 0.2:
        return "positive"
    return "neutral"


@dataclass(frozen=True, slots=True)
class Reading:
    temperature: float
    utterance: float
    label: Label
    drivers: tuple[str, ...]
    warning: bool


@dataclass(frozen=True, slots=True)
class EmotionCurve:
    """The call's temperature so far (immutable: ``update`` returns the next curve)."""

    temperature: float = 0.0
    history: tuple[float, ...] = ()
    baseline: VoiceBaseline = field(default_factory=VoiceBaseline)
    alpha: float = 0.6  # weight of the newest utterance

    def update(
        self,
        text: str,
        lang: str,
        prosody: Prosody | None,
        intents: Sequence[str] = (),
        *,
        overtalk: bool = False,
        waited_s: float = 0.0,
        judged: float | None = None,
    ) -> tuple[EmotionCurve, Reading]:
        words, drivers = word_score(text, lang)
        if judged is not None:  # the judge's reading of the tone, beside the lexicon's
            words = (1 - JUDGED_TONE_WEIGHT) * words + JUDGED_TONE_WEIGHT * judged * 2 / 1.5
            if judged <= -0.3 and "negative words" not in drivers:
                drivers.append("negative tone")
        score = words
        intent_push = min((_INTENT_WEIGHT.get(i, 0.0) for i in intents), default=0.0)
        if intent_push < 0:
            score = min(score, 0.0) + intent_push if score < 0.4 else score + intent_push
            drivers.append("intent: " + ", ".join(i for i in intents if i in _INTENT_WEIGHT))
        arousal, voice = voice_arousal(prosody, self.baseline)
        if arousal and score <= 0.1:
            score -= 0.5 * arousal
            drivers += voice
        if overtalk:
            score -= 0.15
            drivers.append("talking over the agent")
        if waited_s >= 8.0:
            score -= 0.35
            drivers.append(f"waited {waited_s:.0f} s in silence")
        score = max(-1.0, min(1.0, score))
        temp = max(-1.0, min(1.0, (1 - self.alpha) * self.temperature + self.alpha * score))
        history = (*self.history, temp)[-8:]
        warning = len(history) >= 3 and history[-3] - temp >= 0.45 and temp <= -0.3
        if warning:
            drivers.append("falling fast")
        base = self.baseline.add(prosody) if prosody is not None and arousal == 0.0 else self.baseline
        curve = replace(self, temperature=temp, history=history, baseline=base)
        return curve, Reading(round(temp, 3), round(score, 3), label_for(temp), tuple(drivers), warning)


OVERTALK_S = 0.3  # the customer starting this long before the agent's last words ended


class EmotionTracker:
    """One call's curve, updated on each customer final with the intents found in it, whether
    they talked over the agent, how long they waited, and the judge's reading of the tone."""

    def __init__(self) -> None:
        self.curve = EmotionCurve()

    def final(self, ctx: UtteranceContext) -> list[EmotionFinding]:
        utt, history = ctx.window.current, ctx.window.history
        if utt.channel != "customer":
            return []
        intents = [f.rule.rule.intent for f in ctx.found if isinstance(f, IntentFinding)]
        last_agent = next((u for u in reversed(history) if u.channel == "agent"), None)
        overtalk = last_agent is not None and utt.t_start < last_agent.t_end - OVERTALK_S
        prev_end = history[-1].t_end if history else utt.t_start
        judged = ctx.units.reading.temperature if ctx.units.reading is not None else None
        self.curve, reading = self.curve.update(
            utt.text,
            utt.lang,
            utt.prosody,
            intents,
            overtalk=overtalk,
            waited_s=utt.t_start - prev_end,
            judged=judged,
        )
        return [EmotionFinding(reading)]

    def end(self, end: CallEnd) -> list[EmotionFinding]:
        return []


def _track(rules: CompiledRules, lang: str) -> tuple[EmotionTracker, list[EmotionFinding]]:
    return EmotionTracker(), []


DETECTOR = Detector("emotion", track=_track)
