"""What agents did with each suggestion they were shown, and per-snippet analytics over it.

Feedback lives in the snippet store's SQLite file, in a table this module creates on first use::

    suggestion_feedback(id, ts, call_id, snippet_id, kind, actor)

``kind`` is one of ``shown``, ``used``, ``dismissed``, ``helpful`` and ``not_helpful``; one row a
report, never changed. Rows share the store's connection and lock, so a ``FeedbackLog`` can be used
from the same threads as its store. Feedback is not a snippet change: it is not versioned, audited
or announced to listeners, and it does not move ``SnippetStore.revision()``.

Counts are of events: a snippet shown twice in one call counts twice. Rates are over ``shown`` and
are 0 for a snippet never shown (in the window asked for).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from knowledge.snippets import KnowledgeError
from knowledge.store import SnippetNotFoundError, SnippetStore

FeedbackKind = Literal["shown", "used", "dismissed", "helpful", "not_helpful"]
FEEDBACK_KINDS: tuple[FeedbackKind, ...] = get_args(FeedbackKind)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS suggestion_feedback (
        id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, call_id TEXT NOT NULL,
        snippet_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('shown', 'used', 'dismissed', 'helpful', 'not_helpful')),
        actor TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS suggestion_feedback_snippet ON suggestion_feedback (snippet_id, ts)",
    "CREATE INDEX IF NOT EXISTS suggestion_feedback_ts ON suggestion_feedback (ts)",
)


@dataclass(frozen=True, slots=True)
class SnippetStats:
    """Feedback counts of one snippet; ``*_rate`` is that count over ``shown`` (0 when never shown)."""

    snippet_id: str
    title: str
    shown: int
    used: int
    dismissed: int
    helpful: int
    not_helpful: int
    use_rate: float
    dismiss_rate: float
    helpful_rate: float


class FeedbackLog:
    """Feedback on shown suggestions, kept next to the snippets of ``store``.

    ``db`` and ``lock`` default to the store's own connection and lock (give both or neither).
    """

    def __init__(
        self,
        store: SnippetStore,
        db: sqlite3.Connection | None = None,
        lock: threading.RLock | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        if (db is None) != (lock is None):
            raise ValueError("give both db and lock, or neither")
        self._store = store
        # SnippetStore has no public accessor for its connection and lock yet: use its own.
        self._db: sqlite3.Connection = db if db is not None else store.connection
        self._lock: threading.RLock = lock if lock is not None else store.lock
        self._now = now
        try:
            with self._lock:
                for statement in _SCHEMA:
                    self._db.execute(statement)
        except sqlite3.Error as exc:
            raise KnowledgeError(f"{store.path}: cannot create the feedback table: {exc}") from None

    def record(self, call_id: str, snippet_id: str, kind: str, actor: str = "") -> None:
        """Log one report about a suggestion of ``snippet_id`` in call ``call_id``.

        ``kind`` must be one of ``FEEDBACK_KINDS`` and the store must know the snippet (a current
        snippet, or one deleted since: it has saved versions); otherwise ``KnowledgeError``.
        """
        if kind not in FEEDBACK_KINDS:
            raise KnowledgeError(f"feedback kind must be one of {', '.join(FEEDBACK_KINDS)} (got {kind!r})")
        if not isinstance(call_id, str) or not call_id.strip():
            raise KnowledgeError("feedback needs a call id")
        if not isinstance(actor, str):
            raise KnowledgeError(f"feedback actor must be a string (got {type(actor).__name__})")
        with self._lock:
            if self._title(snippet_id) is None:
                raise SnippetNotFoundError(f'feedback for unknown snippet "{snippet_id}"')
            try:
                self._db.execute(
                    "INSERT INTO suggestion_feedback (ts, call_id, snippet_id, kind, actor)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (self._now(), call_id, snippet_id, kind, actor),
                )
            except sqlite3.Error as exc:
                raise KnowledgeError(f"{self._store.path}: cannot record feedback: {exc}") from None

    def analytics(self, since: float | None = None) -> list[SnippetStats]:
        """Counts and rates per snippet from feedback at or after ``since`` (epoch seconds; all when
        None): every current snippet, and any other snippet with feedback in the window. Sorted by
        ``shown`` (most first), then id."""
        where, args = ("WHERE ts >= ?", [since]) if since is not None else ("", [])
        sums = ", ".join(f"SUM(kind = '{kind}')" for kind in FEEDBACK_KINDS)
        with self._lock:
            rows = self._db.execute(
                f"SELECT snippet_id, {sums} FROM suggestion_feedback {where} GROUP BY snippet_id", args
            ).fetchall()
            counts: dict[str, tuple[int, ...]] = {row[0]: tuple(int(n) for n in row[1:]) for row in rows}
            titles = {s.id: s.title for s in self._store.list()}
            for snippet_id in counts.keys() - titles.keys():
                titles[snippet_id] = self._title(snippet_id) or ""
        stats = [
            _stats(sid, title, counts.get(sid, (0,) * len(FEEDBACK_KINDS))) for sid, title in titles.items()
        ]
        return sorted(stats, key=lambda s: (-s.shown, s.snippet_id))

    def _title(self, snippet_id: str) -> str | None:
        """The current title, the latest saved one for a deleted snippet, or None when unknown."""
        current = self._store.get(snippet_id)
        if current is not None:
            return current.title
        versions = self._store.history(snippet_id)
        return versions[-1].title if versions else None


def _stats(snippet_id: str, title: str, counts: tuple[int, ...]) -> SnippetStats:
    shown, used, dismissed, helpful, not_helpful = counts

    def rate(n: int) -> float:
        return n / shown if shown else 0.0

    return SnippetStats(
        snippet_id,
        title,
        shown,
        used,
        dismissed,
        helpful,
        not_helpful,
        rate(used),
        rate(dismissed),
        rate(helpful),
    )
