"""``assist kb``: the knowledge base from the command line.

    assist kb import FILE.jsonl [--draft] [--actor NAME]   add or update snippets (all or nothing)
    assist kb export [--all] [-o FILE]                      published (or all) snippets as kb.jsonl
    assist kb search TEXT [--lang en|zh] [-k 5]             nearest snippets: score, id, title
    assist kb history ID                                    every saved version of a snippet
    assist kb rollback ID VERSION [--actor NAME]            save an old version as the newest
    assist kb stats [--days N]                              feedback per snippet: shown, used, rates
    assist kb try DRAFT.jsonl --calls DIR                   which draft snippets would fire, where

Every subcommand but ``try`` takes ``--db PATH``; the default is ``$ASSIST_KB_DB``, else
``~/.local/share/agent-assist/kb.sqlite3``. Only ``import`` creates a database. The vector index
lives next to it, in ``<db>.index/``. Output is for people, on stdout (``export`` without ``-o``
writes kb.jsonl there); problems raise ``AssistError``s for the main CLI to print, after listing each
bad line of a file on stderr when there are several.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sidecar.kernel.errors import AssistError, ConfigError

if TYPE_CHECKING:
    from knowledge.dryrun import DryRunReport
    from knowledge.snippets import Status
    from knowledge.store import SnippetStore

DEFAULT_DB = Path("~/.local/share/agent-assist/kb.sqlite3")

# ``kb try``: (draft, calls directory) -> the report. The knowledge base reads neither call files
# nor runs the coach, so whoever composes them hands this in (``sidecar.kb_try`` for ``assist``).
TryDrafts = Callable[[Path, Path], "DryRunReport"]


def default_db() -> Path:
    """``$ASSIST_KB_DB``, else ``~/.local/share/agent-assist/kb.sqlite3``."""
    return Path(os.environ.get("ASSIST_KB_DB") or DEFAULT_DB).expanduser()


def index_dir(db: Path) -> Path:
    """Where the vector index of the store at ``db`` is kept: ``<db>.index/``."""
    return db.with_name(db.name + ".index")


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _non_negative_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not x >= 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {value}")
    return x


def add_kb_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``kb`` and its subcommands to the ``assist`` subparsers; returns the ``kb`` parser."""
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", type=Path, default=None,
                    help="snippet database (default: $ASSIST_KB_DB or ~/.local/share/agent-assist/kb.sqlite3)")  # fmt: skip
    actor = argparse.ArgumentParser(add_help=False)
    actor.add_argument(
        "--actor", default=None, help="who makes the change (default: $ASSIST_ACTOR or login name)"
    )

    kb = subparsers.add_parser(
        "kb", help="knowledge base: import, export, search, history, feedback, dry runs"
    )
    sub = kb.add_subparsers(dest="kb_command", required=True)
    imp = sub.add_parser(
        "import", parents=[db, actor], help="import a kb.jsonl file (every line checked first)"
    )
    imp.add_argument("file", type=Path, help="snippets, one JSON object a line")
    imp.add_argument("--draft", action="store_true", help="import as drafts (not suggested on calls)")
    exp = sub.add_parser("export", parents=[db], help="write snippets as kb.jsonl (stdout by default)")
    exp.add_argument("--all", action="store_true", help="drafts too (default: published only)")
    exp.add_argument("-o", "--output", type=Path, default=None, help="file to write instead of stdout")
    search = sub.add_parser("search", parents=[db], help="the snippets nearest to a text")
    search.add_argument("text")
    search.add_argument("--lang", choices=["en", "zh"], default=None, help="only snippets in this language")
    search.add_argument("-k", type=_positive_int, default=5, help="how many (default: 5)")
    history = sub.add_parser("history", parents=[db], help="every saved version of a snippet")
    history.add_argument("id")
    rollback = sub.add_parser("rollback", parents=[db, actor], help="save an old version as the newest")
    rollback.add_argument("id")
    rollback.add_argument("version", type=_positive_int)
    stats = sub.add_parser("stats", parents=[db], help="suggestion feedback per snippet")
    stats.add_argument("--days", type=_non_negative_float, default=None, help="only the last N days")
    try_ = sub.add_parser("try", help="show which draft snippets would fire on recorded calls")
    try_.add_argument("draft", type=Path, help="draft snippets (kb.jsonl format)")
    try_.add_argument("--calls", type=Path, required=True, help="directory of call transcripts (*.jsonl)")
    return kb


def run_kb(args: argparse.Namespace, *, try_drafts: TryDrafts | None = None) -> int:
    """Run the ``kb`` subcommand parsed into ``args``; returns the exit status. ``try`` needs
    ``try_drafts``."""
    command: str = args.kb_command
    if command == "try":
        return _try(args.draft, args.calls, try_drafts)
    db: Path = args.db.expanduser() if args.db is not None else default_db()
    if command == "import":
        with _open_store(db, create=True) as store:
            return _import(store, args.file, _actor(args.actor), args.draft)
    with _open_store(db, create=False) as store:
        if command == "export":
            return _export(store, args.output, args.all)
        if command == "search":
            return _search(store, db, args.text, args.k, args.lang)
        if command == "history":
            return _history(store, args.id)
        if command == "rollback":
            return _rollback(store, args.id, args.version, _actor(args.actor))
        if command == "stats":
            return _stats(store, args.days)
    raise AssertionError(f"unknown kb command {command!r}")


# -- subcommands -------------------------------------------------------------------------------


