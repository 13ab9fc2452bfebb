"""Where the call store lives and how long it keeps calls.

``ASSIST_DATABASE_URL`` (a SQLAlchemy URL, e.g. ``postgresql+psycopg://user@host/db``; a plain
``postgresql://`` URL is given the psycopg 3 driver) wins; otherwise SQLite in a file:
``ASSIST_CALL_DB`` or ``DATA/calls.sqlite3``. ``ASSIST_RETENTION_DAYS`` (default 365; 0 keeps
calls for ever) is how long a stored call is kept.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sidecar.kernel.errors import ConfigError

DEFAULT_RETENTION_DAYS = 365


@dataclass(frozen=True, slots=True)
class StoreSettings:
    url: str
    retention_days: int = DEFAULT_RETENTION_DAYS

    @classmethod
    def from_env(cls, data_dir: Path) -> StoreSettings:
        env = os.environ
        url = env.get("ASSIST_DATABASE_URL", "").strip()
        if not url:
            url = sqlite_url(Path(env.get("ASSIST_CALL_DB") or data_dir / "calls.sqlite3"))
        raw = env.get("ASSIST_RETENTION_DAYS", str(DEFAULT_RETENTION_DAYS)).strip()
        try:
            days = int(raw)
        except ValueError:
            raise ConfigError(f"ASSIST_RETENTION_DAYS={raw!r}: expected a whole number of days") from None
        if not 0 <= days <= 36_500:
            raise ConfigError(f"ASSIST_RETENTION_DAYS={days}: expected 0..36500 (0 keeps calls for ever)")
        return cls(normalise_url(url), days)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.expanduser().resolve()}"


def normalise_url(url: str) -> str:
    """psycopg 3 for PostgreSQL URLs that name no driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
