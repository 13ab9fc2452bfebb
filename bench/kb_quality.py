"""Knowledge suggestions on a labeled call set, in one process: kb hit@3 and cards per call.

    .venv/bin/python bench/kb_quality.py ../shared/callsets/dev [--lang zh] [--ids a,b] [--misses]
    .venv/bin/python bench/kb_quality.py bench/callsets/heldout --evaluate ../shared/callsets/evaluate.py

The same path as ``assist replay CALL.jsonl --kb KB.jsonl`` (text mode: each turn a final at its
end), with the models loaded once instead of once per call, so a policy change is measured in
about a minute instead of ten. Turn times and scoring come from the call set's own
``evaluate.py`` (in the call set's parent folder): a hit is the labeled snippet among the first
three distinct suggestions on its turn or the next. ``--misses`` prints, for each miss, the
customer's words, what was pushed, and where the labeled snippet ranked for that turn's query.
It also prints how long the policy's decision on each customer final took (p50/p95, ms: the
panel's embeddings on a worker thread of the live call).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_evaluator(callset: Path, path: Path | None = None) -> ModuleType:
    path = path or callset.resolve().parent / "evaluate.py"
    spec = importlib.util.spec_from_file_location("callset_evaluate", path)
    if spec is None or spec.loader is None or not path.exists():
        raise SystemExit(f"no scorer at {path}: pass --evaluate PATH/evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_transcript(
    call: dict[str, Any], evaluator: ModuleType, folder: Path
) -> tuple[list[dict[str, Any]], Path]:
    """A call as text mode feeds it (the scorer's own turn timeline), written as transcript JSONL."""
    turns: list[dict[str, Any]] = evaluator.text_timeline(call)
    path = folder / f"{call['id']}.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for turn in turns:
            if turn["speaker"] != "pause":
                line = {"channel": turn["speaker"], "text": turn["text"], "start_s": turn["start_s"],
                        "end_s": turn["end_s"]}  # fmt: skip
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
    return turns, path


async def replay_events(path: Path, coach: Any, policy: Any) -> list[dict[str, Any]]:
    from coach.sink import CoachSink
    from sidecar.callfile import TranscriptCall, load_call
    from sidecar.kernel.bus import InMemoryBus
    from sidecar.kernel.clock import FastClock
    from sidecar.replay import new_call_id, replay_transcript

    call = load_call(path, "customer")
    assert isinstance(call, TranscriptCall)
    clock = FastClock()
    bus = InMemoryBus(clock)
    call_id = new_call_id()
    sink = CoachSink(coach, bus, knowledge=policy)
    subscription = bus.subscribe(call_id, after_seq=0)
    events: list[dict[str, Any]] = []

    async def drain() -> None:
        async for event in subscription:
            events.append(json.loads(event.to_json()))

    draining = asyncio.create_task(drain())
    await asyncio.sleep(0)
    await replay_transcript(
        call, call_id=call_id, bus=bus, clock=clock, lang="auto", realtime=False, emit=sink
    )
    await draining
    return events


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("callset", type=Path)
    parser.add_argument("--lang", choices=("en", "zh"))
    parser.add_argument("--ids", help="comma-separated call ids")
    parser.add_argument("--misses", action="store_true", help="explain each miss")
    parser.add_argument("--evaluate", type=Path, help="the scorer (default: evaluate.py beside the call set)")
    args = parser.parse_args()

    from coach.engine import Coach
    from knowledge.policy import StoreKnowledge, agent_search, default_policy

    evaluator = load_evaluator(args.callset, args.evaluate)
    calls = json.loads((args.callset / "calls.json").read_text())
    calls = calls["calls"] if isinstance(calls, dict) else calls
    if args.lang:
        calls = [c for c in calls if c["lang"] == args.lang]
    if args.ids:
        wanted = set(args.ids.split(","))
        calls = [c for c in calls if c["id"] in wanted]
    t0 = time.monotonic()
    coach = Coach()
    assert coach.embedder is not None
    knowledge = StoreKnowledge.from_jsonl(args.callset / "kb.jsonl", coach.embedder)
    policy = default_policy(knowledge)
    policy.warm_up()
    decide_s: list[float] = []
    decide = policy.decide

    def timed(*a: Any, **kw: Any) -> Any:  # how long each customer turn's decision takes
        t = time.perf_counter()
        try:
            return decide(*a, **kw)
        finally:
            decide_s.append(time.perf_counter() - t)

    policy.decide = timed  # type: ignore[method-assign]
    print(f"models and knowledge base loaded in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    hits: list[bool] = []
    cards: list[int] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for call in calls:
            turns, path = write_transcript(call, evaluator, Path(tmp))
            events = asyncio.run(replay_events(path, coach, policy))
            scored = evaluator.score_call(call, turns, events, [0.0] * len(events), False)
            hits += scored["kb_hits"].values()
            cards.append(scored["n_suggestions"])
            if args.misses:
                explain(call, turns, events, scored, knowledge, policy, agent_search)
    elapsed = time.monotonic() - t0
    print(json.dumps({
        "calls": len(calls),
        "kb_labels": len(hits),
        "kb_hit_at_3": round(sum(hits) / len(hits), 3) if hits else None,
        "suggestions_per_call": round(sum(cards) / len(cards), 2) if cards else None,
        "decision_ms_p50": pct_ms(decide_s, 0.5),
        "decision_ms_p95": pct_ms(decide_s, 0.95),
        "seconds": round(elapsed, 1),
    }))  # fmt: skip
    return 0


def pct_ms(xs: list[float], q: float) -> float | None:
    xs = sorted(xs)
    return round(1000 * xs[min(len(xs) - 1, int(q * len(xs)))], 1) if xs else None


def explain(call: dict[str, Any], turns: list[dict[str, Any]], events: list[dict[str, Any]],
            scored: dict[str, Any], knowledge: Any, policy: Any, agent_search: Any) -> None:  # fmt: skip
    pushed: dict[int, list[str]] = {}
    for ev in events:
        if ev["type"] == "suggestion":
            i = max(j for j, t in enumerate(turns) if t["start_s"] - 0.05 <= ev["t_end"]) if turns else 0
            pushed.setdefault(i, []).append(f"{ev['payload']['snippet_id']}({ev['payload']['score']})")
    for i, hit in scored["kb_hits"].items():
        if hit:
            continue
        gold = next(lab[3:] for lab in turns[i]["labels"] if lab.startswith("kb:"))
        ranked = agent_search(knowledge, turns[i]["text"], k=8, reranker=policy.reranker)
        rank = next((r for r, x in enumerate(ranked) if x.snippet_id == gold), None)
        top = ", ".join(f"{x.snippet_id}({x.score})" for x in ranked[:3])
        print(f"MISS {call['id']} turn {i} gold={gold} rank={rank}\n  said: {turns[i]['text']}\n"
              f"  pushed here: {pushed.get(i, [])} next: {pushed.get(i + 1, [])}\n  search top: {top}")  # fmt: skip
    print(f"{call['id']}: all pushed {sum(len(v) for v in pushed.values())}: "
          f"{ {k: v for k, v in sorted(pushed.items())} }")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
