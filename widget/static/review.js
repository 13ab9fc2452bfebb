// Review of stored calls (QA reviewers, supervisors; an agent sees their own): search and filter,
// CSV export of the filtered list, a call page (redacted transcript, alerts, checklist steps,
// intents and suggestions on one timeline) and a verdict per alert (confirmed / not a violation,
// with a comment) through PUT /v1/history/calls/{id}/alerts/{alert}/verdict.
//
// The filters live in the page's query string (?agent=…&since=…), so a report's chart links here
// with the calls behind a number; ?call=ID opens one call. Audio: a recording the service can play
// (a WAV in its recordings folder) has a player; a timeline item plays from its time.
import { api, requireToken, withToken, showMe, html, setHtml, fmtTime, fmtDate, fmtNum, getToken, showError, lineChart } from "./common.js";

requireToken();
const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
const FIELDS = ["agent", "queue", "since", "until", "lang", "category", "severity", "rule_id", "intent", "score_min", "score_max", "q"];
const PAGE = 50;
let offset = 0;
let total = 0;

for (const a of document.querySelectorAll("a[data-nav]")) a.href = withToken(a.getAttribute("href"));
showMe($("me"));

// ---------------------------------------------------------------------------------------------
// filters <-> form <-> query string. Dates: the form shows local dates; the API takes epoch seconds.

function dayStart(value) {
  const [y, m, d] = value.split("-").map(Number);
  return new Date(y, m - 1, d).getTime() / 1000;
}

function toDateInput(epoch) {
  const d = new Date(Number(epoch) * 1000);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

/** The filters as the API's query parameters (epoch seconds for since/until). */
function formParams() {
  const p = new URLSearchParams();
  const form = $("search-form");
  for (const name of FIELDS) {
    const el = form.elements.namedItem(name);
    const v = el ? String(el.value).trim() : "";
    if (!v) continue;
    if (name === "since") p.set("since", String(el.dataset.epoch || dayStart(v)));
    else if (name === "until") p.set("until", String(el.dataset.epoch || dayStart(v) + 86400));
    else p.set(name, v);
  }
  return p;
}

/** Fill the form from the page's query string (a report's link, a reload). */
function fillForm(params) {
  const form = $("search-form");
  for (const name of FIELDS) {
    const el = form.elements.namedItem(name);
    if (!el) continue;
    const v = params.get(name);
    delete el.dataset.epoch;
    if (v === null) el.value = "";
    else if (name === "since" || name === "until") {
      // an exact epoch from a report bucket is kept as is; the field shows its (local) day
      el.value = toDateInput(name === "until" ? Number(v) - 1 : Number(v));
      el.dataset.epoch = v;
    } else el.value = v;
  }
}

for (const name of ["since", "until"]) {
  $(`f-${name}`).addEventListener("input", (e) => delete e.target.dataset.epoch);
}

// ---------------------------------------------------------------------------------------------
// search

function alertBadges(counts) {
  return ["fatal", "serious", "general"]
    .filter((s) => counts && counts[s])
    .map((s) => html`<span class="count sev-${s}" data-severity="${s}" title="${s}">${counts[s]}</span>`);
}

async function search({ push = true } = {}) {
  const params = formParams();
  if (push) {
    const url = new URL(window.location.href);
    url.search = params.toString();
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  params.set("limit", String(PAGE));
  params.set("offset", String(offset));
  let data;
  try {
    data = await api(`/v1/history/calls?${params}`);
  } catch {
    return;
  }
  total = data.total;
  const shown = data.calls.length;
  $("result-count").textContent = total
    ? `${total} call${total === 1 ? "" : "s"}${total > shown ? ` (showing ${offset + 1}–${offset + shown})` : ""}`
    : "No stored call matches.";
  $("result-count").dataset.total = String(total);
  setHtml(
    $("results").tBodies[0],
    data.calls.map(
      (c) => html`<tr data-call-id="${c.call_id}" tabindex="0">
        <td>${fmtDate(c.started_at)}</td><td class="mono">${c.call_id}</td><td>${c.agent_id}</td><td>${c.queue}</td>
        <td>${c.lang}</td><td class="num">${fmtTime(c.duration_s)}</td>
        <td class="num" data-score="${c.score ?? ""}">${c.score == null ? "–" : fmtNum(c.score, 1)}</td>
        <td>${alertBadges(c.alerts)}</td><td>${c.origin}</td></tr>`,
    ),
  );
  $("page-prev").disabled = offset === 0;
  $("page-next").disabled = offset + shown >= total;
}

$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  offset = 0;
  search();
});
$("page-prev").addEventListener("click", () => {
  offset = Math.max(0, offset - PAGE);
  search({ push: false });
});
$("page-next").addEventListener("click", () => {
  offset += PAGE;
  search({ push: false });
});

