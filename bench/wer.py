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
