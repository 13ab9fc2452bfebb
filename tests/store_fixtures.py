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


class PostgresDatabases:
    """Fresh databases on the test server, each dropped at the end of the session."""

    def __init__(self, admin_url: str) -> None:
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.admin_url = make_url(admin_url)
        self.names: list[str] = []

    def create(self) -> str:
        name = f"assist_test_{secrets.token_hex(6)}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.names.append(name)
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in self.names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres_databases(postgres_server: str) -> Iterator[PostgresDatabases]:
    dbs = PostgresDatabases(postgres_server)
    yield dbs
    dbs.drop_all()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind, one per test."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "calls.sqlite3")
    dbs: PostgresDatabases = request.getfixturevalue("postgres_databases")
    return dbs.create()
