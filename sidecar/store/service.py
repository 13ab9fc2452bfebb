"""Wiring the call store into ``assist serve``: open (and migrate) it before the first request,
follow the bus into it, purge on the retention schedule. The routes reach it as
``app.state.call_store`` (``CallStoreService``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sidecar.store.feedback import FeedbackReader, kb_feedback_reader
from sidecar.store.repository import CallStore
from sidecar.store.settings import StoreSettings
from sidecar.store.subscriber import PersistStats, persist_calls, retention_loop

if TYPE_CHECKING:
    from fastapi import FastAPI

    from sidecar.service.context import AppContext


@dataclass
class CallStoreService:
    store: CallStore
    settings: StoreSettings
    feedback: FeedbackReader | None = None
    stats: PersistStats = field(default_factory=PersistStats)


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
        service.store.close()
