// Supervisor floor: calls ranked by risk, live from /v1/floor/events; a side panel per call.
import {
  api,
  requireToken,
  openStream,
  withToken,
  showMe,
  html,
  setHtml,
  fmtTime,
  fmtNum,
  sparkline,
  riskBar,
  tempClass,
  flash,
  debounce,
  FLOOR_EVENT_TYPES,
  SEVERITIES,
  SEVERITY_RANK,
} from "./common.js";
import { CallView } from "./callview.js";

const token = requireToken();
const $ = (id) => document.getElementById(id);

const tbody = $("calls").querySelector("tbody");
const panel = $("call-panel");
const filterStatus = $("filter-status");
const filterSeverity = $("filter-severity");
const filterFlagged = $("filter-flagged");
const filterText = $("filter-text");

/** call_id -> {s: summary, at: ms when received, tr: row element} */
const calls = new Map();
let view = null;
let floor = null;
let loadSeq = 0;

for (const a of document.querySelectorAll("a[data-nav]")) a.href = withToken(a.getAttribute("href"));

if (token) {
  showMe($("me"));
  loadCalls().then(startFloor);
  loadRecordings();
}

// ---------------------------------------------------------------------------------------------
// the list

async function loadCalls() {
  const mine = ++loadSeq;
  let list;
  try {
    list = await api(`/v1/calls?status=${encodeURIComponent(filterStatus.value || "all")}`);
  } catch {
    return;
  }
  if (mine !== loadSeq || !Array.isArray(list)) return;
  const ids = new Set(list.map((s) => s.call_id));
  for (const [id, c] of calls) {
    if (!ids.has(id)) {
      c.tr.remove();
      calls.delete(id);
    }
  }
  for (const s of list) upsert(s);
  arrange();
}

function upsert(s) {
  if (!s || !s.call_id) return null;
  let c = calls.get(s.call_id);
  if (!c) {
    const tr = document.createElement("tr");
    tr.tabIndex = 0;
    tr.dataset.callId = s.call_id;
    c = { s, at: Date.now(), tr };
    calls.set(s.call_id, c);
  }
  c.s = s;
  c.at = Date.now();
  renderRow(c);
  return c;
}

function duration(c) {
  const base = Number(c.s.duration_s) || 0;
  return c.s.ended ? base : base + (Date.now() - c.at) / 1000;
}

function renderRow(c) {
  const s = c.s;
  const tr = c.tr;
  const a = s.alerts || {};
  const missed = (s.checklist && s.checklist.missed) || 0;
  const worst = SEVERITIES.find((k) => (a[k] || 0) > 0) || "";
  tr.dataset.risk = String(s.risk ?? 0);
  tr.dataset.status = s.ended ? "ended" : "live";
  tr.classList.toggle("ended", !!s.ended);
  tr.classList.toggle("live", !s.ended);
  for (const k of SEVERITIES) tr.classList.toggle(`worst-${k}`, worst === k);
  tr.classList.toggle("selected", panel.dataset.callId === s.call_id);
  const last = s.last_alert;
  setHtml(
    tr,
    html`<td class="col-risk">${riskBar(s.risk)}<span class="risk-num">${fmtNum(s.risk, 2)}</span></td>
      <td class="agent">${s.agent_id || "–"}<div class="sub call-id">${s.call_id}</div></td>
      <td>${s.queue || "–"}</td>
      <td>${s.lang || "–"}</td>
      <td class="num duration">${fmtTime(duration(c))}</td>
      <td class="spark">${sparkline(s.temperatures || [])}<span class="temp ${tempClass(s.temperature)}">${s.temperature != null ? fmtNum(s.temperature) : ""}</span></td>
      <td class="alert-cells" title="${last ? `last: ${last.severity} — ${last.message}` : "no alerts"}">${SEVERITIES.map(
        (k) => html`<span class="count sev-${k}${a[k] ? "" : " zero"}" data-severity="${k}" title="${k}">${a[k] || 0}</span>`,
      )}</td>
      <td class="num missed${missed ? " has-missed" : ""}">${missed}</td>
      <td><span class="status-pill ${s.ended ? "ended" : "live"}">${s.ended ? "ended" : "live"}</span>${s.score != null ? html` <span class="score-chip" title="score">${fmtNum(s.score, 0)}</span>` : ""}</td>`,
  );
}

