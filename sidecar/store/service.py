"""Wiring the call store into ``assist serve``: open (and migrate) it before the first request,
follow the bus into it, purge on the retention schedule. The routes reach it as
``app.state.call_store`` (``CallStoreService``). Post-call notes arrive through ``save_note_soon``
(called on the event loop by the language model's listener) and are saved in a worker thread;
drop policy: at most ``MAX_PENDING_NOTES`` saves in flight, a note past that is dropped and counted."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from sidecar.store.feedback import FeedbackReader, kb_feedback_reader
from sidecar.store.repository import CallStore, PostCallNote, StoreError
from sidecar.store.settings import StoreSettings
from sidecar.store.subscriber import PersistStats, persist_calls, retention_loop

if TYPE_CHECKING:
    from fastapi import FastAPI

    from sidecar.service.context import AppContext

log = logging.getLogger(__name__)
MAX_PENDING_NOTES = 256


@dataclass
class CallStoreService:
    store: CallStore
    settings: StoreSettings
    feedback: FeedbackReader | None = None
    stats: PersistStats = field(default_factory=PersistStats)
    notes_saved: int = 0
    notes_dropped: int = 0
    notes_failed: int = 0
    _note_tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)

    def save_note_soon(self, note: PostCallNote) -> None:
        """On the event loop: save the note in a worker thread (never waits on the database)."""
        if len(self._note_tasks) >= MAX_PENDING_NOTES:
            self.notes_dropped += 1
            log.warning(
                "post-call note of call %s dropped: %d saves in flight", note.call_id, MAX_PENDING_NOTES
            )
            return
        task = asyncio.get_running_loop().create_task(self._save_note(note), name="call-store-note")
        self._note_tasks.add(task)
        task.add_done_callback(self._note_tasks.discard)

    async def _save_note(self, note: PostCallNote) -> None:
        try:
            await asyncio.to_thread(self.store.save_note, note)
        except (SQLAlchemyError, OSError, StoreError) as exc:
            self.notes_failed += 1
            log.error("post-call note of call %s not stored: %s", note.call_id, type(exc).__name__)
            return
        self.notes_saved += 1

    async def drain_notes(self, timeout_s: float = 10.0) -> None:
        """Wait (a bounded time) for the note saves in flight: shutdown, before the store closes."""
        if self._note_tasks:
            await asyncio.wait(set(self._note_tasks), timeout=timeout_s)


async def start_call_store(app: FastAPI, ctx: AppContext, data_dir: Path) -> CallStoreService:
    """Open the store (migrations run in a thread), start its writer and retention tasks."""
    settings = StoreSettings.from_env(data_dir)
    store = await asyncio.to_thread(CallStore, settings.url)
    service = CallStoreService(store, settings, kb_feedback_reader(ctx.services.store))
    ctx.spawn(_write(service, ctx), "call-store")
    ctx.spawn(retention_loop(store, settings.retention_days), "call-retention")
    app.state.call_store = service
    return service


async def _write(service: CallStoreService, ctx: AppContext) -> None:
    """The writer until the service stops; then the store's pooled connections are closed."""
    try:
        await persist_calls(ctx.services.bus, service.store, feedback=service.feedback, stats=service.stats)
    finally:
        await service.drain_notes()
        service.store.close()
