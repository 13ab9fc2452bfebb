"""Alembic environment: the call store runs migrations on a connection it hands over
(``config.attributes["connection"]``); there is no alembic.ini."""

from __future__ import annotations

from alembic import context

from sidecar.store.migrate import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(
    connection=connection, target_metadata=None, version_table=VERSION_TABLE, render_as_batch=True
)
with context.begin_transaction():
    context.run_migrations()
