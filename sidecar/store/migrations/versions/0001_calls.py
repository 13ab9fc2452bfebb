"""Calls, their alerts and intents.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("call_id", sa.String(128), primary_key=True),
        sa.Column("agent_id", sa.String(128), nullable=False, server_default=""),
        sa.Column("queue", sa.String(128), nullable=False, server_default=""),
        sa.Column("lang", sa.String(16), nullable=False, server_default=""),
        sa.Column("source", sa.Text, nullable=False, server_default=""),
        sa.Column("customer_ref", sa.String(128), nullable=True),
        sa.Column("recording_ref", sa.Text, nullable=True),
        sa.Column("origin", sa.String(16), nullable=False, server_default="live"),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("end_reason", sa.String(32), nullable=False, server_default=""),
        sa.Column("score_total", sa.Float, nullable=True),
        sa.Column("alerts_fatal", sa.Integer, nullable=False, server_default="0"),
        sa.Column("alerts_serious", sa.Integer, nullable=False, server_default="0"),
        sa.Column("alerts_general", sa.Integer, nullable=False, server_default="0"),
        sa.Column("search_text", sa.Text, nullable=False, server_default=""),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("stored_at", sa.Float, nullable=False),
    )
    op.create_index("ix_calls_agent_started", "calls", ["agent_id", "started_at"])
    op.create_index("ix_calls_started", "calls", ["started_at"])
    op.create_index("ix_calls_queue", "calls", ["queue"])
    op.create_index("ix_calls_customer_ref", "calls", ["customer_ref"])
    op.create_index("ix_calls_score", "calls", ["score_total"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "call_id", sa.String(128), sa.ForeignKey("calls.call_id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("rule_id", sa.String(128), nullable=False),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("evidence", sa.Text, nullable=False, server_default=""),
        sa.Column("t_start", sa.Float, nullable=False),
        sa.Column("t_end", sa.Float, nullable=False),
        sa.Column("source", sa.String(16), nullable=False, server_default="final"),
    )
    op.create_index("ix_alerts_call", "alerts", ["call_id"])
    op.create_index("ix_alerts_category", "alerts", ["category", "severity"])
    op.create_index("ix_alerts_rule", "alerts", ["rule_id"])
    op.create_table(
        "call_intents",
        sa.Column(
            "call_id", sa.String(128), sa.ForeignKey("calls.call_id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("intent", sa.String(64), primary_key=True),
    )
    op.create_index("ix_call_intents_intent", "call_intents", ["intent"])


def downgrade() -> None:
    op.drop_table("call_intents")
    op.drop_table("alerts")
    op.drop_table("calls")
