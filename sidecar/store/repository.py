"""The call store: save ended calls, read them back, search, verdicts on alerts, the audit log.

Synchronous (SQLAlchemy Core on a pooled engine, safe from any thread): async code calls it through
``asyncio.to_thread``. ``save`` is idempotent: a call id (or a qa run's content hash) already stored
is not stored again, so several API nodes following one bus, or a rerun of ``assist qa run``,
store each call once. Retention and erasure are in ``retention.py``.

Post-call notes (``save_note``) are kept by call id whether or not the call is stored yet (the note
and the record are written by separate tasks, in either order); ``get`` joins them at read time.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias, get_args

from sqlalchemy import Engine, case, create_engine, event, func, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from sidecar.kernel.errors import ConfigError
from sidecar.store import migrate
from sidecar.store.query import MAX_LIMIT, CallQuery, where
from sidecar.store.record import CallRecord, record_from_json
from sidecar.store.schema import alert_verdicts, alerts, audit_log, call_intents, call_summaries, calls

log = logging.getLogger(__name__)

Verdict: TypeAlias = Literal["confirmed", "not_a_violation"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)


class StoreError(Exception):
    """A request the store cannot satisfy (unknown alert, bad verdict): one line, for the caller."""


@dataclass(frozen=True, slots=True)
class StoredCallSummary:
    call_id: str
    agent_id: str
    queue: str
    lang: str
    source: str
    origin: str
    started_at: float
    ended_at: float
    duration_s: float
    end_reason: str
    score: float | None
    alerts: dict[str, int]
    recording_ref: str | None


@dataclass(frozen=True, slots=True)
class AlertReview:
    """A stored alert with its id (what a verdict names) and the verdict, if any."""

    alert_id: int
    call_id: str
    ordinal: int
    category: str
    severity: str
    rule_id: str
    message: str
    evidence: str
    t_start: float
    t_end: float
    source: str
    verdict: str | None = None
    comment: str = ""
    reviewer: str = ""
    decided_at: float | None = None


@dataclass(frozen=True, slots=True)
class PostCallNote:
    """The language model's note of an ended call, as stored: its lines as shown, the disposition
    (None: the model gave none that was grounded) and its reason."""

    call_id: str
    lines: tuple[str, ...]
    disposition: str | None
    reason: str
    created_at: float


@dataclass(frozen=True, slots=True)
class StoredCall:
    summary: StoredCallSummary
    record: CallRecord
    alerts: tuple[AlertReview, ...]
    note: PostCallNote | None = None


@dataclass(frozen=True, slots=True)
class RulePrecision:
    """Reviewers' verdicts on one rule's alerts: precision = confirmed / reviewed (None: none reviewed)."""

    rule_id: str
    category: str
    alerts: int
    reviewed: int
    confirmed: int
    not_a_violation: int
    precision: float | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: float
    actor: str
    role: str
    action: str
    call_id: str | None
    detail: str


def make_engine(url: str) -> Engine:
    """A pooled engine; SQLite gets its directory created, WAL, a busy timeout and foreign keys."""
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError("call store: the database URL is not a valid SQLAlchemy URL") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class CallStore:
    def __init__(
        self, url: str, *, run_migrations: bool = True, now: Callable[[], float] = time.time
    ) -> None:
        self.engine = make_engine(url)
        self.now = now
        if run_migrations:
            try:
                migrate.upgrade(self.engine)
            except SQLAlchemyError as exc:
                raise ConfigError(
                    f"call store: cannot migrate the database ({type(exc).__name__}: {str(exc).splitlines()[0]})"
                ) from None

    def close(self) -> None:
        self.engine.dispose()

    # -- writing -------------------------------------------------------------------------------

    def save(self, record: CallRecord) -> bool:
        """Store an ended call; False when its call id (or content hash) is already stored."""
        counts = record.alert_counts()
        row = {
            "call_id": record.call_id, "agent_id": record.agent_id, "queue": record.queue, "lang": record.lang,
            "source": record.source, "customer_ref": record.customer_ref, "recording_ref": record.recording_ref,
            "origin": record.origin, "started_at": record.started_at, "ended_at": record.ended_at,
            "duration_s": record.duration_s, "end_reason": record.end_reason, "score_total": record.score_total,
            "alerts_fatal": counts.get("fatal", 0), "alerts_serious": counts.get("serious", 0),
            "alerts_general": counts.get("general", 0), "search_text": record.search_text(),
            "record": json.dumps(record.to_json_dict(), ensure_ascii=False, separators=(",", ":")),
            "stored_at": self.now(), "content_hash": record.content_hash,
        }  # fmt: skip
        try:
            with self.engine.begin() as conn:
                if self._exists(conn, record):
                    return False
                conn.execute(calls.insert().values(**row))
                if record.alerts:
                    conn.execute(alerts.insert(), [
                        {"call_id": record.call_id, "ordinal": i, "category": a.category, "severity": a.severity,
                         "rule_id": a.rule_id, "message": a.message, "evidence": a.evidence,
                         "t_start": a.t_start, "t_end": a.t_end, "source": a.source}
                        for i, a in enumerate(record.alerts)
                    ])  # fmt: skip
                intents = sorted({i.intent for i in record.intents})
                if intents:
                    conn.execute(
                        call_intents.insert(), [{"call_id": record.call_id, "intent": i} for i in intents]
                    )
        except IntegrityError:  # another node (or worker) stored it between the check and the insert
            return False
        return True

    def _exists(self, conn: Connection, record: CallRecord) -> bool:
        found = conn.execute(select(calls.c.call_id).where(calls.c.call_id == record.call_id)).first()
        if found is None and record.content_hash is not None:
            found = conn.execute(
                select(calls.c.call_id).where(calls.c.content_hash == record.content_hash)
            ).first()
        return found is not None

    def has_content(self, content_hash: str) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(select(calls.c.call_id).where(calls.c.content_hash == content_hash)).first()
        return row is not None

    def stored_hashes(self) -> set[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(calls.c.content_hash).where(calls.c.content_hash.is_not(None)))
            return {str(r[0]) for r in rows}

    def save_note(self, note: PostCallNote) -> None:
        """Store (or replace) a call's post-call note; idempotent, and the call need not be stored yet."""
        if not note.call_id:
            raise StoreError("a post-call note needs a call id")
        values = {"lines": json.dumps(list(note.lines), ensure_ascii=False), "disposition": note.disposition,
                  "reason": note.reason, "created_at": note.created_at}  # fmt: skip
        update = call_summaries.update().where(call_summaries.c.call_id == note.call_id).values(**values)
        with self.engine.begin() as conn:
            if conn.execute(update).rowcount:
                return
        try:
            with self.engine.begin() as conn:
                conn.execute(call_summaries.insert().values(call_id=note.call_id, **values))
        except IntegrityError:  # another node stored it between the update and the insert
            with self.engine.begin() as conn:
                conn.execute(update)

    def note(self, call_id: str) -> PostCallNote | None:
        with self.engine.connect() as conn:
            return self._note(conn, call_id)

    def _note(self, conn: Connection, call_id: str) -> PostCallNote | None:
        row = conn.execute(select(call_summaries).where(call_summaries.c.call_id == call_id)).first()
        if row is None:
            return None
        lines = tuple(str(line) for line in json.loads(row.lines))
        return PostCallNote(row.call_id, lines, row.disposition, row.reason or "", row.created_at)

    def audit(self, actor: str, role: str, action: str, call_id: str | None = None, detail: str = "") -> None:
        with self.engine.begin() as conn:
            self.audit_in(conn, actor, role, action, call_id, detail)

    def audit_in(
        self, conn: Connection, actor: str, role: str, action: str, call_id: str | None, detail: str
    ) -> None:
        """An audit entry inside the caller's transaction (it commits or rolls back with it)."""
        conn.execute(audit_log.insert().values(at=self.now(), actor=actor, role=role, action=action,
                                               call_id=call_id, detail=detail))  # fmt: skip

    def set_verdict(
        self, call_id: str, alert_id: int, verdict: str, comment: str, reviewer: str, role: str
    ) -> AlertReview:
        """A reviewer's verdict on one alert of a call (a later verdict replaces an earlier one)."""
        if verdict not in VERDICTS:
            raise StoreError(f"verdict must be one of {', '.join(VERDICTS)} (got {verdict!r})")
        with self.engine.begin() as conn:
            found = conn.execute(
                select(alerts.c.id).where(alerts.c.id == alert_id, alerts.c.call_id == call_id)
            ).first()
            if found is None:
                raise StoreError(f"call {call_id} has no alert {alert_id}")
            conn.execute(alert_verdicts.delete().where(alert_verdicts.c.alert_id == alert_id))
            conn.execute(alert_verdicts.insert().values(alert_id=alert_id, verdict=verdict, comment=comment,
                                                        reviewer=reviewer, decided_at=self.now()))  # fmt: skip
            self.audit_in(conn, reviewer, role, "verdict", call_id, f"alert {alert_id}: {verdict}")
            reviews = self._alerts(conn, call_id)
        return next(r for r in reviews if r.alert_id == alert_id)

    # -- reading -------------------------------------------------------------------------------

    def search(self, query: CallQuery) -> list[StoredCallSummary]:
        limit = max(1, min(query.limit, MAX_LIMIT))
        stmt = (
            select(*_SUMMARY_COLUMNS).where(where(query))
            .order_by(calls.c.started_at.desc(), calls.c.call_id).limit(limit).offset(max(0, query.offset))
        )  # fmt: skip
        with self.engine.connect() as conn:
            return [_summary(row) for row in conn.execute(stmt)]

    def count(self, query: CallQuery) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(calls).where(where(query))).scalar_one())

    def get(self, call_id: str) -> StoredCall | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(*_SUMMARY_COLUMNS, calls.c.record).where(calls.c.call_id == call_id)
            ).first()
            if row is None:
                return None
            reviews = self._alerts(conn, call_id)
            note = self._note(conn, call_id)
        return StoredCall(_summary(row), record_from_json(json.loads(row.record)), tuple(reviews), note)

    def open_call(self, call_id: str, actor: str, role: str) -> StoredCall | None:
        """``get``, written to the audit log as ``open`` (who read which call's record)."""
        stored = self.get(call_id)
        if stored is not None:
            self.audit(actor, role, "open", call_id)
        return stored

    def _alerts(self, conn: Connection, call_id: str) -> list[AlertReview]:
        a, v = alerts.c, alert_verdicts.c
        stmt = (
            select(a.id, a.call_id, a.ordinal, a.category, a.severity, a.rule_id, a.message, a.evidence,
                   a.t_start, a.t_end, a.source, v.verdict, v.comment, v.reviewer, v.decided_at)
            .select_from(alerts.outerjoin(alert_verdicts, alert_verdicts.c.alert_id == a.id))
            .where(a.call_id == call_id).order_by(a.ordinal)
        )  # fmt: skip
        return [
            AlertReview(r.id, r.call_id, r.ordinal, r.category, r.severity, r.rule_id, r.message, r.evidence,
                        r.t_start, r.t_end, r.source, r.verdict, r.comment or "", r.reviewer or "", r.decided_at)
            for r in conn.execute(stmt)
        ]  # fmt: skip

    def rule_precision(self, since: float | None = None, until: float | None = None) -> list[RulePrecision]:
        """Per rule: alerts stored, and reviewers' verdicts decided in [since, until)."""
        a, v = alerts.c, alert_verdicts.c
        join_on = v.alert_id == a.id
        if since is not None:
            join_on = join_on & (v.decided_at >= since)
        if until is not None:
            join_on = join_on & (v.decided_at < until)
        stmt = (
            select(a.rule_id, a.category, func.count(a.id).label("alerts"),
                   func.count(v.alert_id).label("reviewed"),
                   func.sum(case((v.verdict == "confirmed", 1), else_=0)).label("confirmed"))
            .select_from(alerts.outerjoin(alert_verdicts, join_on))
            .group_by(a.rule_id, a.category).order_by(a.rule_id, a.category)
        )  # fmt: skip
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        out = []
        for r in rows:
            reviewed, confirmed = int(r.reviewed or 0), int(r.confirmed or 0)
            out.append(RulePrecision(r.rule_id, r.category, int(r.alerts), reviewed, confirmed, reviewed - confirmed,
                                     round(confirmed / reviewed, 4) if reviewed else None))  # fmt: skip
        return out

    def audit_entries(
        self, call_id: str | None = None, action: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        stmt = select(audit_log).order_by(audit_log.c.id.desc()).limit(max(1, min(limit, MAX_LIMIT)))
        if call_id is not None:
            stmt = stmt.where(audit_log.c.call_id == call_id)
        if action is not None:
            stmt = stmt.where(audit_log.c.action == action)
        with self.engine.connect() as conn:
            return [
                AuditEntry(r.id, r.at, r.actor, r.role, r.action, r.call_id, r.detail)
                for r in conn.execute(stmt)
            ]


_SUMMARY_COLUMNS = (
    calls.c.call_id, calls.c.agent_id, calls.c.queue, calls.c.lang, calls.c.source, calls.c.origin,
    calls.c.started_at, calls.c.ended_at, calls.c.duration_s, calls.c.end_reason, calls.c.score_total,
    calls.c.alerts_fatal, calls.c.alerts_serious, calls.c.alerts_general, calls.c.recording_ref,
)  # fmt: skip


def _summary(row: Any) -> StoredCallSummary:
    return StoredCallSummary(
        row.call_id, row.agent_id, row.queue, row.lang, row.source, row.origin, row.started_at, row.ended_at,
        row.duration_s, row.end_reason, row.score_total,
        {"fatal": row.alerts_fatal, "serious": row.alerts_serious, "general": row.alerts_general},
        row.recording_ref,
    )  # fmt: skip
