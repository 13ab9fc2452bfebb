"""Agent and team reports over the call store: per-call facts read from stored records, and pure
aggregation of those facts into groups (an agent, or a team) and periods (days, ISO weeks).

A team is a queue: the store keeps each call's queue, and no other team membership. Figures:

- ``qa_score``: mean of the calls' QA scores (0..100; calls without a scorecard are left out);
- ``violations``: alert counts by category and severity (every stored alert but dead air and
  missed disclosures, which have figures of their own, as in the scorecard);
- ``disclosure``: required checklist steps done / steps done or missed;
- ``politeness``: share of calls without an abusive, discriminatory or unprofessional remark;
- ``handle_time_s``: mean call duration; ``dead_air_s``: mean seconds of flagged dead air a call;
- ``temp_start`` / ``temp_end``: mean customer temperature (-1..1) at the first and last reading
  (the end is the satisfaction proxy);
- ``first_response_s``: mean time of the agent's first utterance; ``first_response_ok`` the share
  within the target;
- ``fcr``: first-contact resolution proxy: share of calls with a customer reference that are not
  followed by another call of the same reference within 7 days (any agent, any queue).

Reading runs in a worker thread (``read_facts``, with a ``FactsCache`` of calls already read);
``aggregate`` is pure.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeAlias

from sqlalchemy import and_, select
from sqlalchemy.engine import Connection

from sidecar.kernel.errors import ConfigError
from sidecar.store.query import CallQuery, where
from sidecar.store.repository import CallStore
from sidecar.store.schema import calls

GroupBy: TypeAlias = Literal["agent", "team"]
Period: TypeAlias = Literal["day", "week"]
REPEAT_WINDOW_S = 7 * 86_400.0
MAX_CALLS = 20_000  # calls read for one report; more is reported as truncated
READ_BATCH = 200  # stored records read per query
RUDE = frozenset({"abuse", "discrimination", "unprofessional"})
NOT_VIOLATIONS = frozenset({"dead_air", "missing_disclosure"})
TARGETS_ENV = "ASSIST_REPORT_TARGETS"
TARGET_KEYS = ("politeness", "fcr", "first_response_s", "satisfaction")


@dataclass(frozen=True, slots=True)
class Targets:
    """The QA playbook's targets (shares 0..1, seconds)."""

    politeness: float = 0.95
    fcr: float = 0.85
    first_response_s: float = 30.0
    satisfaction: float = 0.0  # the customer's mean temperature at the end of the call (-1..1)

    @classmethod
    def from_env(cls) -> Targets:
        """``ASSIST_REPORT_TARGETS="politeness=0.95,fcr=0.85,first_response_s=30,satisfaction=0"``
        (any subset)."""
        value = os.environ.get(TARGETS_ENV, "").strip()
        if not value:
            return cls()
        found: dict[str, float] = {}
        for part in (p.strip() for p in value.split(",") if p.strip()):
            key, _, number = part.partition("=")
            key = key.strip()
            if key not in TARGET_KEYS:
                raise ConfigError(f"{TARGETS_ENV}: unknown target {key!r} ({', '.join(TARGET_KEYS)})")
            try:
                found[key] = float(number)
            except ValueError:
                raise ConfigError(f"{TARGETS_ENV}: {key} needs a number") from None
            low = -1.0 if key == "satisfaction" else 0.0
            if not math.isfinite(found[key]) or found[key] < low:
                raise ConfigError(f"{TARGETS_ENV}: {key} must be a finite number >= {low:g}")
        return cls(**found)


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the reports need of one stored call."""

    call_id: str
    agent_id: str
    queue: str
    started_at: float
    duration_s: float
    score: float | None
    violations: tuple[tuple[str, str], ...]  # (category, severity) per alert
    rude: bool
    steps_done: int
    steps_missed: int
    dead_air_s: float
    temp_start: float | None
    temp_end: float | None
    first_response_s: float | None
    customer_ref: str | None = None
    repeat: bool | None = None  # None: no customer reference


@dataclass(frozen=True, slots=True)
class Figures:
    calls: int
    qa_score: float | None
    violations: dict[str, dict[str, int]]
    violations_total: int
    disclosure: float | None
    disclosure_steps: int
    politeness: float | None
    handle_time_s: float | None
    dead_air_s: float | None
    temp_start: float | None
    temp_end: float | None
    first_response_s: float | None
    first_response_ok: float | None
    fcr: float | None
    fcr_calls: int
    repeat_calls: int


@dataclass(frozen=True, slots=True)
class Bucket:
    key: str  # 2026-12-01 (day) or 2026-W49 (week)
    start: float
    end: float
    figures: Figures


@dataclass(frozen=True, slots=True)
class Group:
    key: str
    figures: Figures
    series: tuple[Bucket, ...]


@dataclass(frozen=True, slots=True)
class Report:
    group_by: GroupBy
    period: Period
    utc_offset_min: int
    targets: Targets
    truncated: bool
    overall: Figures
    groups: tuple[Group, ...] = field(default_factory=tuple)


def facts_from_record(row: Any, record: dict[str, Any]) -> CallFacts:
    """A stored call's facts from its ``calls`` row and its record JSON (pure)."""
    alerts = record.get("alerts", ())
    violations = tuple(
        (str(a["category"]), str(a["severity"])) for a in alerts if a.get("category") not in NOT_VIOLATIONS
    )
    dead_air = (
        sum(
            max(0.0, float(a["t_end"]) - float(a["t_start"]))
            for a in alerts
            if a.get("category") == "dead_air"
        )
        + 0.0
    )
    checklist = record.get("checklist", ())
    temps = [float(e["temperature"]) for e in record.get("emotion", ())]
    first = next(
        (float(t["t_start"]) for t in record.get("transcript", ()) if t.get("channel") == "agent"), None
    )
    return CallFacts(
        call_id=row.call_id,
        agent_id=row.agent_id,
        queue=row.queue,
        started_at=float(row.started_at),
        duration_s=float(row.duration_s),
        score=None if row.score_total is None else float(row.score_total),
        violations=violations,
        rude=any(c in RUDE for c, _ in violations),
        steps_done=sum(1 for c in checklist if c.get("state") == "done"),
        steps_missed=sum(1 for c in checklist if c.get("state") == "missed"),
        dead_air_s=round(dead_air, 3),
        temp_start=temps[0] if temps else None,
        temp_end=temps[-1] if temps else None,
        first_response_s=first,
        customer_ref=row.customer_ref or None,
    )


