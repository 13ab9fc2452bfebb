"""Cross-call early warnings over a simulated day: when each injected pattern was caught.

    .venv/bin/python bench/qa_day.py [--seed 0] [--seeds 50] [--calls-per-day 320]

For ``--seed`` it warms the engine up on seven ordinary days (the queues' usual volume), then
prints the pattern day: for each injected pattern (a burst of one complaint, a queue spike, an
agent drifting hot, a topic's share rising, a negative-word surge) when it began, when its warning
was raised and the latency in simulated minutes, then every other warning raised that day; then
the count of warnings raised on the control day (the same day without the patterns: must be 0).
With ``--seeds N`` it repeats that for seeds 0..N-1 and prints, per pattern, how often it was
caught within its window and the latency distribution, and the false warnings per control day
(warm-up days included), so the thresholds' trade-off shows beyond one lucky seed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sidecar.qa.simday import DAY, DAY0, DayResult, Pattern, clock, run_day  # noqa: E402
from sidecar.qa.warning import WARNING_KINDS, EarlyWarning  # noqa: E402


def caught(pattern: Pattern, warnings: tuple[EarlyWarning, ...]) -> list[EarlyWarning]:
    return [w for w in warnings if w.state == "raised" and (w.kind, w.key) == (pattern.kind, pattern.key)]


def unexpected(result: DayResult) -> list[EarlyWarning]:
    aimed = {(p.kind, p.key) for p in result.day.patterns}
    return [w for w in result.warnings if w.state == "raised" and (w.kind, w.key) not in aimed]


def one_seed(seed: int, calls_per_day: int) -> None:
    result = run_day(seed, patterns=True, calls_per_day=calls_per_day)
    control = run_day(seed, patterns=False, calls_per_day=calls_per_day)
    print(f"seed {seed}: {len(result.day.digests)} calls on the pattern day, "
          f"{len(control.day.digests)} on the control day, 7 warm-up days before each")  # fmt: skip
    print(f"{'pattern':<16} {'key':<12} {'injected':>8} {'raised':>8} {'latency':>8}  {'within':>7}  raised")
    for p in result.day.patterns:
        hits = caught(p, result.warnings)
        first = hits[0].at if hits else None
        latency = f"{(first - p.start) / 60:.0f} min" if first is not None else "-"
        within = "yes" if first is not None and p.start <= first <= p.deadline else "NO"
        print(f"{p.kind:<16} {p.key:<12} {clock(p.start):>8} {clock(first) if first else '-':>8} {latency:>8}  "
              f"{within:>7}  {len(hits)}x  ({p.description})")  # fmt: skip
    for w in unexpected(result):
        print(f"  other warning on the pattern day: {w.kind} {w.key} at {clock(w.at)}: {w.message}")
    raised = [w for w in control.warnings if w.state == "raised"]
    warmup = [w for w in control.warmup_warnings if w.state == "raised"]
    print(f"control day: {len(raised)} warnings raised; warm-up days: {len(warmup)}")
    for w in (*warmup, *raised):
        day = int((w.at - DAY0) // DAY)
        print(f"  control warning (day {day}): {w.kind} {w.key} at {clock(w.at)}: {w.message}")


def many_seeds(n: int, calls_per_day: int) -> None:
    latencies: dict[str, list[float]] = {}
    hits: dict[str, int] = {}
    exactly_once: dict[str, int] = {}
    other: Counter[str] = Counter()
    false_control: Counter[str] = Counter()
    control_days, calls = 0, 0
    for seed in range(n):
        result = run_day(seed, patterns=True, calls_per_day=calls_per_day)
        control = run_day(seed, patterns=False, calls_per_day=calls_per_day)
        calls += len(result.day.digests)
        for p in result.day.patterns:
            found = caught(p, result.warnings)
            inside = [w for w in found if p.start <= w.at <= p.deadline]
            if inside:
                hits[p.kind] = hits.get(p.kind, 0) + 1
                latencies.setdefault(p.kind, []).append((inside[0].at - p.start) / 60)
            exactly_once[p.kind] = exactly_once.get(p.kind, 0) + (len(found) == 1 and len(inside) == 1)
        other.update(w.kind for w in unexpected(result))
        false_control.update(
            w.kind for w in (*control.warnings, *control.warmup_warnings) if w.state == "raised"
        )
        control_days += 1 + 7
    print(f"\n{n} seeds ({calls / n:.0f} calls per pattern day on average):")
    print(f"{'pattern':<16} {'caught in window':>16} {'exactly once':>13} {'latency min p50':>16} {'max':>6}")
    for kind in WARNING_KINDS:
        lat = latencies.get(kind, [])
        p50 = f"{statistics.median(lat):.0f}" if lat else "-"
        mx = f"{max(lat):.0f}" if lat else "-"
        print(
            f"{kind:<16} {hits.get(kind, 0):>13}/{n:<2} {exactly_once.get(kind, 0):>10}/{n:<2} {p50:>16} {mx:>6}"
        )
    print(f"other warnings on pattern days: {other.total() / n:.2f} per day {dict(other)}")
    print(f"false warnings on control days (incl. warm-up): {false_control.total()} in {control_days} days "
          f"= {false_control.total() / control_days:.3f} per day {dict(false_control)}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=0, help="also sweep seeds 0..N-1")
    parser.add_argument("--calls-per-day", type=int, default=320)
    args = parser.parse_args()
    start = time.perf_counter()
    one_seed(args.seed, args.calls_per_day)
    if args.seeds:
        many_seeds(args.seeds, args.calls_per_day)
    print(f"\n({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
