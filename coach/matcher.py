"""Compiled matchers: a rule's ``match`` turned into regexes and exemplar vectors, applied to clauses.

Phrases are matched on stemmed English words or on Chinese characters; "..." in a phrase skips up
to four words (English) or six characters (Chinese). A phrase hit preceded closely by a negator
("can't guarantee", "没办法保证") does not count. Exemplars are compared by embedding, sentence by
sentence: a unit matches when its best exemplar similarity reaches the threshold and beats the
best ``unless`` exemplar for that unit (the hard negatives curated next to it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from coach.judge import Reading
from coach.rules import MatchSpec, TextMatch
from coach.saferegex import RulePattern, compile_rule_regex
from coach.window import Window
from knowledge.embed import Embedder, Matrix
from sidecar.kernel.text import Clause, clauses, is_chinese, lemmatise, normalise, sentences

DEFAULT_THRESHOLD = 0.9
MARGIN = 0.02  # how much closer to the rule's exemplars than to ordinary talk a sentence must be
_EN_NEGATORS = frozenset({"not", "never", "no", "nobody", "without", "hardly", "nor", "cannot"})
_ZH_NEGATORS = re.compile(r"[不没别无未非莫]|无法|没法|没办法")


@dataclass(frozen=True, slots=True)
class Hit:
    """Why a matcher fired: the evidence (raw clause or sentence) and the reason."""

    evidence: str
    reason: str
    score: float


@dataclass(frozen=True, slots=True)
class Units:
    """An utterance prepared once for every matcher: clauses and sentence embeddings."""

    text: str
    clauses: tuple[Clause, ...]
    sentences: tuple[str, ...]
    vectors: Matrix | None  # one row per sentence; None when no matcher needs semantics
    reading: Reading | None = None  # what the judge read in the utterance (None: no judge, or it failed)


def prepare(text: str, embedder: Embedder | None) -> Units:
    sents = tuple(sentences(text))
    vecs = embedder.embed(list(sents), query=True) if embedder is not None and sents else None
    return Units(text, tuple(clauses(text)), sents, vecs)


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    zh = is_chinese(phrase)
    parts = [p.strip() for p in phrase.split("...")]
    if zh:
        body = ".{0,6}".join(re.escape(normalise(p)) for p in parts if p)
        return re.compile(body)
    words = [re.escape(lemmatise(normalise(p))) for p in parts if normalise(p)]
    return re.compile(r"(?<!\S)" + r" (?:\S+ ){0,4}".join(words) + r"(?!\S)")


def _negated(clause: Clause, start: int, zh: bool) -> bool:
    if zh:
        return bool(_ZH_NEGATORS.search(clause.norm[max(0, start - 6) : start]))
    before = clause.lemmas[:start].split()[-3:]
    return any(w in _EN_NEGATORS for w in before)


class TextMatcher:
    """Phrases, regexes and exemplars of one ``TextMatch``."""

    def __init__(self, spec: TextMatch, embedder: Embedder | None, *, negatable: bool = True) -> None:
        self.phrases = [(p, _phrase_pattern(p), is_chinese(p)) for p in spec.phrases]
        self.regexes: list[RulePattern] = [compile_rule_regex(r) for r in spec.regex]  # RE2: linear time
        self.exemplars = spec.exemplars
        self.vectors: Matrix | None = None
        if spec.exemplars and embedder is not None:
            self.vectors = embedder.embed(list(spec.exemplars), query=True)
        self.negatable = negatable

    @property
    def semantic(self) -> bool:
        return self.vectors is not None

    def lexical(self, units: Sequence[Clause]) -> Hit | None:
        for clause in units:
            for phrase, pattern, zh in self.phrases:
                target = clause.norm if zh else clause.lemmas
                for m in pattern.finditer(target):
                    if not (self.negatable and _negated(clause, m.start(), zh)):
                        return Hit(clause.raw, f'phrase "{phrase}"', 1.0)
            for regex in self.regexes:
                if regex.search(clause.norm):
                    return Hit(clause.raw, f"regex /{regex.pattern}/", 1.0)
        return None

    def lexical_whole(self, units: Units) -> Hit | None:
        """Regexes over the whole utterance too: patterns that span clauses (sarcasm: "late ... fantastic")."""
        if not self.regexes or len(units.clauses) < 2:
            return None
        whole = " ".join(c.norm for c in units.clauses)
        for regex in self.regexes:
            if regex.search(whole):
                return Hit(units.text, f"regex /{regex.pattern}/", 1.0)
        return None

    def similarities(self, units: Units) -> np.ndarray:
        """Best exemplar similarity per sentence (zeros without exemplars)."""
        if self.vectors is None or units.vectors is None or not len(units.sentences):
            return np.zeros(len(units.sentences), dtype=np.float32)
        return np.asarray((units.vectors @ self.vectors.T).max(axis=1))

    def best_exemplar(self, units: Units, index: int) -> str:
        assert self.vectors is not None
        assert units.vectors is not None
        return self.exemplars[int(np.argmax(self.vectors @ units.vectors[index]))]


class Matcher:
    """A compiled ``MatchSpec`` (without its context and timing, which need the call window)."""

    def __init__(
        self, spec: MatchSpec, embedder: Embedder | None, neutral: TextMatcher | None = None
    ) -> None:
        self.spec = spec
        self.neutral = neutral
        self.positive = TextMatcher(spec.text, embedder)
        self.unless = TextMatcher(spec.unless, embedder, negatable=False)
        self.context = TextMatcher(spec.context.match, None) if spec.context else None
        self.threshold = spec.threshold or DEFAULT_THRESHOLD

    @property
    def semantic(self) -> bool:
        return self.positive.semantic

    def match(self, units: Units) -> Hit | None:
        blocked = {c.raw for c in units.clauses if self.unless.lexical([c])}
        for sentence in units.sentences:  # a hard negative quiets its whole sentence
            parts = [c for c in units.clauses if c.raw and c.raw in sentence]
            if any(c.raw in blocked for c in parts):
                blocked.update(c.raw for c in parts)
        free = [c for c in units.clauses if c.raw not in blocked]
        hit = self.positive.lexical(free) or (None if blocked else self.positive.lexical_whole(units))
        if hit is not None:
            return hit
        if (judged := self.judged(units)) is not None:
            return judged
        if not self.positive.semantic:
            return None
        pos = self.positive.similarities(units)
        neg = self.unless.similarities(units)
        if self.neutral is not None:
            neg = np.maximum(neg, self.neutral.similarities(units) + MARGIN)
        for i in np.argsort(-pos):
            sentence = units.sentences[int(i)]
            if pos[i] < self.threshold:
                break
            if pos[i] <= neg[i] or any(b in sentence for b in blocked):
                continue
            exemplar = self.positive.best_exemplar(units, int(i))
            return Hit(sentence, f'like "{exemplar}" ({pos[i]:.2f})', float(pos[i]))
        return None

    def judged(self, units: Units) -> Hit | None:
        """The judge read one of this match's labels in the utterance (at its label's threshold)."""
        reading = units.reading
        if not self.spec.judge or reading is None:
            return None
        fired = [label for label in self.spec.judge if reading.carries(label)]
        if not fired:
            return None
        label = max(fired, key=lambda name: reading.scores[name])
        score = reading.scores[label]
        return Hit(reading.evidence.get(label, units.text), f'judged "{label}" ({score:.2f})', score)

    def context_ok(self, window: Window) -> bool:
        """The context condition: one of the last ``turns`` utterances mentions the topic."""
        if self.context is None or self.spec.context is None:
            return True
        return any(self.context.lexical(clauses(t)) for t in window.recent(self.spec.context.turns))
