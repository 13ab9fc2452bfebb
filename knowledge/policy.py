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

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from coach.text import clauses, is_chinese, normalise
from knowledge.snippets import Snippet

# What an intent adds to the query: the kind of procedure it calls for, in words snippets use.
INTENT_HINTS = {
    "refund_request": "refund, money back, compensation or credit",
    "cancel_threat": "customer wants to cancel or leave; retention offer",
    "escalation_request": "escalate the complaint to a supervisor or team leader",
    "complaint": "complaint",
    "implicit_complaint": "complaint",
}


class Searcher(Protocol):
    def search(self, text: str, k: int = 5, lang: str | None = None) -> Sequence[object]: ...


@dataclass(frozen=True, slots=True)
class Firing:
    t_s: float
    snippet_id: str
    title: str
    score: float
    reason: str


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    min_score: float = 0.84
    sure_score: float = 0.88
    margin: float = 0.01
    min_gap_s: float = 10.0
    repeat_s: float = 120.0
    short_words: int = 8


@dataclass(frozen=True, slots=True)
class PolicyState:
    last_snippet: str | None = None
    last_t: float = -1e9
    shown_at: dict[str, float] = field(default_factory=dict)
    previous_customer: str = ""


class SuggestionPolicy:
    """Decides on each customer utterance; keeps only a small immutable state per call."""

    def __init__(
        self, index: Searcher, snippets: Sequence[Snippet], config: PolicyConfig | None = None
    ) -> None:
        self.index = index
        self.snippets = {s.id: s for s in snippets}
        self.config = config or PolicyConfig()
        self._triggers = [(normalise(t), s.id) for s in snippets for t in s.triggers if normalise(t)]

    def decide(
        self, state: PolicyState, text: str, t_s: float, intents: Sequence[str] = ()
    ) -> tuple[PolicyState, Firing | None]:
        cfg = self.config
        previous = state.previous_customer
        state = replace(state, previous_customer=text)
        urgent = any(i in INTENT_HINTS for i in intents)
        if not urgent and t_s - state.last_t < cfg.min_gap_s:
            return state, None
        firing = self._trigger(text, t_s) or self._retrieve(text, previous, t_s, intents, state)
        if firing is None or not self._allowed(state, firing):
            return state, None
        shown = dict(state.shown_at)
        shown[firing.snippet_id] = t_s
        return replace(state, last_snippet=firing.snippet_id, last_t=t_s, shown_at=shown), firing

    def _allowed(self, state: PolicyState, firing: Firing) -> bool:
        if firing.snippet_id == state.last_snippet:
            return False
        seen = state.shown_at.get(firing.snippet_id)
        return seen is None or firing.t_s - seen >= self.config.repeat_s

    def _trigger(self, text: str, t_s: float) -> Firing | None:
        said = " ".join(c.norm for c in clauses(text))
        for phrase, sid in self._triggers:
            if phrase and (phrase in said if is_chinese(phrase) else f" {phrase} " in f" {said} "):
                s = self.snippets[sid]
                return Firing(t_s, sid, s.title, 1.0, f'trigger "{phrase}"')
        return None

    def _retrieve(
        self, text: str, previous: str, t_s: float, intents: Sequence[str], state: PolicyState
    ) -> Firing | None:
        cfg = self.config
        words = len(text) // 2 if is_chinese(text) else len(text.split())
        query = f"{previous} {text}" if words < cfg.short_words and previous else text
        hints = sorted({INTENT_HINTS[i] for i in intents if i in INTENT_HINTS})
        if hints:
            query = f"{query} ({'; '.join(hints)})"
        hits = [h for h in self.index.search(query, k=3) if getattr(h, "snippet_id", None) in self.snippets]
        if not hits:
            return None
        best = hits[0]
        score = float(getattr(best, "score", 0.0))
        runner_up = float(getattr(hits[1], "score", 0.0)) if len(hits) > 1 else 0.0
        confident = score >= cfg.sure_score or (score >= cfg.min_score and score - runner_up >= cfg.margin)
        if not confident:
            return None
        sid = str(getattr(best, "snippet_id"))  # noqa: B009
        reason = f"intent {', '.join(i for i in intents if i in INTENT_HINTS)}; " if hints else ""
        excerpt = text if len(text) <= 80 else text[:77] + "..."
        return Firing(t_s, sid, self.snippets[sid].title, round(score, 3), f'{reason}"{excerpt}"')