function matches(s) {
  const st = filterStatus.value;
  if (st === "live" && s.ended) return false;
  if (st === "ended" && !s.ended) return false;
  const a = s.alerts || {};
  const minSev = SEVERITY_RANK[filterSeverity.value] || 0;
  if (minSev && !SEVERITIES.some((k) => SEVERITY_RANK[k] >= minSev && (a[k] || 0) > 0)) return false;
  if (filterFlagged.checked) {
    const anyAlert = SEVERITIES.some((k) => (a[k] || 0) > 0);
    const missed = (s.checklist && s.checklist.missed) || 0;
    if (!anyAlert && !missed) return false;
  }
  const q = filterText.value.trim().toLowerCase();
  if (q) {
    const hay = `${s.agent_id || ""} ${s.queue || ""} ${s.call_id || ""}`.toLowerCase();
    if (!hay.includes(q)) return false;
  }
  return true;
}

/** Rank by risk (then newest first), apply the filters, keep the DOM order in step. */
function arrange() {
  const rows = [...calls.values()].sort((x, y) => (Number(y.s.risk) || 0) - (Number(x.s.risk) || 0) || (Number(y.s.started_at) || 0) - (Number(x.s.started_at) || 0));
  let shown = 0;
  let i = 0;
  for (const c of rows) {
    const ok = matches(c.s);
    c.tr.hidden = !ok;
    if (ok) shown += 1;
    if (tbody.children[i] !== c.tr) tbody.insertBefore(c.tr, tbody.children[i] || null);
    i += 1;
  }
  $("calls-empty").hidden = shown > 0;
  const live = rows.filter((c) => !c.s.ended).length;
  $("call-count").textContent = `${shown} shown · ${live} live`;
}

// durations of live calls tick locally between updates
window.setInterval(() => {
  for (const c of calls.values()) {
    if (c.s.ended) continue;
    const cell = c.tr.querySelector(".duration");
    if (cell) cell.textContent = fmtTime(duration(c));
  }
}, 1000);

filterStatus.addEventListener("change", () => {
  arrange();
  loadCalls();
});
filterSeverity.addEventListener("change", arrange);
filterFlagged.addEventListener("change", arrange);
filterText.addEventListener("input", debounce(arrange, 120));

// ---------------------------------------------------------------------------------------------
// floor stream

function startFloor() {
  let opened = 0;
  floor = openStream("/v1/floor/events", {
    types: FLOOR_EVENT_TYPES,
    resumeParam: null,
    onState: (st) => {
      const el = $("floor-state");
      el.textContent = st === "open" ? "live" : st;
      el.dataset.state = st === "open" ? "live" : st;
    },
    onOpen: () => {
      // after a reconnect, re-read the list: summaries sent while we were away are not replayed
      opened += 1;
      if (opened > 1) loadCalls();
    },
    onEvent: (data, type) => {
      if (type === "error") {
        // fell behind the floor's retained messages: re-read the list, then follow from now on
        if (data && data.resync) {
          loadCalls();
          floor.restart();
        }
        return;
      }
      if (type === "call") {
        upsert(data);
        arrange();
      } else if (type === "alert") {
        const c = calls.get(data.call_id);
        if (c) {
          c.tr.dataset.flash = data.severity || "general";
          flash(c.tr, "flash");
          window.setTimeout(() => {
            if (c.tr.dataset.flash) delete c.tr.dataset.flash;
          }, 3000);
        }
      }
    },
  });
}

// ---------------------------------------------------------------------------------------------
// the side panel

