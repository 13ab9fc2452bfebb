"""Alembic migrations of the call store (applied by ``sidecar.store.migrate``)."""
