"""``assist qa run``: recorded calls (transcripts and a WAV) scored through the replay pipeline into
the call store, each once; a rerun stores nothing new; a bad file is reported and retried on the
next run. The coach here has no embedding models (exact matchers), so the test stays fast; the
live-path equality of scores is in ``test_history_api.py``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.kernel.errors import InputError
from sidecar.qa_run import Scorer, content_hash, find_calls, run_qa
from sidecar.store.migrate import head_revision
from sidecar.store.query import CallQuery
from sidecar.store.repository import CallStore
from sidecar.store.settings import sqlite_url
from tests.service_helpers import FIXTURES

SAMPLE_WAV = Path(__file__).resolve().parent.parent / "samples" / "sample-call.wav"
ASSIST = Path(sys.executable).with_name("assist")


@pytest.fixture(scope="module")
def scorer() -> Iterator[Scorer]:
    from coach.engine import Coach

    s = Scorer(coach=Coach(embedder=None, judge=False))
    yield s
    s.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CallStore]:
    s = CallStore(sqlite_url(tmp_path / "calls.sqlite3"))
    yield s
    s.close()


@pytest.fixture
def calls(tmp_path: Path) -> Path:
    folder = tmp_path / "calls"
    (folder / "day2").mkdir(parents=True)
    for path in FIXTURES.glob("*.jsonl"):
        shutil.copy(path, folder / path.name)
    shutil.copy(FIXTURES / "polite-refund.jsonl", folder / "day2" / "same-call-again.jsonl")  # same content
    (folder / "notes.txt").write_text("not a call")
    (folder / "refund-abuse.meta.json").write_text(
        '{"agent_id": "alice", "queue": "returns", "customer_ref": "cust-7"}'
    )
    return folder


@pytest.mark.unit
def test_find_calls_takes_a_directory_or_a_glob(calls: Path) -> None:
    assert [p.name for p in find_calls(str(calls))] == [
        "same-call-again.jsonl",
        "polite-refund.jsonl",
        "refund-abuse.jsonl",
    ]
    assert [p.name for p in find_calls(str(calls / "*.jsonl"))] == [
        "polite-refund.jsonl",
        "refund-abuse.jsonl",
    ]
    assert content_hash(calls / "polite-refund.jsonl") == content_hash(
        calls / "day2" / "same-call-again.jsonl"
    )
    with pytest.raises(InputError, match="no such file"):
        find_calls(str(calls / "missing"))
    with pytest.raises(InputError, match="no call files"):
        find_calls(str(calls / "*.txt"))


def test_each_call_is_stored_once_and_a_rerun_stores_nothing_new(
    calls: Path, store: CallStore, scorer: Scorer
) -> None:
    first = run_qa(find_calls(str(calls)), store, scorer=scorer, progress=False)
    assert (first.scored, first.skipped, first.failed) == (2, 1, 0)  # the copy has the same content
    assert first.call_s > 0
    assert store.count(CallQuery()) == 2
    stored = store.search(CallQuery())
    assert {s.origin for s in stored} == {"qa"}
    abusive = next(s for s in stored if s.recording_ref and s.recording_ref.endswith("refund-abuse.jsonl"))
    assert (abusive.agent_id, abusive.queue) == ("alice", "returns")  # from refund-abuse.meta.json
    assert store.count(CallQuery(customer_ref="cust-7")) == 1
    assert abusive.alerts["fatal"] >= 1
    assert abusive.score is not None
    record = store.get(abusive.call_id)
    assert record is not None
    assert record.record.content_hash == content_hash(calls / "refund-abuse.jsonl")
    assert record.record.transcript[0].words  # word times (estimated for a transcript)
    again = run_qa(find_calls(str(calls)), store, scorer=scorer, progress=False)
    assert (again.scored, again.skipped, again.failed) == (0, 3, 0)
    assert store.count(CallQuery()) == 2


def test_a_bad_file_is_reported_and_retried_next_time(calls: Path, store: CallStore, scorer: Scorer) -> None:
    bad = calls / "broken.jsonl"
    bad.write_text('{"channel": "agent", "text": "hello"}\n')
    (calls / "refund-abuse.meta.json").write_text('{"agent_id": 7}')
    report = run_qa(find_calls(str(calls)), store, scorer=scorer, progress=False)
    assert (report.scored, report.failed) == (1, 2)
    (calls / "refund-abuse.meta.json").unlink()
    bad.write_text('{"channel": "agent", "text": "hello, how can I help?", "start_s": 0.2, "end_s": 1.4}\n')
    report = run_qa(find_calls(str(calls)), store, scorer=scorer, progress=False)
    assert (report.scored, report.skipped, report.failed) == (2, 2, 0)


@pytest.mark.model
def test_a_recording_is_transcribed_scored_and_stored_once(
    tmp_path: Path, store: CallStore, scorer: Scorer
) -> None:
    wav = tmp_path / "sample-call.wav"
    shutil.copy(SAMPLE_WAV, wav)
    report = run_qa([wav], store, scorer=scorer, progress=False)
    assert (report.scored, report.failed) == (1, 0)
    assert report.call_s == pytest.approx(20.9, abs=0.1)
    [summary] = store.search(CallQuery())
    stored = store.get(summary.call_id)
    assert stored is not None
    assert stored.record.transcript
    assert stored.record.scorecard is not None
    assert all(w.t_end >= w.t_start for line in stored.record.transcript for w in line.words)
    assert run_qa([wav], store, scorer=scorer, progress=False).skipped == 1


def test_the_command_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run([str(ASSIST), "qa", "run", str(empty), "--db", sqlite_url(tmp_path / "c.sqlite3")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"assist: error: {empty}: no call files (.wav or .jsonl) there"
    ]
    migrated = subprocess.run([str(ASSIST), "store", "migrate", "--db", sqlite_url(tmp_path / "m.sqlite3")],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr
    assert f"revision {head_revision()}" in migrated.stderr
