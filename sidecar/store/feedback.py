"""Agents' feedback on a call's suggestions, read from the knowledge base's feedback log
(``knowledge/feedback.py``: one row per report in the snippet store's SQLite file)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import replace

from knowledge.store import SnippetStore
from sidecar.store.record import CallRecord

FeedbackReader = Callable[[str], dict[str, dict[str, int]]]  # call id -> snippet id -> kind -> count


def kb_feedback_reader(store: SnippetStore) -> FeedbackReader:
    """Counts of each feedback kind per snippet for one call (blocking: call it from a thread)."""

    def read(call_id: str) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        with store.lock:
            try:
                rows = store.connection.execute(
                    "SELECT snippet_id, kind, COUNT(*) FROM suggestion_feedback WHERE call_id = ?"
                    " GROUP BY snippet_id, kind",
                    (call_id,),
                ).fetchall()
            except sqlite3.OperationalError:  # no feedback table yet: no feedback
                return out
        for snippet_id, kind, n in rows:
            out.setdefault(str(snippet_id), {})[str(kind)] = int(n)
        return out

    return read


def with_feedback(record: CallRecord, feedback: dict[str, dict[str, int]]) -> CallRecord:
    """The record with each suggestion carrying its snippet's feedback in this call."""
    if not feedback or not record.suggestions:
        return record
    suggestions = tuple(
        replace(s, feedback=tuple(sorted(feedback.get(s.snippet_id, {}).items()))) for s in record.suggestions
    )
    return replace(record, suggestions=suggestions)
