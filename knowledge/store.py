"""The snippet store: current snippets, every version ever saved, and an audit log, in SQLite.

Contract:

- ``snippets`` holds the current row per id; ``snippet_versions`` every saved version (rows are
  never changed or removed); ``audit_log`` one row per change. The schema version is
  ``PRAGMA user_version``; tables are created when the store is opened.
- A *version* is saved whenever a snippet's content or status changes: ``upsert``, ``publish``
  and ``rollback`` write version ``max(saved versions) + 1`` (numbers keep growing after a
  delete); saving the content and status the snippet already has is a no-op that returns the
  current row and logs nothing. ``version``, ``updated_by`` and ``updated_at`` of a snippet given
  to the store are ignored: the store sets them.
- ``delete`` is soft: the current row goes, its history and the audit log stay, and ``rollback``
  can bring it back.
- ``revision()`` grows by one with every committed change (kept in the ``meta`` table), so an
  index saved to disk can tell whether it is behind the store.
- Listeners see a ``SnippetChange`` for each change after its transaction commits, in commit
  order, on the writing thread, outside the database lock; an exception in a listener is logged
  and does not reach the writer. Listeners must not write to the store. Changes made by another
  process using the same file are not announced.
- One connection, guarded by a re-entrant lock: a store can be shared by threads.
"""

from __future__ import annotations

import builtins
import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TextIO

