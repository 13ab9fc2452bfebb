"""The ``assist`` command.

    assist replay CALL [--kb KB.jsonl] [--rules DIR] [--realtime] [--lang en|zh|auto]
                       [--channel agent|customer]
    assist demo                 replay the bundled sample call in real time, readably
    assist serve [--demo]       the service: REST + SSE API and the browser UIs
    assist models prepare|list  resolve (and join) every model; show where each one lives

``replay`` is a contract other tools depend on: stdout carries one JSON event per line and
nothing else; logs and progress go to stderr. Errors are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TextIO

from sidecar.callfile import AudioCall, load_call
from sidecar.kernel.bus import InMemoryBus
from sidecar.kernel.clock import Clock, FastClock, RealtimeClock
from sidecar.kernel.errors import AssistError
from sidecar.kernel.events import Event
from sidecar.kernel.settings import Settings

log = logging.getLogger("assist")
SAMPLE_CALL = Path(__file__).resolve().parent.parent / "samples" / "sample-call.wav"
SAMPLE_KB = SAMPLE_CALL.with_name("sample-kb.jsonl")


def _setup_logging() -> None:
    level = logging.DEBUG if os.environ.get("ASSIST_DEBUG") else logging.WARNING
    logging.basicConfig(stream=sys.stderr, level=level, format="assist: %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _existing(kind: str) -> Callable[[str], Path]:
    def check(value: str) -> Path:
        path = Path(value)
        if not path.exists():
            raise argparse.ArgumentTypeError(f"{kind} {value}: no such file or directory")
        return path

    return check


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="assist", description="agent-assist: live call coaching")
    sub = parser.add_subparsers(dest="command", required=True)
    rp = sub.add_parser(
        "replay", help="replay a call (WAV or transcript .jsonl) and print its events as JSON lines"
    )
    rp.add_argument("call", type=Path, help="stereo WAV (left agent, right customer), mono WAV, or .jsonl")
    rp.add_argument("--kb", type=_existing("knowledge base"), help="snippets (.jsonl) for this call")
    rp.add_argument("--rules", type=_existing("rules directory"), help="rule pack directory")
    rp.add_argument("--realtime", action="store_true", help="feed the call at its own pace, as a live call")
    rp.add_argument("--lang", choices=["en", "zh", "auto"], default="en", help="language of the call")
    rp.add_argument("--channel", choices=["agent", "customer"], default="customer",
                    help="the channel a mono WAV carries (default: customer)")  # fmt: skip
    rp.add_argument("--call-id", default=None, help="call id to use (default: generated)")
    rp.add_argument("--no-coach", action="store_true", help="transcripts only: no alerts, intents, emotion")
    demo = sub.add_parser("demo", help="replay the bundled sample call in real time and show it readably")
    demo.add_argument("call", type=Path, nargs="?", default=SAMPLE_CALL)
    demo.add_argument("--kb", type=_existing("knowledge base"), default=SAMPLE_KB,
                      help="snippets to suggest (default: the bundled sample)")  # fmt: skip
    demo.add_argument("--lang", choices=["en", "zh", "auto"], default="en")
    demo.add_argument("--fast", action="store_true", help="as fast as possible instead of real time")
    rules = sub.add_parser("rules", help="rule packs")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_sub.add_parser("check", help="validate a rule pack directory (errors name file and line)")
    check.add_argument(
        "dir", type=Path, nargs="?", default=None, help="pack directory (default: shipped pack)"
    )
    from knowledge.cli import add_kb_parser
    from sidecar.service.serve import add_serve_parser

    add_kb_parser(sub)
    add_serve_parser(sub)
    from sidecar.qa_run import add_qa_parser
    from sidecar.store.cli import add_store_parser

    add_qa_parser(sub)
    add_store_parser(sub)
    models = sub.add_parser("models", help="offline models")
    models.add_argument("action", choices=["prepare", "list"])
    return parser


def main(argv: list[str] | None = None) -> int:
    _setup_logging()
    args = build_parser().parse_args(argv)
    try:
        if args.command == "replay":
            return asyncio.run(_replay(args, _print_json))
        if args.command == "demo":
            from sidecar.console import print_readable

            return asyncio.run(_replay(args, print_readable, realtime=not args.fast))
        if args.command == "rules":
            return _rules_check(args.dir)
        if args.command == "serve":
            from sidecar.service.serve import serve

            return serve(args)
        if args.command == "kb":
            from knowledge.cli import run_kb
            from sidecar.kb_try import offline_suggester, try_drafts

            return run_kb(args, try_drafts=lambda draft, calls: try_drafts(draft, calls, offline_suggester))
        if args.command == "qa":
            from sidecar.qa_run import run_qa_command

            return run_qa_command(args)
        if args.command == "store":
            from sidecar.store.cli import run_store_command

            return run_store_command(args)
        return _models(args.action)
    except AssistError as exc:
        print(f"assist: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("assist: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        if os.environ.get("ASSIST_DEBUG"):
            raise
        print(f"assist: internal error: {type(exc).__name__}: {exc} (ASSIST_DEBUG=1 shows the traceback)",
              file=sys.stderr)  # fmt: skip
        return 70


def _print_json(event: Event, out: TextIO) -> None:
    out.write(event.to_json() + "\n")
    out.flush()


async def _replay(
    args: argparse.Namespace, printer: Callable[[Event, TextIO], None], realtime: bool | None = None
) -> int:
    from sidecar.replay import new_call_id, replay_audio, replay_transcript

    realtime = args.realtime if realtime is None else realtime
    call = load_call(args.call, getattr(args, "channel", "customer"))
    settings = Settings.from_env()
    call_id = getattr(args, "call_id", None) or new_call_id()
    engine = None
    if isinstance(call, AudioCall):
        from sidecar.engine import SpeechEngine

        engine = SpeechEngine(settings)
        engine.preload(args.lang)  # before call.started: model loading is not call latency
    coach = None
    knowledge = None
    background: list[asyncio.Task[None]] = []
    if not getattr(args, "no_coach", False):  # models and the knowledge base load before the call starts
        from coach.engine import Coach

        coach = Coach(getattr(args, "rules", None))  # loads and validates the pack, and the embedder
        if getattr(args, "kb", None) is not None and coach.embedder is not None:
            from knowledge.policy import StoreKnowledge, default_policy

            knowledge = default_policy(StoreKnowledge.from_jsonl(args.kb, coach.embedder))
            knowledge.warm_up()
    clock: Clock = RealtimeClock() if realtime else FastClock()  # the call starts now
    bus = InMemoryBus(clock)
    emit = None
    if coach is not None:
        from coach.sink import CoachSink

        sink = CoachSink(coach, bus, knowledge=knowledge)
        emit = sink
        if realtime:  # a live call: dead air while nobody speaks, rule-pack edits picked up
            sink.start_ticking(clock.elapsed)
            background.append(asyncio.create_task(coach.watch()))
    subscription = bus.subscribe(call_id, after_seq=0)
    printing = asyncio.create_task(_drain(subscription, printer))
    await asyncio.sleep(0)
    try:
        if isinstance(call, AudioCall):
            assert engine is not None
            await replay_audio(call, call_id=call_id, bus=bus, engine=engine, clock=clock, lang=args.lang,
                               realtime=realtime, emit=emit)  # fmt: skip
        else:
            await replay_transcript(
                call, call_id=call_id, bus=bus, clock=clock, lang=args.lang, realtime=realtime, emit=emit
            )
        await printing
    finally:
        printing.cancel()
        for task in background:
            task.cancel()
        if engine is not None:
            engine.close()
    return 0


async def _drain(subscription: AsyncIterator[Event], printer: Callable[[Event, TextIO], None]) -> None:
    async for event in subscription:
        printer(event, sys.stdout)


def _rules_check(directory: Path | None) -> int:
    from coach.rules import DEFAULT_PACK, RulePackError, load_rules

    directory = directory or DEFAULT_PACK
    try:
        rules = load_rules(directory)
    except RulePackError as exc:
        for problem in exc.problems:
            print(f"{directory}/{problem}", file=sys.stderr)
        print(f"assist: {len(exc.problems)} problem(s) in {directory}", file=sys.stderr)
        return exc.exit_code
    versions = ", ".join(f"{name} v{v}" for name, v in rules.versions.items())
    print(f"{directory}: {len(rules.rules)} rules, {len(rules.intents)} intents, "
          f"{len(rules.disclosures)} disclosure steps, {len(rules.categories)} judged categories "
          f"({sum(len(c.examples) + len(c.negatives) for c in rules.categories)} sentences) ({versions})")  # fmt: skip
    return 0


def _models(action: str) -> int:
    from models.registry import MODELS, resolve_model

    failed = 0
    for key, spec in MODELS.items():
        try:
            path = resolve_model(key)
            print(f"{key:20} {path}", file=sys.stderr if action == "prepare" else sys.stdout)
        except AssistError as exc:
            # embedders belong to the knowledge issue, and the language model is optional at run time:
            # report, do not fail preparation for them
            optional = key.startswith("embed-") or key == "llm"
            failed += 0 if optional else 1
            print(f"{key:20} {'(optional) ' if optional else ''}{exc}", file=sys.stderr)
        del spec
    if action == "prepare" and not failed:
        failed += _warm_judge()
    return 3 if failed else 0


def _warm_judge() -> int:
    """Embed the shipped pack's judge corpus once, so the first start fits the judge in seconds."""
    from coach.judge import fit_judge, load_panel, panel_keys
    from coach.rules import DEFAULT_PACK, load_rules

    try:
        judge = fit_judge(load_rules(DEFAULT_PACK).categories, load_panel(panel_keys()))
    except AssistError as exc:
        print(f"judge                (optional) {exc}", file=sys.stderr)
        return 0
    print(f"judge                {len(judge.label_names())} labels from {judge.examples} sentences, "
          f"fitted in {judge.fit_s:.1f} s", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
