"""The review, report and floor-warning pages in headless Debian Chromium (Playwright), against a
real service whose call store holds planned calls (``tests.review_helpers``):

- a QA reviewer searches, opens a call, confirms one alert and rejects another; the rules page
  (a knowledge manager's) shows that rule's precision change; the filtered list exports as CSV;
- the report page's charts carry the numbers the stored calls give (computed here), with the
  targets drawn, and a bar opens the calls behind it;
- a supervisor sees an early warning appear on the floor and go when it clears: one published as
  the watch publishes it, and one the service's own ``WarningWatch`` raises from a call's events
  (thresholds from a YAML file) and clears after a calmer call;
- an agent sees only their own history and figures.

Screenshots go to ``test-artifacts/browser/`` (review-*.png, reports-*.png, floor-warning*.png).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path
from statistics import mean
from typing import Any

import pytest

from sidecar.qa.warning import EarlyWarning
from sidecar.qa.watch import warning_event
from tests.browser_helpers import ARTIFACTS, browser_fixture
from tests.review_helpers import Planned, ReviewService, review_service, store_planned
from tests.store_helpers import call_events

pytestmark = pytest.mark.browser
WAIT_MS = 20_000


# the service's own WarningWatch, with a negative-word share that one short call can reach
WARNINGS_YAML = (
    "negative_share: {threshold: 0.5, clear_below: 0.3, window_s: 3600, min_calls: 1, min_words: 3}\n"
)


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReviewService]:
    data = tmp_path_factory.mktemp("review-ui-data")
    (config := data / "early-warnings.yaml").write_text(WARNINGS_YAML, encoding="utf-8")
    yield from review_service(data, warnings_config=config)


@pytest.fixture(scope="module")
def plan(svc: ReviewService) -> list[Planned]:
    return store_planned(svc)


browser = browser_fixture("module")  # one Chromium for the module: no async tests here


def _page(browser: Any, svc: ReviewService, user: str, path: str) -> Any:
    # UTC: the report's day buckets are the browser's local days; the test computes them in UTC
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, timezone_id="UTC", accept_downloads=True
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    sep = "#" if "#" not in path else "&"
    page.goto(f"{svc.base}/ui/{path}{sep}token={svc.token(user)}")
    return page


def _day(t: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t))


def _precision_row(km: Any, rule_id: str, reviewed: int) -> Any:
    km.click("#rule-precision .precision-refresh")
    return km.wait_for_selector(
        f'#rule-precision tr[data-rule-id="{rule_id}"][data-reviewed="{reviewed}"]', timeout=WAIT_MS
    )


def test_search_open_a_call_give_verdicts_and_the_rule_precision_changes(
    browser: Any, svc: ReviewService, plan: list[Planned]
) -> None:
    km = _page(browser, svc, "kim", "knowledge.html")
    km.click("#tab-rules")
    before = _precision_row(km, "abuse.insult", 0)
    assert before.get_attribute("data-precision") == ""  # no verdict yet

    qa = _page(browser, svc, "quinn", "review.html")
    qa.wait_for_selector("#result-count[data-total]", timeout=WAIT_MS)
    assert qa.get_attribute("#result-count", "data-total") == str(len(plan))
    qa.fill("#f-agent", "alice")
    qa.select_option("#f-severity", "fatal")
    qa.click("#search-go")
    qa.wait_for_selector('#result-count[data-total="1"]', timeout=WAIT_MS)
    rows = qa.eval_on_selector_all("#results tbody tr", "rs => rs.map(r => r.dataset.callId)")
    assert rows == [p.call_id for p in plan if p.agent == "alice" and p.abusive]
    qa.screenshot(path=str(ARTIFACTS / "review-search.png"), full_page=True)

    # the filtered list as CSV (the API's export, saved by the browser)
    with qa.expect_download() as download:
        qa.click("#export-csv")
    text = Path(download.value.path()).read_text(encoding="utf-8")
    exported = list(csv.DictReader(io.StringIO(text)))
    assert [r["call_id"] for r in exported] == rows
    assert exported[0]["alerts_fatal"] == "1"

    # the call page: transcript (redacted), every alert, step and suggestion on the timeline
    qa.click('#results tbody tr[data-call-id="rev-a1"]')
    qa.wait_for_selector('#call-view[data-call-id="rev-a1"]', timeout=WAIT_MS)
    kinds = set(qa.eval_on_selector_all("#timeline li", "ls => ls.map(l => l.dataset.kind)"))
    assert kinds == {"line", "alert", "step", "intent", "suggestion"}
    assert "[card]" in qa.inner_text("#timeline")
    assert "4111" not in qa.inner_text("#call-view")
    assert qa.locator("#call-timeline svg rect.mark-alert").count() == 2
    qa.wait_for_selector('#call-recording[data-playable="true"]', timeout=WAIT_MS)  # rev-a1.wav: 2 s
    assert qa.eval_on_selector("#call-audio", "a => a.duration") == pytest.approx(2.0, abs=0.05)
    alert = qa.locator('#alert-list li[data-rule-id="abuse.insult"]')
    alert.locator(".verdict-comment").fill("clear insult")
    alert.locator(".verdict-confirm").click()
    qa.wait_for_selector(
        '#alert-list li[data-rule-id="abuse.insult"][data-verdict="confirmed"]', timeout=WAIT_MS
    )
    assert "clear insult" in alert.inner_text()
    qa.screenshot(path=str(ARTIFACTS / "review-call.png"), full_page=True)

    after = _precision_row(km, "abuse.insult", 1)
    assert after.get_attribute("data-precision") == "1"
    assert (
        after.query_selector(".precision-recent").get_attribute("data-precision") == "1"
    )  # last 30 days too

    # bob's abusive call: "not a violation" halves the rule's precision
    qa.click("#back-to-results")
    qa.fill("#f-agent", "bob")
    qa.click("#search-go")
    qa.wait_for_selector('#results tbody tr[data-call-id="rev-b2"]', timeout=WAIT_MS)
    qa.click('#results tbody tr[data-call-id="rev-b2"]')
    qa.wait_for_selector('#call-view[data-call-id="rev-b2"]', timeout=WAIT_MS)
    qa.wait_for_selector('#call-recording[data-playable="false"]', timeout=WAIT_MS)  # no such file
    assert "not playable here" in qa.inner_text("#call-recording")
    qa.locator('#alert-list li[data-rule-id="abuse.insult"] .verdict-reject').click()
    qa.wait_for_selector('#alert-list li[data-verdict="not_a_violation"]', timeout=WAIT_MS)
    halved = _precision_row(km, "abuse.insult", 2)
    assert halved.get_attribute("data-precision") == "0.5"
    km.screenshot(path=str(ARTIFACTS / "review-rule-precision.png"), full_page=True)
    assert not qa.errors, qa.errors
    assert not km.errors, km.errors
    qa.context.close()
    km.context.close()


def test_report_charts_show_the_stored_figures_and_link_to_the_calls(
    browser: Any, svc: ReviewService, plan: list[Planned]
) -> None:
    page = _page(browser, svc, "sam", "reports.html?group=agent&period=day")
    page.wait_for_selector('[data-group="bob"] rect[data-metric="qa_score"]', timeout=WAIT_MS)
    for agent in ("alice", "bob"):
        mine = [p for p in plan if p.agent == agent]
        group = page.locator(f'section.report-group[data-group="{agent}"]')
        for day in sorted({_day(p.started) for p in mine}):
            in_day = [p for p in mine if _day(p.started) == day]
            bar = group.locator(f'rect[data-metric="qa_score"][data-bucket="{day}"]')
            assert float(bar.get_attribute("data-value")) == pytest.approx(
                mean(p.score for p in in_day), abs=1e-3
            )
            assert bar.get_attribute("data-calls") == str(len(in_day))
            polite = group.locator(f'rect[data-metric="politeness"][data-bucket="{day}"]')
            expected = sum(not p.abusive for p in in_day) / len(in_day)
            assert float(polite.get_attribute("data-value")) == pytest.approx(expected, abs=1e-3)
        abusive = sum(p.abusive for p in mine)
        assert group.locator('rect.seg[data-category="abuse"][data-severity="fatal"]').get_attribute(
            "data-value"
        ) == str(abusive)
        kpi = group.locator('.kpi[data-metric="politeness"]')
        assert float(kpi.get_attribute("data-value")) == pytest.approx(
            sum(not p.abusive for p in mine) / len(mine), abs=1e-3
        )
        assert group.locator('line.target[data-metric="politeness"]').get_attribute("data-target") == "0.95"
        assert group.locator('line.target[data-metric="fcr"]').get_attribute("data-target") == "0.85"
        assert (
            group.locator('line.target[data-metric="first_response_s"]').get_attribute("data-target") == "30"
        )
        assert group.locator('line.target[data-metric="temp_end"]').get_attribute("data-target") == "0"
    # the 7-day repeat: cust-r called alice, then bob a day later
    assert page.get_attribute('[data-group="alice"] .kpi[data-metric="fcr"]', "data-value") == "0.5"
    assert page.get_attribute('[data-group="bob"] .kpi[data-metric="fcr"]', "data-value") == "1"
    page.screenshot(path=str(ARTIFACTS / "reports-agents.png"), full_page=True)

    # one click from a bar to the calls behind it
    day = _day(next(p.started for p in plan if p.call_id == "rev-a1"))
    behind = sorted(p.call_id for p in plan if p.agent == "alice" and _day(p.started) == day)
    page.click(f'[data-group="alice"] rect[data-metric="qa_score"][data-bucket="{day}"]')
    page.wait_for_selector(f'#result-count[data-total="{len(behind)}"]', timeout=WAIT_MS)
    rows = page.eval_on_selector_all("#results tbody tr", "rs => rs.map(r => r.dataset.callId)")
    assert sorted(rows) == behind

    teams = _page(browser, svc, "sam", "reports.html?group=team&period=week&target_politeness=90")
    teams.wait_for_selector('[data-group="returns"] rect[data-metric="qa_score"]', timeout=WAIT_MS)
    returns = [p for p in plan if p.queue == "returns"]
    shown = float(teams.get_attribute('[data-group="returns"] .kpi[data-metric="qa_score"]', "data-value"))
    assert shown == pytest.approx(mean(p.score for p in returns), abs=1e-3)
    assert (
        teams.get_attribute('[data-group="returns"] line.target[data-metric="politeness"]', "data-target")
        == "0.9"
    )
    teams.screenshot(path=str(ARTIFACTS / "reports-teams.png"), full_page=True)
    assert not page.errors, page.errors
    assert not teams.errors, teams.errors
    page.context.close()
    teams.context.close()


def test_a_supervisor_sees_an_early_warning_appear_and_clear(browser: Any, svc: ReviewService) -> None:
    page = _page(browser, svc, "sam", "supervisor.html")
    page.wait_for_selector("#floor-state", timeout=WAIT_MS)
    assert page.locator("#floor-warnings").is_hidden()
    now = time.time()
    raised = EarlyWarning("complaint_burst", "raised", "refund-status", now - 1800, now, ("rev-a1", "rev-b1"),
                          6.0, 5.0, "6 customers complained about refund status in 45 min", "complaint_burst:refund-status:1")  # fmt: skip
    svc.publish(warning_event(raised))  # what WarningWatch publishes when the engine raises one
    item = page.wait_for_selector(
        '#warnings li[data-episode="complaint_burst:refund-status:1"]', timeout=WAIT_MS
    )
    assert "6 customers complained" in item.inner_text()
    assert page.locator('#warnings a[data-call-id="rev-b1"]').count() == 1
    page.screenshot(path=str(ARTIFACTS / "floor-warning.png"), full_page=True)
    cleared = EarlyWarning("complaint_burst", "cleared", "refund-status", now, now + 60, (), 2.0, 3.0,
                           "complaints about refund status back to 2", "complaint_burst:refund-status:1")  # fmt: skip
    svc.publish(warning_event(cleared))
    page.wait_for_selector("#floor-warnings", state="hidden", timeout=WAIT_MS)
    assert page.locator("#warnings li").count() == 0
    assert not page.errors, page.errors
    page.context.close()


def test_the_service_watch_raises_a_warning_the_supervisor_sees(browser: Any, svc: ReviewService) -> None:
    """End to end: a call's events on the bus -> the service's WarningWatch -> ``floor.warnings``
    -> the SSE stream -> the console; a calmer call in the same queue clears it."""
    page = _page(browser, svc, "sam", "supervisor.html")
    page.wait_for_selector("#floor-state", timeout=WAIT_MS)
    for event in call_events("angry-1", agent="wendy", queue="escalations", customer_ref=None, abusive=False,
                             text="terrible awful horrible useless"):  # fmt: skip
        svc.publish(event)
    item = page.wait_for_selector(
        '#warnings li[data-kind="negative_share"][data-key="escalations"]', timeout=WAIT_MS
    )
    assert page.locator('#warnings li[data-kind="negative_share"] a[data-call-id="angry-1"]').count() == 1
    episode = item.get_attribute("data-episode")
    page.screenshot(path=str(ARTIFACTS / "floor-warning-watch.png"), full_page=True)
    calm = " ".join(["thanks that sounds fine"] * 10)
    for event in call_events(
        "calm-1", agent="wendy", queue="escalations", customer_ref=None, abusive=False, text=calm
    ):
        svc.publish(event)
    page.wait_for_selector(f'#warnings li[data-episode="{episode}"]', state="detached", timeout=WAIT_MS)
    assert not page.errors, page.errors
    page.context.close()


def test_an_agent_sees_only_their_own_history_and_figures(
    browser: Any, svc: ReviewService, plan: list[Planned]
) -> None:
    page = _page(browser, svc, "alice", "review.html")
    page.wait_for_selector("#result-count[data-total]", timeout=WAIT_MS)
    rows = page.eval_on_selector_all("#results tbody tr", "rs => rs.map(r => r.dataset.callId)")
    assert sorted(rows) == sorted(p.call_id for p in plan if p.agent == "alice")
    page.screenshot(path=str(ARTIFACTS / "review-agent.png"), full_page=True)
    other = _page(browser, svc, "alice", "review.html?agent=bob")
    other.wait_for_selector('#error-banner[data-status="403"]', timeout=WAIT_MS)
    assert other.locator("#results tbody tr").count() == 0
    reports = _page(browser, svc, "alice", "reports.html")
    reports.wait_for_selector('[data-group="alice"] .kpi[data-metric="qa_score"]', timeout=WAIT_MS)
    groups = reports.eval_on_selector_all("section.report-group", "gs => gs.map(g => g.dataset.group)")
    assert groups == ["alice"]
    mine = [p for p in plan if p.agent == "alice"]
    assert float(
        reports.get_attribute('[data-group="alice"] .kpi[data-metric="qa_score"]', "data-value")
    ) == pytest.approx(mean(p.score for p in mine), abs=1e-3)
    reports.screenshot(path=str(ARTIFACTS / "reports-agent.png"), full_page=True)
    for p in (page, other, reports):
        assert not p.errors, p.errors
        p.context.close()