from knowledge.snippets import KnowledgeError, Snippet, Status, load_snippets_jsonl, snippet_problems

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_CONTENT_COLUMNS = "id, title, body, tags, lang, triggers, version, status, updated_by, updated_at"
_SCHEMA = (
    """CREATE TABLE snippets (
        id TEXT PRIMARY KEY, title TEXT NOT NULL, body TEXT NOT NULL, tags TEXT NOT NULL,
        lang TEXT NOT NULL, triggers TEXT NOT NULL, version INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('draft', 'published')),
        updated_by TEXT NOT NULL, updated_at REAL NOT NULL)""",
    """CREATE TABLE snippet_versions (
        id TEXT NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL, tags TEXT NOT NULL,
        lang TEXT NOT NULL, triggers TEXT NOT NULL, version INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('draft', 'published')),
        updated_by TEXT NOT NULL, updated_at REAL NOT NULL, PRIMARY KEY (id, version))""",
    """CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, actor TEXT NOT NULL,
        action TEXT NOT NULL
            CHECK (action IN ('create', 'update', 'publish', 'delete', 'rollback', 'import')),
        snippet_id TEXT, version INTEGER, detail TEXT NOT NULL)""",
    "CREATE INDEX audit_log_snippet ON audit_log (snippet_id)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT INTO meta (key, value) VALUES ('revision', 0)",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

Action = Literal["create", "update", "publish", "delete", "rollback", "import"]


class SnippetNotFoundError(KnowledgeError):
    """An id (or an id's version) the store does not have."""


@dataclass(frozen=True, slots=True)
class SnippetChange:
    """A committed change: ``snippet`` is the new current row, or None for a delete.
    ``revision`` is the store's revision right after this change (0 when not from a store)."""

    kind: Literal["upsert", "delete"]
    snippet_id: str
    snippet: Snippet | None
    revision: int = 0


@dataclass(frozen=True, slots=True)
class ImportReport:
    source: str
    created: int
    updated: int
    unchanged: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit row; ``snippet_id`` and ``version`` are None for the summary row of an import."""

    ts: float
    actor: str
    action: Action
    snippet_id: str | None
    version: int | None
    detail: str


Listener = Callable[[SnippetChange], None]


class SnippetStore:
    """Snippets in a SQLite file (WAL mode) or in memory (``":memory:"``). See the module contract."""

    def __init__(self, path: str | Path = ":memory:", now: Callable[[], float] = time.time) -> None:
        self.path = str(path)
        self._now = now
        self._lock = threading.RLock()
        self._notify_lock = threading.RLock()
        self._pending: deque[SnippetChange] = deque()
        self._listeners: builtins.list[Listener] = []
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise KnowledgeError(f"{self.path}: cannot open the snippet store: {exc}") from None
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise KnowledgeError(f"{self.path}: not a snippet store ({exc})") from None
        except BaseException:
            self._db.close()
            raise

    @property
    def connection(self) -> sqlite3.Connection:
        """The store's connection (for modules that keep their tables in the same database)."""
        return self._db

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def _open(self) -> None:
        self._db.execute("PRAGMA busy_timeout = 5000")
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise KnowledgeError(
                    f"{self.path}: snippet store schema {version} is newer than this program's "
                    f"({SCHEMA_VERSION}); use a newer agent-assist"
                )
            if version == 0:
                for statement in _SCHEMA:
                    self._db.execute(statement)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SnippetStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------------

    def get(self, snippet_id: str) -> Snippet | None:
        """The current snippet with this id, or None (never saved, or deleted)."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_CONTENT_COLUMNS} FROM snippets WHERE id = ?", (snippet_id,)
            ).fetchone()
        return None if row is None else _from_row(row)

    def list(self, status: Status | None = None, lang: str | None = None) -> builtins.list[Snippet]:
        """Current snippets, sorted by id, optionally only those with this status and/or language."""
        sql, args = f"SELECT {_CONTENT_COLUMNS} FROM snippets WHERE 1", builtins.list[str]()
        if status is not None:
            sql, args = sql + " AND status = ?", [*args, status]
        if lang is not None:
            sql, args = sql + " AND lang = ?", [*args, lang]
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [_from_row(r) for r in rows]

    def history(self, snippet_id: str) -> builtins.list[Snippet]:
        """Every saved version of this id, oldest first (kept after a delete); empty when none."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_CONTENT_COLUMNS} FROM snippet_versions WHERE id = ? ORDER BY version",
                (snippet_id,),
            ).fetchall()
        return [_from_row(r) for r in rows]

    def audit(self, limit: int = 100, snippet_id: str | None = None) -> builtins.list[AuditEntry]:
        """The latest audit rows, newest first, optionally only those of one snippet."""
        where, args = ("WHERE snippet_id = ?", [snippet_id]) if snippet_id is not None else ("", [])
        with self._lock:
            rows = self._db.execute(
                "SELECT ts, actor, action, snippet_id, version, detail FROM audit_log "
                f"{where} ORDER BY seq DESC LIMIT ?",
                [*args, limit],
            ).fetchall()
        return [AuditEntry(*r) for r in rows]

    def revision(self) -> int:
        """A counter that grows by one with every committed change, kept in the file."""
        with self._lock:
            return int(self._db.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0])

    def export_jsonl(self, out: TextIO, status: Status | None = "published") -> int:
        """Write current snippets (of this status; all when None) as ``kb.jsonl`` lines sorted by
        id; returns how many were written."""
        snippets = self.list(status=status)
        for s in snippets:
            out.write(json.dumps(s.to_json_dict(), ensure_ascii=False) + "\n")
        return len(snippets)

    # -- writing -------------------------------------------------------------------------------

    def upsert(self, snippet: Snippet, actor: str) -> Snippet:
        """Save a snippet's content and status as a new version; the current row if unchanged."""
        _check(snippet)
        with self._write(actor) as changes:
            saved, _ = self._save(snippet, actor, None, "", changes)
        return saved

    def publish(self, snippet_id: str, actor: str) -> Snippet:
        """Save the current content with status "published" (a no-op when it already is)."""
        with self._write(actor) as changes:
            current = self._current(snippet_id)
            saved, _ = self._save(replace(current, status="published"), actor, "publish", "", changes)
        return saved

    def rollback(self, snippet_id: str, version: int, actor: str) -> Snippet:
        """Save a new version with the content and status of an old one (also after a delete).
        A no-op when the current row already has them."""
        with self._write(actor) as changes:
            row = self._db.execute(
                f"SELECT {_CONTENT_COLUMNS} FROM snippet_versions WHERE id = ? AND version = ?",
                (snippet_id, version),
            ).fetchone()
            if row is None:
                raise SnippetNotFoundError(f'snippet "{snippet_id}" has no version {version}')
            saved, _ = self._save(_from_row(row), actor, "rollback", f"to version {version}", changes)
        return saved

    def delete(self, snippet_id: str, actor: str) -> None:
        """Remove the current row; history and audit log stay."""
        with self._write(actor) as changes:
            current = self._current(snippet_id)
            self._db.execute("DELETE FROM snippets WHERE id = ?", (snippet_id,))
            self._log(actor, "delete", snippet_id, current.version, "")
            changes.append(SnippetChange("delete", snippet_id, None, self._bump()))

    def import_jsonl(self, path: str | Path, actor: str, status: Status = "published") -> ImportReport:
        """Import a ``kb.jsonl`` file with this status, all in one transaction.

        The whole file is checked first: if any line is bad a ``KnowledgeError`` lists every bad
        line and nothing is written. Snippets not in the file are left alone.
        """
        snippets = load_snippets_jsonl(path)
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        with self._write(actor) as changes:
            for s in snippets:
                _, outcome = self._save(replace(s, status=status), actor, None, f"import {path}", changes)
                counts[outcome] += 1
            summary = ", ".join(f"{k} {v}" for k, v in counts.items())
            self._log(actor, "import", None, None, f"{path}: {summary}")
        return ImportReport(str(path), counts["created"], counts["updated"], counts["unchanged"])

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback`` with each committed change from now on; returns an unsubscribe function."""
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    # -- internals -----------------------------------------------------------------------------

    @contextmanager
    def _write(self, actor: str) -> Iterator[builtins.list[SnippetChange]]:
        """One transaction; the changes appended to the yielded list are announced after commit."""
        if not isinstance(actor, str) or not actor.strip():
            raise KnowledgeError("an actor (who makes the change) is required")
        changes: builtins.list[SnippetChange] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield changes
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._pending.extend(changes)
        self._announce()

    def _announce(self) -> None:
        # Changes are queued in commit order under the database lock and handed out one at a time
        # under the notify lock, so listeners see commit order without holding the database lock.
        with self._notify_lock:
            while True:
                with self._lock:
                    if not self._pending:
                        return
                    change = self._pending.popleft()
                    listeners = tuple(self._listeners)
                for listener in listeners:
                    try:
                        listener(change)
                    except Exception:
                        log.exception("snippet store listener %r failed on %s", listener, change)

    def _current(self, snippet_id: str) -> Snippet:
        row = self._db.execute(
            f"SELECT {_CONTENT_COLUMNS} FROM snippets WHERE id = ?", (snippet_id,)
        ).fetchone()
        if row is None:
            raise SnippetNotFoundError(f'no snippet "{snippet_id}"')
        return _from_row(row)

    def _save(
        self,
        snippet: Snippet,
        actor: str,
        action: Action | None,
        detail: str,
        changes: builtins.list[SnippetChange],
    ) -> tuple[Snippet, Literal["created", "updated", "unchanged"]]:
        """Write a new version unless the current row has the same content and status. Inside
        ``_write``. ``action`` None means create or update, whichever it is."""
        row = self._db.execute(
            f"SELECT {_CONTENT_COLUMNS} FROM snippets WHERE id = ?", (snippet.id,)
        ).fetchone()
        current = None if row is None else _from_row(row)
        if current is not None and current.same_content(snippet):
            return current, "unchanged"
        (last,) = self._db.execute(
            "SELECT MAX(version) FROM snippet_versions WHERE id = ?", (snippet.id,)
        ).fetchone()
        saved = replace(snippet, version=(last or 0) + 1, updated_by=actor, updated_at=self._now())
        values = _to_row(saved)
        marks = ", ".join("?" * len(values))
        self._db.execute(f"INSERT OR REPLACE INTO snippets ({_CONTENT_COLUMNS}) VALUES ({marks})", values)
        self._db.execute(f"INSERT INTO snippet_versions ({_CONTENT_COLUMNS}) VALUES ({marks})", values)
        outcome: Literal["created", "updated"] = "created" if current is None else "updated"
        self._log(
            actor, action or ("create" if current is None else "update"), saved.id, saved.version, detail
        )
        changes.append(SnippetChange("upsert", saved.id, saved, self._bump()))
        return saved, outcome

    def _log(
        self, actor: str, action: Action, snippet_id: str | None, version: int | None, detail: str
    ) -> None:
        self._db.execute(
            "INSERT INTO audit_log (ts, actor, action, snippet_id, version, detail)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (self._now(), actor, action, snippet_id, version, detail),
        )

    def _bump(self) -> int:
        self._db.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")
        return int(self._db.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0])


def _check(snippet: Snippet) -> None:
    if problems := snippet_problems(snippet):
        raise KnowledgeError(f'snippet "{snippet.id}": {"; ".join(problems)}')


def _to_row(s: Snippet) -> tuple[object, ...]:
    return (
        s.id,
        s.title,
        s.body,
        json.dumps(s.tags, ensure_ascii=False),
        s.lang,
        json.dumps(s.triggers, ensure_ascii=False),
        s.version,
        s.status,
        s.updated_by,
        s.updated_at,
    )


def _from_row(row: tuple[Any, ...]) -> Snippet:
    id_, title, body, tags, lang, triggers, version, status, updated_by, updated_at = row
    return Snippet(
        id_,
        title,
        body,
        tuple(json.loads(tags)),
        lang,
        tuple(json.loads(triggers)),
        version,
        status,
        updated_by,
        updated_at,
    )
