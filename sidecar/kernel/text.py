"""Text normalisation shared by the matchers: one canonical form for phrases and transcripts.

English: lower case, curly quotes straightened, contractions expanded ("can't" → "can not",
"it'll" → "it will"), punctuation dropped, each word reduced to a crude lemma (plural and tense
endings) so "promised"/"promises"/"promise" meet. Chinese: traditional/simplified variants left as
they are (the ASR is prompted for simplified), punctuation dropped, spaces removed.
Clauses: split at sentence and clause punctuation in both languages, so evidence is a clause.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_CLAUSE = re.compile(r"(?<=[.!?;:。！？；：，,])\s*|(?<=[—–])\s+")
_QUOTES = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "＇": "'"})
_CONTRACTIONS = (
    (re.compile(r"\bcan't\b"), "can not"),
    (re.compile(r"\bwon't\b"), "will not"),
    (re.compile(r"\bshan't\b"), "shall not"),
    (re.compile(r"\bain't\b"), "is not"),
    (re.compile(r"\b(\w+)n't\b"), r"\1 not"),
    (re.compile(r"\b(\w+)'ll\b"), r"\1 will"),
    (re.compile(r"\b(\w+)'re\b"), r"\1 are"),
    (re.compile(r"\b(\w+)'ve\b"), r"\1 have"),
    (re.compile(r"\b(\w+)'d\b"), r"\1 would"),
    (re.compile(r"\b(i)'m\b"), r"\1 am"),
    (re.compile(r"\b(it|that|there|what|where|who|he|she|here|how)'s\b"), r"\1 is"),
    (re.compile(r"\bcannot\b"), "can not"),
)
_NON_WORD = re.compile(r"[^\w\s\u3400-\u9fff]+")
_SPACES = re.compile(r"\s+")
_NO_LEMMA = frozenset(
    [
        "is",
        "was",
        "has",
        "his",
        "this",
        "us",
        "yes",
        "less",
        "unless",
        "always",
        "sometimes",
        "perhaps",
        "its",
        "does",
        "goes",
        "plus",
        "news",
        "across",
        "thus",
        "bus",
        "gas",
        "process",
        "business",
        "address",
        "series",
        "ss",
        "status",
        "bonus",
        "access",
        "class",
        "pass",
        "glass",
        "loss",
        "boss",
        "need",
        "needed",
        "feed",
        "speed",
        "ed",
        "red",
        "bed",
        "seed",
        "indeed",
    ]
)


def is_chinese(text: str) -> bool:
    chars = [ch for ch in text if not ch.isspace()]
    return bool(chars) and sum(1 for ch in chars if _CJK.match(ch)) / len(chars) >= 0.3


def lemma(word: str) -> str:
    """A crude English stem, applied the same way to phrases and transcripts so inflections meet:
    promise/promised/promises → promis, cancel/cancelled/cancelling → cancel."""
    if len(word) <= 3 or word in _NO_LEMMA or not word.isalpha():
        return word
    stem = word
    for suffix, repl in (("ies", "y"), ("ied", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: -len(suffix)] + repl
            break
    if len(stem) > 3 and stem.endswith("e"):
        stem = stem.rstrip("e") or stem
    if len(stem) > 3 and stem[-1] == stem[-2] and stem[-1] not in "aeious":
        stem = stem[:-1]
    return stem


def normalise(text: str) -> str:
    """Canonical surface form (no lemmas): what regexes and phrase matching see."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).lower()
    for pattern, repl in _CONTRACTIONS:
        text = pattern.sub(repl, text)
    text = _NON_WORD.sub(" ", text.replace("'", " "))
    if is_chinese(text):
        return re.sub(r"(?<=[\u3400-\u9fff])\s+|\s+(?=[\u3400-\u9fff])", "", _SPACES.sub(" ", text).strip())
    return _SPACES.sub(" ", text).strip()


def lemmatise(normalised: str) -> str:
    return " ".join(lemma(w) for w in normalised.split(" ")) if normalised else ""


@dataclass(frozen=True, slots=True)
class Clause:
    """One clause of an utterance: its raw text (for evidence) and its canonical forms."""

    raw: str
    norm: str
    lemmas: str
    start: int  # char offset in the utterance


def clauses(text: str) -> list[Clause]:
    """Split an utterance into clauses at sentence/clause punctuation (English and Chinese)."""
    out: list[Clause] = []
    pos = 0
    for piece in _CLAUSE.split(text):
        start = text.find(piece, pos) if piece else pos
        pos = start + len(piece)
        raw = piece.strip()
        norm = normalise(raw)
        if norm:
            out.append(Clause(raw, norm, lemmatise(norm), start))
    return out


def sentences(text: str) -> list[str]:
    """Sentence-level pieces (semantic matching wants more context than a clause)."""
    parts = re.split(r"(?<=[.!?。！？])\s*", text)
    return [p.strip() for p in parts if normalise(p)]
