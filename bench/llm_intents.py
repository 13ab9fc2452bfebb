"""The packaged language model as an intent judge, measured turn by turn on a labeled call set.

    .venv/bin/python bench/llm_intents.py ../shared/callsets/dev [--lang en] [--mode multi|yesno]
        [--limit 60] [--threads 2] [--context 2]

The option the coach issue asks to measure before choosing: can the only packaged instruction
model (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, through ``coach.llm.runtime``) read a customer turn's
intents? The instructions are the rule pack's own definitions of each intent (the policy, in the
call's language), never words from a call set. For every customer turn (up to ``--limit``), the
model sees the ``--context`` turns before it and the turn, and answers under a grammar:

- ``multi``: one prompt, the answer a comma-separated list of intent names or ``none``;
- ``yesno``: one prompt per intent ("does the customer do this in this turn?"), yes or no.

Printed: per intent true / false / missed, precision and recall of the non-informational intents
(the scorer's "intents" figure, turn level), and seconds per prompt (p50 / p95) on this machine.
A tuning harness: choose on one set, report on the other.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.llm_assist import _pct  # noqa: E402
from coach.llm.prompts import Message, Prompt  # noqa: E402
from coach.llm.runtime import RuntimeSettings, XllamaGenerator  # noqa: E402
from coach.rules import DEFAULT_PACK, load_rules  # noqa: E402
from models.registry import resolve_model  # noqa: E402
from sidecar.kernel.errors import AssistError  # noqa: E402

SYSTEM = {
    "multi": (
        "You label one customer turn from a customer-service call. Read it in the context of the "
        "turns before it and say which of these the customer does in this turn (none, one or "
        "several):\n{definitions}\nAnswer with the names separated by commas, or none."
    ),
    "yesno": (
        "You read one customer turn from a customer-service call, with the turns before it, and "
        "answer a yes/no question about that customer turn only. Answer yes or no."
    ),
}


def definitions(lang: str) -> dict[str, str]:
    """Each intent's definition from the shipped rule pack, in the call's language when it has one."""
    found: dict[str, str] = {}
    for cat in load_rules(DEFAULT_PACK).categories:
        if cat.kind == "intent" and cat.definition and cat.lang in (lang, "any"):
            found.setdefault(cat.label, cat.definition)
    return found


def grammar(labels: list[str]) -> str:
    names = " | ".join(f'"{label}"' for label in labels)
    return f'root ::= "none" | lab ("," " "? lab)*\nlab ::= {names}'


def customer_turns(callset: Path, lang: str | None) -> list[dict[str, Any]]:
    calls = json.loads((callset / "calls.json").read_text(encoding="utf-8"))["calls"]
    out = []
    for call in calls:
        if lang and call["lang"] != lang:
            continue
        before: list[str] = []
        for turn in call["turns"]:
            if "speaker" not in turn:
                continue
            if turn["speaker"] == "customer":
                gold = {lab.split(":", 1)[1] for lab in turn["labels"] if lab.startswith("intent:")}
                out.append({"lang": call["lang"], "before": list(before), "text": turn["text"], "gold": gold})
            before.append(f"{turn['speaker'].upper()}: {turn['text']}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("callset", type=Path)
    ap.add_argument("--lang", choices=("en", "zh"))
    ap.add_argument("--mode", choices=("multi", "yesno"), default="multi")
    ap.add_argument("--limit", type=int, default=60, help="customer turns at most")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--context", type=int, default=2, help="turns before the labelled one")
    args = ap.parse_args()
    if not (args.callset / "calls.json").is_file():
        print(f"error: {args.callset}/calls.json not found (a call set folder, e.g. ../shared/callsets/dev)")
        return 2
    try:
        model = XllamaGenerator(resolve_model("llm"), RuntimeSettings(threads=args.threads))
    except AssistError as exc:
        print(f"error: {exc}")
        return 2
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    seconds: list[float] = []
    turns = customer_turns(args.callset, args.lang)[: args.limit]
    pack = {lang: definitions(lang) for lang in {t["lang"] for t in turns}}  # the pack read once
    started = time.perf_counter()
    for turn in turns:
        defs = pack[turn["lang"]]
        context = "\n".join(turn["before"][-args.context :]) if args.context else "(start of the call)"
        said = f"Earlier in the call:\n{context}\n\nThe customer turn:\nCUSTOMER: {turn['text']}"
        predicted: set[str] = set()
        if args.mode == "multi":
            system = SYSTEM["multi"].format(definitions="\n".join(f"{k}: {v}" for k, v in defs.items()))
            prompt = Prompt(
                (Message("system", system), Message("user", said + "\n\nLabels:")), grammar(list(defs)), 32
            )
            answer = model.generate(prompt)
            seconds.append(answer.wall_s)
            predicted = {p.strip() for p in answer.text.split(",") if p.strip() in defs}
        else:
            for label, definition in defs.items():
                question = f"{said}\n\nQuestion: {definition} Does the customer do this in this turn?"
                prompt = Prompt((Message("system", SYSTEM["yesno"]), Message("user", question)), 'root ::= "yes" | "no"', 2)  # fmt: skip
                answer = model.generate(prompt)
                seconds.append(answer.wall_s)
                if answer.text.strip() == "yes":
                    predicted.add(label)
        for label in predicted | turn["gold"]:
            if label in predicted and label in turn["gold"]:
                tp[label] += 1
            elif label in predicted:
                fp[label] += 1
            else:
                fn[label] += 1
    labels = sorted(set(tp) | set(fp) | set(fn))
    print(f"{args.callset.name} {args.lang or 'all'} mode={args.mode}: {len(turns)} customer turns, "
          f"{len(seconds)} prompts in {time.perf_counter() - started:.0f} s")  # fmt: skip
    for label in labels:
        print(f"  {label:20s} true {tp[label]:3d}  false {fp[label]:3d}  missed {fn[label]:3d}")
    counted = [lab for lab in labels if lab != "info_request"]
    t, f, m = (sum(c[lab] for lab in counted) for c in (tp, fp, fn))
    precision = t / (t + f) if t + f else 1.0
    recall = t / (t + m) if t + m else 1.0
    print(f"  intents (non-info): precision {precision:.3f} recall {recall:.3f}")
    print(f"  seconds per prompt: p50 {_pct(seconds, 0.5):.2f} p95 {_pct(seconds, 0.95):.2f}")
    model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
