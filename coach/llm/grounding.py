"""Is a generated line built only from its sources? Numbers and names, checked against them.

A small language model paraphrases well but invents figures ("a refund within 5 days" where nobody
said 5) and people. A generated line is *grounded* when every number it states occurs in the
sources (the transcript, and for a reply the procedure cards) and, in English, every capitalised
word that is not sentence-initial occurs there too. Numbers are compared as values: "five", "5"
and "五" meet; a figure inside a longer digit run of the source counts (the last four digits of a
redacted card). Chinese names cannot be told from words without a tagger: only numbers are checked
there. Pure functions; used by ``coach.llm.assistant`` to drop lines that fail.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_ONES = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}  # fmt: skip
_SCALES = {"hundred": 100, "thousand": 1000}
_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "幺": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}  # fmt: skip
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10000}
_DIGIT_RUN = re.compile(r"\d+(?:[.,]\d+)*")
_ZH_NUMERAL = re.compile(r"[零〇一幺二两三四五六七八九十百千万]+")
# words that hold a numeral character but state no number (一下 "a moment", 十分 "very", 万一 "in case")
_ZH_NOT_NUMBERS = re.compile(
    r"一下|一些|一点|一起|一直|一样|一定|一般|一旦|一切|一致|统一|唯一|之一|万一|十分|千万|"
    r"一会|一遍|一番|一向|一律|一共|一手|一同|一再|逐一|专一|一口气"
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;\]\)]\s+|\n)\s*[\"'“(]*$")
# capitalised words that are not names: pronouns, roles, courtesy, weekdays, months, common acronyms
_NOT_NAMES = frozenset(
    {
        "i",
        "i'm",
        "i'll",
        "i've",
        "i'd",
        "ok",
        "okay",
        "agent",
        "customer",
        "caller",
        "none",
        "n/a",
        "mr",
        "mrs",
        "ms",
        "dr",
        "sir",
        "madam",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "sms",
        "pin",
        "id",
        "otp",
        "vip",
        "faq",
        "url",
        "app",
        "api",
    }
)


@dataclass(frozen=True, slots=True)
class Sources:
    """What a generated line may draw on: number values, digit strings, known words (lower case)."""

    numbers: frozenset[int]
    digit_runs: tuple[str, ...]
    words: frozenset[str]


def _zh_value(numeral: str) -> int | None:
    """一二三 read as digits (432 for 四三二), or 三百五十 as a quantity; None for lone units."""
    if all(ch in _ZH_DIGITS for ch in numeral):
        return int("".join(str(_ZH_DIGITS[ch]) for ch in numeral))
    total, section, current = 0, 0, 0
    for ch in numeral:
        if ch in _ZH_DIGITS:
            current = _ZH_DIGITS[ch]
        elif ch == "万":
            total += (section + current) * 10000
            section, current = 0, 0
        else:
            section += (current or 1) * _ZH_UNITS[ch]
            current = 0
    value = total + section + current
    return value or None


def _english_values(text: str) -> set[int]:
    """Values of spelled-out English numbers: "five" 5, "twenty five" 25, "two hundred" 200."""
    values: set[int] = set()
    current: int | None = None
    for word in (w.lower() for w in _WORD.findall(text)):
        if word in _ONES or word in _TENS:
            value = _ONES.get(word, _TENS.get(word, 0))
            if current is not None and current >= 100 and current % 100 == 0 and value < 100:
                current += value  # "two hundred (and) fifty"
            elif current is not None and current % 10 == 0 and current >= 20 and value < 10:
                current += value  # "twenty five"
            else:
                if current is not None:
                    values.add(current)
                current = value
        elif word in _SCALES and current is not None:
            current *= _SCALES[word]
        elif word == "and" and current is not None and current >= 100:
            continue
        else:
            if current is not None:
                values.add(current)
            current = None
    if current is not None:
        values.add(current)
    return values


def number_values(text: str) -> set[int]:
    """Every number ``text`` states, as integers (decimals by their integer and fraction parts)."""
    values: set[int] = set()
    for run in _DIGIT_RUN.findall(text):
        for part in re.split(r"[.,]", run):
            values.add(int(part))
        values.add(int(re.sub(r"[.,]", "", run)))
    for numeral in _ZH_NUMERAL.findall(_ZH_NOT_NUMBERS.sub(" ", text)):
        value = _zh_value(numeral)
        if value is not None:
            values.add(value)
    return values | _english_values(text)


def sources_of(texts: Iterable[str]) -> Sources:
    joined = "\n".join(texts)
    return Sources(
        numbers=frozenset(number_values(joined)),
        digit_runs=tuple(re.sub(r"[.,]", "", run) for run in _DIGIT_RUN.findall(joined)),
        words=frozenset(w.lower() for w in _WORD.findall(joined)),
    )


def _names(line: str) -> list[str]:
    """Capitalised English words that are not at the start of a sentence or a label."""
    found = []
    for match in _WORD.finditer(line):
        word = match.group()
        if not word[0].isupper() or word.lower() in _NOT_NAMES:
            continue
        if _SENTENCE_START.search(line[: match.start()]):
            continue
        found.append(word)
    return found


def ungrounded(line: str, sources: Sources) -> list[str]:
    """What ``line`` states that its sources do not: numbers and (English) names. Empty: grounded."""
    missing: list[str] = []
    for run in _DIGIT_RUN.findall(line):
        digits = re.sub(r"[.,]", "", run)
        parts = {int(p) for p in re.split(r"[.,]", run)}
        if int(digits) in sources.numbers or parts <= sources.numbers:
            continue
        if any(digits in source for source in sources.digit_runs):
            continue
        missing.append(run)
    for numeral in _ZH_NUMERAL.findall(_ZH_NOT_NUMBERS.sub(" ", line)):
        value = _zh_value(numeral)
        if value is not None and value > 1 and value not in sources.numbers:
            missing.append(numeral)
    for value in _english_values(line):
        if value > 1 and value not in sources.numbers:
            missing.append(str(value))
    missing += [name for name in _names(line) if name.lower() not in sources.words]
    return missing