$("results").addEventListener("click", (e) => {
  const row = e.target.closest("tr[data-call-id]");
  if (row) openCall(row.dataset.callId);
});
$("results").addEventListener("keydown", (e) => {
  const row = e.target.closest("tr[data-call-id]");
  if (row && e.key === "Enter") openCall(row.dataset.callId);
});

// CSV: the API's export of the same filters (fetched with the bearer token, saved as a file)
$("export-csv").addEventListener("click", async () => {
  const params = formParams();
  params.set("limit", "1000");
  let resp;
  try {
    resp = await fetch(`/v1/history/calls.csv?${params}`, { headers: { Authorization: "Bearer " + (getToken() || "") } });
  } catch (err) {
    showError(`Network error: ${err.message || err}`);
    return;
  }
  if (!resp.ok) {
    showError(`${resp.status}: the CSV export failed`, { status: resp.status });
    return;
  }
  const blob = await resp.blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = "calls.csv";
  a.id = "csv-download";
  document.body.append(a);
  a.click();
  window.setTimeout(() => {
    URL.revokeObjectURL(a.href);
    a.remove();
  }, 1000);
});

// ---------------------------------------------------------------------------------------------
// one call

let current = null;

function showView(name) {
  $("search-view").hidden = name !== "search";
  $("call-view").hidden = name !== "call";
}

$("back-to-results").addEventListener("click", () => {
  const url = new URL(window.location.href);
  url.searchParams.delete("call");
  window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  current = null;
  showView("search");
  search({ push: false });
});

async function openCall(callId) {
  let call;
  try {
    call = await api(`/v1/history/calls/${enc(callId)}`, { expect: [404] });
  } catch (err) {
    if (err.status === 404) showError(`No stored call ${callId}.`);
    return;
  }
  current = call;
  const url = new URL(window.location.href);
  url.searchParams.set("call", callId);
  window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  renderCall(call);
  showView("call");
}

function renderCall(c) {
  const view = $("call-view");
  view.dataset.callId = c.call_id;
  $("call-title").textContent = `Call ${c.call_id}`;
  $("call-score").textContent = c.score == null ? "no score" : `QA ${fmtNum(c.score, 1)}`;
  $("call-score").dataset.score = c.score == null ? "" : String(c.score);
  $("call-meta").textContent = [
    `agent ${c.agent_id || "–"}`,
    `queue ${c.queue || "–"}`,
    c.lang,
    fmtDate(c.started_at),
    `${fmtTime(c.duration_s)} long`,
    `ended: ${c.end_reason}`,
    `source ${c.source}`,
    c.origin === "qa" ? "scored by assist qa run" : "live",
  ].join(" · ");
  renderSummary(c);
  renderRecording(c);
  renderAlerts(c);
  setHtml(
    $("checklist"),
    c.checklist.map(
      (s) => html`<li class="state-${s.state}" data-step="${s.step}"><span class="icon">${s.state === "done" ? "✓" : s.state === "missed" ? "✗" : "…"}</span>
        <span class="step-name">${s.step.replace(/_/g, " ")}</span>${s.mandatory ? html`<span class="mandatory">required</span>` : ""}
        <span class="state-text">${s.state}</span><span class="when">${fmtTime(s.t)}</span>
        ${s.evidence ? html`<span class="evidence">“${s.evidence}”</span>` : ""}</li>`,
    ),
  );
  setHtml($("temperature"), c.emotion.length ? lineChart(c.emotion.map((e) => ({ t: e.t, y: e.temperature, warning: e.warning, title: e.label }))) : html`<p class="empty">no readings</p>`);
  const items = timelineItems(c);
  setHtml($("call-timeline"), timelineSvg(items, Math.max(c.duration_s, ...items.map((i) => i.t), 1)));
  setHtml(
    $("timeline"),
    items.map(
      (i) => html`<li class="tl-${i.kind}${i.severity ? " sev-" + i.severity : ""}" data-kind="${i.kind}" data-t="${i.t}"${i.alertId ? html` data-alert-id="${i.alertId}"` : ""}>
        <span class="when">${fmtTime(i.t)}</span><span class="tl-kind">${i.label}</span><span class="tl-text">${i.text}</span></li>`,
    ),
  );
}

