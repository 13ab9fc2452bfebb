"""How long GET /v1/reports' work takes over a call store: N stored calls of a realistic size (a
6-minute call: 80 transcript lines, 960 words with their times, 40 emotion readings, a few alerts and steps),
read and folded into facts (``read_facts``), then aggregated per agent per day (``aggregate``).

    .venv/bin/python bench/reports_query.py [--calls 5000] [--url sqlite:///...|postgresql+psycopg://...]

Prints calls, the stored JSON size a call, seconds to read (cold, then with the facts cached) and
to aggregate, calls/s, peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from sidecar.service.reports import FactsCache, Targets, aggregate, read_facts
from sidecar.store.query import CallQuery
from sidecar.store.record import EmotionPoint, StoredWord, TranscriptLine
from sidecar.store.repository import CallStore
from sidecar.store.settings import sqlite_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo's tests package (a call's events)
from tests.store_helpers import make_record


def realistic(call_id: str, i: int) -> object:
    base = make_record(call_id, agent=f"agent-{i % 40}", queue=f"q-{i % 5}", started=1_700_000_000.0 + i * 60,
                       customer_ref=f"cust-{i % 3000}", abusive=i % 7 == 0, score=60 + i % 40)  # fmt: skip
    lines = tuple(
        TranscriptLine(n, "agent" if n % 2 else "customer", n * 4.5, n * 4.5 + 4.0,
                       "thank you for calling how can I help you with your account today", "en", n,
                       tuple(StoredWord("word", n * 4.5 + k * 0.3, n * 4.5 + k * 0.3 + 0.25, 0.9) for k in range(12)))
        for n in range(80)
    )  # fmt: skip
    emotion = tuple(EmotionPoint(t * 9.0, -0.2 + t / 100, 0.1, "neutral", ("refund",)) for t in range(40))
    return replace(base, transcript=lines, emotion=emotion, duration_s=360.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--url", default="")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = CallStore(args.url or sqlite_url(Path(tmp) / "calls.sqlite3"))
        t0 = time.perf_counter()
        sample = None
        for i in range(args.calls):
            record = realistic(f"bench-{i}", i)
            sample = sample or record
            store.save(record)  # type: ignore[arg-type]
        fill_s = time.perf_counter() - t0
        size = len(str(sample.to_json_dict())) if sample is not None else 0  # type: ignore[attr-defined]
        cache = FactsCache()
        t1 = time.perf_counter()
        facts, truncated = read_facts(store, CallQuery(), cache=cache)
        read_s = time.perf_counter() - t1
        t3 = time.perf_counter()
        read_facts(store, CallQuery(), cache=cache)
        warm_s = time.perf_counter() - t3
        t2 = time.perf_counter()
        report = aggregate(facts, group_by="agent", period="day", targets=Targets())
        agg_s = time.perf_counter() - t2
        store.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"calls {len(facts)} (truncated {truncated}), ~{size / 1024:.0f} KiB JSON a call, stored in {fill_s:.1f} s"
    )
    print(f"read_facts cold {read_s:.2f} s ({len(facts) / read_s:.0f} calls/s), warm (cached) {warm_s:.2f} s, "
          f"aggregate {agg_s:.3f} s, "
          f"{len(report.groups)} groups, peak RSS {rss_mb:.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
