"""What the agent and supervisor get from the language model: hand-off notes, reply drafts, and
the post-call note with a disposition.

Everything the model sees is the call's redacted transcript (and, for a reply, the procedure cards
the agent was shown); everything it writes is checked line by line against those sources
(``coach.llm.grounding``: a line that states a number or an English name they do not contain is
dropped) and redacted again before it leaves. The work of one request (prompt, generation,
checks) runs as one job in ``LlmService``'s worker thread.

Notes are refreshed incrementally: a call's last note is kept with a fingerprint of the transcript
it was made from (turn count and text); asking again with no new final returns it at once, and
concurrent requests for the same transcript share one generation. With new finals the prompt
differs only at its end, so the runtime's prompt cache evaluates just the new turns.

``PostCallSummary`` is the typed record of an ended call's note (summary lines, disposition and
reason): kept for the call's summary endpoint and handed to every listener (``add_listener``),
which is how a call store persists it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from coach.llm.grounding import Sources, sources_of, ungrounded
from coach.llm.prompts import (
    FIELDS,
    LABELS,
    SEPARATOR,
    Card,
    Lang,
    Outcome,
    Turn,
    parse_note,
    parse_reply,
    reply_prompt,
    summary_prompt,
)
from coach.llm.runtime import Generation, TextGenerator
from coach.llm.service import LlmService
from sidecar.kernel.redact import redact

log = logging.getLogger("assist.llm")
RETAIN_CALLS = 500  # notes and post-call summaries kept (oldest call dropped first)
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")
NONE_TEXT: dict[Lang, str] = {"en": "none", "zh": "无"}


@dataclass(frozen=True, slots=True)
class GenerationStats:
    prompt_tokens: int
    cached_tokens: int
    generated_tokens: int
    prompt_s: float
    generate_s: float
    wall_s: float

    @classmethod
    def of(cls, g: Generation) -> GenerationStats:
        return cls(g.prompt_tokens, g.cached_tokens, g.generated_tokens, round(g.prompt_s, 3),
                   round(g.generate_s, 3), round(g.wall_s, 3))  # fmt: skip


@dataclass(frozen=True, slots=True)
class NoteLine:
    field: str  # need | verified | promised | risk | disposition
    label: str  # in the call's language
    text: str  # "" when the transcript states nothing for it (or what the model wrote was dropped)
    dropped: bool = False  # the model's line stated something the transcript does not


@dataclass(frozen=True, slots=True)
class CallNote:
    """A hand-off note: four lines (need, verified, promised, risk), redacted, grounded."""

    call_id: str
    lang: Lang
    lines: tuple[NoteLine, ...]
    turns: int  # transcript finals it was made from
    generated_at: float
    stats: GenerationStats
    outcome: Outcome | None = None  # post-call notes: the disposition
    reason: str = ""

    def rendered(self) -> list[str]:
        """The lines as the agent reads them: ``Need: ...``, none spelled out."""
        sep = SEPARATOR[self.lang]
        out = [f"{line.label}{sep}{line.text or NONE_TEXT[self.lang]}" for line in self.lines]
        if self.outcome is not None:
            labels = LABELS[self.lang]
            reason = f" ({self.reason})" if self.reason else ""
            out.append(f"{labels['disposition']}{sep}{self.outcome}{reason}")
        return out


@dataclass(frozen=True, slots=True)
class PostCallSummary:
    """What a call store keeps of an ended call's note (a typed record, JSON via ``to_dict``)."""

    call_id: str
    lang: Lang
    need: str
    verified: str
    promised: str
    risk: str
    outcome: Outcome | None  # None: the model's answer was cut short, or its reason was not grounded
    reason: str
    lines: tuple[str, ...]  # rendered, as shown
    turns: int
    generated_at: float

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["lines"] = list(self.lines)
        return data

    @classmethod
    def of(cls, note: CallNote) -> PostCallSummary:
        text = {line.field: line.text for line in note.lines}
        return cls(note.call_id, note.lang, text.get("need", ""), text.get("verified", ""),
                   text.get("promised", ""), text.get("risk", ""), note.outcome, note.reason,
                   tuple(note.rendered()), note.turns, note.generated_at)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ReplyDraft:
    call_id: str
    reply_id: str
    lang: Lang
    text: str  # what the agent may say ("" when nothing grounded was left)
    snippet_id: str | None  # the card it follows (one of those shown)
    dropped: int  # sentences left out: they stated what neither the cards nor the transcript say
    generated_at: float
    stats: GenerationStats


