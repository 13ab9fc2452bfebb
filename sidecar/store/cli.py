"""``assist store migrate|purge|erase``: the call store's maintenance from the command line.

assist store migrate [--db URL]                 bring the schema to the latest revision
assist store purge [--days N] [--db URL]        delete calls past the retention period
assist store erase CUSTOMER_REF [--db URL]      delete a customer's calls (audited)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sidecar.store.settings import StoreSettings, normalise_url


def add_store_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    store = sub.add_parser("store", help="the call store: migrate, purge, erase")
    actions = store.add_subparsers(dest="store_command", required=True)
    parsers = [
        actions.add_parser("migrate", help="apply the schema migrations (the service does it at start too)"),
        actions.add_parser("purge", help="delete calls older than the retention period"),
        actions.add_parser("erase", help="delete every call of a customer reference (an audit entry stays)"),
    ]
    parsers[1].add_argument(
        "--days", type=int, default=None, help="retention in days (default: $ASSIST_RETENTION_DAYS)"
    )
    parsers[2].add_argument("customer_ref", help="the customer reference the calls carry")
    parsers[2].add_argument(
        "--actor", default=os.environ.get("USER", "cli"), help="who asks (for the audit log)"
    )
    for p in parsers:
        p.add_argument(
            "--db", default=None, help="database URL (default: $ASSIST_DATABASE_URL, else DATA/calls.sqlite3)"
        )
        p.add_argument(
            "--data", type=Path, default=None, help="data directory (default: $ASSIST_DATA or .assist)"
        )


def run_store_command(args: argparse.Namespace) -> int:
    from sidecar.store import migrate
    from sidecar.store.repository import CallStore
    from sidecar.store.retention import erase_customer, purge_expired

    settings = StoreSettings.from_env(args.data or Path(os.environ.get("ASSIST_DATA", ".assist")))
    url = normalise_url(args.db) if args.db else settings.url
    store = CallStore(url)  # migrates
    try:
        if args.store_command == "migrate":
            print(f"call store at revision {migrate.current_revision(store.engine)}", file=sys.stderr)
        elif args.store_command == "purge":
            days = settings.retention_days if args.days is None else args.days
            print(f"{purge_expired(store, days)} calls purged (retention {days} days)", file=sys.stderr)
        else:
            n = erase_customer(store, args.customer_ref, args.actor, "cli")
            print(f"{n} calls erased", file=sys.stderr)
    finally:
        store.close()
    return 0