def _import(store: SnippetStore, file: Path, actor: str, draft: bool) -> int:
    with _listing_problems("nothing imported"):
        report = store.import_jsonl(file, actor, status="draft" if draft else "published")
    total = report.created + report.updated + report.unchanged
    print(
        f"imported {total}: {report.created} created, {report.updated} updated, {report.unchanged} unchanged"
    )
    return 0


def _export(store: SnippetStore, output: Path | None, everything: bool) -> int:
    status: Status | None = None if everything else "published"
    if output is None:
        store.export_jsonl(sys.stdout, status=status)
        return 0
    # write beside the target and rename, so a failed export never leaves half a file
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    except OSError as exc:
        raise ConfigError(f"{output}: cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            n = store.export_jsonl(out, status=status)
        os.replace(tmp, output)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"{output}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(f"exported {n} snippet{'' if n == 1 else 's'} to {output}")
    return 0


def _search(store: SnippetStore, db: Path, text: str, k: int, lang: str | None) -> int:
    from knowledge.embed import load_embedder
    from knowledge.index import SnippetIndex
    from knowledge.policy import StoreKnowledge, agent_search

    index = SnippetIndex.load_or_rebuild(index_dir(db), store, load_embedder(), attach=False)
    hits = agent_search(StoreKnowledge(store, index.embedder, index=index), text, k=k, lang=lang)
    for hit in hits:  # score: standard deviations above ordinary procedures (see knowledge/rerank.py)
        print(f"{hit.score:6.2f}  {hit.snippet_id}  {hit.title}")
    if not hits:
        print("no matching snippets", file=sys.stderr)
    return 0


def _history(store: SnippetStore, snippet_id: str) -> int:
    from knowledge.store import SnippetNotFoundError

    versions = store.history(snippet_id)
    if not versions:
        raise SnippetNotFoundError(f'no snippet "{snippet_id}" (never saved)')
    current = store.get(snippet_id)
    state = "deleted" if current is None else f"current: version {current.version}"
    print(f"{snippet_id}: {len(versions)} version{'' if len(versions) == 1 else 's'} ({state})")
    for v in versions:
        mark = "*" if current is not None and v.version == current.version else " "
        print(f"{mark} v{v.version:<3} {v.status:9}  {_when(v.updated_at)}  {v.updated_by}  {v.title}")
    return 0


def _rollback(store: SnippetStore, snippet_id: str, version: int, actor: str) -> int:
    before = store.get(snippet_id)
    saved = store.rollback(snippet_id, version, actor)
    if before is not None and before.version == saved.version:
        print(
            f"{snippet_id}: version {saved.version} already has the content of version {version}; nothing changed"
        )
    else:
        print(
            f"{snippet_id}: rolled back to version {version}, saved as version {saved.version} ({saved.status})"
        )
    return 0


def _stats(store: SnippetStore, days: float | None) -> int:
    from knowledge.feedback import FeedbackLog

    since = None if days is None else time.time() - days * 86_400.0
    rows = FeedbackLog(store).analytics(since=since)
    if not rows:
        print("no snippets and no feedback yet")
        return 0
    width = max(len("id"), *(len(r.snippet_id) for r in rows))
    print(f"{'shown':>6} {'used':>5} {'dism.':>5} {'help':>5} {'unhelp':>6} "
          f"{'use%':>5} {'dism%':>5} {'help%':>5}  {'id':<{width}}  title")  # fmt: skip
    for r in rows:
        print(f"{r.shown:6} {r.used:5} {r.dismissed:5} {r.helpful:5} {r.not_helpful:6} "
              f"{r.use_rate:5.0%} {r.dismiss_rate:5.0%} {r.helpful_rate:5.0%}  {r.snippet_id:<{width}}  {r.title}")  # fmt: skip
    return 0


def _try(draft: Path, calls: Path, try_drafts: TryDrafts | None) -> int:
    from knowledge.dryrun import format_report

    if try_drafts is None:
        raise ConfigError("`kb try` runs the coach over recorded calls: run it as `assist kb try`")
    with _listing_problems("nothing tried"):
        report = try_drafts(draft, calls)
    sys.stdout.write(format_report(report))
    return 0


# -- helpers -----------------------------------------------------------------------------------


@contextmanager
def _listing_problems(outcome: str) -> Iterator[None]:
    """An error that lists several problems (bad lines, bad files): print each problem on its own
    stderr line, and let the error itself say only how many and ``outcome``."""
    try:
        yield
    except AssistError as exc:
        problems: tuple[str, ...] = getattr(exc, "problems", ())
        if len(problems) < 2:
            raise
        for problem in problems:
            print(problem, file=sys.stderr)
        summary = str(exc).split("\n", 1)[0].rstrip(":")
        exc.args = (f"{summary}; {outcome}",)
        raise


def _open_store(db: Path, *, create: bool) -> SnippetStore:
    from knowledge.snippets import KnowledgeError
    from knowledge.store import SnippetStore

    if db.is_dir():
        raise ConfigError(f"{db}: is a directory; --db and ASSIST_KB_DB name a database file")
    if not db.exists():
        if not create:
            raise KnowledgeError(
                f"{db}: no knowledge base here yet; create one with `assist kb import FILE.jsonl`"
            )
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{db.parent}: cannot create the directory: {exc.strerror or exc}") from None
    return SnippetStore(db)


def _actor(given: str | None) -> str:
    if given is not None and given.strip():
        return given.strip()
    if given is not None:
        raise ConfigError("--actor must not be empty")
    env = os.environ.get("ASSIST_ACTOR", "").strip()
    if env:
        return env
    try:
        return getpass.getuser()
    except Exception:  # no login name anywhere (a bare container): still record something
        return "cli"


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
