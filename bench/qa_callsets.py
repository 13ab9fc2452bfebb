"""``assist qa run`` over rendered call sets, checked against the live path call by call.

    .venv/bin/python bench/qa_callsets.py CALLSET [CALLSET ...] [--renders DIR] [--workers N]

For each call set (a directory with ``calls.json`` and ``kb.jsonl``) it renders the calls with
espeak-ng (the set's ``synth.py``, else a sibling set's; cached in ``--renders``, default
``~/.cache/agent-assist/renders/espeak/<set>``, and reused: only missing calls are rendered), then,
per set and language, runs the real ``assist qa run DIR --lang L --kb CALLSET/kb.jsonl`` as a
subprocess into a fresh temporary SQLite store (never the user's), and checks that every call is
stored exactly once (by the SHA-256 of its WAV). Then it runs the same commands again: a rerun
must store nothing new and report every file as already stored. Last, for each call, the live path:
``assist replay WAV --kb CALLSET/kb.jsonl --lang L`` (its JSON events folded by ``CallRecorder``,
as the service's subscriber does) is compared with the stored record: the score (the whole
scorecard), the alerts (category, rule, turn time) and the checklist (step, state).

Prints a row per call (id, lang, stored score, live score, equal?), what differs for a call that
does not match (with the judge's over-budget misses each side logged), a summary per set and one
for all: calls, stored, stored by the rerun, equal scores N/N, and the first run's throughput in
call-hours per wall-hour (as ``qa run`` measures it, and with process start and model loading).
Exits 1 on any mismatch; a missing call set or espeak-ng is one line on stderr and exit 2. Ctrl-C
stops it and prints the summaries of what was done (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sidecar.kernel.events import event_from_dict  # noqa: E402
from sidecar.qa_run import content_hash  # noqa: E402
from sidecar.store.query import MAX_LIMIT, CallQuery  # noqa: E402
from sidecar.store.record import CallRecord, CallRecorder  # noqa: E402
from sidecar.store.repository import CallStore, StoredCall  # noqa: E402
from sidecar.store.settings import sqlite_url  # noqa: E402

DEFAULT_RENDERS = Path("~/.cache/agent-assist/renders/espeak")
ASSIST = Path(sys.executable).with_name("assist")
REPORT_LINE = re.compile(
    r"qa run: (?P<scored>\d+) scored, (?P<skipped>\d+) already stored, (?P<failed>\d+) failed; "
    r"(?P<call_h>[\d.]+) call-hours in (?P<wall_s>[\d.]+) s"
)
JUDGE_MISS = re.compile(r"judge over its [\d.]+ s budget|judge failed")


class BenchError(Exception):
    """A one-line reason the bench cannot run."""


@dataclass(frozen=True, slots=True)
class Call:
    callset: str
    call_id: str
    lang: str
    wav: Path
    kb: Path

    @property
    def content_hash(self) -> str:
        """The key ``assist qa run`` stores the file under (its own function, not a copy)."""
        return content_hash(self.wav)


@dataclass(frozen=True, slots=True)
class QaRun:
    """One ``assist qa run`` as it reported itself, with its process wall time."""

    scored: int
    skipped: int
    failed: int
    wall_s: float  # what qa run times: scoring, models already loaded
    process_s: float  # the whole command: start, model loading, scoring
    judge_misses: int


@dataclass
class Comparison:
    call: Call
    stored: CallRecord | None
    live: CallRecord | None
    live_judge_misses: int = 0
    live_s: float = 0.0
    differences: list[str] = field(default_factory=list)

    @property
    def score_equal(self) -> bool:
        return (
            self.stored is not None and self.live is not None and self.stored.scorecard == self.live.scorecard
        )

    @property
    def equal(self) -> bool:
        return self.stored is not None and self.live is not None and not self.differences


@dataclass
class SetResult:
    callset: Path
    calls: list[Call]
    dirs: dict[str, Path]  # language: a directory of links to its calls' renders
    stored: int = 0  # distinct calls of this set in the store after the first run
    duplicates: int = 0  # records beyond one per call
    rerun_new: int = 0
    rerun_not_skipped: int = 0
    failed: int = 0
    call_s: float = 0.0
    first: list[QaRun] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    stored_by_hash: dict[str, list[StoredCall]] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)  # call id: SHA-256 of its WAV

    def __post_init__(self) -> None:
        self.hashes = {c.call_id: c.content_hash for c in self.calls}

    @property
    def name(self) -> str:
        return self.callset.name

    @property
    def kb(self) -> Path:
        return self.callset / "kb.jsonl"


# -- rendering ----------------------------------------------------------------------------------


def load_calls(callset: Path, renders: Path) -> list[Call]:
    calls_json = callset / "calls.json"
    kb = callset / "kb.jsonl"
    for needed in (calls_json, kb):
        if not needed.is_file():
            raise BenchError(f"{callset}: not a call set ({needed.name} missing)")
    data = json.loads(calls_json.read_text(encoding="utf-8"))
    return [Call(callset.name, c["id"], c["lang"], renders / f"{c['id']}.wav", kb) for c in data["calls"]]


def find_synth(callset: Path) -> Path:
    candidates = [callset / "synth.py", *sorted(callset.parent.glob("*/synth.py"))]
    for path in candidates:
        if path.is_file():
            return path
    raise BenchError(f"{callset}: no synth.py there or in a sibling call set to render it with")


def render(callset: Path, calls: list[Call], renders: Path) -> float:
    """Render the calls whose WAV (or timeline) is not cached yet; seconds spent."""
    missing = [
        c.call_id for c in calls if not c.wav.is_file() or not c.wav.with_suffix(".timeline.json").is_file()
    ]
    if not missing:
        return 0.0
    if shutil.which("espeak-ng") is None:
        raise BenchError(
            "espeak-ng not found on PATH: install it (apt-get install espeak-ng) to render the calls"
        )
    renders.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(find_synth(callset)), str(callset), str(renders), "--ids", ",".join(missing)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"{callset}: rendering failed: {tail}")
    return time.perf_counter() - start


# -- the commands -------------------------------------------------------------------------------


def command_env() -> dict[str, str]:
    """This environment, without anything that points ``qa run`` at another store."""
    env = {k: v for k, v in os.environ.items() if k not in ("ASSIST_DATABASE_URL", "ASSIST_CALL_DB")}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    return env


def qa_run(directory: Path, lang: str, kb: Path, db_url: str, workers: int) -> QaRun:
    argv = [str(ASSIST), "qa", "run", str(directory), "--lang", lang, "--kb", str(kb), "--db", db_url,
            "--workers", str(workers), "--no-progress"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=command_env())
    process_s = time.perf_counter() - start
    found = [m for m in map(REPORT_LINE.search, done.stderr.splitlines()) if m]
    if not found:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"assist qa run {directory} (--lang {lang}) exited {done.returncode}: {tail}")
    m = found[-1]
    return QaRun(int(m["scored"]), int(m["skipped"]), int(m["failed"]), float(m["wall_s"]), process_s,
                 len(JUDGE_MISS.findall(done.stderr)))  # fmt: skip


def replay(call: Call) -> tuple[CallRecord, int, float]:
    """The live path on the call's WAV: ``assist replay``'s events folded into a record; with the
    judge's logged misses and the command's wall time."""
    argv = [str(ASSIST), "replay", str(call.wav), "--kb", str(call.kb), "--lang", call.lang,
            "--call-id", f"live-{call.call_id}"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=command_env())
    wall_s = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"assist replay {call.wav} exited {done.returncode}: {tail}")
    recorder = CallRecorder()
    for line in done.stdout.splitlines():
        if line.strip():
            record = recorder.apply(event_from_dict(json.loads(line)))
            if record is not None:
                return record, len(JUDGE_MISS.findall(done.stderr)), wall_s
    raise BenchError(f"assist replay {call.wav}: its events ended without call.ended")


# -- the store ----------------------------------------------------------------------------------


def stored_by_hash(db_url: str) -> dict[str, list[StoredCall]]:
    store = CallStore(db_url)
    try:
        found: dict[str, list[StoredCall]] = {}
        offset = 0
        while True:
            page = store.search(CallQuery(limit=MAX_LIMIT, offset=offset))
            for summary in page:
                stored = store.get(summary.call_id)
                if stored is not None and stored.record.content_hash:
                    found.setdefault(stored.record.content_hash, []).append(stored)
            if len(page) < MAX_LIMIT:
                return found
            offset += len(page)
    finally:
        store.close()


def store_count(db_url: str) -> int:
    store = CallStore(db_url)
    try:
        return store.count(CallQuery())
    finally:
        store.close()


# -- comparing ----------------------------------------------------------------------------------


def _alerts(record: CallRecord) -> list[tuple[str, str, float]]:
    return [(a.category, a.rule_id, round(a.t_end, 3)) for a in record.alerts]


def _checklist(record: CallRecord) -> list[tuple[str, str]]:
    return [(c.step, c.state) for c in record.checklist]


def _diff(label: str, stored: list[Any], live: list[Any]) -> str:
    only_stored = [x for x in stored if x not in live]
    only_live = [x for x in live if x not in stored]
    return f"{label}: only stored {only_stored}, only live {only_live}"


def differences(stored: CallRecord, live: CallRecord) -> list[str]:
    found = []
    if stored.scorecard != live.scorecard:
        s_items = {i["name"]: i for i in (stored.scorecard or {}).get("items", [])}
        l_items = {i["name"]: i for i in (live.scorecard or {}).get("items", [])}
        changed = [
            f"{k} {s_items.get(k, {}).get('score')} ({s_items.get(k, {}).get('detail')}) vs "
            f"{l_items.get(k, {}).get('score')} ({l_items.get(k, {}).get('detail')})"
            for k in sorted(set(s_items) | set(l_items))
            if s_items.get(k) != l_items.get(k)
        ]
        found.append(f"scorecard: total {stored.score_total} stored vs {live.score_total} live; "
                     f"items stored vs live: {'; '.join(changed) or 'none (sections only)'}")  # fmt: skip
    if _alerts(stored) != _alerts(live):
        found.append(_diff("alerts (category, rule, t_end)", _alerts(stored), _alerts(live)))
    if _checklist(stored) != _checklist(live):
        found.append(_diff("checklist (step, state)", _checklist(stored), _checklist(live)))
    return found


# -- the bench ----------------------------------------------------------------------------------


def language_dirs(calls: list[Call], work: Path) -> dict[str, Path]:
    """One directory per language, of links to the set's renders: ``qa run`` takes one ``--lang``."""
    dirs: dict[str, Path] = {}
    for call in calls:
        directory = dirs.setdefault(call.lang, work / call.callset / call.lang)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / call.wav.name).symlink_to(call.wav.resolve())
    return dirs