class FactsCache:
    """Facts of stored calls already read, by (call id, stored at): a stored call does not change
    (a re-stored one has a new ``stored_at``), so a report reads and parses only the records it
    has not seen. Bounded: past ``max_calls`` the least recently used go. Thread-safe."""

    def __init__(self, max_calls: int = 200_000) -> None:
        self.max_calls = max_calls
        self._facts: OrderedDict[tuple[str, float], CallFacts] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, float]) -> CallFacts | None:
        with self._lock:
            found = self._facts.get(key)
            if found is None:
                self.misses += 1
                return None
            self._facts.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: tuple[str, float], facts: CallFacts) -> None:
        with self._lock:
            self._facts[key] = facts
            self._facts.move_to_end(key)
            while len(self._facts) > self.max_calls:
                self._facts.popitem(last=False)


def read_facts(
    store: CallStore, query: CallQuery, limit: int = MAX_CALLS, cache: FactsCache | None = None
) -> tuple[list[CallFacts], bool]:
    """The facts of the calls ``query`` selects (its limit and offset ignored), oldest first: the
    newest ``limit`` of them (True when there were more), each with its repeat-contact flag. Blocking.

    The selection reads only the calls' columns; the records (the transcript and the rest, the bulk
    of the store) are read for calls not in ``cache``, ``READ_BATCH`` at a time, each parsed into
    its facts at once."""
    c = calls.c
    stmt = (
        select(c.call_id, c.agent_id, c.queue, c.started_at, c.duration_s, c.score_total, c.customer_ref,
               c.stored_at)
        .where(where(query)).order_by(c.started_at.desc(), c.call_id.desc()).limit(limit + 1)
    )  # fmt: skip
    cache = cache if cache is not None else FactsCache(limit)
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).all()
        truncated = len(rows) > limit
        rows = rows[:limit][::-1]
        found: dict[str, CallFacts] = {}
        missing = []
        for row in rows:
            known = cache.get((row.call_id, float(row.stored_at)))
            if known is None:
                missing.append(row)
            else:
                found[row.call_id] = known
        for i in range(0, len(missing), READ_BATCH):
            batch = {r.call_id: r for r in missing[i : i + READ_BATCH]}
            for call_id, text in conn.execute(select(c.call_id, c.record).where(c.call_id.in_(list(batch)))):
                row = batch[call_id]
                facts = facts_from_record(row, json.loads(text))
                cache.put((call_id, float(row.stored_at)), facts)
                found[call_id] = facts
        ordered = [found[r.call_id] for r in rows if r.call_id in found]  # (one erased meanwhile: left out)
        later = _later_calls(conn, ordered)
    return [with_repeat(f, later.get(f.customer_ref or "", ())) for f in ordered], truncated


