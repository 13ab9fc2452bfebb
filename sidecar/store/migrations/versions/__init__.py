"""Alembic revisions of the call store, oldest first."""
