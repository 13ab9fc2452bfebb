// Per-rule precision from reviewers' verdicts (GET /v1/history/rules/precision), beside the rules
// on the knowledge page: rule, confirmed share of all verdicts and of the last 30 days' (a rule
// author sees whether a change helped), verdicts, alerts in stored calls. Each rule links
// to its alerts' calls in the review page; clicking the rule id opens the rules file that names it.
import { api, html, setHtml, withToken, getToken } from "./common.js";

const box = document.getElementById("rule-precision");
const LOW = 0.8; // below this share of confirmed verdicts a rule is marked for its author
const RECENT_DAYS = 30; // "over time": all verdicts, and those of the last 30 days

const pctText = (p) => (p == null ? "–" : `${Math.round(p * 1000) / 10}%`);

function row(r, recent) {
  const p = r.precision;
  const q = recent ? recent.precision : null;
  const href = withToken(`review.html?rule_id=${encodeURIComponent(r.rule_id)}`);
  return html`<tr data-rule-id="${r.rule_id}" data-precision="${p ?? ""}" data-reviewed="${r.reviewed}">
    <td><button type="button" class="link rule-open" data-rule-id="${r.rule_id}" title="${r.category}">${r.rule_id}</button></td>
    <td class="num precision${p != null && p < LOW ? " low" : ""}">${pctText(p)}</td>
    <td class="num precision-recent${q != null && q < LOW ? " low" : ""}" data-precision="${q ?? ""}" title="${recent ? recent.reviewed : 0} verdicts in the last 30 days">${pctText(q)}</td>
    <td class="num verdicts" title="${r.confirmed} confirmed, ${r.not_a_violation} not a violation">${r.reviewed}</td>
    <td class="num"><a href="${href}">${r.alerts}</a></td></tr>`;
}

export async function loadPrecision() {
  if (!box || !getToken()) return;
  let rows;
  let recent;
  const since = Math.floor(Date.now() / 1000) - RECENT_DAYS * 86400;
  try {
    [rows, recent] = await Promise.all([
      api("/v1/history/rules/precision", { quiet: true }),
      api(`/v1/history/rules/precision?since=${since}`, { quiet: true }),
    ]);
  } catch (err) {
    setHtml(box.querySelector(".precision-body"), html`<p class="empty">Precision unavailable (${err.message}).</p>`);
    return;
  }
  const byRule = new Map(recent.map((r) => [r.rule_id, r]));
  setHtml(
    box.querySelector(".precision-body"),
    rows.length
      ? html`<table class="data-table"><thead><tr><th>Rule</th><th class="num" title="confirmed / reviewed, all verdicts">Precision</th><th class="num" title="verdicts of the last 30 days">30 d</th><th class="num">Verdicts</th><th class="num">Alerts</th></tr></thead><tbody>${rows.map((r) => row(r, byRule.get(r.rule_id)))}</tbody></table>`
      : html`<p class="empty">No alerts in stored calls yet.</p>`,
  );
  box.dataset.loaded = String(Date.now());
}

/** The rules file whose text names the rule (the knowledge page's file list), selected. */
function openRule(ruleId) {
  const textarea = document.querySelector("#rules-editor textarea");
  for (const li of document.querySelectorAll("#rules-file-list li[data-file]")) {
    li.click();
    const at = textarea ? textarea.value.indexOf(ruleId) : -1;
    if (at >= 0) {
      textarea.focus();
      textarea.setSelectionRange(at, at + ruleId.length);
      return;
    }
  }
}

if (box) {
  box.addEventListener("click", (e) => {
    const btn = e.target.closest("button.rule-open");
    if (btn) openRule(btn.dataset.ruleId);
  });
  box.querySelector(".precision-refresh")?.addEventListener("click", loadPrecision);
  document.getElementById("tab-rules")?.addEventListener("click", loadPrecision);
  if (!document.getElementById("panel-rules")?.hidden) loadPrecision();
}
