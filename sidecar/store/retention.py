"""Retention and erasure: calls older than the retention period are purged; a customer's calls are
erased on request (the right to erasure under GDPR / PIPL). Each leaves an audit entry; an erasure's
entry keeps a SHA-256 of the customer reference and the number of calls, never the reference.
A call's post-call note goes with it; the purge also drops notes past retention whose call was
never stored (a note is kept by call id, with no foreign key: see ``repository.py``)."""

from __future__ import annotations

from sqlalchemy import Connection, delete, select

from sidecar.store.query import CallQuery, where
from sidecar.store.record import customer_ref_hash
from sidecar.store.repository import CallStore
from sidecar.store.schema import alert_verdicts, alerts, call_intents, call_summaries, calls

DAY_S = 86_400.0


def _delete_calls(conn: Connection, call_ids: list[str]) -> None:
    """Children first: portable whether or not the database enforces ``ON DELETE CASCADE``."""
    for start in range(0, len(call_ids), 500):
        chunk = call_ids[start : start + 500]
        alert_ids = select(alerts.c.id).where(alerts.c.call_id.in_(chunk))
        conn.execute(delete(alert_verdicts).where(alert_verdicts.c.alert_id.in_(alert_ids)))
        conn.execute(delete(alerts).where(alerts.c.call_id.in_(chunk)))
        conn.execute(delete(call_intents).where(call_intents.c.call_id.in_(chunk)))
        conn.execute(delete(call_summaries).where(call_summaries.c.call_id.in_(chunk)))
        conn.execute(delete(calls).where(calls.c.call_id.in_(chunk)))


def purge_expired(store: CallStore, retention_days: int, now: float | None = None) -> int:
    """Delete calls that started more than ``retention_days`` ago (0: keep for ever); the count."""
    if retention_days <= 0:
        return 0
    cutoff = (store.now() if now is None else now) - retention_days * DAY_S
    with store.engine.begin() as conn:
        ids = [r[0] for r in conn.execute(select(calls.c.call_id).where(where(CallQuery(until=cutoff))))]
        if ids:
            _delete_calls(conn, ids)
        has_call = select(calls.c.call_id).where(calls.c.call_id == call_summaries.c.call_id).exists()
        conn.execute(delete(call_summaries).where(call_summaries.c.created_at < cutoff, ~has_call))
        if ids:
            store.audit_in(
                conn,
                "retention",
                "system",
                "purge",
                None,
                f"{len(ids)} calls older than {retention_days} days",
            )
    return len(ids)


def erase_customer(store: CallStore, customer_ref: str, actor: str, role: str) -> int:
    """Delete every call of this customer reference; the audit entry is written in the same
    transaction (an erasure is never unrecorded). Returns the number of calls erased."""
    ref = customer_ref.strip()
    if not ref:
        raise ValueError("erasure needs a customer reference")
    with store.engine.begin() as conn:
        ids = [r[0] for r in conn.execute(select(calls.c.call_id).where(calls.c.customer_ref == ref))]
        _delete_calls(conn, ids)
        store.audit_in(
            conn,
            actor,
            role,
            "erase",
            None,
            f"customer sha256:{customer_ref_hash(ref)}: {len(ids)} calls erased",
        )
    return len(ids)