def fingerprint(lang: str, turns: Sequence[Turn]) -> str:
    digest = hashlib.sha256(lang.encode())
    for turn in turns:
        digest.update(f"\x1e{turn.channel}\x1f{turn.text}".encode())
    return f"{len(turns)}:{digest.hexdigest()[:16]}"


def _grounded_line(text: str, sources: Sources, lang: Lang) -> tuple[str, bool]:
    """(the line redacted, or "" when it states what the sources do not; whether it was dropped)."""
    if not text:
        return "", False
    if ungrounded(text, sources):
        return "", True
    return redact(text, lang), False


def build_note(call_id: str, text: str, turns: Sequence[Turn], lang: Lang, stats: GenerationStats,
               *, postcall: bool = False, now: float | None = None) -> CallNote:  # fmt: skip
    """Pure: the model's labelled lines, checked against the transcript and redacted."""
    parsed = parse_note(text, lang)
    sources = sources_of(t.text for t in turns)
    labels = LABELS[lang]
    lines = []
    for name in FIELDS:
        value, dropped = _grounded_line(parsed.fields.get(name, ""), sources, lang)
        lines.append(NoteLine(name, labels[name], value, dropped))
    outcome, reason = (parsed.outcome, parsed.reason) if postcall else (None, "")
    reason, _ = _grounded_line(reason, sources, lang)
    return CallNote(call_id, lang, tuple(lines), len(turns), time.time() if now is None else now, stats,
                    outcome, reason)  # fmt: skip


def build_reply(call_id: str, reply_id: str, text: str, turns: Sequence[Turn], cards: Sequence[Card],
                lang: Lang, stats: GenerationStats) -> ReplyDraft:  # fmt: skip
    """Pure: the cited card and the sentences the cards and transcript support, redacted."""
    cited, sentence = parse_reply(text)
    shown = {c.snippet_id for c in cards}
    snippet_id = cited if cited in shown else None
    sources = sources_of([*(t.text for t in turns), *(f"{c.title} {c.body}" for c in cards)])
    for card in cards:  # the model sometimes repeats the card's title before the sentence
        for sep in (":", "："):
            if card.title and sentence.startswith(card.title + sep):
                sentence = sentence[len(card.title) + 1 :].strip()
    kept, dropped = [], 0
    for part in (p.strip() for p in _SENTENCE_END.split(sentence)):
        if not part:
            continue
        if ungrounded(part, sources):
            dropped += 1
            continue
        kept.append(part)
    joined = ("" if lang == "zh" else " ").join(kept)
    return ReplyDraft(call_id, reply_id, lang, redact(joined, lang), snippet_id, dropped, time.time(), stats)


