"""Retrieve, then rerank: the FAISS index (one embedder) proposes candidates; a panel of embedders
scores them again and their z-scores are averaged.

Why: no single offline embedder ranks procedures well for conversational queries, and their
errors differ. On the dev call set's 45 labeled customer turns, ranked by the customer's words
alone, the labeled procedure came first for 24 and within the first three for 39 with the panel
e5 + MiniLM + USE; for 30 and 42 with e5 + mpnet (weight 2) + USE, the default now. Snippet vectors
are cached per (embedder, id, version), so a live call embeds only its queries. The fused score
is relative (standard deviations above the candidates and a fixed background of ordinary
procedures), so it is comparable across embedders and knowledge bases of any size.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from knowledge.embed import Embedder, Matrix
from knowledge.snippets import Snippet
from sidecar.kernel.text import is_chinese


@dataclass(frozen=True, slots=True)
class Ranked:
    snippet_id: str
    title: str
    score: float  # fused z-score: how far above the other candidates
    similarity: float  # the first embedder's cosine


# Procedures of no particular domain: they join every ranking's statistics (never its results), so
# a fused score means the same in a knowledge base of 5 snippets as in one of 5000.
BACKGROUND = (
    "Updating a customer's postal address. Confirm the new address and the date it applies from.",
    "Opening hours and contact options. Tell the customer when lines are open and about the app.",
    "Sending a copy of a document by email. Check the email address on file before sending.",
    "Changing a payment date. Explain how the change affects the next bill.",
    "Logging general feedback. Thank the customer and record the feedback in the notes.",
    "Transferring a call to another team. Explain why and give the reference number.",
    "Explaining a letter the customer received. Go through each section in plain words.",
    "Adding a second contact person to an account. Get the account holder's consent first.",
    "Requesting a paper statement. Check the address and the period the customer needs.",
    "Setting communication preferences. Update post, email and text choices.",
    "Booking a callback. Agree a time and confirm the phone number.",
    "Closing the call politely. Summarise what was done and ask if anything else is needed.",
    "更新客户的联系地址。核实新地址及生效日期。",
    "查询营业时间与联系方式。告知客户服务时间和线上渠道。",
    "登记客户意见。感谢客户并在备注中记录。",
    "预约回电。与客户约定时间并确认联系电话。",
)


def snippet_text(s: Snippet) -> str:
    return f"{s.title}. {' '.join(s.tags)}. {s.body}"


class Reranker:
    def __init__(
        self,
        embedders: Sequence[Embedder],
        background: Sequence[str] = BACKGROUND,
        weights: Sequence[float] | None = None,
    ) -> None:
        if not embedders:
            raise ValueError("a reranker needs at least one embedder")
        self.embedders = list(embedders)
        self.weights = list(weights) if weights is not None else [1.0] * len(self.embedders)
        if len(self.weights) != len(self.embedders) or min(self.weights) < 0 or sum(self.weights) <= 0:
            raise ValueError("a reranker needs one non-negative weight per embedder, not all zero")
        self._cache: dict[tuple[int, str, int], np.ndarray] = {}
        self._lock = threading.Lock()
        self._background = [
            e.embed(list(background), query=False) if background else None for e in self.embedders
        ]

    def _passages(self, k: int, embedder: Embedder, snippets: Sequence[Snippet]) -> Matrix:
        missing = [s for s in snippets if (k, s.id, s.version) not in self._cache]
        if missing:
            vecs = embedder.embed([snippet_text(s) for s in missing], query=False)
            with self._lock:
                for s, v in zip(missing, vecs, strict=True):
                    self._cache[(k, s.id, s.version)] = v
        return np.stack([self._cache[(k, s.id, s.version)] for s in snippets])

    def rank(self, query: str, candidates: Sequence[Snippet]) -> list[Ranked]:
        return self.rank_weighted([(query, 1.0)], candidates)

    def rank_weighted(
        self, queries: Sequence[tuple[str, float]], candidates: Sequence[Snippet]
    ) -> list[Ranked]:
        """Rank by several queries at once (the customer's words, and the conversation around
        them with a smaller weight): their fused z-scores, weighted and averaged."""
        queries = [(q, w) for q, w in queries if q.strip() and w > 0]
        if not candidates or not queries:
            return []
        total = np.zeros(len(candidates), dtype=np.float64)
        first = np.zeros(len(candidates), dtype=np.float64)
        for n, (query, weight) in enumerate(queries):
            fused, sims = self._fused(query, candidates)
            total += weight * fused
            if n == 0:
                first = sims
        total /= sum(w for _, w in queries)
        order = np.argsort(-total)
        return [
            Ranked(
                candidates[i].id, candidates[i].title, round(float(total[i]), 3), round(float(first[i]), 3)
            )
            for i in order
        ]

    def _fused(self, query: str, candidates: Sequence[Snippet]) -> tuple[np.ndarray, np.ndarray]:
        """The panel's weighted mean z-score for each candidate, and the first embedder's cosines."""
        fused = np.zeros(len(candidates), dtype=np.float64)
        first = np.zeros(len(candidates), dtype=np.float64)
        chinese = is_chinese(query) or any(is_chinese(c.title) for c in candidates[:3])
        used = 0.0
        for k, embedder in enumerate(self.embedders):
            if chinese and not embedder.multilingual:
                continue  # an English-only model would only add noise
            weight = self.weights[k]
            used += weight
            q = embedder.embed([query], query=True)[0]
            sims = (self._passages(k, embedder, candidates) @ q).astype(np.float64)
            if k == 0:
                first = sims
            bg = self._background[k]
            pool = np.concatenate([sims, bg @ q]) if bg is not None else sims
            if len(pool) > 1:
                fused += weight * (sims - pool.mean()) / (pool.std() + 1e-6)
        return fused / max(1e-9, used), first
