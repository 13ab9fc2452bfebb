"""Post-call notes: the language model's summary of an ended call (``call_summaries``).

Keyed by call id with no foreign key to ``calls``: the note may be made before the call's record
is stored (each is written by its own task), so it is kept as it arrives and joined at read time.
Erasure and the retention purge delete it with its call (``retention.py``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_summaries",
        sa.Column("call_id", sa.String(128), primary_key=True),
        sa.Column("lines", sa.Text, nullable=False),
        sa.Column("disposition", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_call_summaries_created", "call_summaries", ["created_at"])


def downgrade() -> None:
    op.drop_table("call_summaries")
