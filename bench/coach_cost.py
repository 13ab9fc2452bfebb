"""What judging costs: latency per utterance and CPU per call-minute, on this machine.

    .venv/bin/python bench/coach_cost.py ../shared/callsets/dev2 [--repeat 2] [--with-knowledge]

Replays every call of the set in text mode through ``CoachSink`` (the live code path: the coach's
worker thread, the judge's own thread with its time budget), and prints:
- judge latency per utterance read (p50/p95/max, ms): embeddings of the whole utterance and each
  of its sentences by the panel, then one matrix product per label;
- coach CPU-seconds per call-minute (process CPU time over the replay / minutes of call audio the
  transcripts cover), with the judge and without it (``Coach(judge=False)``), so the judge's share
  shows; ``--with-knowledge`` adds the retrieval policy to both;
- how many readings missed their budget.
On a GPU machine the same script runs with ``ASSIST_DEVICE=cuda`` where the embedders support it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.kb_quality import load_evaluator, replay_events, write_transcript  # noqa: E402


def pct(xs: list[float], q: float) -> float | None:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 1) if xs else None


def run(
    calls: list[dict[str, Any]], evaluator: Any, coach: Any, policy: Any, tmp: Path
) -> tuple[float, float]:
    """(CPU seconds, call minutes) for one pass over the calls."""
    minutes = 0.0
    cpu0 = time.process_time()
    for call in calls:
        turns, path = write_transcript(call, evaluator, tmp)
        asyncio.run(replay_events(path, coach, policy))
        minutes += turns[-1]["end_s"] / 60 if turns else 0.0
    return time.process_time() - cpu0, minutes


def forget_embeddings(coach: Any) -> None:
    """Empty the embedders' in-memory caches (shared by every coach of the process)."""
    embedders = [coach.embedder, *(coach.judge.judge.panel if coach.judge else ())]
    for embedder in embedders:
        cache = getattr(embedder, "_cache", None)
        if cache is not None:
            cache.clear()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("callset", type=Path)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--with-knowledge", action="store_true")
    args = parser.parse_args()

    from coach.engine import Coach
    from coach.judge import Judge
    from knowledge.policy import StoreKnowledge, default_policy

    evaluator = load_evaluator(args.callset)
    calls = json.loads((args.callset / "calls.json").read_text(encoding="utf-8"))["calls"]
    t0 = time.monotonic()
    judged = Coach()
    plain = Coach(judge=False)
    print(f"loaded in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    if judged.judge is None:
        raise SystemExit("the judge did not load: see the log above")
    policy = None
    if args.with_knowledge:
        assert judged.embedder is not None
        policy = default_policy(StoreKnowledge.from_jsonl(args.callset / "kb.jsonl", judged.embedder))
        policy.warm_up()
    latencies: list[float] = []
    read = Judge.read

    def timed(self: Judge, units: Any, channel: str) -> Any:
        reading = read(self, units, channel)
        latencies.append(reading.elapsed_ms)
        return reading

    Judge.read = timed  # type: ignore[method-assign]
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, coach in (("without_judge", plain), ("with_judge", judged)):
            per_minute = []
            for _ in range(args.repeat):
                forget_embeddings(judged)  # each pass pays for its own embeddings
                cpu, minutes = run(calls, evaluator, coach, policy, Path(tmp))
                per_minute.append(cpu / minutes)
            figures[f"cpu_s_per_call_minute_{name}"] = round(statistics.median(per_minute), 3)
    runner = judged.judge
    figures.update({
        "calls": len(calls), "readings": len(latencies),
        "judge_ms_p50": pct(latencies, 0.5), "judge_ms_p95": pct(latencies, 0.95), "judge_ms_max": pct(latencies, 1.0),
        "judge_timeouts": runner.timeouts, "judge_errors": runner.errors, "judge_budget_s": runner.budget_s,
        "judge_labels": len(runner.judge.label_names()), "fit_s": runner.judge.fit_s,
    })  # fmt: skip
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