def _later_calls(conn: Connection, facts: Sequence[CallFacts]) -> dict[str, list[float]]:
    """Start times of the stored calls of these calls' customers, up to 7 days after the last."""
    c = calls.c
    refs = sorted({f.customer_ref for f in facts if f.customer_ref})
    later: dict[str, list[float]] = defaultdict(list)
    if not refs:
        return later
    first = min(f.started_at for f in facts)
    last = max(f.started_at for f in facts) + REPEAT_WINDOW_S
    for i in range(0, len(refs), 500):  # bounded IN lists
        chunk = refs[i : i + 500]
        rows = conn.execute(
            select(c.customer_ref, c.started_at).where(
                and_(c.customer_ref.in_(chunk), c.started_at > first, c.started_at <= last)
            )
        )
        for ref, started in rows:
            later[str(ref)].append(float(started))
    return later


def with_repeat(facts: CallFacts, same_customer_starts: Iterable[float]) -> CallFacts:
    """The call's repeat flag: another call of its customer began within 7 days after it."""
    if not facts.customer_ref:
        return facts
    repeat = any(facts.started_at < t <= facts.started_at + REPEAT_WINDOW_S for t in same_customer_starts)
    return replace(facts, repeat=repeat)


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _share(hits: int, n: int) -> float | None:
    return round(hits / n, 4) if n else None


def figures(calls_: Sequence[CallFacts], targets: Targets) -> Figures:
    """The report's figures over some calls (pure)."""
    violations: dict[str, dict[str, int]] = {}
    for f in calls_:
        for category, severity in f.violations:
            by_severity = violations.setdefault(category, {})
            by_severity[severity] = by_severity.get(severity, 0) + 1
    done = sum(f.steps_done for f in calls_)
    steps = done + sum(f.steps_missed for f in calls_)
    firsts = [f.first_response_s for f in calls_ if f.first_response_s is not None]
    with_ref = [f for f in calls_ if f.repeat is not None]
    repeats = sum(1 for f in with_ref if f.repeat)
    return Figures(
        calls=len(calls_),
        qa_score=_mean([f.score for f in calls_ if f.score is not None]),
        violations=violations,
        violations_total=sum(len(f.violations) for f in calls_),
        disclosure=_share(done, steps),
        disclosure_steps=steps,
        politeness=_share(sum(1 for f in calls_ if not f.rude), len(calls_)),
        handle_time_s=_mean([f.duration_s for f in calls_]),
        dead_air_s=_mean([f.dead_air_s for f in calls_]),
        temp_start=_mean([f.temp_start for f in calls_ if f.temp_start is not None]),
        temp_end=_mean([f.temp_end for f in calls_ if f.temp_end is not None]),
        first_response_s=_mean(firsts),
        first_response_ok=_share(sum(1 for t in firsts if t <= targets.first_response_s), len(firsts)),
        fcr=_share(len(with_ref) - repeats, len(with_ref)),
        fcr_calls=len(with_ref),
        repeat_calls=repeats,
    )


def bucket_of(started_at: float, period: Period, utc_offset_min: int = 0) -> tuple[str, float, float]:
    """The day or ISO week (local time at ``utc_offset_min``) a call began in: key, start, end (epoch s)."""
    tz_shift = timedelta(minutes=utc_offset_min)
    local = datetime.fromtimestamp(started_at, UTC) + tz_shift
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start, key = day, day.strftime("%Y-%m-%d")
        end = start + timedelta(days=1)
    else:
        start = day - timedelta(days=day.weekday())
        year, week, _ = start.isocalendar()
        key = f"{year}-W{week:02d}"
        end = start + timedelta(days=7)
    return key, (start - tz_shift).timestamp(), (end - tz_shift).timestamp()


def aggregate(calls_: Sequence[CallFacts], *, group_by: GroupBy, period: Period, targets: Targets,
              utc_offset_min: int = 0, truncated: bool = False) -> Report:  # fmt: skip
    """Group the calls (agent or team), then each group's calls by period (pure)."""
    grouped: dict[str, list[CallFacts]] = defaultdict(list)
    for f in calls_:
        grouped[f.agent_id if group_by == "agent" else f.queue].append(f)
    groups = []
    for key in sorted(grouped):
        members = grouped[key]
        buckets: dict[str, list[CallFacts]] = defaultdict(list)
        spans: dict[str, tuple[float, float]] = {}
        for f in members:
            bkey, start, end = bucket_of(f.started_at, period, utc_offset_min)
            buckets[bkey].append(f)
            spans[bkey] = (start, end)
        series = tuple(
            Bucket(b, spans[b][0], spans[b][1], figures(buckets[b], targets)) for b in sorted(buckets)
        )
        groups.append(Group(key, figures(members, targets), series))
    return Report(
        group_by, period, utc_offset_min, targets, truncated, figures(calls_, targets), tuple(groups)
    )