class CallAssistant:
    """Notes, replies and post-call summaries over ``LlmService``, with the per-call note cache."""

    def __init__(self, llm: LlmService) -> None:
        self.llm = llm
        self._notes: OrderedDict[str, tuple[str, CallNote]] = OrderedDict()
        self._pending: dict[tuple[str, str], asyncio.Future[CallNote]] = {}
        self._postcall: OrderedDict[str, tuple[PostCallSummary, CallNote]] = OrderedDict()
        self._final_pending: dict[str, asyncio.Future[Any]] = {}
        self._listeners: list[Callable[[PostCallSummary], None]] = []
        self._replies = 0
        self._drafts: OrderedDict[str, ReplyDraft] = OrderedDict()  # for feedback: which drafts exist

    # ------------------------------------------------------------------ in-call notes

    def cached_note(self, call_id: str, lang: Lang, turns: Sequence[Turn]) -> CallNote | None:
        held = self._notes.get(call_id)
        return held[1] if held is not None and held[0] == fingerprint(lang, turns) else None

    async def note(self, call_id: str, lang: Lang, turns: Sequence[Turn]) -> tuple[CallNote, bool]:
        """The call's note for these turns, and whether it came from the cache (no new finals)."""
        key = fingerprint(lang, turns)
        cached = self.cached_note(call_id, lang, turns)
        if cached is not None:
            return cached, True
        pending = self._pending.get((call_id, key))
        if pending is not None:
            return await asyncio.shield(pending), False
        config = self.llm.config
        snapshot = tuple(turns)

        def work(model: TextGenerator) -> CallNote:
            prompt = summary_prompt(snapshot, lang, max_tokens=config.summary_tokens,
                                    budget_chars=config.transcript_chars)  # fmt: skip
            generation = model.generate(prompt)
            return build_note(call_id, generation.text, snapshot, lang, GenerationStats.of(generation))

        future: asyncio.Future[CallNote] = asyncio.ensure_future(self.llm.run(work))
        self._pending[(call_id, key)] = future

        def settled(done: asyncio.Future[CallNote]) -> None:  # even if the first asker went away
            self._pending.pop((call_id, key), None)
            if not done.cancelled() and done.exception() is None:
                self._remember(call_id, key, done.result())

        future.add_done_callback(settled)
        return await asyncio.shield(future), False

    def _remember(self, call_id: str, key: str, note: CallNote) -> None:
        self._notes[call_id] = (key, note)
        self._notes.move_to_end(call_id)
        while len(self._notes) > RETAIN_CALLS:
            self._notes.popitem(last=False)

    # ------------------------------------------------------------------ replies

    async def reply(
        self, call_id: str, lang: Lang, turns: Sequence[Turn], cards: Sequence[Card]
    ) -> ReplyDraft:
        self._replies += 1
        reply_id = f"r{int(time.time() * 1000):x}{self._replies:04x}"
        config = self.llm.config
        snapshot, shown = tuple(turns), tuple(cards)

        def work(model: TextGenerator) -> ReplyDraft:
            prompt = reply_prompt(snapshot, shown, lang, max_tokens=config.reply_tokens)
            generation = model.generate(prompt)
            return build_reply(call_id, reply_id, generation.text, snapshot, shown, lang,
                               GenerationStats.of(generation))  # fmt: skip

        draft = await self.llm.run(work)
        self._drafts[draft.reply_id] = draft
        while len(self._drafts) > RETAIN_CALLS * 4:
            self._drafts.popitem(last=False)
        return draft

    def draft(self, reply_id: str) -> ReplyDraft | None:
        return self._drafts.get(reply_id)

    # ------------------------------------------------------------------ post-call

    def add_listener(self, listener: Callable[[PostCallSummary], None]) -> None:
        """Called (on the event loop) with each ended call's summary: a call store persists it here."""
        self._listeners.append(listener)

    def postcall(self, call_id: str) -> PostCallSummary | None:
        held = self._postcall.get(call_id)
        return held[0] if held is not None else None

    def track_final(self, call_id: str, task: asyncio.Future[Any]) -> None:
        """``task`` will make the ended call's post-call note (see ``wait_final``)."""
        self._final_pending[call_id] = task
        task.add_done_callback(lambda _: self._final_pending.pop(call_id, None))

    async def wait_final(self, call_id: str) -> None:
        """Wait for the ended call's post-call note if it is being made (a summary asked meanwhile
        gets it instead of a second generation); a note that fails is not waited for again."""
        pending = self._final_pending.get(call_id)
        if pending is not None:
            await asyncio.wait([pending], timeout=self.llm.config.wait_s)

    def final_note(self, call_id: str) -> CallNote | None:
        """The ended call's post-call note (with its disposition), once made."""
        held = self._postcall.get(call_id)
        return held[1] if held is not None else None

    async def summarise_ended(self, call_id: str, lang: Lang, turns: Sequence[Turn]) -> PostCallSummary:
        """The post-call note (background queue: never refused, the oldest dropped when full)."""
        config = self.llm.config
        snapshot = tuple(turns)

        def work(model: TextGenerator) -> CallNote:
            prompt = summary_prompt(snapshot, lang, max_tokens=config.postcall_tokens,
                                    budget_chars=config.transcript_chars, postcall=True)  # fmt: skip
            generation = model.generate(prompt)
            return build_note(call_id, generation.text, snapshot, lang, GenerationStats.of(generation),
                              postcall=True)  # fmt: skip

        note = await self.llm.run(work, background=True)
        summary = PostCallSummary.of(note)
        self._postcall[call_id] = (summary, note)
        while len(self._postcall) > RETAIN_CALLS:
            self._postcall.popitem(last=False)
        for listener in self._listeners:
            try:
                listener(summary)
            except Exception:  # one listener's failure does not stop the others
                log.exception("a post-call listener failed")
        return summary
