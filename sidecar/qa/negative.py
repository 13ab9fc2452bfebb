"""Negative-word counts of a customer's turn: how many of its words carry negative valence.

English: tokens whose VADER lexicon valence is at or below ``NEGATIVE_VALENCE`` (on VADER's -4..4
scale: "bad" -2.5, "problem" -1.7, "no" -1.2; "charged" -0.8 is not counted). Chinese: jieba
tokens found in the coach's negative lexicon (``coach.emotion``). The counts are the inputs of the
negative-word share early warning; the words themselves are never kept.
"""

from __future__ import annotations

import re
from functools import cache

NEGATIVE_VALENCE = -1.0
_EN_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?")
_HAN = re.compile(r"[\u4e00-\u9fff]")


@cache
def _en_negative() -> frozenset[str]:
    from coach.emotion import _vader

    lexicon: dict[str, float] = _vader().lexicon
    return frozenset(word for word, valence in lexicon.items() if valence <= NEGATIVE_VALENCE)


@cache
def _zh_negative() -> frozenset[str]:
    from coach.emotion import _ZH_NEG, _ZH_STRONG

    return frozenset(w for w in (*_ZH_NEG, *_ZH_STRONG) if _HAN.search(w))


def count_negative_words(text: str, lang: str) -> tuple[int, int]:
    """``(negative words, words)`` of one utterance."""
    if lang == "zh" or _HAN.search(text):
        import jieba

        tokens = [t for t in jieba.lcut(text) if _HAN.search(t)]
        negative = _zh_negative()
        return sum(1 for t in tokens if t in negative), len(tokens)
    tokens = _EN_TOKEN.findall(text.lower())
    negative_en = _en_negative()
    return sum(1 for t in tokens if t in negative_en), len(tokens)
