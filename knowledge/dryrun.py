"""Try draft snippets against recorded calls before publishing them (``assist kb try``).

``dry_run`` takes the draft snippets and recorded calls as data (each call's path and its turns:
whoever calls it reads the call files, see ``sidecar.kb_try``), hands each call's turns and the
snippets to a suggestion function, and reports which snippets would have fired where, how often
each fired, and which never did. The suggestion function is injected (the real one is the live
suggestion policy run by the coach), so this module does no matching of its own.

Customer text and reasons are redacted (``sidecar.kernel.redact``) before they enter the report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from knowledge.policy import Firing
from knowledge.snippets import KnowledgeError, Snippet, load_snippets_jsonl
from sidecar.kernel.redact import redact
from sidecar.kernel.turns import Turn

EXCERPT_CHARS = 80

Suggest = Callable[[list[Turn], list[Snippet]], Sequence[Firing]]


class RecordedCall(Protocol):
    """A recorded call as the dry run reads it: where it came from and its turns, by end time."""

    @property
    def path(self) -> Path: ...

    @property
    def turns(self) -> tuple[Turn, ...]: ...


@dataclass(frozen=True, slots=True)
class FiringRow:
    """A firing in the report, with the (redacted) customer words it answered."""

    t_s: float
    snippet_id: str
    title: str
    score: float
    reason: str
    customer_text_excerpt: str


@dataclass(frozen=True, slots=True)
class CallResult:
    path: Path
    duration_s: float
    firings: tuple[FiringRow, ...]  # by time


@dataclass(frozen=True, slots=True)
class SnippetTotal:
    snippet_id: str
    title: str
    firings: int
    calls: int  # how many calls it fired in


@dataclass(frozen=True, slots=True)
class DryRunReport:
    snippets: tuple[Snippet, ...]  # in draft order
    calls: tuple[CallResult, ...]  # in the order given (by file name)

    def totals(self) -> list[SnippetTotal]:
        """Every snippet that fired (a draft snippet, or an id the policy made up), most firings
        first, then id."""
        titles = {s.id: s.title for s in self.snippets}
        firings: dict[str, int] = {}
        calls: dict[str, int] = {}
        for call in self.calls:
            for row in call.firings:
                firings[row.snippet_id] = firings.get(row.snippet_id, 0) + 1
                titles.setdefault(row.snippet_id, row.title)
            for snippet_id in {row.snippet_id for row in call.firings}:
                calls[snippet_id] = calls.get(snippet_id, 0) + 1
        totals = [SnippetTotal(sid, titles[sid], n, calls[sid]) for sid, n in firings.items()]
        return sorted(totals, key=lambda t: (-t.firings, t.snippet_id))

    def never_fired(self) -> list[Snippet]:
        """Draft snippets that fired in no call, in draft order."""
        fired = {row.snippet_id for call in self.calls for row in call.firings}
        return [s for s in self.snippets if s.id not in fired]


def load_draft(draft: Path) -> list[Snippet]:
    """The draft's snippets; a bad draft raises ``KnowledgeError`` listing every bad line."""
    snippets = load_snippets_jsonl(draft)
    if not snippets:
        raise KnowledgeError(f"{draft}: no snippets to try")
    return snippets


def dry_run(snippets: Sequence[Snippet], calls: Sequence[RecordedCall], *, suggest: Suggest) -> DryRunReport:
    """Run every call's turns through ``suggest`` with ``snippets``."""
    results = [_run_call(call, list(snippets), suggest) for call in calls]
    return DryRunReport(tuple(snippets), tuple(results))


def _run_call(call: RecordedCall, snippets: list[Snippet], suggest: Suggest) -> CallResult:
    turns = list(call.turns)
    firings = sorted(suggest(turns, list(snippets)), key=lambda f: (f.t_s, f.snippet_id))
    rows = tuple(
        FiringRow(f.t_s, f.snippet_id, f.title, f.score, redact(f.reason), _customer_excerpt(turns, f.t_s))
        for f in firings
    )
    duration_s = max((t.end_s for t in turns), default=0.0)
    return CallResult(call.path, duration_s, rows)


def _customer_excerpt(turns: list[Turn], t_s: float) -> str:
    """The redacted tail of the last customer turn that had started by ``t_s`` ("" when none)."""
    spoken = [t for t in turns if t.channel == "customer" and t.start_s <= t_s]
    if not spoken:
        return ""
    text = " ".join(redact(spoken[-1].text).split())
    return text if len(text) <= EXCERPT_CHARS else "…" + text[-(EXCERPT_CHARS - 1) :]


def format_report(report: DryRunReport) -> str:
    """The report for a person: one block per call, then totals per snippet, then those that never
    fired."""
    lines: list[str] = []
    for call in report.calls:
        n = len(call.firings)
        lines.append(f"{call.path.name} ({call.duration_s:.1f} s, {n} suggestion{'' if n == 1 else 's'})")
        for row in call.firings:
            lines.append(f"  {_clock(row.t_s)}  {row.score:5.2f}  {row.snippet_id}  {row.title}")
            if row.reason:
                lines.append(f"           why: {row.reason}")
            if row.customer_text_excerpt:
                lines.append(f'           customer: "{row.customer_text_excerpt}"')
        lines.append("")

    calls = len(report.calls)
    totals = report.totals()
    lines.append(f"totals ({len(report.snippets)} draft snippets, {calls} calls)")
    width = max((len(t.snippet_id) for t in totals), default=0)
    for t in totals:
        lines.append(f"  {t.snippet_id:<{width}}  {t.firings:3} in {t.calls} of {calls} calls  {t.title}")
    if not totals:
        lines.append("  nothing fired")
    lines.append("")

    never = report.never_fired()
    lines.append(f"never fired ({len(never)})")
    width = max((len(s.id) for s in never), default=0)
    lines += [f"  {s.id:<{width}}  {s.title}" for s in never] or ["  (none)"]
    return "\n".join(lines) + "\n"


def _clock(t_s: float) -> str:
    tenths = round(t_s * 10)
    minutes, rest = divmod(tenths, 600)
    return f"{minutes:2d}:{rest / 10:04.1f}"
