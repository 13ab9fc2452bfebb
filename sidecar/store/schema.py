"""The call store's tables (SQLAlchemy Core), as the latest Alembic revision leaves them.

The revisions in ``migrations/versions`` create and change these tables; this module is what the
repository queries. A test (``tests/test_store.py``) checks that the migrated database and these
definitions agree.

- ``calls``: one row per stored call: the columns the review filters need, and ``record``, the
  whole ``CallRecord`` as JSON (transcript with word times, alerts, checklist, ...).
- ``alerts``: one row per alert of a stored call (filters and verdicts refer to these).
- ``call_intents``: the intents a call carried (the intent filter).
- ``alert_verdicts``: a reviewer's verdict on an alert (confirmed / not_a_violation, comment).
- ``audit_log``: who opened which call, erasures, purges, verdicts.
- ``call_summaries``: the language model's post-call note of a call (lines as JSON, disposition,
  reason); no foreign key: it may arrive before the call is stored, and is joined at read time.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

calls = Table(
    "calls",
    metadata,
    Column("call_id", String(128), primary_key=True),
    Column("agent_id", String(128), nullable=False, default=""),
    Column("queue", String(128), nullable=False, default=""),
    Column("lang", String(16), nullable=False, default=""),
    Column("source", Text, nullable=False, default=""),
    Column("customer_ref", String(128), nullable=True),
    Column("recording_ref", Text, nullable=True),
    Column("origin", String(16), nullable=False, default="live"),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("end_reason", String(32), nullable=False, default=""),
    Column("score_total", Float, nullable=True),
    Column("alerts_fatal", Integer, nullable=False, default=0),
    Column("alerts_serious", Integer, nullable=False, default=0),
    Column("alerts_general", Integer, nullable=False, default=0),
    Column("search_text", Text, nullable=False, default=""),
    Column("record", Text, nullable=False),
    Column("stored_at", Float, nullable=False),
    Column("content_hash", String(64), nullable=True),  # revision 0002
    Index("ix_calls_agent_started", "agent_id", "started_at"),
    Index("ix_calls_started", "started_at"),
    Index("ix_calls_queue", "queue"),
    Index("ix_calls_customer_ref", "customer_ref"),
    Index("ix_calls_score", "score_total"),
    Index("ux_calls_content_hash", "content_hash", unique=True),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call_id", String(128), ForeignKey("calls.call_id", ondelete="CASCADE"), nullable=False),
    Column("ordinal", Integer, nullable=False),
    Column("category", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("rule_id", String(128), nullable=False),
    Column("message", Text, nullable=False, default=""),
    Column("evidence", Text, nullable=False, default=""),
    Column("t_start", Float, nullable=False),
    Column("t_end", Float, nullable=False),
    Column("source", String(16), nullable=False, default="final"),
    Index("ix_alerts_call", "call_id"),
    Index("ix_alerts_category", "category", "severity"),
    Index("ix_alerts_rule", "rule_id"),
)

call_intents = Table(
    "call_intents",
    metadata,
    Column("call_id", String(128), ForeignKey("calls.call_id", ondelete="CASCADE"), primary_key=True),
    Column("intent", String(64), primary_key=True),
    Index("ix_call_intents_intent", "intent"),
)

alert_verdicts = Table(  # revision 0002
    "alert_verdicts",
    metadata,
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True),
    Column("verdict", String(24), nullable=False),
    Column("comment", Text, nullable=False, default=""),
    Column("reviewer", String(128), nullable=False),
    Column("decided_at", Float, nullable=False),
    Index("ix_alert_verdicts_decided", "decided_at"),
)

audit_log = Table(  # revision 0002
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("role", String(32), nullable=False, default=""),
    Column("action", String(32), nullable=False),
    Column("call_id", String(128), nullable=True),
    Column("detail", Text, nullable=False, default=""),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_call", "call_id"),
)

call_summaries = Table(  # revision 0003
    "call_summaries",
    metadata,
    Column("call_id", String(128), primary_key=True),
    Column("lines", Text, nullable=False),  # a JSON list of the note's rendered lines
    Column("disposition", String(32), nullable=True),
    Column("reason", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Index("ix_call_summaries_created", "created_at"),
)