/** The language model's post-call note (its lines and disposition), when one was stored. */
function renderSummary(c) {
  let box = $("call-summary");
  if (!box) {
    box = document.createElement("div");
    box.id = "call-summary";
    box.className = "meta-line call-summary";
    $("call-recording").before(box);
  }
  const s = c.summary;
  box.hidden = !s;
  box.dataset.disposition = s && s.disposition ? s.disposition : "";
  setHtml(box, s ? html`<strong>Post-call note</strong>${s.disposition ? html` <span class="disposition">${s.disposition}</span>` : ""}
    <ul class="summary-lines">${s.lines.map((line) => html`<li>${line}</li>`)}</ul>` : "");
}

/** The call's recording in an audio player, when the service can play it (a WAV in its
 * recordings folder: GET …/recording, with the token in the query as <audio> sends no headers). */
function renderRecording(c) {
  const box = $("call-recording");
  delete box.dataset.playable;
  if (!c.recording_ref) {
    box.textContent = "No recording for this call.";
    return;
  }
  const src = `/v1/history/calls/${enc(c.call_id)}/recording?access_token=${enc(getToken() || "")}`;
  setHtml(box, html`<audio id="call-audio" controls preload="metadata" src="${src}"></audio> <span class="rec-ref">${c.recording_ref}</span>`);
  const audio = $("call-audio");
  audio.addEventListener("loadedmetadata", () => (box.dataset.playable = "true"));
  audio.addEventListener("error", () => {
    box.dataset.playable = "false";
    box.textContent = `Recording: ${c.recording_ref} (not playable here: the service plays only WAV files in its recordings folder)`;
  });
}

// a timeline item plays the recording from its time
$("timeline").addEventListener("click", (e) => {
  const li = e.target.closest("li[data-t]");
  const audio = $("call-audio");
  if (!li || !audio || $("call-recording").dataset.playable !== "true") return;
  audio.currentTime = Number(li.dataset.t);
  audio.play().catch(() => {});
});

/** Every transcript line, alert, checklist step, intent and suggestion of a call, in time order. */
function timelineItems(c) {
  const items = [];
  for (const t of c.transcript) items.push({ kind: "line", t: t.t_start, label: t.channel, text: t.text, order: 1 });
  for (const a of c.alert_list) items.push({ kind: "alert", t: a.t_start, label: `${a.severity} · ${a.category}`, text: a.message + (a.evidence ? ` — “${a.evidence}”` : ""), severity: a.severity, alertId: a.alert_id, order: 2 });
  for (const s of c.checklist) items.push({ kind: "step", t: s.t, label: `step ${s.state}`, text: s.step.replace(/_/g, " "), order: 3 });
  for (const i of c.intents) items.push({ kind: "intent", t: i.t_start, label: "intent", text: `${i.intent} (${fmtNum(i.confidence)})`, order: 4 });
  for (const s of c.suggestions) {
    const fb = Object.entries(s.feedback || {}).map(([k, n]) => `${k} ${n}`).join(", ");
    items.push({ kind: "suggestion", t: s.t, label: "suggestion", text: `${s.title} v${s.version}${fb ? ` (${fb})` : ""}`, order: 5 });
  }
  return items.sort((a, b) => a.t - b.t || a.order - b.order);
}

const LANES = ["line", "alert", "step", "intent", "suggestion"];
const LANE_NAMES = { line: "speech", alert: "alerts", step: "checklist", intent: "intents", suggestion: "suggestions" };

