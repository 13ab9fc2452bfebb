"""Post-call notes in the call store (revision 0003, ``call_summaries``) on SQLite and a real
PostgreSQL: the migration from revision 0002, save (either before or after the call is stored) and
read, erasure and the retention purge; and over real HTTP, a note handed to the service's
post-call listener shows in the call's detail (``/v1/history/calls/{id}``)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, inspect, text

from coach.llm.assistant import PostCallSummary
from sidecar.store import migrate
from sidecar.store.repository import CallStore, PostCallNote, StoreError
from sidecar.store.retention import DAY_S, erase_customer, purge_expired
from tests.store_helpers import make_record

pytest_plugins = ["tests.store_fixtures"]

NOW = 2_000_000_000.0
LINES = ("Need: a refund", "Verified: the order number", "Promised: a refund in 5 days", "Risk: none",
         "Disposition: resolved (refund issued)")  # fmt: skip


def note(
    call_id: str, *, lines: tuple[str, ...] = LINES, disposition: str | None = "resolved"
) -> PostCallNote:
    return PostCallNote(call_id, lines, disposition, "refund issued", NOW - 10)


@pytest.fixture
def store(database_url: str) -> Iterator[CallStore]:
    s = CallStore(database_url, now=lambda: NOW)
    yield s
    s.close()


def test_migration_from_0002_to_0003_keeps_the_calls(database_url: str) -> None:
    engine = create_engine(database_url)
    assert migrate.upgrade(engine, "0002") == "0002"
    assert "call_summaries" not in inspect(engine).get_table_names()
    with engine.begin() as conn:  # a call stored under revision 0002
        conn.execute(text(
            "INSERT INTO calls (call_id, agent_id, queue, lang, source, origin, started_at, ended_at, duration_s,"
            " end_reason, score_total, alerts_fatal, alerts_serious, alerts_general, search_text, record, stored_at)"
            " VALUES ('old-1', 'alice', 'q', 'en', 's', 'live', 1, 2, 1, 'completed', 80, 0, 0, 0, '', :record, 3)"
        ), {"record": json.dumps(make_record("old-1").to_json_dict())})  # fmt: skip
    engine.dispose()
    store = CallStore(database_url)  # the service's start: migrates to head
    assert migrate.current_revision(store.engine) == migrate.head_revision() == "0003"
    old = store.get("old-1")
    assert old is not None
    assert old.note is None
    store.save_note(note("old-1"))
    stored = store.get("old-1")
    assert stored is not None
    assert stored.note == note("old-1")
    assert migrate.downgrade(store.engine, "0002") == "0002"
    assert "call_summaries" not in inspect(store.engine).get_table_names()
    assert migrate.upgrade(store.engine) == "0003"
    store.close()


def test_a_note_is_saved_before_or_after_its_call_and_replaced_idempotently(store: CallStore) -> None:
    store.save_note(note("early"))  # the note first: kept by call id, shown once the call is stored
    assert store.get("early") is None
    assert store.note("early") == note("early")
    assert store.save(make_record("early")) is True
    early = store.get("early")
    assert early is not None
    assert early.note == note("early")

    assert store.save(make_record("late")) is True  # the call first
    late = store.get("late")
    assert late is not None
    assert late.note is None
    store.save_note(note("late"))
    store.save_note(note("late"))  # again (another node, a retry): one row, the same note
    changed = note("late", lines=("Need: a refund",), disposition=None)
    store.save_note(changed)  # a later note replaces the earlier one
    late = store.get("late")
    assert late is not None
    assert late.note == changed
    assert store.note("nobody") is None
    with pytest.raises(StoreError, match="call id"):
        store.save_note(note(""))


def test_erasure_and_the_retention_purge_remove_notes_with_their_calls(store: CallStore) -> None:
    store.save(make_record("c1", customer_ref="cust-9"))
    store.save(make_record("c2", customer_ref="cust-8"))
    store.save_note(note("c1"))
    store.save_note(note("c2"))
    assert erase_customer(store, "cust-9", "sam", "supervisor") == 1
    assert store.note("c1") is None
    assert store.note("c2") == note("c2")

    # c2 started at 1_000_000 (store_helpers): past a 30-day retention at NOW; with it, its note.
    store.save_note(PostCallNote("never-stored", LINES, None, "", NOW - 40 * DAY_S))  # the call never came
    store.save_note(PostCallNote("fresh", LINES, None, "", NOW - 60))  # its call may still come
    assert purge_expired(store, 30) == 1
    assert store.get("c2") is None
    assert store.note("c2") is None
    assert store.note("never-stored") is None
    assert store.note("fresh") is not None


# -- over HTTP ----------------------------------------------------------------------------------

TOKEN = "summary-supervisor-token"


@dataclass
class Served:
    base: str
    app: Any
    loop: asyncio.AbstractEventLoop

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

    def detail(self, call_id: str, *, with_summary: bool, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        with self.client() as c:
            while True:
                r = c.get(f"/v1/history/calls/{call_id}")
                if r.status_code == 200 and (r.json()["summary"] is not None) == with_summary:
                    return dict(r.json())
                assert time.monotonic() < deadline, f"call {call_id}: {r.status_code} {r.text[:300]}"
                time.sleep(0.1)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from coach.engine import Coach
    from coach.llm.service import LlmConfig
    from knowledge.feedback import FeedbackLog
    from knowledge.store import SnippetStore
    from sidecar.kernel.bus import InMemoryBus
    from sidecar.service.app import create_app
    from sidecar.service.auth import Principal, TokenEntry, TokenTable
    from sidecar.service.config import ServiceConfig, Services
    from sidecar.service.serve import make_server
    from tests.service_helpers import FIXTURES, free_port

    data = tmp_path_factory.mktemp("summary-data")
    tokens = TokenTable([TokenEntry(TOKEN, Principal("sam", "supervisor"))])
    config = ServiceConfig(data_dir=data, recordings_dir=FIXTURES, kb_seed=None, tokens=tokens, knowledge=False,
                           preload_lang=None)  # fmt: skip
    kb = SnippetStore(":memory:")
    services = Services(config=config, bus=InMemoryBus(), tokens=tokens, store=kb, feedback=FeedbackLog(kb),
                        coach=Coach(embedder=None, judge=False), knowledge=None, policy=None)  # fmt: skip
    app = create_app(config, services)
    app.state.llm_config = LlmConfig(mode="off")  # no model: the notes are handed in by the test
    server = make_server(app, "127.0.0.1", port := free_port())
    loops: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        loops.append(asyncio.get_running_loop())
        await server.serve()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), name="summary-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not (server.started and getattr(app.state, "llm", None) and getattr(app.state, "call_store", None)):
        assert thread.is_alive(), "the test service did not start"
        assert time.monotonic() < deadline, "the test service did not start in time"
        time.sleep(0.05)
    yield Served(f"http://127.0.0.1:{port}", app, loops[0])
    server.should_exit = True
    thread.join(timeout=30)


def hand_to_listeners(served: Served, summary: PostCallSummary) -> None:
    """What ``CallAssistant.summarise_ended`` does with a made note: every listener, on the loop."""

    async def call() -> None:
        for listener in served.app.state.llm.assistant._listeners:
            listener(summary)

    asyncio.run_coroutine_threadsafe(call(), served.loop).result(timeout=30)


def summary_of(call_id: str) -> PostCallSummary:
    return PostCallSummary(call_id, "en", "a refund", "the order number", "a refund in 5 days", "", "resolved",
                           "refund issued", LINES, 4, NOW)  # fmt: skip


def test_a_post_call_note_shows_in_the_call_detail(served: Served) -> None:
    """The note is a ``PostCallSummary`` built here (no language model runs), handed to the
    listeners the service registered, as ``summarise_ended`` would; it is saved through the call
    store in a worker thread, whether it comes after the call is stored or before."""
    history = served.app.state.call_store
    history.store.save(make_record("after-1"))
    assert served.detail("after-1", with_summary=False)["summary"] is None
    hand_to_listeners(served, summary_of("after-1"))
    shown = served.detail("after-1", with_summary=True)["summary"]
    assert shown["lines"] == list(LINES)
    assert (shown["disposition"], shown["reason"], shown["created_at"]) == ("resolved", "refund issued", NOW)

    hand_to_listeners(served, summary_of("before-1"))  # the note before the call's record
    deadline = time.monotonic() + 30
    while history.store.note("before-1") is None:
        assert time.monotonic() < deadline, "the note was not saved"
        time.sleep(0.05)
    history.store.save(make_record("before-1"))
    assert served.detail("before-1", with_summary=True)["summary"]["lines"] == list(LINES)
    assert history.notes_saved == 2
    assert history.notes_dropped == history.notes_failed == 0


@pytest.mark.browser
def test_the_review_call_page_shows_the_note(served: Served, browser: Any) -> None:
    """Headless Debian Chromium: the call page lists the note's lines and its disposition; a call
    without a note shows none (the note is handed in as above: no language model runs)."""
    history = served.app.state.call_store
    history.store.save(make_record("page-1"))
    history.store.save(make_record("page-2"))
    hand_to_listeners(served, summary_of("page-1"))
    served.detail("page-1", with_summary=True)
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{served.base}/ui/review.html?call=page-1#token={TOKEN}")
    page.wait_for_selector('#call-view[data-call-id="page-1"]', timeout=20_000)
    box = page.wait_for_selector('#call-summary[data-disposition="resolved"]', timeout=20_000)
    assert box is not None
    assert box.is_visible()
    items = page.eval_on_selector_all("#call-summary .summary-lines li", "ls => ls.map(l => l.textContent)")
    assert items == list(LINES)
    assert page.inner_text("#call-summary .disposition") == "resolved"
    page.goto(f"{served.base}/ui/review.html?call=page-2#token={TOKEN}")
    page.wait_for_selector('#call-view[data-call-id="page-2"]', timeout=20_000)
    assert page.locator("#call-summary").is_hidden()
    assert not errors, errors
