"""Which procedure to push to the agent, and when: the suggestion policy on a live call.

The query is the customer's recent speech (the current final, with the previous customer turn when
the current one is short) plus a hint for each intent the coach found. A snippet is pushed when:
- one of its trigger phrases is said (directly, score 1.0), or
- its retrieval score reaches ``min_score`` and leads the runner-up by ``margin`` (or reaches
  ``sure_score`` outright);
and never the same snippet twice in a row, nor one already shown in the last ``repeat_s`` seconds;
at most one new card per ``min_gap_s`` of call time unless an intent fired (a refund request
deserves its procedure at once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from coach.text import clauses, is_chinese, normalise
from knowledge.rerank import Ranked, Reranker
from knowledge.snippets import Snippet

if TYPE_CHECKING:
    from knowledge.embed import Embedder
    from knowledge.index import SearchHit, SnippetIndex
    from knowledge.store import SnippetStore
    from sidecar.callfile import Turn

# What an intent adds to the query: the kind of procedure it calls for, in words snippets use.
INTENT_HINTS = {
    "refund_request": "refund, money back, compensation or credit",
    "cancel_threat": "customer wants to cancel or leave; retention offer",
    "escalation_request": "escalate the complaint to a supervisor or team leader",
    "complaint": "complaint",
    "implicit_complaint": "complaint",
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

    def get(self, snippet_id: str) -> Snippet | None:
        snippet = self.store.get(snippet_id)
        return snippet if snippet is not None and snippet.status == "published" else None

    def triggers(self) -> Sequence[tuple[str, str]]:
        revision = self.store.revision()
        if self._triggers[0] != revision:
            found = [(normalise(t), s.id) for s in self.store.list(status="published") for t in s.triggers]
            self._triggers = (revision, [(p, sid) for p, sid in found if p])
        return self._triggers[1]


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
    candidates); without one, cosines of the index's embedder."""

    min_score: float = 0.84  # cosine (no reranker)
    sure_score: float = 0.88
    margin: float = 0.01
    min_z: float = 1.0  # fused z-score of the best candidate when the customer asked or complained
    solo_z: float = 1.8  # ... and when no intent was found (small talk, answers to questions)
    second_within: float = 0.5  # also push the runner-up when this close to the best ...
    second_min_z: float = 0.9  # ... and this far above ordinary procedures
    candidates: int = 16
    min_gap_s: float = 10.0
    repeat_s: float = 20.0  # the same card again only after this long (and never twice in a row)
    short_words: int = 8
    agent_context: bool = False  # add the agent's last words to a short question (no gain measured)


@dataclass(frozen=True, slots=True)
class PolicyState:
    last_snippet: str | None = None
    last_t: float = -1e9
    shown_at: dict[str, float] = field(default_factory=dict)
    previous_customer: str = ""


