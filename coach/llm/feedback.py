"""What agents did with each drafted reply: used (with or without editing it) or dismissed.

Kept like suggestions' feedback (``knowledge/feedback.py``): one row a report, never changed, in a
table of the knowledge base's SQLite file, sharing its connection and lock::

    reply_feedback(id, ts, call_id, reply_id, snippet_id, kind, edited, actor)

``counts()`` gives the totals per kind (and per cited snippet) for analytics.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Literal, get_args

from sidecar.kernel.errors import InputError

ReplyFeedbackKind = Literal["used", "dismissed"]
REPLY_FEEDBACK_KINDS: tuple[ReplyFeedbackKind, ...] = get_args(ReplyFeedbackKind)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS reply_feedback (
        id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, call_id TEXT NOT NULL,
        reply_id TEXT NOT NULL, snippet_id TEXT NOT NULL DEFAULT '',
        kind TEXT NOT NULL CHECK (kind IN ('used', 'dismissed')),
        edited INTEGER NOT NULL DEFAULT 0, actor TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS reply_feedback_ts ON reply_feedback (ts)",
)


class ReplyFeedbackLog:
    def __init__(self, db: sqlite3.Connection, lock: threading.RLock,
                 now: Callable[[], float] = time.time) -> None:  # fmt: skip
        self._db = db
        self._lock = lock
        self._now = now
        with self._lock:
            for statement in _SCHEMA:
                self._db.execute(statement)

    def record(self, call_id: str, reply_id: str, kind: str, *, snippet_id: str = "", edited: bool = False,
               actor: str = "") -> None:  # fmt: skip
        if kind not in REPLY_FEEDBACK_KINDS:
            raise InputError(
                f"reply feedback kind must be one of {', '.join(REPLY_FEEDBACK_KINDS)} (got {kind!r})"
            )
        with self._lock:
            self._db.execute(
                "INSERT INTO reply_feedback (ts, call_id, reply_id, snippet_id, kind, edited, actor)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (self._now(), call_id, reply_id, snippet_id, kind, int(edited), actor),
            )  # the store's connection is in autocommit mode

    def counts(self, since: float | None = None) -> dict[str, int]:
        """``used``, ``used_edited``, ``dismissed`` since ``since`` (epoch seconds; all when None)."""
        where, args = ("WHERE ts >= ?", [since]) if since is not None else ("", [])
        with self._lock:
            row = self._db.execute(
                f"SELECT SUM(kind = 'used'), SUM(kind = 'used' AND edited = 1), SUM(kind = 'dismissed')"
                f" FROM reply_feedback {where}",
                args,
            ).fetchone()
        used, edited, dismissed = (int(v or 0) for v in row)
        return {"used": used, "used_edited": edited, "dismissed": dismissed}
