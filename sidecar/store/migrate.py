"""Schema migrations: the Alembic revisions shipped in ``migrations/``, applied on a connection.

``upgrade(engine)`` runs at service start and by ``assist store migrate``; it is a no-op on an
up-to-date database; on PostgreSQL it holds an advisory lock, so nodes starting together migrate
one after the other. The version is kept in its own table (``call_store_version``), so the store
can share a PostgreSQL database with other Alembic users.
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

VERSION_TABLE = "call_store_version"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 0x61_73_73_69_73_74  # "assist": the PostgreSQL advisory lock held while migrating
_running = threading.Lock()  # Alembic's ``context`` is process-global: one migration at a time here


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the schema to ``revision``; returns the revision the database is at afterwards."""
    config = _config()
    with _running, engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # API nodes starting together migrate one at a time
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    return current_revision(engine)


def downgrade(engine: Engine, revision: str) -> str | None:
    config = _config()
    with _running, engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)
    return current_revision(engine)
