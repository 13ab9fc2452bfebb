"""``assist qa run DIR|GLOB [--lang] [--workers N]``: score recorded calls in bulk into the call store.

Each file (a WAV in any format the replay accepts, or a transcript ``.jsonl``) goes through the
same code as ``assist replay`` and the service's recorded calls: ``replay_audio`` /
``replay_transcript`` into the call's ``CoachSink`` on a bus, as fast as the clock allows
(``FastClock``); ``CallRecorder`` folds the events into the stored record. So a call's score here
is the score the live and replay paths give it.

A call's agent, queue and customer reference come from ``NAME.meta.json`` next to it, when there
is one (``{"agent_id": "...", "queue": "...", "customer_ref": "..."}``).

Resumable: a call is keyed by the SHA-256 of its file; a file whose hash is stored is skipped, so a
rerun (or a run after an interruption) scores only what is missing. ``--workers N`` > 1 scores in
N processes, each loading the models once; the parent alone writes to the store. The coach's judge
gets a generous time budget here (``ASSIST_JUDGE_BUDGET_S``, default 30 s in bulk): a reading late
only because the machine is busy would otherwise count as a miss and change the score.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import hashlib
import json
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidecar.callfile import AudioCall, load_call
from sidecar.kernel.bus import InMemoryBus
from sidecar.kernel.clock import FastClock
from sidecar.kernel.errors import AssistError, InputError
from sidecar.kernel.events import Event
from sidecar.store.record import CallRecord, CallRecorder
from sidecar.store.settings import StoreSettings, normalise_url

if TYPE_CHECKING:  # the models and the database driver load only when a run starts
    from coach.engine import Coach
    from knowledge.policy import SuggestionPolicy
    from sidecar.engine import SpeechEngine
    from sidecar.store.repository import CallStore

log = logging.getLogger(__name__)
CALL_SUFFIXES = (".wav", ".wave", ".jsonl", ".ndjson")
BULK_JUDGE_BUDGET_S = "30"


@dataclass(frozen=True, slots=True)
class QaJob:
    path: Path
    content_hash: str

    @property
    def call_id(self) -> str:
        return f"qa-{self.content_hash[:20]}"


@dataclass(frozen=True, slots=True)
class QaOutcome:
    job: QaJob
    record: CallRecord | None = None
    error: str | None = None
    stored: bool = False


@dataclass
class QaReport:
    scored: int = 0
    skipped: int = 0
    failed: int = 0
    call_s: float = 0.0  # audio time of the calls scored
    wall_s: float = 0.0  # scoring (and, with worker processes, their model loading)
    load_s: float = 0.0  # loading the models in this process, before the clock starts

    @property
    def call_hours_per_wall_hour(self) -> float:
        return self.call_s / self.wall_s if self.wall_s > 0 else 0.0

    def line(self) -> str:
        return (f"qa run: {self.scored} scored, {self.skipped} already stored, {self.failed} failed; "
                f"{self.call_s / 3600:.3f} call-hours in {self.wall_s:.1f} s: "
                f"{self.call_hours_per_wall_hour:.1f} call-hours per wall-hour (models loaded in {self.load_s:.1f} s)")  # fmt: skip


def find_calls(spec: str) -> list[Path]:
    """A directory (its call files, recursively) or a glob pattern; sorted, call files only."""
    path = Path(spec)
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file()]
    else:
        found = [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()]
        if not found and not glob.has_magic(spec):
            raise InputError(f"{spec}: no such file or directory")
    calls = sorted(p for p in found if p.suffix.lower() in CALL_SUFFIXES)
    if not calls:
        raise InputError(f"{spec}: no call files (.wav or .jsonl) there")
    return calls


META_KEYS = ("agent_id", "queue", "customer_ref")


def call_meta(path: Path) -> dict[str, str]:
    """What a call file's ``NAME.meta.json`` says about it (``agent_id``, ``queue``,
    ``customer_ref``: strings); nothing when there is none. A bad one is an ``InputError``."""
    meta_path = path.with_name(path.stem + ".meta.json")
    if not meta_path.is_file():
        return {}
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{meta_path}: not a JSON object ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"{meta_path}: expected a JSON object")
    meta = {}
    for key in META_KEYS:
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > 128:
            raise InputError(f"{meta_path}: {key} must be a string of at most 128 characters")
        meta[key] = value
    return meta


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Scorer:
    """The models, loaded once; ``score`` runs one call file through the replay pipeline."""

    def __init__(self, lang: str = "en", rules: Path | None = None, kb: Path | None = None,
                 coach: Coach | None = None) -> None:  # fmt: skip
        self.lang = lang
        self.coach = coach if coach is not None else _bulk_coach(rules)
        self.knowledge: SuggestionPolicy | None = None
        if kb is not None and self.coach.embedder is not None:
            from knowledge.policy import StoreKnowledge, default_policy

            self.knowledge = default_policy(StoreKnowledge.from_jsonl(kb, self.coach.embedder))
            self.knowledge.warm_up()
        self._engine: SpeechEngine | None = None

    def engine(self) -> SpeechEngine:
        if self._engine is None:
            from sidecar.engine import SpeechEngine
            from sidecar.kernel.settings import Settings

            self._engine = SpeechEngine(Settings.from_env())
            self._engine.preload(self.lang)
        return self._engine

    async def score(self, job: QaJob) -> CallRecord:
        from coach.sink import CoachSink
        from sidecar.replay import replay_audio, replay_transcript

        call = await asyncio.to_thread(load_call, job.path, "customer")
        engine = self.engine() if isinstance(call, AudioCall) else None
        clock = FastClock()
        bus = InMemoryBus(clock)
        sink = CoachSink(self.coach, bus, knowledge=self.knowledge)
        meta = {**call_meta(job.path), "recording": str(job.path)}
        folding = asyncio.create_task(_fold(bus.subscribe(job.call_id, after_seq=0)))
        await asyncio.sleep(0)
        try:
            if isinstance(call, AudioCall):
                assert engine is not None
                await replay_audio(call, call_id=job.call_id, bus=bus, engine=engine, clock=clock, lang=self.lang,
                                   realtime=False, emit=sink, meta=meta)  # fmt: skip
            else:
                await replay_transcript(call, call_id=job.call_id, bus=bus, clock=clock, lang=self.lang,
                                        realtime=False, emit=sink, meta=meta)  # fmt: skip
            record = await folding
        finally:
            folding.cancel()
        return replace(record, origin="qa", content_hash=job.content_hash)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


def _bulk_coach(rules: Path | None) -> Coach:
    """The coach with the bulk judge budget (unless ``ASSIST_JUDGE_BUDGET_S`` says otherwise); the
    environment is left as it was."""
    from coach.engine import Coach

    before = os.environ.get("ASSIST_JUDGE_BUDGET_S")
    os.environ.setdefault("ASSIST_JUDGE_BUDGET_S", BULK_JUDGE_BUDGET_S)
    try:
        return Coach(rules)
    finally:
        if before is None:
            os.environ.pop("ASSIST_JUDGE_BUDGET_S", None)


async def _fold(events: Any) -> CallRecord:
    recorder = CallRecorder()
    event: Event
    async for event in events:
        record = recorder.apply(event)
        if record is not None:
            return record
    raise RuntimeError("the call's events ended without call.ended")


# -- worker processes ---------------------------------------------------------------------------

_worker: Scorer | None = None


def _init_worker(lang: str, rules: Path | None, kb: Path | None) -> None:
    global _worker
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    _worker = Scorer(lang, rules, kb)


def _score_in_worker(job: QaJob) -> QaOutcome:
    assert _worker is not None
    return _score_one(_worker, job)


def _score_one(scorer: Scorer, job: QaJob) -> QaOutcome:
    try:
        return QaOutcome(job, record=asyncio.run(scorer.score(job)))
    except AssistError as exc:
        return QaOutcome(job, error=str(exc))
    except Exception as exc:  # one bad call never stops the run: it is reported and retried next time
        return QaOutcome(job, error=f"{type(exc).__name__}: {exc}")


def _outcomes(jobs: list[QaJob], workers: int, scorer_args: tuple[str, Path | None, Path | None],
              scorer: Scorer | None) -> Iterator[QaOutcome]:  # fmt: skip
    if workers <= 1:
        own = scorer or Scorer(*scorer_args)
        try:
            for job in jobs:
                yield _score_one(own, job)
        finally:
            if scorer is None:
                own.close()
        return
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked model threads
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=scorer_args
    ) as pool:
        futures: list[Future[QaOutcome]] = [pool.submit(_score_in_worker, job) for job in jobs]
        for future in futures:  # in file order; the workers run ahead
            yield future.result()


def plan(paths: list[Path], stored: set[str]) -> tuple[list[QaJob], int]:
    """The files still to score (by content hash: stored ones and duplicates are skipped), and how
    many were skipped."""
    seen = set(stored)
    jobs: list[QaJob] = []
    for path in paths:
        job = QaJob(path, content_hash(path))
        if job.content_hash not in seen:
            seen.add(job.content_hash)
            jobs.append(job)
    return jobs, len(paths) - len(jobs)


def run_qa(paths: list[Path], store: CallStore, *, lang: str = "en", workers: int = 1, rules: Path | None = None,
           kb: Path | None = None, scorer: Scorer | None = None, progress: bool = True) -> QaReport:  # fmt: skip
    """Score every call file not yet stored; returns counts and throughput. With one worker the
    models load before the clock starts (``QaReport.load_s``); worker processes load theirs while
    the clock runs."""
    from tqdm import tqdm

    report = QaReport()
    jobs, report.skipped = plan(paths, store.stored_hashes())
    if not jobs:
        return report
    loading = time.perf_counter()
    if workers <= 1 and scorer is None:
        scorer = owned = Scorer(lang, rules, kb)
    else:
        owned = None
    report.load_s = time.perf_counter() - loading
    start = time.perf_counter()
    bar = tqdm(total=len(jobs), unit="call", file=sys.stderr, disable=not progress, desc="qa run")
    try:
        for outcome in _outcomes(jobs, workers, (lang, rules, kb), scorer):
            if outcome.record is None:
                report.failed += 1
                bar.write(f"assist: {outcome.job.path}: {outcome.error}", file=sys.stderr)
            elif store.save(outcome.record):
                report.scored += 1
                report.call_s += outcome.record.duration_s
            else:
                report.skipped += 1
            bar.update(1)
            bar.set_postfix(call_h=f"{report.call_s / 3600:.2f}")
    finally:
        bar.close()
        if owned is not None:
            owned.close()
    report.wall_s = time.perf_counter() - start
    return report


# -- the command --------------------------------------------------------------------------------


def add_qa_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    qa = sub.add_parser("qa", help="post-call quality assurance")
    qa_sub = qa.add_subparsers(dest="qa_command", required=True)
    run = qa_sub.add_parser("run", help="score recorded calls (WAV or transcript .jsonl) into the call store")
    run.add_argument("calls", help="a directory of call files, or a glob pattern (quote it)")
    run.add_argument("--lang", choices=["en", "zh", "auto"], default="en", help="language of the calls")
    run.add_argument("--workers", type=int, default=1, help="processes scoring calls at once (default 1)")
    run.add_argument(
        "--rules", type=Path, default=None, help="rule pack directory (default: the shipped pack)"
    )
    run.add_argument("--kb", type=Path, default=None, help="snippets (.jsonl) to suggest from")
    run.add_argument("--db", default=None,
                     help="database URL (default: $ASSIST_DATABASE_URL, else DATA/calls.sqlite3)")  # fmt: skip
    run.add_argument(
        "--data", type=Path, default=None, help="data directory (default: $ASSIST_DATA or .assist)"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_qa_command(args: argparse.Namespace) -> int:
    if not 1 <= args.workers <= 64:
        raise InputError(f"--workers {args.workers}: expected 1..64")
    for option, path in (("--rules", args.rules), ("--kb", args.kb)):
        if path is not None and not path.exists():
            raise InputError(f"{option} {path}: no such file or directory")
    paths = find_calls(args.calls)
    if args.rules is not None:  # a pack with errors: its problems now, not in each worker
        from coach.rules import load_rules

        load_rules(args.rules)
    data_dir = args.data or Path(os.environ.get("ASSIST_DATA", ".assist"))
    url = normalise_url(args.db) if args.db else StoreSettings.from_env(data_dir).url
    from sidecar.store.repository import CallStore

    store = CallStore(url)
    try:
        report = run_qa(paths, store, lang=args.lang, workers=args.workers, rules=args.rules, kb=args.kb,
                        progress=not args.no_progress)  # fmt: skip
    finally:
        store.close()
    print(report.line(), file=sys.stderr)
    return 2 if report.failed else 0
