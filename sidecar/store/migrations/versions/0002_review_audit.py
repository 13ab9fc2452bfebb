"""Review and audit: alert verdicts, the audit log, and a content hash per call (qa run resumes by it).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:  # SQLite cannot add a unique constraint in place
        batch.add_column(sa.Column("content_hash", sa.String(64), nullable=True))
        batch.create_index("ux_calls_content_hash", ["content_hash"], unique=True)
    op.create_table(
        "alert_verdicts",
        sa.Column("alert_id", sa.Integer, sa.ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("verdict", sa.String(24), nullable=False),
        sa.Column("comment", sa.Text, nullable=False, server_default=""),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("decided_at", sa.Float, nullable=False),
    )
    op.create_index("ix_alert_verdicts_decided", "alert_verdicts", ["decided_at"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=False, server_default=""),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("call_id", sa.String(128), nullable=True),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_call", "audit_log", ["call_id"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("alert_verdicts")
    with op.batch_alter_table("calls") as batch:
        batch.drop_index("ux_calls_content_hash")
        batch.drop_column("content_hash")
