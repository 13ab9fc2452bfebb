"""Redaction across utterances: a number a speaker reads in pieces is redacted as a whole.

A customer reads a card in two breaths ("the first half is 4111 1111" / "and the second half is
1111 1111"), or says "my code is" and then, after a pause, "4 8 2 9". Each utterance alone holds
too few digits to be PII, so ``redact`` leaves both readable, and together they rebuild the card.

``StreamRedactor`` keeps, per channel, the last few finals of that speaker (raw, with the cuts
already applied to them). A new utterance (partial or final) that starts within ``JOIN_GAP_S`` of
the previous one is read joined to it when it *continues* it:

* the previous utterance ends with a digit run and the new one's first digit run follows after a
  few words ("and the second half is"), with no reference or amount word of its own: the two runs
  are read as one number, with the previous utterance's context words;
* the previous utterance ends with a context or secret trigger ("my card number is", "the code
  is", "验证码是"): the new utterance is read as its continuation.

A PII span of the joined reading that touches the new utterance is cut out of every utterance it
covers: the new event is emitted redacted, and an earlier final that gets a new cut is re-emitted
as a ``transcript.redacted`` correction (same channel and segment, its text and words redacted
again). Chains of up to ``MAX_CHAIN`` earlier finals are followed (a card read four digits at a
time). The rest of each utterance is redacted on its own as before (``redact``), so a joined
reading only ever adds cuts.

Pure and synchronous: no clock, no I/O; the session calls it with each transcript event.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from sidecar.kernel.events import Word
from sidecar.kernel.redact import (
    _AFTER_AMOUNT_RE,
    _AMOUNT_RAW_RE,
    _CTX_RE,
    _CURRENCY_BEFORE_RE,
    _DATE_RAW_RE,
    _OTP_RE,
    _PASSWORD_RE,
    _YEAR_LIST_RE,
    Cut,
    PiiSpan,
    _Run,
    _runs,
    find_pii,
    placeholder,
    replace_in_text,
    replace_in_tokens,
)

JOIN_GAP_S = 6.0  # the longest pause between two pieces of one number
MAX_CHAIN = 3  # earlier finals a number may continue from
_MAX_LEAD_CHARS = 48  # words before the new utterance's digits: "and the second half is", "然后是"
_TRAILING = " \t\u3000.,;:!?，。；：！？…-–—"
_NO_JOIN_CTX = frozenset({"ref", "amount"})  # the new digits are something else: an order number, a sum
_Cut = tuple[int, int, str, int]  # a cut and its strength (see _strength)


@dataclass(slots=True)
class _Final:
    """One final utterance of a speaker, kept raw, with the cuts already applied to it."""

    segment: int
    t_start: float
    t_end: float
    lang: str
    text: str
    words: tuple[Word, ...]
    text_cuts: list[_Cut] = field(default_factory=list)
    token_cuts: list[_Cut] = field(default_factory=list)

    @property
    def sep(self) -> str:
        return "" if self.lang == "zh" else " "

    @property
    def tokens(self) -> tuple[str, ...]:
        return tuple(w.text for w in self.words)


@dataclass(frozen=True, slots=True)
class Correction:
    """An earlier final of ``channel`` whose redaction grew: its new text and word tokens."""

    channel: str
    segment: int
    t_start: float
    t_end: float
    lang: str
    text: str
    words: tuple[Word, ...]


class StreamRedactor:
    """Per-call cross-utterance redaction state (see the module docstring)."""

    def __init__(self, gap_s: float = JOIN_GAP_S, chain: int = MAX_CHAIN) -> None:
        self.gap_s = gap_s
        self._finals: dict[str, deque[_Final]] = {}
        self._turns: deque[tuple[str, float, float]] = deque(maxlen=16)  # others' real turns: who, when
        self._chain = chain

    def redact(
        self,
        channel: str,
        t_start: float,
        segment: int,
        lang: str,
        texts: Sequence[str],
        words: Sequence[Word],
        *,
        t_end: float,
        final: bool,
    ) -> tuple[list[str], tuple[Word, ...], list[Correction]]:
        """Redact one transcript event: its ``texts`` (the text, and a partial's stable text) and
        its ``words``. Returns the redacted texts, the redacted words (a word inside a cut is
        dropped, the one where it starts holds the placeholder) and the corrections of earlier
        finals. A final is remembered for the utterances after it."""
        sep = "" if lang == "zh" else " "
        earlier = self._recent(channel, t_start)
        touched: dict[int, _Final] = {}
        text_sinks = [_Sink(f, touched, "text") for f in earlier]
        all_cuts = [_cuts([f.text for f in earlier], text, lang, text_sinks) for text in texts]
        token_sinks = [_Sink(f, touched, "tokens") for f in earlier]
        tokens = [w.text for w in words]
        token_cuts = _cuts([f.sep.join(f.tokens) for f in earlier], sep.join(tokens), lang, token_sinks)
        corrections = [
            Correction(
                channel,
                f.segment,
                f.t_start,
                f.t_end,
                f.lang,
                replace_in_text(f.text, _plain(f.text_cuts)),
                _with_tokens(f.words, replace_in_tokens(f.tokens, _plain(f.token_cuts), f.sep)),
            )
            for f in touched.values()
        ]
        if final and texts:
            if _is_turn(texts[0], lang):
                self._turns.append((channel, t_start, t_end))
            kept = self._finals.setdefault(channel, deque(maxlen=self._chain))
            kept.append(
                _Final(segment, t_start, t_end, lang, texts[0], tuple(words), all_cuts[0], token_cuts)
            )
        redacted = [replace_in_text(text, _plain(cuts)) for text, cuts in zip(texts, all_cuts, strict=True)]
        return redacted, _with_tokens(words, replace_in_tokens(tokens, _plain(token_cuts), sep)), corrections

    def _recent(self, channel: str, t_start: float) -> list[_Final]:
        """The channel's finals that a new utterance starting at ``t_start`` may continue, oldest
        first: each within ``gap_s`` of the next."""
        kept = self._finals.get(channel)
        if not kept:
            return []
        chain: list[_Final] = []
        after = t_start
        for f in reversed(kept):
            if after - f.t_end > self.gap_s or self._interrupted(channel, f.t_end, after):
                break
            chain.append(f)
            after = f.t_start
        chain.reverse()
        return chain

    def _interrupted(self, channel: str, t0: float, t1: float) -> bool:
        """Did someone else take a turn between ``t0`` and ``t1`` ("okay" and "mm-hmm" do not)?"""
        return any(who != channel and t0 <= start < t1 for who, start, _ in self._turns)


def _is_turn(text: str, lang: str) -> bool:
    """More than a backchannel: four words or more (six characters of Chinese)."""
    return len(text.strip()) >= 6 if lang == "zh" else len(text.split()) >= 4


@dataclass(frozen=True, slots=True)
class _Sink:
    """Where new cuts of one earlier final go (its text cuts or its token cuts)."""

    final: _Final
    touched: dict[int, _Final]
    which: str

    def add(self, cuts: list[_Cut]) -> None:
        f = self.final
        old = f.text_cuts if self.which == "text" else f.token_cuts
        merged = _merge(old, cuts)
        if merged != old:
            if self.which == "text":
                f.text_cuts = merged
            else:
                f.token_cuts = merged
            self.touched[f.segment] = f


def _with_tokens(words: Sequence[Word], tokens: Sequence[str]) -> tuple[Word, ...]:
    return tuple(replace(w, text=t) for w, t in zip(words, tokens, strict=True) if t)


# ------------------------------------------------------------------------------------------- joining


def _cuts(earlier: Sequence[str], text: str, lang: str, sinks: Sequence[_Sink]) -> list[_Cut]:
    """The cuts on ``text``: its own PII, plus the spans of its joined reading with the earlier
    texts that touch it (their parts in the earlier texts go to ``sinks``)."""
    own = [(s.start, s.end, placeholder(s), _strength(s)) for s in find_pii(text, lang)]
    texts = [*earlier, text]
    last = len(texts) - 1
    bounds: list[tuple[int, int]] = [(0, len(t)) for t in texts]
    first = last
    while first > 0:
        join = _join(texts[first - 1], texts[first])
        if join is None or join[1] > bounds[first][1]:
            break
        bounds[first - 1] = (bounds[first - 1][0], join[0])
        bounds[first] = (join[1], bounds[first][1])
        first -= 1
    if first == last:
        return own
    bounds[first] = (0, bounds[first][1])
    # the joined reading, and where each piece sits in it
    pieces: list[tuple[int, int, int]] = []  # (index, offset in joined, offset in raw)
    joined_parts: list[str] = []
    pos = 0
    for i in range(first, last + 1):
        lo, hi = bounds[i]
        if joined_parts:
            joined_parts.append(" ")
            pos += 1
        pieces.append((i, pos, lo))
        joined_parts.append(texts[i][lo:hi])
        pos += hi - lo
    joined = "".join(joined_parts)
    extra: list[_Cut] = []
    for span in find_pii(joined, lang):
        parts = _split(span, pieces, bounds)
        if last not in parts:
            continue
        crosses = len(parts) > 1
        cs, ce = parts[last]
        if not crosses and any(s < ce and cs < e for s, e, _, _ in own):
            continue  # the text's own reading already covers it
        ending = max(parts)
        for i, (s, e) in parts.items():
            cut = (s, e, placeholder(span) if i == ending else _continued(span), _strength(span))
            if i == last:
                extra.append(cut)
            else:
                sinks[i].add([cut])
    return _merge(own, extra)


def _join(prev: str, cur: str) -> tuple[int, int] | None:
    """Does ``cur`` continue ``prev``? Where ``prev`` is cut and ``cur`` resumes in the joined reading."""
    end = len(prev.rstrip(_TRAILING))
    if end == 0:
        return None
    prev_runs = _runs(prev)
    cur_runs = _runs(cur)
    if prev_runs and prev_runs[-1].end >= end and cur_runs:  # a number continued
        # its next digits: the first group of two or more ("后八位是三四五六…": not the 八 of 八位)
        run = next((r for r in cur_runs if r.n_digits >= 2), cur_runs[0])
        lead = cur[: run.start]
        if len(lead) > _MAX_LEAD_CHARS or _OTP_RE.search(lead) or _PASSWORD_RE.search(lead):
            return None
        if any(m.lastgroup in _NO_JOIN_CTX for m in _CTX_RE.finditer(lead)):
            return None
        if _plain_number(prev, prev_runs[-1]) or _plain_number(cur, run):
            return None
        return prev_runs[-1].end, run.start
    # a trigger continued: "my card number is" / "4111 ...", "the code is" / "4 8 2 9"
    tail = prev[max(0, end - 60) : end]
    for regex in (_CTX_RE, _OTP_RE, _PASSWORD_RE):
        for m in regex.finditer(tail):
            if m.end() == len(tail) and (regex is not _CTX_RE or m.lastgroup not in _NO_JOIN_CTX):
                return end, 0
    return None


def _plain_number(text: str, run: _Run) -> bool:
    """An amount, a decimal, a date or a list of years: a whole of its own, never half of a number."""
    raw = text[run.start : run.end]
    return bool(
        _AMOUNT_RAW_RE.fullmatch(raw)
        or _DATE_RAW_RE.fullmatch(raw)
        or _YEAR_LIST_RE.fullmatch(raw)
        or _CURRENCY_BEFORE_RE.search(text, max(0, run.start - 6), run.start)
        or _AFTER_AMOUNT_RE.match(text, run.end)
    )


def _split(
    span: PiiSpan, pieces: list[tuple[int, int, int]], bounds: list[tuple[int, int]]
) -> dict[int, tuple[int, int]]:
    """The parts of a span of the joined reading in each raw text it covers."""
    parts: dict[int, tuple[int, int]] = {}
    for i, joff, roff in pieces:
        length = bounds[i][1] - roff
        s, e = max(span.start, joff), min(span.end, joff + length)
        if s < e:
            parts[i] = (s - joff + roff, e - joff + roff)
    return parts


def _continued(span: PiiSpan) -> str:
    """The placeholder of the part of a number before the part that ends it: no digits of its own."""
    if span.kind in ("card", "account"):
        return f"[{span.kind} ••••]"
    if span.kind == "national_id":
        return "[id ••••]"
    return f"[{span.kind}]"


def _strength(span: PiiSpan) -> int:
    """Which reading names a cut: the one that saw more of the number (a card's 16 digits over the
    12 of its first partial), then a secret or an email (no digits) over a bare run."""
    return len(span.digits) if span.digits else 100


def _merge(old: list[_Cut], new: list[_Cut]) -> list[_Cut]:
    """Cuts sorted, overlapping ones merged into one, named by the strongest (on a tie, the new one)."""
    tagged = sorted([(c, 0) for c in old] + [(c, 1) for c in new])
    out: list[tuple[_Cut, int]] = []
    for (s, e, rep, strength), rank in tagged:
        if out and s < out[-1][0][1]:
            (ps, pe, prep, pstrength), prank = out[-1]
            wins = (strength, rank) > (pstrength, prank)
            out[-1] = ((ps, max(pe, e), rep if wins else prep, max(strength, pstrength)), max(rank, prank))
        else:
            out.append(((s, e, rep, strength), rank))
    return [c for c, _ in out]


def _plain(cuts: list[_Cut]) -> list[Cut]:
    return [(s, e, rep) for s, e, rep, _ in cuts]
