"""The language model's latency and cost: time to a hand-off note and to a reply draft, tokens/s, RSS.

    .venv/bin/python bench/llm_assist.py [../shared/callsets/dev] [--calls 3] [--threads 1,2] [--turns 8]

Each thread count runs in a fresh process (clean RSS) through the service's own path
(``LlmService`` + ``CallAssistant``: the worker thread, the prompt cache, the checks). For each of
``--calls`` calls of the call set (English and Chinese in turn), on its redacted transcript:

- *note, cold*: the first ``--turns`` turns (nothing of this call in the prompt cache);
- *note, refresh*: two more turns (the prompt cache holds the earlier ones);
- *reply*: a draft from the last turns and the procedure cards the call's labels point to.

Printed per thread count: model load time, each kind's p50/p95 seconds, prompt and generation
tokens/s (over all requests; cached prompt tokens are not counted as evaluated), the share of
prompt tokens served from the cache, lines dropped by the grounding check, and RSS after load and
at peak. ``--json`` prints one JSON object per thread count instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_CALLSET = ROOT.parent / "shared" / "callsets" / "dev"


def _rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process, MiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _calls(callset: Path, n: int) -> list[dict[str, Any]]:
    data = json.loads((callset / "calls.json").read_text(encoding="utf-8"))
    calls = data["calls"] if isinstance(data, dict) else data
    english = [c for c in calls if c.get("lang") == "en"]
    chinese = [c for c in calls if c.get("lang") == "zh"]
    picked: list[dict[str, Any]] = []
    while len(picked) < n and (english or chinese):
        for pool in (english, chinese):
            if pool and len(picked) < n:
                picked.append(pool.pop(0))
    return picked


def _kb(callset: Path) -> dict[str, dict[str, Any]]:
    path = callset / "kb.jsonl"
    if not path.exists():
        return {}
    return {s["id"]: s for s in map(json.loads, path.read_text(encoding="utf-8").splitlines()) if s}


async def _measure(callset: Path, calls: int, threads: int, turns: int, poll: int) -> dict[str, Any]:
    from coach.llm.assistant import CallAssistant
    from coach.llm.prompts import Card, Turn, call_language
    from coach.llm.service import LlmConfig, LlmService
    from sidecar.kernel.redact import redact

    config = LlmConfig(mode="startup", threads=threads, postcall="off", poll=poll, wait_s=7200.0)
    service = LlmService(config)
    if not service.available:
        raise SystemExit(f"bench/llm_assist.py: {service.status().reason}")
    assistant = CallAssistant(service)
    started = time.perf_counter()
    await service.run(lambda model: None)  # waits for the load
    load_s = time.perf_counter() - started
    rss_loaded, _ = _rss_mb()
    kb = _kb(callset)
    times: dict[str, list[float]] = {"note_cold": [], "note_refresh": [], "reply": []}
    prompt_tokens = cached = generated = 0
    prompt_s = generate_s = 0.0
    dropped = 0
    for call in _calls(callset, calls):
        spoken = [t for t in call["turns"] if t.get("speaker") in ("agent", "customer") and t.get("text")]
        all_turns = [Turn(t["speaker"], redact(t["text"], call.get("lang", "en"))) for t in spoken]
        lang = call_language(call.get("lang", ""), all_turns)
        labels = [label for t in spoken[: turns + 2] for label in t.get("labels", ())]
        cards = [Card(sid, kb[sid]["title"], kb[sid]["body"])
                 for sid in dict.fromkeys(lb[3:] for lb in labels if lb.startswith("kb:")) if sid in kb][:3]  # fmt: skip
        recent = all_turns[max(0, turns - 4) : turns + 2]
        steps: list[tuple[str, Any]] = [  # coroutines run one after the other, in this order
            ("note_cold", assistant.note(call["id"], lang, all_turns[:turns])),
            ("note_refresh", assistant.note(call["id"], lang, all_turns[: turns + 2])),
            ("reply", assistant.reply(call["id"], lang, recent, cards)),
        ]
        for kind, ask in steps:
            t0 = time.perf_counter()
            result = await ask
            times[kind].append(time.perf_counter() - t0)
            note = result[0] if isinstance(result, tuple) else result
            stats = note.stats
            prompt_tokens += stats.prompt_tokens
            cached += stats.cached_tokens
            generated += stats.generated_tokens
            prompt_s += stats.prompt_s
            generate_s += stats.generate_s
            dropped += sum(1 for line in note.lines if line.dropped) if kind != "reply" else note.dropped
            tps = stats.generated_tokens / stats.generate_s if stats.generate_s else 0.0
            print(f"  threads={threads} {call['id']:<14} {kind:<13} {times[kind][-1]:6.1f} s  prompt "
                  f"{stats.prompt_tokens:4d} (+{stats.cached_tokens} cached) {stats.prompt_s:5.1f} s  "
                  f"generated {stats.generated_tokens:3d} at {tps:4.1f} tok/s", file=sys.stderr)  # fmt: skip
    service.close()
    _, rss_peak = _rss_mb()
    return {
        "threads": threads,
        "poll": poll,
        "calls": calls,
        "load_s": round(load_s, 2),
        **{f"{k}_p50_s": round(_pct(v, 0.5), 2) for k, v in times.items()},
        **{f"{k}_p95_s": round(_pct(v, 0.95), 2) for k, v in times.items()},
        "prompt_tps": round(prompt_tokens / prompt_s, 1) if prompt_s else 0.0,
        "generate_tps": round(generated / generate_s, 1) if generate_s else 0.0,
        "prompt_tokens": prompt_tokens,
        "cached_share": round(cached / (cached + prompt_tokens), 2) if cached + prompt_tokens else 0.0,
        "generated_tokens": generated,
        "dropped_lines": dropped,
        "rss_loaded_mb": round(rss_loaded),
        "rss_peak_mb": round(rss_peak),
    }


def _table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'threads':>7} {'load s':>7} {'note cold p50/p95 s':>20} {'refresh p50/p95 s':>18} "
            f"{'reply p50/p95 s':>16} {'prompt tok/s':>12} {'gen tok/s':>9} {'cached':>6} {'RSS MiB':>12}")  # fmt: skip
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['threads']:>7} {r['load_s']:>7.1f} "
            f"{r['note_cold_p50_s']:>9.1f} / {r['note_cold_p95_s']:<8.1f} "
            f"{r['note_refresh_p50_s']:>8.1f} / {r['note_refresh_p95_s']:<7.1f} "
            f"{r['reply_p50_s']:>7.1f} / {r['reply_p95_s']:<6.1f} "
            f"{r['prompt_tps']:>12.1f} {r['generate_tps']:>9.1f} {r['cached_share']:>6.0%} "
            f"{r['rss_loaded_mb']:>5} / {r['rss_peak_mb']:<5}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("callset", nargs="?", type=Path, default=DEFAULT_CALLSET)
    parser.add_argument("--calls", type=int, default=3, help="calls measured per thread count (default 3)")
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    parser.add_argument("--turns", type=int, default=8, help="turns in the first note (default 8)")
    parser.add_argument("--poll", type=int, default=0, help="runtime threads' spinning, 0..100 (default 0)")
    parser.add_argument("--json", action="store_true", help="one JSON object per thread count")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one thread count, in-process
    args = parser.parse_args(argv)
    if not (args.callset / "calls.json").exists():
        parser.error(f"{args.callset}: no calls.json (pass a call set folder)")
    if args.one is not None:
        print(json.dumps(asyncio.run(_measure(args.callset, args.calls, args.one, args.turns, args.poll))))
        return 0
    rows = []
    for threads in (int(t) for t in args.threads.split(",") if t.strip()):
        cmd = [sys.executable, __file__, str(args.callset), "--calls", str(args.calls), "--turns",
               str(args.turns), "--poll", str(args.poll), "--one", str(threads)]  # fmt: skip
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
        if done.returncode != 0:  # the others are still reported
            print(f"bench/llm_assist.py: threads={threads} failed (exit {done.returncode})", file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print(
            f"language model on {args.calls} calls of {args.callset.name}, first note after {args.turns} turns"
        )
        print(_table(rows))
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
