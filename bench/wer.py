"""Word error rate with the normalisation both sides of a comparison share."""

from __future__ import annotations

import re
import unicodedata

_NUMBER_WORDS = {
    "zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11",
    "twelve": "12",
}  # fmt: skip


def normalize_words(text: str) -> list[str]:
    """Lower case, no punctuation (apostrophes kept), digits split, small numbers as digits."""
    text = unicodedata.normalize("NFKC", text).lower().replace("-", " ")
    text = "".join(ch if ch.isalnum() or ch in "' " else " " for ch in text).replace("all right", "alright")
    text = " ".join(_NUMBER_WORDS.get(w, w) for w in text.split())
    text = re.sub(r"(\d)", r" \1 ", text)  # "60614" and "6 0 6 1 4" compare equal
    return [w for w in text.split() if w.strip("'")]


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(ref: str, hyp: str) -> tuple[int, int]:
    """(errors, reference words)."""
    r, h = normalize_words(ref), normalize_words(hyp)
    return edit_distance(r, h), len(r)


_ZH_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000}
_ZH_BIG = {"万": 10_000, "亿": 100_000_000}
_ZH_NUMERAL = re.compile(r"[零〇一二两三四五六七八九十百千万亿]+")


def _zh_positional(run: str) -> str:
    """二十三 -> 23, 一百零五 -> 105, 三万二千 -> 32000 (units present: a positional number)."""
    total = section = digit = 0
    for ch in run:
        if ch in _ZH_DIGITS:
            digit = _ZH_DIGITS[ch]
        elif ch in _ZH_UNITS:
            section += (digit or 1) * _ZH_UNITS[ch]
            digit = 0
        else:  # 万 / 亿
            total += (section + digit) * _ZH_BIG[ch]
            section = digit = 0
    return str(total + section + digit)


def zh_numbers_to_digits(text: str) -> str:
    """Chinese numerals as Arabic digits, so "尾号一二三四" / "尾号1234" and "二十" / "20" compare
    equal whichever form the script or the recogniser used (digit runs map digit by digit)."""

    def one(m: re.Match[str]) -> str:
        run = m.group(0)
        if any(ch in _ZH_UNITS or ch in _ZH_BIG for ch in run):
            return _zh_positional(run)
        return "".join(str(_ZH_DIGITS[ch]) for ch in run)

    return _ZH_NUMERAL.sub(one, text)


def normalize_chars(text: str) -> list[str]:
    """Characters for CER: NFKC (full-width digits and letters to ASCII), Chinese numerals to
    digits, punctuation and spaces dropped, Latin words kept whole, lower case."""
    text = zh_numbers_to_digits(unicodedata.normalize("NFKC", text)).lower()
    # a Latin word, or one CJK character or digit; punctuation dropped
    return [tok for tok in re.findall(r"[a-z']+|\S", text) if any(c.isalnum() for c in tok)]


def cer(ref: str, hyp: str) -> tuple[int, int]:
    """(errors, reference characters) for Mandarin: a character error rate."""
    r, h = normalize_chars(ref), normalize_chars(hyp)
    return edit_distance(r, h), len(r)


def error_rate(lang: str, ref: str, hyp: str) -> tuple[int, int]:
    """Word errors for English, character errors for Chinese."""
    return cer(ref, hyp) if lang.startswith("zh") else wer(ref, hyp)
