"""The browser UIs in headless Debian Chromium (never a downloaded browser), driven by Playwright,
against the real service: an alert reaches the agent's widget within 2 s of its publication, a
supervisor's whisper appears on the agent's widget, and a knowledge manager's edit is the version
the next suggestion carries. Screenshots go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser_helpers import ARTIFACTS, browser_fixture
from tests.service_helpers import LiveService

pytestmark = pytest.mark.model


browser = browser_fixture("module")  # one Chromium for the module: no async tests here


def _page(browser: Any, width: int = 420, height: int = 900) -> Any:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    return page


def _agent_page(browser: Any, service: LiveService, call_id: str, token_role: str = "agent") -> Any:
    page = _page(browser)
    # when the first alert element appears, by the browser's clock (same machine as the server's)
    page.add_init_script(
        """
        new MutationObserver(() => {
          const el = document.querySelector('#alerts .alert[data-severity="fatal"]');
          if (el && !window.__fatalSeenAt) window.__fatalSeenAt = Date.now();
        }).observe(document, {subtree: true, childList: true});
        """
    )
    page.goto(f"{service.base}/ui/agent.html?call={call_id}#token={service.token(token_role)}")
    return page


def test_a_fatal_alert_reaches_the_agent_widget_within_2s(browser: Any, service: LiveService) -> None:
    call_id = service.start_call("refund-abuse.jsonl", agent="alice", realtime=True)
    page = _agent_page(browser, service, call_id)
    page.wait_for_selector("#transcript .final[data-seq]", timeout=20_000)
    page.wait_for_selector('#alerts .alert[data-severity="fatal"]', timeout=30_000)
    seen_ms = page.evaluate("window.__fatalSeenAt")
    assert page.is_visible("#fatal-banner")
    page.screenshot(path=str(ARTIFACTS / "agent-fatal-alert.png"), full_page=True)
    with service.client("supervisor") as c:
        alerts = c.get(f"/v1/calls/{call_id}").json()["alerts"]
    published = min(a["emitted_at"] for a in alerts if a["severity"] == "fatal")
    delay_s = seen_ms / 1000 - published
    (ARTIFACTS / "alert-delay.txt").write_text(
        f"fatal alert: published -> on the widget in {delay_s:.3f} s\n"
    )
    assert -0.05 < delay_s < 2.0, f"the fatal alert took {delay_s:.3f} s to show"
    page.wait_for_selector("#temperature svg polyline, #temperature svg path", timeout=20_000)
    # (text selectors, not wait_for_function: the pages' CSP forbids the eval it relies on)
    page.wait_for_selector('#call-status:has-text("ended")', timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "agent-call-ended.png"), full_page=True)
    assert not page.errors, page.errors
    page.context.close()


def test_a_supervisor_whisper_appears_on_the_agent_widget(browser: Any, service: LiveService) -> None:
    call_id = service.start_call("polite-refund.jsonl", agent="alice", realtime=True)
    agent = _agent_page(browser, service, call_id)
    agent.wait_for_selector("#call-status", timeout=10_000)
    supervisor = _page(browser, 1280, 900)
    supervisor.goto(f"{service.base}/ui/supervisor.html#token={service.token('supervisor')}")
    supervisor.click(f'#calls tbody tr[data-call-id="{call_id}"]', timeout=10_000)
    supervisor.wait_for_selector(f'#call-panel[data-call-id="{call_id}"]', timeout=10_000)
    supervisor.fill("#whisper-text", "Offer the express refund option.")
    supervisor.click("#whisper-send")
    agent.wait_for_selector('#whispers .whisper:has-text("express refund")', timeout=5_000)
    supervisor.screenshot(path=str(ARTIFACTS / "supervisor-console.png"), full_page=True)
    agent.screenshot(path=str(ARTIFACTS / "agent-whisper.png"), full_page=True)
    assert not agent.errors, agent.errors
    assert not supervisor.errors, supervisor.errors
    agent.context.close()
    supervisor.context.close()


def test_an_edited_snippet_is_the_version_the_next_suggestion_carries(
    browser: Any, service: LiveService
) -> None:
    with service.client("knowledge_manager") as km:
        before = km.get("/v1/kb/snippets/refund-status").json()
    page = _page(browser, 1280, 900)
    page.goto(f"{service.base}/ui/knowledge.html#token={service.token('knowledge_manager')}")
    page.click('#snippet-list li[data-snippet-id="refund-status"]', timeout=10_000)
    # the form is filled once the snippet has been fetched: typing before that would be overwritten
    form = f'#snippet-form[data-snippet-id="refund-status"][data-version="{before["version"]}"]'
    page.wait_for_selector(form, timeout=10_000)
    body = page.locator('#snippet-form [name="body"]')
    edited = before["body"] + " 4. Offer to email the refund reference."
    body.fill(edited)
    page.click("#save-publish")
    page.wait_for_selector('#snippet-form[data-snippet-id="refund-status"]'
                           f':not([data-version="{before["version"]}"])', timeout=30_000)  # fmt: skip
    with service.client("knowledge_manager") as km:
        now = km.get("/v1/kb/snippets/refund-status").json()
    assert now["version"] > before["version"], page.locator("#save-state").inner_text()
    assert now["status"] == "published"
    assert now["body"] == edited
    page.wait_for_selector(f'#history li[data-version="{now["version"]}"]', timeout=5_000)
    page.screenshot(path=str(ARTIFACTS / "knowledge-manager.png"), full_page=True)
    assert not page.errors, page.errors
    page.context.close()

    call_id = service.start_call("polite-refund.jsonl", agent="alice", realtime=True)
    agent = _agent_page(browser, service, call_id)
    card = agent.wait_for_selector('#suggestions .card[data-snippet-id="refund-status"]', timeout=20_000)
    assert card.get_attribute("data-version") == str(now["version"])
    assert "email the refund reference" in card.inner_text()
    agent.screenshot(path=str(ARTIFACTS / "agent-suggestion.png"), full_page=True)
    card.query_selector('button[data-feedback="used"]').click()
    deadline = time.monotonic() + 5
    with service.client("knowledge_manager") as km:
        while not any(
            s["snippet_id"] == "refund-status" and s["used"] >= 1 for s in km.get("/v1/kb/analytics").json()
        ):
            assert time.monotonic() < deadline, "the Used button recorded nothing"
            time.sleep(0.1)
    assert not agent.errors, agent.errors
    agent.context.close()

    # ... and the knowledge manager's analytics show it
    page = _page(browser, 1280, 900)
    page.goto(f"{service.base}/ui/knowledge.html#token={service.token('knowledge_manager')}")
    page.click("#tab-analytics")
    row = page.wait_for_selector('#analytics tbody tr[data-snippet-id="refund-status"]', timeout=10_000)
    cells = [c.inner_text() for c in row.query_selector_all("td.num")]
    shown, used, use_rate = int(cells[0]), int(cells[1]), cells[4]
    assert shown >= 1
    assert used >= 1
    assert use_rate == f"{round(100 * used / shown)}%"
    page.screenshot(path=str(ARTIFACTS / "knowledge-analytics.png"), full_page=True)
    page.context.close()


def test_the_widget_embeds_in_a_softphone_page_on_another_origin(
    browser: Any, service: LiveService, tmp_path: Path
) -> None:
    """A softphone page served from elsewhere embeds the widget with ``<agent-assist>``."""
    import functools
    import http.server
    import threading

    from tests.service_helpers import free_port

    call_id = service.start_call("polite-refund.jsonl", agent="alice", realtime=True)
    (tmp_path / "softphone.html").write_text(
        f"""<!doctype html><title>Softphone</title>
        <h1>Softphone</h1>
        <script src="{service.base}/ui/embed.js"></script>
        <agent-assist server="{service.base}" call="{call_id}" token="{service.token("agent")}"
                      style="width: 420px; height: 800px"></agent-assist>"""
    )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        page = _page(browser, 1000, 900)
        page.goto(f"http://127.0.0.1:{port}/softphone.html")
        # the element's shadow root is closed: find the widget's frame by its address
        deadline = time.monotonic() + 10
        while not (frames := [f for f in page.frames if "/ui/agent.html" in f.url]):
            assert time.monotonic() < deadline, "no agent widget frame in the softphone page"
            time.sleep(0.1)
        assert frames[0].url.startswith(f"{service.base}/ui/agent.html?call={call_id}")
        frames[0].wait_for_selector("#transcript .final[data-seq]", timeout=20_000)
        page.screenshot(path=str(ARTIFACTS / "softphone-embed.png"))
        assert not page.errors, page.errors
        page.context.close()
    finally:
        httpd.shutdown()


def test_other_pages_refuse_to_be_framed_and_the_api_docs_work_offline(
    browser: Any, service: LiveService, tmp_path: Path
) -> None:
    """The supervisor console in another origin's iframe is blocked (X-Frame-Options DENY,
    frame-ancestors 'none'); /docs renders with the service's own Swagger UI files (no CDN)."""
    import functools
    import http.server
    import threading

    from tests.service_helpers import free_port

    (tmp_path / "framer.html").write_text(
        f"""<!doctype html><title>Framer</title>
        <iframe id="console" src="{service.base}/ui/supervisor.html" width="800" height="600"></iframe>"""
    )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        page = _page(browser, 1000, 900)
        page.goto(f"http://127.0.0.1:{port}/framer.html")
        page.wait_for_load_state("load")
        time.sleep(1.0)
        loaded = [f for f in page.frames if f != page.main_frame and f.url.startswith(service.base)]
        for frame in loaded:  # a blocked frame shows Chromium's error page, never the console
            assert frame.query_selector("#floor-state, #call-count") is None, frame.url
        page.context.close()
    finally:
        httpd.shutdown()
    page = _page(browser, 1200, 900)
    page.goto(f"{service.base}/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
    assert "agent-assist" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector(".opblock", timeout=20_000)  # the operations rendered from /openapi.json
    page.screenshot(path=str(ARTIFACTS / "api-docs.png"))
    assert not page.errors, page.errors
    page.context.close()