def fmt_score(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def prepare(callset: Path, renders: Path, work: Path) -> SetResult:
    calls = load_calls(callset, renders)
    rendered_s = render(callset, calls, renders)
    result = SetResult(callset, calls, language_dirs(calls, work))
    audio_s = sum(_wav_seconds(c.wav) for c in calls)
    langs = ", ".join(f"{n} {lang}" for lang, n in Counter(c.lang for c in calls).items())
    print(f"{callset.name}: {len(calls)} calls ({langs}), {audio_s / 60:.1f} min of audio; renders in {renders} "
          f"({'rendered in ' + format(rendered_s, '.1f') + ' s' if rendered_s else 'cached'})", flush=True)  # fmt: skip
    return result


def store_set(result: SetResult, db_url: str, workers: int) -> None:
    """The first run, per language: every call stored once."""
    before = store_count(db_url)
    for lang, directory in result.dirs.items():
        run = qa_run(directory, lang, result.kb, db_url, workers)
        result.first.append(run)
        result.failed += run.failed
        print(f"{result.name} qa run {lang}: {run.scored} scored, {run.skipped} already stored, {run.failed} failed "
              f"in {run.wall_s:.1f} s ({run.process_s:.1f} s with start and model loading); "
              f"judge misses logged: {run.judge_misses}", flush=True)  # fmt: skip
    result.stored_by_hash = {h: v for h, v in stored_by_hash(db_url).items() if h in result.hashes.values()}
    found = result.stored_by_hash
    result.stored = sum(1 for h in result.hashes.values() if found.get(h))
    result.duplicates = sum(max(0, len(found.get(h, [])) - 1) for h in result.hashes.values())
    result.call_s = sum(found[h][0].record.duration_s for h in result.hashes.values() if found.get(h))
    print(f"{result.name} stored: {store_count(db_url) - before} new records, {result.stored}/{len(result.calls)} "
          f"calls stored, {result.duplicates} stored more than once", flush=True)  # fmt: skip


def rerun_set(result: SetResult, db_url: str, workers: int) -> None:
    """The same commands again: nothing new stored, every file skipped."""
    before = store_count(db_url)
    for lang, directory in result.dirs.items():
        run = qa_run(directory, lang, result.kb, db_url, workers)
        expected = sum(1 for c in result.calls if c.lang == lang)
        result.rerun_not_skipped += expected - run.skipped
        print(f"{result.name} rerun {lang}: {run.scored} scored, {run.skipped}/{expected} already stored, "
              f"{run.failed} failed ({run.process_s:.1f} s)", flush=True)  # fmt: skip
    result.rerun_new = store_count(db_url) - before
    print(f"{result.name} rerun: {result.rerun_new} new records", flush=True)


def compare_set(result: SetResult) -> None:
    """Each call's live path (``assist replay``) against its stored record."""
    print(f"\n{result.name}: stored record vs live path (assist replay)")
    print(
        f"{'call':<18} {'lang':<4} {'stored':>7} {'live':>7}  {'equal':<5} {'live s':>7}  judge misses (live)"
    )
    for call in result.calls:
        stored_calls = result.stored_by_hash.get(result.hashes[call.call_id], [])
        stored = stored_calls[0].record if stored_calls else None
        live, misses, live_s = replay(call)
        comparison = Comparison(call, stored, live, misses, live_s)
        if stored is None:
            comparison.differences.append("not stored by qa run")
        else:
            comparison.differences.extend(differences(stored, live))
        result.comparisons.append(comparison)
        print(f"{call.call_id:<18} {call.lang:<4} {fmt_score(stored.score_total if stored else None):>7} "
              f"{fmt_score(live.score_total):>7}  {'yes' if comparison.equal else 'NO':<5} {live_s:>7.1f}  "
              f"{misses}", flush=True)  # fmt: skip
        for line in comparison.differences:
            print(f"    {line}", flush=True)


def _wav_seconds(path: Path) -> float:
    import wave

    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def summary(name: str, results: list[SetResult]) -> str:
    calls = sum(len(r.calls) for r in results)
    stored = sum(r.stored for r in results)
    duplicates = sum(r.duplicates for r in results)
    comparisons = [c for r in results for c in r.comparisons]
    runs = [run for r in results for run in r.first]
    call_h = sum(r.call_s for r in results) / 3600
    wall_h = sum(run.wall_s for run in runs) / 3600
    process_h = sum(run.process_s for run in runs) / 3600
    rate = call_h / wall_h if wall_h else 0.0
    rate_all = call_h / process_h if process_h else 0.0
    return (f"summary {name}: {calls} calls, {stored} stored ({duplicates} more than once, "
            f"{sum(r.failed for r in results)} failed), rerun new {sum(r.rerun_new for r in results)} "
            f"(not skipped {sum(r.rerun_not_skipped for r in results)}), "
            f"equal scores {sum(c.score_equal for c in comparisons)}/{len(comparisons)}"
            f"{'' if len(comparisons) == calls else f' ({len(comparisons)} of {calls} calls compared)'}, "
            f"equal records {sum(c.equal for c in comparisons)}/{len(comparisons)}; "
            f"qa throughput {rate:.1f} call-hours per wall-hour ({call_h:.3f} call-hours in {wall_h * 3600:.0f} s; "
            f"{rate_all:.1f} with process start and model loading)")  # fmt: skip


def ok(results: list[SetResult]) -> bool:
    return all(
        r.stored == len(r.calls) and r.duplicates == 0 and r.failed == 0 and r.rerun_new == 0
        and r.rerun_not_skipped == 0 and len(r.comparisons) == len(r.calls) and all(c.equal for c in r.comparisons)
        for r in results
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("callsets", nargs="+", type=Path, help="call set directories (calls.json, kb.jsonl)")
    parser.add_argument("--renders", type=Path, default=DEFAULT_RENDERS,
                        help="where renders are cached, one directory per set (default ~/.cache/agent-assist/renders/espeak)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="qa run --workers (default 1)")
    args = parser.parse_args(argv)
    if not ASSIST.is_file():
        print(f"qa_callsets: {ASSIST} not found: install the project (make install)", file=sys.stderr)
        return 2
    results: list[SetResult] = []
    interrupted = False
    try:
        for callset in args.callsets:
            if not callset.is_dir():
                raise BenchError(f"{callset}: no such call set directory")
            load_calls(callset, args.renders.expanduser() / callset.name)  # fail before any work
        with tempfile.TemporaryDirectory(prefix="qa-callsets-") as tmp:
            work = Path(tmp)
            db_url = sqlite_url(work / "calls.sqlite3")
            print(
                f"store: a fresh SQLite store in {work} (removed at the end); qa run --workers {args.workers}"
            )
            for callset in args.callsets:
                renders = args.renders.expanduser() / callset.resolve().name
                results.append(prepare(callset.resolve(), renders, work))
            for result in results:
                store_set(result, db_url, args.workers)
            for result in results:
                rerun_set(result, db_url, args.workers)
            for result in results:
                compare_set(result)
    except KeyboardInterrupt:
        print("\ninterrupted: the figures so far", file=sys.stderr)
        interrupted = True
    except BenchError as exc:
        print(f"qa_callsets: {exc}", file=sys.stderr)
        return 2
    print()
    for result in results:
        print(summary(result.name, [result]))
    if len(results) > 1:
        print(summary("all", results))
    return 0 if ok(results) and not interrupted else 1


if __name__ == "__main__":
    sys.exit(main())
