"""Databases for the call-store tests: a SQLite file, and a throwaway PostgreSQL database
(``assist_test_<random>``) created on the server at 127.0.0.1:5432 for the test session and dropped
after it (``ASSIST_TEST_POSTGRES_URL`` points elsewhere). Without a reachable server the
PostgreSQL cases are skipped, unless ``CI`` is set: there they fail (``.ci/run`` starts one).
A pytest plugin: ``pytest_plugins = ["tests.store_fixtures"]``."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from sidecar.store.settings import sqlite_url

POSTGRES_ADMIN_URL = os.environ.get(
    "ASSIST_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of a reachable PostgreSQL server (or a skip / a CI failure)."""
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        message = f"no PostgreSQL at {make_url(POSTGRES_ADMIN_URL).render_as_string(hide_password=True)} ({type(exc).__name__})"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set, so the PostgreSQL tests must run: .ci/run starts one)")
        pytest.skip(message)
    engine.dispose()
    return POSTGRES_ADMIN_URL


@pytest.fixture(scope="session")
def postgres_database(postgres_server: str) -> Iterator[str]:
    """One throwaway database for the session (``assist_test_<random>``), dropped at its end."""
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    name = f"assist_test_{secrets.token_hex(6)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def empty_postgres(url: str) -> str:
    """The session's database, emptied (every table, index and version row gone)."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind, one per test."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "calls.sqlite3")
    return empty_postgres(request.getfixturevalue("postgres_database"))
