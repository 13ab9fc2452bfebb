"""Which procedures to push to the agent, and when: the suggestion policy on a live call.

On each customer turn that states a need (``knowledge.need``: not an answer to the agent's
question, an acknowledgement, a line check or a closing), the index proposes candidates and the
reranker's panel scores them by the customer's words; with a smaller weight, by the agent's last
turn and the customer's words together (a reply such as "so what's the catch?" takes its topic
from what the agent just offered); and by the customer's words with a hint for each intent the
coach found (a cancel threat calls for the offers that keep a customer). Then:
- a trigger phrase that is said pushes its snippet directly (score 1.0);
- otherwise the best candidate is pushed when its fused score reaches ``min_z`` (``solo_z`` when
  the coach found no intent), with up to ``max_cards - 1`` runners-up that are within
  ``stack_within`` of it and above ``stack_min_z``, and the best procedure for each further
  sentence long enough to carry a topic ("... Also, I can't get into the app"): the agent sees a
  short ranked stack rather than one guess;
- never the same snippet twice in a row (on two consecutive turns that state a need), nor one
  shown in the last ``repeat_s`` seconds: a procedure comes back only when the customer raises
  its topic again later in the call;
- at most one push per ``min_gap_s`` of call time unless an intent fired (a refund request
  deserves its procedure at once).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from knowledge.need import states_a_need
from knowledge.rerank import Ranked, Reranker
from knowledge.snippets import Snippet
from sidecar.kernel.errors import ConfigError
from sidecar.kernel.text import clauses, is_chinese, normalise, sentences

if TYPE_CHECKING:
    from knowledge.embed import Embedder
    from knowledge.index import SearchHit, SnippetIndex
    from knowledge.store import SnippetStore

# Intents that deserve their procedure at once, whatever the gap since the last card.
URGENT_INTENTS = frozenset(
    {"refund_request", "cancel_threat", "escalation_request", "complaint", "implicit_complaint"}
)
# What an intent adds to the ranking (a third query, weighted): the kind of procedure it calls
# for, in words of any contact centre.
INTENT_HINTS = {
    "refund_request": "refund, money back, compensation or credit",
    "cancel_threat": "the customer wants to cancel or leave; offers to keep the customer",
    "escalation_request": "escalate the complaint to a supervisor or manager",
}


class Knowledge(Protocol):
    """What the policy reads: retrieval, the snippets themselves, and their trigger phrases."""

    def search(self, text: str, k: int = 5, lang: str | None = None) -> Sequence[SearchHit]: ...

    def get(self, snippet_id: str) -> Snippet | None: ...

    def triggers(self) -> Sequence[tuple[str, str]]: ...


class StoreKnowledge:
    """A snippet store and the index that follows it: edits are live for every running call."""

    def __init__(self, store: SnippetStore, embedder: Embedder, *, index: SnippetIndex | None = None) -> None:
        from knowledge.index import SnippetIndex, configure_faiss_threads

        configure_faiss_threads(1)  # live calls search one query at a time (see bench/kb_search.py)
        self.store = store
        if index is None:
            index = SnippetIndex(embedder)
            index.attach(store)
        self.index = index
        self._triggers: tuple[int, list[tuple[str, str]]] = (-1, [])

    @classmethod
    def from_jsonl(cls, path: Path, embedder: Embedder) -> StoreKnowledge:
        """An in-memory knowledge base from a kb.jsonl file (``assist replay --kb``)."""
        from knowledge.store import SnippetStore

        store = SnippetStore(":memory:")
        store.import_jsonl(path, actor="replay")
        return cls(store, embedder)

    def search(self, text: str, k: int = 5, lang: str | None = None) -> Sequence[SearchHit]:
        return self.index.search(text, k, lang)

    async def follow_other_writers(self, every_s: float = 2.0) -> None:
        """Until cancelled: take in what other processes publish to a shared store (the other
        nodes of a deployment), checking its revision every ``every_s`` (off the event loop)."""
        while True:
            try:
                await asyncio.to_thread(self.index.catch_up, self.store)
            except Exception:  # a locked or unreadable store: the next check tries again
                log.exception("kb index could not catch up with the store")
            await asyncio.sleep(every_s)

    def get(self, snippet_id: str) -> Snippet | None:
        snippet = self.store.get(snippet_id)
        return snippet if snippet is not None and snippet.status == "published" else None

    def triggers(self) -> Sequence[tuple[str, str]]:
        revision = self.store.revision()
        if self._triggers[0] != revision:
            found = [(normalise(t), s.id) for s in self.store.list(status="published") for t in s.triggers]
            self._triggers = (revision, [(p, sid) for p, sid in found if p])
        return self._triggers[1]


log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Firing:
    t_s: float
    snippet_id: str
    title: str
    score: float
    reason: str


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Thresholds. With a reranker, scores are fused z-scores (standard deviations above the other
    candidates and a fixed background of ordinary procedures); without one, cosines of the
    index's embedder."""

    min_score: float = 0.84  # cosine (no reranker)
    sure_score: float = 0.88
    margin: float = 0.01
    min_z: float = 0.6  # the best candidate, when the customer asked, complained or requested
    solo_z: float = 0.8  # ... when the coach found no intent
    stack_within: float = 0.4  # runners-up pushed with the best while this close to it ...
    stack_min_z: float = 0.5  # ... and this far above ordinary procedures
    max_cards: int = 3
    context_weight: float = 0.25  # the agent's last turn + the customer's words, as a second query
    hint_weight: float = 1.0  # the customer's words with their intents' hints, as a third query
    sentence_words: int = 8  # in a turn of several sentences, each this long is also a query:
    # "It was a domestic order. And I can't even get into the app" raises a second topic
    candidates: int = 16
    min_gap_s: float = 10.0
    repeat_s: float = 20.0  # the same card again only after this long (and never twice in a row)