class SuggestionPolicy:
    """Decides on each customer utterance; keeps only a small immutable state per call."""

    def __init__(
        self, knowledge: Knowledge, config: PolicyConfig | None = None, reranker: Reranker | None = None
    ) -> None:
        self.knowledge = knowledge
        self.config = config or PolicyConfig()
        self.reranker = reranker

    def warm_up(self) -> None:
        """Load every model and embed the snippets now, not on the call's first question."""
        self._retrieve("hello", "", 0.0, ())

    def decide(
        self, state: PolicyState, text: str, t_s: float, intents: Sequence[str] = (), agent_said: str = ""
    ) -> tuple[PolicyState, list[Firing]]:
        """The cards to push for this customer utterance (usually none, sometimes two when the
        best two procedures are too close to call)."""
        cfg = self.config
        previous = state.previous_customer
        state = replace(state, previous_customer=text)
        urgent = any(i in INTENT_HINTS for i in intents)
        if not urgent and t_s - state.last_t < cfg.min_gap_s:
            return state, []
        trigger = self._trigger(text, t_s)
        firings = [trigger] if trigger else self._retrieve(text, previous, t_s, intents, agent_said)
        firings = [f for f in firings if self._allowed(state, f)]
        if not firings:
            return state, []
        shown = dict(state.shown_at)
        for f in firings:
            shown[f.snippet_id] = t_s
        return replace(state, last_snippet=firings[-1].snippet_id, last_t=t_s, shown_at=shown), firings

    def _allowed(self, state: PolicyState, firing: Firing) -> bool:
        if firing.snippet_id == state.last_snippet:
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

    def _query(
        self, text: str, previous: str, intents: Sequence[str], agent_said: str = ""
    ) -> tuple[str, str]:
        words = len(text) // 2 if is_chinese(text) else len(text.split())
        short = words < self.config.short_words
        query = f"{previous} {text}" if short and previous else text
        if short and agent_said and self.config.agent_context:
            query = f"{agent_said} {query}"
        hints = sorted({INTENT_HINTS[i] for i in intents if i in INTENT_HINTS})
        if hints:
            query = f"{query} ({'; '.join(hints)})"
        why = f"intent {', '.join(i for i in intents if i in INTENT_HINTS)}; " if hints else ""
        excerpt = text if len(text) <= 80 else text[:77] + "..."
        return query, f'{why}"{excerpt}"'

    def _retrieve(
        self, text: str, previous: str, t_s: float, intents: Sequence[str], agent_said: str = ""
    ) -> list[Firing]:
        cfg = self.config
        query, reason = self._query(text, previous, intents, agent_said)
        k = cfg.candidates if self.reranker else 3
        # procedures in the caller's language first; any language when there are none
        hits = list(self.knowledge.search(query, k=k, lang="zh" if is_chinese(text) else "en"))
        if len(hits) < 3:
            hits = list(self.knowledge.search(query, k=k))
        snippets = [s for h in hits if (s := self.knowledge.get(h.snippet_id)) is not None]
        if not snippets:
            return []
        if self.reranker is not None and len(snippets) >= 3:
            ranked = self.reranker.rank(query, snippets)
            best = ranked[0]
            if best.score < (cfg.min_z if intents else cfg.solo_z):
                return []
            out = [Firing(t_s, best.snippet_id, best.title, best.score, reason)]
            if len(ranked) > 1:
                second = ranked[1]
                if second.score >= cfg.second_min_z and best.score - second.score <= cfg.second_within:
                    out.append(Firing(t_s, second.snippet_id, second.title, second.score, reason))
            return out
        best_hit = hits[0]
        runner_up = hits[1].score if len(hits) > 1 else 0.0
        confident = best_hit.score >= cfg.sure_score or (
            best_hit.score >= cfg.min_score and best_hit.score - runner_up >= cfg.margin
        )
        if not confident:
            return []
        return [Firing(t_s, snippets[0].id, snippets[0].title, round(float(best_hit.score), 3), reason)]


PANEL = ("embed-e5", "embed-en", "embed-multilingual")


def default_reranker() -> Reranker:
    """The e5 + MiniLM + USE panel (each model loads once per process)."""
    from knowledge.embed import load_embedder

    return Reranker([load_embedder(k) for k in PANEL])


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


def offline_suggester() -> Callable[[list[Turn], list[Snippet]], list[Firing]]:
    """For ``assist kb try``: what the live policy (with the coach's intents) would push on a
    recorded transcript, against a draft set of snippets."""
    from coach.engine import Coach
    from knowledge.store import SnippetStore
    from sidecar.events import CallStarted, Event, Suggestion, TranscriptFinal

    coach = Coach()
    embedder = coach.embedder
    assert embedder is not None
    policies: dict[tuple[Snippet, ...], SuggestionPolicy] = {}

    def policy_for(snippets: list[Snippet]) -> SuggestionPolicy:
        """One index and policy per draft, however many calls it is tried on."""
        key = tuple(snippets)
        if key not in policies:
            store = SnippetStore(":memory:")
            for snippet in snippets:
                store.upsert(replace(snippet, status="published"), actor="dry-run")
            policies[key] = default_policy(StoreKnowledge(store, embedder))
        return policies[key]

    def suggest(turns: list[Turn], snippets: list[Snippet]) -> list[Firing]:
        session = coach.session("dry-run", "en", policy_for(snippets))
        session.process(
            Event(
                "call.started",
                "dry-run",
                None,
                0,
                0,
                CallStarted("dry-run", "en", ("agent", "customer"), False),
            )
        )
        out: list[Firing] = []
        for i, turn in enumerate(turns):
            final = TranscriptFinal(turn.text, (), "en", i + 1)
            for ev in session.process(
                Event("transcript.final", "dry-run", turn.channel, turn.start_s, turn.end_s, final)
            ):
                if isinstance(ev.payload, Suggestion):
                    p = ev.payload
                    out.append(Firing(ev.t_end, p.snippet_id, p.title, p.score, p.reason))
        return out

    return suggest
