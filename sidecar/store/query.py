"""Filters over stored calls: a typed query, turned into one SQL ``WHERE`` (pure; no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, exists, select, true

from sidecar.store.schema import alerts, call_intents, calls

MAX_LIMIT = 1_000


@dataclass(frozen=True, slots=True)
class CallQuery:
    """Every field narrows the list; None means no filter on it. ``agent_id`` is also how an agent's
    view is limited to their own calls. Times are epoch seconds (``started_at``)."""

    agent_id: str | None = None
    queue: str | None = None
    lang: str | None = None
    since: float | None = None
    until: float | None = None
    category: str | None = None  # a call with at least one alert of this category ...
    severity: str | None = None  # ... (and/or) of this severity
    rule_id: str | None = None
    intent: str | None = None
    score_min: float | None = None
    score_max: float | None = None
    text: str | None = None  # in the redacted transcript, case-insensitive
    customer_ref: str | None = None
    limit: int = 100
    offset: int = 0


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def where(query: CallQuery) -> ColumnElement[bool]:
    c = calls.c
    clauses: list[ColumnElement[bool]] = []
    for column, value in ((c.agent_id, query.agent_id), (c.queue, query.queue), (c.lang, query.lang),
                          (c.customer_ref, query.customer_ref)):  # fmt: skip
        if value is not None:
            clauses.append(column == value)
    if query.since is not None:
        clauses.append(c.started_at >= query.since)
    if query.until is not None:
        clauses.append(c.started_at < query.until)
    if query.score_min is not None:
        clauses.append(c.score_total >= query.score_min)
    if query.score_max is not None:
        clauses.append(c.score_total <= query.score_max)
    alert_clauses = []
    if query.category is not None:
        alert_clauses.append(alerts.c.category == query.category)
    if query.severity is not None:
        alert_clauses.append(alerts.c.severity == query.severity)
    if query.rule_id is not None:
        alert_clauses.append(alerts.c.rule_id == query.rule_id)
    if alert_clauses:
        clauses.append(exists(select(alerts.c.id).where(alerts.c.call_id == c.call_id, *alert_clauses)))
    if query.intent is not None:
        clauses.append(
            exists(select(call_intents.c.intent).where(call_intents.c.call_id == c.call_id,
                                                       call_intents.c.intent == query.intent))
        )  # fmt: skip
    if query.text:
        clauses.append(c.search_text.like(f"%{_escape_like(query.text.lower())}%", escape="\\"))
    return and_(*clauses) if clauses else true()
