"""The judge alone, turn by turn, on a labeled call set: how well each way of deciding reads the
turns' labels (no phrase rules, no checklist, no retrieval; the pack's examples are the only teacher).

    .venv/bin/python bench/judge_turns.py ../shared/callsets/dev [--heads ovr,softmax] [--json OUT]

The settings come from ASSIST_JUDGE_LEXICAL / ASSIST_JUDGE_HASH_BITS (see coach/judge.py). For
every agent and customer turn the units the live coach reads are embedded (the whole turn, each
sentence of it, and the previous turn of the same speaker joined to it when no pause came between);
each head turns them into labels; turn-level precision and recall are printed per kind
(violations, non-informational intents) and per label, over a sweep of decision thresholds. It is a
tuning harness: choose on one set, report on the other (the full path is bench/coach_quality.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from coach.intents import PRIORITY  # noqa: E402
from coach.judge import HEADS, FitCache, JudgeSettings, VectorCache, fit_judge, load_panel, panel_keys  # noqa: E402
from coach.rules import DEFAULT_PACK, load_rules  # noqa: E402
from sidecar.kernel.text import sentences  # noqa: E402

JUDGED_VIOLATIONS = ("abuse", "discrimination", "false_promise", "misleading_claim", "unprofessional")


def turns_of(callset: Path) -> list[dict[str, Any]]:
    calls = json.loads((callset / "calls.json").read_text(encoding="utf-8"))["calls"]
    out = []
    for call in calls:
        last: dict[str, str] = {}
        for turn in call["turns"]:
            if "pause_s" in turn:
                last = {}
                continue
            text, speaker = turn["text"], turn["speaker"]
            parts = sentences(text)
            units = [text, *parts] if len(parts) > 1 else [text]
            if last.get("speaker") == speaker:
                units.append(last["text"] + ("" if call["lang"] == "zh" else " ") + text)
            gold = {
                lab.split(":")[1]
                for lab in turn.get("labels", [])
                if lab.split(":")[0] in ("violation", "intent")
            }
            out.append(
                {"call": call["id"], "lang": call["lang"], "channel": speaker, "units": units, "gold": gold}
            )
            last = {"speaker": speaker, "text": text}
    return out


def primary_intents(scores: dict[str, float], labels: tuple[str, ...], cut: float) -> set[str]:
    """The live coach's choice among the intents read at or over ``cut``: the most specific one."""
    fired = [lab for lab in labels if scores.get(lab, 0.0) >= cut and lab != "info_request"]
    fired.sort(key=lambda lab: (PRIORITY.index(lab) if lab in PRIORITY else len(PRIORITY), -scores[lab]))
    return set(fired[:1])


def prf(tp: int, pred: int, gold: int) -> tuple[float, float]:
    return (round(tp / pred, 3) if pred else 1.0, round(tp / gold, 3) if gold else 1.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("callsets", nargs="+", type=Path)
    ap.add_argument("--heads", default=",".join(HEADS))
    ap.add_argument("--pack", type=Path, default=DEFAULT_PACK)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rules = load_rules(args.pack)
    panel = load_panel(panel_keys())
    cache = VectorCache()
    report: dict[str, Any] = {}
    intents = tuple(sorted({c.label for c in rules.categories if c.kind == "intent"} - {"info_request"}))
    for head in args.heads.split(","):
        settings = replace(JudgeSettings.from_env(), head=head)
        judge = fit_judge(rules.categories, panel, cache, settings, FitCache())
        print(settings)
        print(f"head {head}: fitted in {judge.fit_s} s on {judge.examples} texts")
        for callset in args.callsets:
            turns = turns_of(callset)
            readings = [judge.read(t["units"], t["channel"]) for t in turns]
            for kind, labels in (("violations", JUDGED_VIOLATIONS), ("intents", intents)):
                rows: dict[float, dict[str, Any]] = {}
                for cut in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
                    tp = pred = gold = 0
                    per: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
                    for t, r in zip(turns, readings, strict=True):
                        if kind == "intents":
                            fired = primary_intents(dict(r.scores), labels, cut)
                        else:
                            fired = {lab for lab in labels if r.scores.get(lab, 0.0) >= cut}
                        want = t["gold"] & set(labels)
                        tp, pred, gold = tp + len(fired & want), pred + len(fired), gold + len(want)
                        for lab in labels:
                            per[lab][0] += lab in fired and lab in want
                            per[lab][1] += lab in fired
                            per[lab][2] += lab in want
                    rows[cut] = {"pr": prf(tp, pred, gold), "per": {k: prf(*v) for k, v in per.items()}}
                report.setdefault(head, {}).setdefault(callset.name, {})[kind] = rows
                print(
                    f"  {callset.name} {kind}: "
                    + "  ".join(f"{c}:{v['pr'][0]:.2f}/{v['pr'][1]:.2f}" for c, v in rows.items())
                )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