function openCall(id) {
  if (view) view.stop();
  panel.dataset.callId = id;
  panel.hidden = false;
  document.body.classList.add("panel-open");
  for (const c of calls.values()) c.tr.classList.toggle("selected", c.s.call_id === id);
  $("open-agent-view").href = withToken(`agent.html?call=${encodeURIComponent(id)}`);
  $("whisper-text").value = "";
  view = new CallView(panel, id, { feedback: false, fatalBanner: false });
  view.start();
}

function closePanel() {
  if (view) view.stop();
  view = null;
  panel.hidden = true;
  delete panel.dataset.callId;
  document.body.classList.remove("panel-open");
  for (const c of calls.values()) c.tr.classList.remove("selected");
}

tbody.addEventListener("click", (e) => {
  const tr = e.target.closest("tr[data-call-id]");
  if (tr) openCall(tr.dataset.callId);
});
tbody.addEventListener("keydown", (e) => {
  const tr = e.target.closest("tr[data-call-id]");
  if (tr && (e.key === "Enter" || e.key === " ")) {
    e.preventDefault();
    openCall(tr.dataset.callId);
  }
});
$("panel-close").addEventListener("click", closePanel);
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && !panel.hidden && !e.target.closest("input, textarea, select")) closePanel();
});

$("whisper-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const id = panel.dataset.callId;
  const input = $("whisper-text");
  const text = input.value.trim();
  if (!id || !text) return;
  const btn = $("whisper-send");
  btn.disabled = true;
  try {
    const ev = await api(`/v1/calls/${encodeURIComponent(id)}/whisper`, { method: "POST", body: { text } });
    input.value = "";
    if (view && view.callId === id && ev && ev.type) view.apply(ev);
  } catch {
    /* shown in the banner */
  } finally {
    btn.disabled = false;
  }
});

$("barge-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const id = panel.dataset.callId;
  if (!id) return;
  const c = calls.get(id);
  const who = c && c.s.agent_id ? ` (${c.s.agent_id})` : "";
  if (!window.confirm(`Barge in on call ${id}${who}? You will be conferenced into the call.`)) return;
  const btn = $("barge");
  btn.disabled = true;
  try {
    const reason = $("barge-reason").value.trim();
    const ev = await api(`/v1/calls/${encodeURIComponent(id)}/barge`, { method: "POST", body: { reason } });
    $("barge-reason").value = "";
    if (view && view.callId === id && ev && ev.type) view.apply(ev);
  } catch {
    /* shown in the banner */
  } finally {
    btn.disabled = false;
  }
});

// ---------------------------------------------------------------------------------------------
// recorded calls (demos, training)

async function loadRecordings() {
  const sel = $("recording-select");
  try {
    const recs = (await api("/v1/recordings", { quiet: true })) || [];
    if (!recs.length) {
      setHtml(sel, html`<option value="">no recordings</option>`);
      return;
    }
    setHtml(
      sel,
      recs.map((r) => html`<option value="${r.name}">${r.name} (${r.kind || "?"}${r.duration_s != null ? ", " + fmtTime(r.duration_s) : ""})</option>`),
    );
  } catch (err) {
    setHtml(sel, html`<option value="">${err.status === 403 ? "not allowed" : "unavailable"}</option>`);
    $("recording-start").disabled = true;
  }
}

$("recording-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const recording = $("recording-select").value;
  if (!recording) return;
  const body = { recording, realtime: true, call_id: null };
  const agent = $("recording-agent").value.trim();
  const queue = $("recording-queue").value.trim();
  const lang = $("recording-lang").value.trim();
  if (agent) body.agent_id = agent;
  if (queue) body.queue = queue;
  if (lang) body.lang = lang;
  const btn = $("recording-start");
  btn.disabled = true;
  try {
    const res = await api("/v1/calls", { method: "POST", body });
    if (res && res.call_id) {
      openCall(res.call_id);
      window.setTimeout(() => {
        if (!calls.has(res.call_id)) loadCalls();
      }, 1500);
    }
  } catch {
    /* shown in the banner */
  } finally {
    btn.disabled = false;
  }
});