/** The call on one time axis: a lane per kind, a mark per item (inline SVG, no styles). */
function timelineSvg(items, duration) {
  const W = 900;
  const left = 80;
  const laneH = 18;
  const H = LANES.length * laneH + 22;
  const X = (t) => Math.round((left + (Math.max(0, t) / duration) * (W - left - 10)) * 10) / 10;
  const parts = [];
  LANES.forEach((lane, i) => {
    const y = i * laneH + 4;
    parts.push(html`<text class="lane-name" x="4" y="${y + 12}">${LANE_NAMES[lane]}</text><line class="lane" x1="${left}" x2="${W - 10}" y1="${y + 9}" y2="${y + 9}"/>`);
    for (const it of items.filter((x) => x.kind === lane)) {
      const cls = `mark mark-${lane}${it.severity ? " sev-" + it.severity : ""}`;
      parts.push(html`<rect class="${cls}" x="${X(it.t) - 3}" y="${y + 3}" width="6" height="12" rx="2" data-kind="${lane}" data-t="${it.t}"><title>${fmtTime(it.t)} ${it.label}: ${it.text}</title></rect>`);
    }
  });
  const axisY = LANES.length * laneH + 8;
  for (let k = 0; k <= 4; k++) {
    const t = (duration * k) / 4;
    parts.push(html`<text class="tick" x="${X(t)}" y="${axisY + 10}" text-anchor="${k === 4 ? "end" : k === 0 ? "start" : "middle"}">${fmtTime(t)}</text>`);
  }
  return html`<svg class="call-timeline" viewBox="0 0 ${W} ${H}" role="img" aria-label="the call's events on its time axis">${parts}</svg>`;
}

function renderAlerts(c) {
  setHtml(
    $("alert-list"),
    c.alert_list.length
      ? c.alert_list.map(
          (a) => html`<li class="alert sev-${a.severity}" data-alert-id="${a.alert_id}" data-rule-id="${a.rule_id}" data-verdict="${a.verdict || ""}">
        <div class="alert-head"><span class="sev-badge">${a.severity}</span><span class="alert-msg">${a.message}</span><span class="when">${fmtTime(a.t_start)}</span></div>
        ${a.evidence ? html`<div class="evidence">“${a.evidence}”</div>` : ""}
        <div class="alert-foot"><span>${a.category}</span><span class="mono">${a.rule_id}</span><span>${a.source}</span></div>
        <div class="verdict">
          <span class="verdict-state">${a.verdict ? `${a.verdict === "confirmed" ? "Confirmed" : "Not a violation"} by ${a.reviewer}${a.comment ? ": " + a.comment : ""}` : "No verdict yet"}</span>
          <input class="verdict-comment" maxlength="2000" placeholder="comment" aria-label="comment" value="${a.comment || ""}">
          <button type="button" class="verdict-confirm" data-verdict="confirmed">Confirmed</button>
          <button type="button" class="verdict-reject" data-verdict="not_a_violation">Not a violation</button>
        </div></li>`,
        )
      : html`<li class="empty">No alerts.</li>`,
  );
}

$("alert-list").addEventListener("click", async (e) => {
  const btn = e.target.closest("button[data-verdict]");
  const li = e.target.closest("li[data-alert-id]");
  if (!btn || !li || !current) return;
  const comment = li.querySelector(".verdict-comment").value.trim();
  btn.disabled = true;
  try {
    const review = await api(`/v1/history/calls/${enc(current.call_id)}/alerts/${enc(li.dataset.alertId)}/verdict`, {
      method: "PUT",
      body: { verdict: btn.dataset.verdict, comment },
    });
    current.alert_list = current.alert_list.map((a) => (a.alert_id === review.alert_id ? review : a));
    renderAlerts(current);
  } catch {
    btn.disabled = false;
  }
});

// ---------------------------------------------------------------------------------------------
// start

const initial = new URLSearchParams(window.location.search);
fillForm(initial);
if (getToken()) {
  if (initial.get("call")) openCall(initial.get("call"));
  else search({ push: false });
}
