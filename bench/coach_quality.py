"""The whole coach on a labeled call set, in one process, scored by the call set's own evaluate.py.

    .venv/bin/python bench/coach_quality.py ../shared/callsets/dev2 [--lang zh] [--ids a,b]
    .venv/bin/python bench/coach_quality.py CALLSET --json out.json --show-errors
    .venv/bin/python bench/coach_quality.py CALLSET --mode audio --voices kokoro --kokoro-dir DIR [--realtime]

The same path as ``assist replay CALL.jsonl --kb KB.jsonl`` (text mode: each turn a final at its
end): the rule pack, the judge and the knowledge panel are loaded once, then every call is
replayed through ``CoachSink`` on an in-memory bus. The figures are not recomputed here: each
call's events are written to a folder, and ``evaluate.py`` itself is run over that folder with
``--cmd`` pointing at this script's ``--print-events`` mode, so the bench and the scorer agree by
construction (same turn timeline, same attribution, same summary). ``--mode audio`` renders the
calls (espeak-ng or Kokoro neural voices, cached under ~/.cache/agent-assist/renders, shared with
bench/asr_stream.py) and lets evaluate.py run ``assist replay`` on each WAV with the call's
language (``--realtime``: at the call's own pace, with alert latency). ``--show-errors`` lists each
false and missed violation / intent with the agent's or customer's words (redacted evidence).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.kb_quality import load_evaluator, pct_ms, replay_events, write_transcript  # noqa: E402


def print_events(path: Path, events_dir: Path) -> int:
    """``--cmd`` for evaluate.py: print the events stored for this call file."""
    stored = events_dir / (path.stem + ".events.jsonl")
    if not stored.exists():
        print(f"no events stored for {path.name}", file=sys.stderr)
        return 2
    sys.stdout.write(stored.read_text(encoding="utf-8"))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("callset", type=Path, nargs="?")
    parser.add_argument("--lang", choices=("en", "zh"))
    parser.add_argument("--ids", help="comma-separated call ids")
    parser.add_argument("--rules", type=Path, help="rule pack directory (default: the shipped pack)")
    parser.add_argument("--evaluate", type=Path, help="the scorer (default: evaluate.py beside the call set)")
    parser.add_argument("--json", type=Path, help="write the summary here too")
    parser.add_argument("--show-errors", action="store_true", help="list false and missed labels")
    parser.add_argument("--mode", choices=("text", "audio"), default="text")
    parser.add_argument(
        "--voices", choices=("espeak", "kokoro"), default="kokoro", help="audio mode's renderer"
    )
    parser.add_argument("--kokoro-dir", type=Path, default=Path(os.environ["KOKORO_DIR"]) if os.environ.get("KOKORO_DIR") else None)  # fmt: skip
    parser.add_argument("--realtime", action="store_true", help="audio mode at the calls' own pace")
    parser.add_argument("--print-events", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--events-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--kb", type=Path, help=argparse.SUPPRESS)  # passed by evaluate.py, unused
    args = parser.parse_args()
    if args.print_events is not None:
        assert args.events_dir is not None
        return print_events(args.print_events, args.events_dir)
    if args.callset is None:
        parser.error("CALLSET is required")
    if args.mode == "audio":
        return audio_mode(args)

    from coach.engine import Coach
    from knowledge.policy import StoreKnowledge, default_policy

    evaluate_py = args.evaluate or args.callset.resolve().parent / "evaluate.py"
    evaluator = load_evaluator(args.callset, evaluate_py)
    calls = json.loads((args.callset / "calls.json").read_text(encoding="utf-8"))["calls"]
    if args.lang:
        calls = [c for c in calls if c["lang"] == args.lang]
    if args.ids:
        wanted = set(args.ids.split(","))
        calls = [c for c in calls if c["id"] in wanted]
    t0 = time.monotonic()
    coach = Coach(args.rules)
    assert coach.embedder is not None
    knowledge = StoreKnowledge.from_jsonl(args.callset / "kb.jsonl", coach.embedder)
    policy = default_policy(knowledge)
    policy.warm_up()
    print(f"models, rules and knowledge loaded in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    judge_s: list[float] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        events_dir = Path(tmp) / "events"
        events_dir.mkdir()
        for call in calls:
            turns, path = write_transcript(call, evaluator, Path(tmp))
            events = asyncio.run(replay_events(path, coach, policy))
            for ev in events:
                if ev["type"] == "call.ended":
                    judge_s += [
                        v / 1000 for k, v in ev["payload"].get("stats", {}).items() if k == "judge_ms_max"
                    ]
            (events_dir / f"{call['id']}.events.jsonl").write_text(
                "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events), encoding="utf-8"
            )
            if args.show_errors:
                show_errors(call, turns, events, evaluator)
        replayed_s = time.monotonic() - t0
        cmd = f"{sys.executable} {Path(__file__).resolve()} --events-dir {events_dir} --print-events"
        scorer = [sys.executable, str(evaluate_py), str(args.callset), "--mode", "text", "--cmd", cmd,
                  "--work", str(Path(tmp) / "work")]  # fmt: skip
        if args.ids:
            scorer += ["--ids", args.ids]
        if args.lang:
            scorer += ["--lang", args.lang]
        done = subprocess.run(scorer, capture_output=True, text=True, env={**os.environ}, check=False)
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
        return done.returncode
    summary: dict[str, Any] = json.loads(done.stdout)
    summary["bench"] = {"replay_seconds": round(replayed_s, 1), "judge_ms_max_p50": pct_ms(judge_s, 0.5),
                        "judge_ms_max_p95": pct_ms(judge_s, 0.95)}  # fmt: skip
    text = json.dumps(summary, indent=1, ensure_ascii=False)
    print(text)
    if args.json:
        args.json.write_text(text, encoding="utf-8")
    return 0


def audio_mode(args: argparse.Namespace) -> int:
    """evaluate.py in audio mode over ``assist replay`` (a process a call: models load per call)."""
    from bench.asr_stream import RENDERS, BenchSetupError, renderer

    try:
        render, env = renderer(args.voices, args.callset, args.kokoro_dir)
    except BenchSetupError as e:
        print(f"coach_quality: {e}", file=sys.stderr)
        return 1
    evaluate_py = args.evaluate or args.callset.resolve().parent / "evaluate.py"
    assist = Path(sys.executable).parent / "assist"
    scorer = [sys.executable, str(evaluate_py), str(args.callset), "--mode", "audio", "--cmd", f"{assist} replay",
              "--synth-cmd", " ".join(render), "--work", str(RENDERS / args.voices)]  # fmt: skip
    for flag, value in (("--ids", args.ids), ("--lang", args.lang), ("--json", args.json)):
        scorer += [flag, str(value)] if value else []
    scorer += ["--realtime"] if args.realtime else []
    return subprocess.run(scorer, env={**os.environ, **env}, check=False).returncode


def show_errors(
    call: dict[str, Any], turns: list[dict[str, Any]], events: list[dict[str, Any]], evaluator: Any
) -> None:
    scored = evaluator.score_call(call, turns, events, [0.0] * len(events), False)
    for kind, gold, pred in (("violation", "gold_v", "pred_v"), ("intent", "gold_i", "pred_i")):
        for key in sorted(scored[gold] - scored[pred]):
            print(f"MISS {kind} {key[2]} {call['id']}#{key[1]}: {turns[key[1]]['text']}", file=sys.stderr)
        for key in sorted(scored[pred] - scored[gold]):
            if kind == "intent" and key[2] == "info_request":
                continue
            print(f"FALSE {kind} {key[2]} {call['id']}#{key[1]}: {turns[key[1]]['text']}", file=sys.stderr)
    for key in sorted(scored["gold_m"] ^ scored["pred_m"]):
        what = "MISS" if key in scored["gold_m"] else "FALSE"
        print(f"{what} missing_disclosure {key[1]} {call['id']}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
