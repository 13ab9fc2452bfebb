"""The call store: every ended call, kept for review, reports and audit (issue 15).

- ``record.py``: ``CallRecord`` and ``CallRecorder`` (a pure fold of a call's events)
- ``schema.py``, ``migrations/``, ``migrate.py``: tables and their Alembic revisions
- ``repository.py``: ``CallStore`` (save once, read, search, verdicts, audit log)
- ``query.py``: the review filters as one SQL ``WHERE``
- ``retention.py``: purge after the retention period; erasure by customer reference
- ``subscriber.py``, ``service.py``: the live service's writer and its wiring
- ``cli.py``: ``assist store migrate|purge|erase``

SQLite (``DATA/calls.sqlite3``) by default; PostgreSQL when ``ASSIST_DATABASE_URL`` is set.
"""
