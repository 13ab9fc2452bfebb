"""The live service's writer: follows every call on the bus and stores each one when it ends.

One task per service (``persist_calls``): events fold into ``CallRecorder``; on ``call.ended`` the
record (with the agents' feedback on its suggestions so far) is saved in a worker thread, so the
event loop never waits on the database. Drop policy: none while the bus retains what the task has
not read — a slow database only makes this task read further behind (the bus keeps each call's
last 20,000 events); past that (``SubscriberLaggedError``) it carries on from now and the calls it
missed the start of are stored with what it saw. A save that fails is logged (call id and error
class only) and counted; the task goes on with the next call. ``save`` is idempotent, so several
API nodes following one Redis bus, or a restart that re-reads the retained stream, store a call once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from sidecar.kernel.bus import ALL_CALLS, Bus, SubscriberLaggedError
from sidecar.store.feedback import FeedbackReader, with_feedback
from sidecar.store.record import CallRecord, CallRecorder
from sidecar.store.repository import CallStore
from sidecar.store.retention import purge_expired

log = logging.getLogger(__name__)
PURGE_EVERY_S = 3_600.0


@dataclass
class PersistStats:
    stored: int = 0
    already_stored: int = 0
    failed: int = 0


def save_record(store: CallStore, record: CallRecord, feedback: FeedbackReader | None) -> bool:
    """Blocking: attach the call's feedback and save (run it in a thread)."""
    if feedback is not None:
        record = with_feedback(record, feedback(record.call_id))
    return store.save(record)


async def persist_calls(
    bus: Bus, store: CallStore, *, feedback: FeedbackReader | None = None, stats: PersistStats | None = None
) -> None:
    stats = stats if stats is not None else PersistStats()
    recorder = CallRecorder()
    after: int | None = 0
    while True:
        try:
            async for event in bus.subscribe(ALL_CALLS, after_seq=after):
                record = recorder.apply(event)
                if record is not None:
                    await _save(store, record, feedback, stats)
            return
        except SubscriberLaggedError:
            log.error(
                "call store fell behind the bus: carrying on from now (calls in progress are stored partly)"
            )
            after = None


async def _save(
    store: CallStore, record: CallRecord, feedback: FeedbackReader | None, stats: PersistStats
) -> None:
    try:
        stored = await asyncio.to_thread(save_record, store, record, feedback)
    except (SQLAlchemyError, OSError) as exc:
        stats.failed += 1
        log.error("call %s not stored: %s", record.call_id, type(exc).__name__)
        return
    if stored:
        stats.stored += 1
    else:
        stats.already_stored += 1


async def retention_loop(store: CallStore, retention_days: int, every_s: float = PURGE_EVERY_S) -> None:
    """Purge expired calls at start and then every ``every_s`` (0 days: never)."""
    if retention_days <= 0:
        return
    while True:
        try:
            purged = await asyncio.to_thread(purge_expired, store, retention_days)
            if purged:
                log.info("call store: %d calls past the %d-day retention purged", purged, retention_days)
        except SQLAlchemyError as exc:
            log.error("call store: retention purge failed: %s", type(exc).__name__)
        await asyncio.sleep(every_s)