@dataclass(frozen=True, slots=True)
class PolicyState:
    last_push: frozenset[str] = frozenset()  # what the previous decision pushed (on a need turn)
    last_t: float = -1e9
    shown_at: dict[str, float] = field(default_factory=dict)


class SuggestionPolicy:
    """Decides on each customer utterance; keeps only a small immutable state per call."""

    def __init__(
        self, knowledge: Knowledge, config: PolicyConfig | None = None, reranker: Reranker | None = None
    ) -> None:
        self.knowledge = knowledge
        self.config = config or PolicyConfig()
        self.reranker = reranker

    def initial_state(self) -> PolicyState:
        """A call's state before its first decision."""
        return PolicyState()

    def snippet(self, snippet_id: str) -> Snippet | None:
        """The published snippet behind a firing (None once withdrawn)."""
        return self.knowledge.get(snippet_id)

    def warm_up(self) -> None:
        """Load every model and embed the snippets now, not on the call's first question."""
        self._retrieve("hello", 0.0, (), "hello")

    def decide(
        self, state: PolicyState, text: str, t_s: float, intents: Sequence[str] = (), agent_said: str = ""
    ) -> tuple[PolicyState, list[Firing]]:
        """The cards to push for this customer utterance: usually none, sometimes a short ranked
        stack when the customer states a need and the best procedures are close."""
        cfg = self.config
        urgent = any(i in URGENT_INTENTS for i in intents)
        if not urgent and t_s - state.last_t < cfg.min_gap_s:
            return state, []
        trigger = self._trigger(text, t_s)
        if trigger:
            firings = [trigger]
        elif states_a_need(text, agent_said):
            firings = self._retrieve(text, t_s, intents, agent_said)
        else:
            return state, []  # not a decision: "yes please" between two pushes keeps them in a row
        firings = [f for f in firings if self._allowed(state, f)]
        if not firings:
            return replace(state, last_push=frozenset()), []
        shown = dict(state.shown_at)
        for f in firings:
            shown[f.snippet_id] = t_s
        pushed = frozenset(f.snippet_id for f in firings)
        return replace(state, last_push=pushed, last_t=t_s, shown_at=shown), firings

    def _allowed(self, state: PolicyState, firing: Firing) -> bool:
        if firing.snippet_id in state.last_push:
            return False
        seen = state.shown_at.get(firing.snippet_id)
        return seen is None or firing.t_s - seen >= self.config.repeat_s

    def _trigger(self, text: str, t_s: float) -> Firing | None:
        said = " ".join(c.norm for c in clauses(text))
        for phrase, sid in self.knowledge.triggers():
            if phrase in said if is_chinese(phrase) else f" {phrase} " in f" {said} ":
                snippet = self.knowledge.get(sid)
                if snippet is not None:
                    return Firing(t_s, sid, snippet.title, 1.0, f'trigger "{phrase}"')
        return None

    @staticmethod
    def _reason(text: str, intents: Sequence[str]) -> str:
        why = f"intent {', '.join(intents)}; " if intents else ""
        excerpt = text if len(text) <= 80 else text[:77] + "..."
        return f'{why}"{excerpt}"'

    def _topics(self, text: str) -> list[str]:
        """The sentences of a turn of several, each long enough to carry a topic of its own."""
        parts = sentences(text)
        if len(parts) < 2:
            return []
        return [
            p
            for p in parts
            if (len(p) // 2 if is_chinese(p) else len(p.split())) >= self.config.sentence_words
        ]

    def _candidates(self, text: str, k: int) -> tuple[list[SearchHit], list[Snippet]]:
        """Index hits for ``text``: procedures in the caller's language first; any language when
        there are fewer than three."""
        hits = list(self.knowledge.search(text, k=k, lang="zh" if is_chinese(text) else "en"))
        if len(hits) < 3:
            hits = list(self.knowledge.search(text, k=k))
        return hits, [s for h in hits if (s := self.knowledge.get(h.snippet_id)) is not None]

    def _retrieve(self, text: str, t_s: float, intents: Sequence[str], agent_said: str = "") -> list[Firing]:
        cfg = self.config
        reason = self._reason(text, intents)
        hits, snippets = self._candidates(text, cfg.candidates if self.reranker else 3)
        if not snippets:
            return []
        if self.reranker is not None and len(snippets) >= 3:
            return [
                Firing(t_s, r.snippet_id, r.title, r.score, reason)
                for r in self._stack(text, intents, agent_said, snippets)
            ]
        best_hit = hits[0]
        runner_up = hits[1].score if len(hits) > 1 else 0.0
        confident = best_hit.score >= cfg.sure_score or (
            best_hit.score >= cfg.min_score and best_hit.score - runner_up >= cfg.margin
        )
        if not confident:
            return []
        return [Firing(t_s, snippets[0].id, snippets[0].title, round(float(best_hit.score), 3), reason)]

    def _stack(
        self, text: str, intents: Sequence[str], agent_said: str, snippets: list[Snippet]
    ) -> list[Ranked]:
        """The best procedure for the turn, then the best for each further sentence that carries a
        topic, then runners-up close to the best: at most ``max_cards``, best first."""
        cfg = self.config
        assert self.reranker is not None
        queries = [(text, 1.0)]
        if agent_said and cfg.context_weight > 0:
            queries.append((f"{agent_said} {text}", cfg.context_weight))
        hints = sorted({INTENT_HINTS[i] for i in intents if i in INTENT_HINTS})
        if hints and cfg.hint_weight > 0:
            queries.append((f"{text} ({'; '.join(hints)})", cfg.hint_weight))
        ranked = self.reranker.rank_weighted(queries, snippets)
        best = ranked[0]
        if best.score < (cfg.min_z if intents else cfg.solo_z):
            return []
        stack = [best]
        for part in self._topics(text):  # "... And I can't even get into the app": its own search
            _, own = self._candidates(part, cfg.candidates)
            top = self.reranker.rank(part, own)[:1] if len(own) >= 3 else []
            if top and top[0].score >= cfg.min_z and top[0].snippet_id not in {r.snippet_id for r in stack}:
                stack.append(top[0])
        for other in ranked[1:]:
            if len(stack) >= cfg.max_cards or other.score < cfg.stack_min_z:
                break
            if best.score - other.score > cfg.stack_within:
                break
            if other.snippet_id not in {r.snippet_id for r in stack}:
                stack.append(other)
        return stack[: cfg.max_cards]


# The reranker's models and their weights: mpnet counts double for English (it ranks best alone;
# English-only models sit out for Chinese). Measured with bench/kb_quality.py.
PANEL = (("embed-e5", 1.0), ("embed-en", 2.0), ("embed-multilingual", 1.0))


def panel() -> tuple[tuple[str, float], ...]:
    """``ASSIST_KB_PANEL`` (comma-separated model keys, each optionally ``:weight``), else
    ``PANEL``. The first model's cosine is reported as each suggestion's similarity."""
    raw = os.environ.get("ASSIST_KB_PANEL", "")
    out = []
    for item in (p.strip() for p in raw.split(",")):
        if not item:
            continue
        key, _, weight = item.partition(":")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            raise ConfigError(f"ASSIST_KB_PANEL: {item!r}: the weight after ':' must be a number") from None
        if value < 0:
            raise ConfigError(f"ASSIST_KB_PANEL: {item!r}: a weight cannot be negative")
        out.append((key.strip(), value))
    if out and not any(w > 0 for _, w in out):
        raise ConfigError("ASSIST_KB_PANEL: at least one model needs a weight above 0")
    return tuple(out) or PANEL


def default_reranker() -> Reranker:
    """The panel, each model loaded once per process (by default multilingual e5, English mpnet
    and multilingual USE)."""
    from knowledge.embed import load_embedder

    chosen = panel()
    return Reranker([load_embedder(k) for k, _ in chosen], weights=[w for _, w in chosen])


def default_policy(knowledge: Knowledge) -> SuggestionPolicy:
    """The shipped policy: e5 candidates reranked by the panel."""
    return SuggestionPolicy(knowledge, reranker=default_reranker())


def agent_search(
    knowledge: Knowledge, text: str, *, k: int = 5, lang: str | None = None, reranker: Reranker | None = None
) -> list[Ranked]:
    """What an agent's search box shows: index candidates reranked by the panel, best first."""
    hits = knowledge.search(text, k=max(16, 3 * k), lang=lang)
    snippets = [s for h in hits if (s := knowledge.get(h.snippet_id)) is not None]
    return (reranker or default_reranker()).rank(text, snippets)[:k]
