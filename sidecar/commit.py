"""Local agreement: the commit policy of streaming ASR, as a pure synchronous core.

Each partial decode re-transcribes the open speech segment from its start. A word is committed
(stable) once two consecutive hypotheses agree on it and on everything before it: the longest
common prefix of the last two hypotheses (ufal/whisper_streaming ``HypothesisBuffer``).
Committed words are never taken back within a segment; the end of the segment produces a final
from a fresh decode of the whole segment.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from sidecar.kernel.events import Word

# Languages written without spaces between words: their "words" are characters.
_NO_SPACE_LANGS = frozenset({"zh", "ja", "th", "lo", "my", "yue"})


def normalize(word: str) -> str:
    """Compare words without case or punctuation ("Monday." == "monday")."""
    kept = "".join(ch for ch in word if not unicodedata.category(ch).startswith("P"))
    return kept.strip().casefold()


def join_words(words: Sequence[Word], lang: str) -> str:
    sep = "" if lang in _NO_SPACE_LANGS else " "
    return sep.join(w.text for w in words).strip()


def common_prefix_len(a: Sequence[Word], b: Sequence[Word]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if normalize(x.text) != normalize(y.text):
            break
        n += 1
    return n


@dataclass(frozen=True, slots=True)
class Agreement:
    stable: tuple[Word, ...]  # committed so far in this segment, in order
    tentative: tuple[Word, ...]  # the rest of the newest hypothesis
    newly_committed: int  # how many words this hypothesis committed


class LocalAgreement:
    def __init__(self) -> None:
        self._committed: list[Word] = []
        self._previous_tail: list[Word] = []

    @property
    def committed(self) -> tuple[Word, ...]:
        return tuple(self._committed)

    def insert(self, hypothesis: Sequence[Word]) -> Agreement:
        tail = self._after_committed(hypothesis)
        n = common_prefix_len(self._previous_tail, tail)
        self._committed.extend(tail[:n])
        self._previous_tail = list(tail[n:])
        return Agreement(tuple(self._committed), tuple(tail[n:]), n)

    def _after_committed(self, hypothesis: Sequence[Word]) -> list[Word]:
        """The part of a whole-segment hypothesis that follows the committed words.

        Usually the hypothesis repeats the committed words word for word; when the model
        rephrased them, fall back to time: keep the words centred after the last committed end.
        """
        done = self._committed
        if not done:
            return list(hypothesis)
        head = hypothesis[: len(done)]
        if len(head) == len(done) and common_prefix_len(head, done) == len(done):
            return list(hypothesis[len(done) :])
        cut = done[-1].t_end
        return [w for w in hypothesis if (w.t_start + w.t_end) / 2 > cut]

    def reset(self) -> None:
        self._committed.clear()
        self._previous_tail.clear()
