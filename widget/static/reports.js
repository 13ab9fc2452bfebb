// Agent and team reports (GET /v1/reports): per agent or team (queue), over days or weeks, as
// inline SVG charts written here (no library). Every bar, segment and figure carries its number in
// data attributes (data-metric, data-bucket, data-value) and links to the calls behind it in the
// review page (review.html?agent=…&since=…&until=…[&category=…&severity=…]). Targets (politeness,
// FCR, first response, end temperature as the satisfaction proxy) are drawn as dashed lines; the page's query string holds the choices (a reload or a shared link keeps them).
import { api, requireToken, withToken, showMe, html, setHtml, fmtNum, getToken } from "./common.js";

requireToken();
const $ = (id) => document.getElementById(id);
for (const a of document.querySelectorAll("a[data-nav]")) a.href = withToken(a.getAttribute("href"));
showMe($("me"));

const r1 = (x) => Math.round(x * 10) / 10;
const FORM_FIELDS = ["group", "period", "since", "until", "target_politeness", "target_fcr", "target_first_response_s", "target_satisfaction"];
const pct = (x) => (x == null ? "–" : `${Math.round(x * 1000) / 10}%`);
const secs = (x) => (x == null ? "–" : `${fmtNum(x, 1)} s`);
const num1 = (x) => (x == null ? "–" : fmtNum(x, 1));
const signed = (x) => (x == null ? "–" : (x > 0 ? "+" : "") + fmtNum(x, 2));

// ---------------------------------------------------------------------------------------------
// form <-> query string

function dayStart(value) {
  const [y, m, d] = value.split("-").map(Number);
  return new Date(y, m - 1, d).getTime() / 1000;
}

function apiParams() {
  const f = $("report-form").elements;
  const p = new URLSearchParams();
  p.set("group", f.group.value);
  p.set("period", f.period.value);
  if (f.since.value) p.set("since", String(dayStart(f.since.value)));
  if (f.until.value) p.set("until", String(dayStart(f.until.value) + 86400));
  if (f.target_politeness.value !== "") p.set("target_politeness", String(Number(f.target_politeness.value) / 100));
  if (f.target_fcr.value !== "") p.set("target_fcr", String(Number(f.target_fcr.value) / 100));
  if (f.target_first_response_s.value !== "") p.set("target_first_response_s", f.target_first_response_s.value);
  if (f.target_satisfaction.value !== "") p.set("target_satisfaction", f.target_satisfaction.value);
  // days begin at the browser's local midnight
  p.set("utc_offset_min", String(-new Date().getTimezoneOffset()));
  return p;
}

function pageParams() {
  const f = $("report-form").elements;
  const p = new URLSearchParams();
  for (const name of FORM_FIELDS) {
    if (f[name].value !== "") p.set(name, f[name].value);
  }
  return p;
}

function fillForm(p) {
  const f = $("report-form").elements;
  for (const name of FORM_FIELDS) {
    if (p.get(name) !== null) f[name].value = p.get(name);
  }
}

// ---------------------------------------------------------------------------------------------
// links to the calls behind a number

let report = null;

function reviewHref(groupKey, bucket, extra = {}) {
  const p = new URLSearchParams();
  if (groupKey !== null) p.set(report.group_by === "agent" ? "agent" : "queue", groupKey);
  const since = bucket ? bucket.start : rangeParam("since");
  const until = bucket ? bucket.end : rangeParam("until");
  if (since != null) p.set("since", String(since));
  if (until != null) p.set("until", String(until));
  for (const [k, v] of Object.entries(extra)) p.set(k, v);
  return withToken(`review.html?${p}`);
}

let lastApiParams = new URLSearchParams();
function rangeParam(name) {
  const v = lastApiParams.get(name);
  return v === null ? null : Number(v);
}

// ---------------------------------------------------------------------------------------------
// charts (inline SVG)

const W = 320;
const H = 150;
const M = { l: 34, r: 8, t: 12, b: 26 };

/**
 * Bars over the buckets of one group for one metric. opts: {max, min, target, better: "high"|"low",
 * fmt, label}. A bar below (or above, for "low") its target is drawn as such.
 */
function barChart(group, metric, opts) {
  const series = group.series;
  const vals = series.map((b) => b.figures[metric]);
  const finite = vals.filter((v) => v != null);
  const target = opts.target;
  const max = opts.max ?? Math.max(1e-9, ...finite, target ?? 0) * 1.15;
  const min = opts.min ?? 0;
  const w = W - M.l - M.r;
  const h = H - M.t - M.b;
  const Y = (v) => r1(M.t + h - ((Math.min(max, Math.max(min, v)) - min) / (max - min)) * h);
  const slot = w / Math.max(1, series.length);
  const bw = Math.max(4, Math.min(36, slot * 0.7));
  const parts = [html`<line class="axis" x1="${M.l}" x2="${M.l}" y1="${M.t}" y2="${M.t + h}"/><line class="axis" x1="${M.l}" x2="${M.l + w}" y1="${Y(min)}" y2="${Y(min)}"/>`];
  for (const v of [min, (min + max) / 2, max]) parts.push(html`<text class="tick" x="${M.l - 3}" y="${Y(v) + 3}" text-anchor="end">${opts.tick(v)}</text>`);
  series.forEach((b, i) => {
    const v = b.figures[metric];
    const x = r1(M.l + i * slot + (slot - bw) / 2);
    const cx = r1(x + bw / 2);
    parts.push(html`<text class="tick" x="${cx}" y="${H - 12}" text-anchor="middle">${b.key.length > 7 ? b.key.slice(5) : b.key}</text>`);
    if (v == null) {
      parts.push(html`<text class="tick" x="${cx}" y="${Y(min) - 3}" text-anchor="middle">n/a</text>`);
      return;
    }
    const below = target != null && (opts.better === "low" ? v > target : v < target);
    const y = Y(v);
    parts.push(html`<a href="${reviewHref(group.key, b)}" class="bar-link"><rect class="col${below ? " below" : ""}" x="${x}" y="${y}" width="${r1(bw)}" height="${r1(Math.max(0.5, Y(min) - y))}" data-metric="${metric}" data-bucket="${b.key}" data-value="${v}" data-calls="${b.figures.calls}"><title>${b.key}: ${opts.fmt(v)} (${b.figures.calls} calls)</title></rect></a>`);
    parts.push(html`<text class="val" x="${cx}" y="${y - 2}" text-anchor="middle">${opts.fmt(v)}</text>`);
  });
  if (target != null) {
    const y = Y(target);
    parts.push(html`<line class="target" x1="${M.l}" x2="${M.l + w}" y1="${y}" y2="${y}" data-metric="${metric}" data-target="${target}"/><text class="target-label" x="${M.l + w}" y="${y - 2}" text-anchor="end">target ${opts.fmt(target)}</text>`);
  }
  return chartBox(opts.label, metric, html`<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${opts.label}" data-chart="${metric}">${parts}</svg>`);
}

/** Customer temperature at the first vs the last reading, two bars a bucket, on -1..1. */
function tempChart(group) {
  const series = group.series;
  const w = W - M.l - M.r;
  const h = H - M.t - M.b;
  const Y = (v) => r1(M.t + h - ((Math.min(1, Math.max(-1, v)) + 1) / 2) * h);
  const slot = w / Math.max(1, series.length);
  const bw = Math.max(3, Math.min(16, slot * 0.35));
  const parts = [html`<line class="axis" x1="${M.l}" x2="${M.l}" y1="${M.t}" y2="${M.t + h}"/><line class="axis" x1="${M.l}" x2="${M.l + w}" y1="${Y(0)}" y2="${Y(0)}"/>`];
  for (const v of [-1, 0, 1]) parts.push(html`<text class="tick" x="${M.l - 3}" y="${Y(v) + 3}" text-anchor="end">${v > 0 ? "+1" : v}</text>`);
  series.forEach((b, i) => {
    const x0 = M.l + i * slot + slot / 2 - bw;
    parts.push(html`<text class="tick" x="${r1(x0 + bw)}" y="${H - 12}" text-anchor="middle">${b.key.length > 7 ? b.key.slice(5) : b.key}</text>`);
    [["temp_start", "start", x0], ["temp_end", "end", x0 + bw]].forEach(([metric, cls, x]) => {
      const v = b.figures[metric];
      if (v == null) return;
      const top = Math.min(Y(v), Y(0));
      parts.push(html`<a href="${reviewHref(group.key, b)}"><rect class="col ${cls}" x="${r1(x)}" y="${top}" width="${r1(bw)}" height="${r1(Math.max(0.5, Math.abs(Y(v) - Y(0))))}" data-metric="${metric}" data-bucket="${b.key}" data-value="${v}"><title>${b.key} ${cls}: ${signed(v)}</title></rect></a>`);
    });
  });
  const target = report.targets.satisfaction;
  if (target != null) {
    const y = Y(target);
    parts.push(html`<line class="target" x1="${M.l}" x2="${M.l + w}" y1="${y}" y2="${y}" data-metric="temp_end" data-target="${target}"/><text class="target-label" x="${M.l + w}" y="${y - 2}" text-anchor="end">end target ${signed(target)}</text>`);
  }
  return chartBox("Customer temperature: start (grey) vs end (blue)", "temperature", html`<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="customer temperature start vs end" data-chart="temperature">${parts}</svg>`);
}

const SEVS = ["fatal", "serious", "general"];

/** Violations of the group over the whole range: a stacked bar per category, by severity. */
function violationsChart(group) {
  const cats = Object.entries(group.figures.violations || {})
    .map(([cat, bySev]) => [cat, bySev, SEVS.reduce((s, k) => s + (bySev[k] || 0), 0)])
    .sort((a, b) => b[2] - a[2]);
  if (!cats.length) return chartBox("Violations by category and severity", "violations", html`<p class="empty" data-chart="violations">No violations.</p>`);
  const rowH = 18;
  const left = 110;
  const h = cats.length * rowH + 8;
  const max = Math.max(...cats.map((c) => c[2]));
  const X = (n) => ((W - left - 30) * n) / max;
  const parts = [];
  cats.forEach(([cat, bySev, total], i) => {
    const y = 4 + i * rowH;
    parts.push(html`<text class="tick" x="${left - 4}" y="${y + 11}" text-anchor="end">${cat.replace(/_/g, " ")}</text>`);
    let x = left;
    for (const sev of SEVS) {
      const n = bySev[sev] || 0;
      if (!n) continue;
      parts.push(html`<a href="${reviewHref(group.key, null, { category: cat, severity: sev })}"><rect class="seg sev-${sev}" x="${r1(x)}" y="${y}" width="${r1(Math.max(1, X(n)))}" height="${rowH - 4}" data-category="${cat}" data-severity="${sev}" data-value="${n}"><title>${cat} · ${sev}: ${n}</title></rect></a>`);
      x += X(n);
    }
    parts.push(html`<text class="val" x="${r1(x + 3)}" y="${y + 11}">${total}</text>`);
  });
  return chartBox("Violations by category and severity (fatal · serious · general)", "violations", html`<svg viewBox="0 0 ${W} ${h}" role="img" aria-label="violations by category and severity" data-chart="violations">${parts}</svg>`);
}

function chartBox(title, name, body) {
  return html`<figure class="rchart" data-chart-box="${name}"><h4>${title}</h4>${body}</figure>`;
}

// ---------------------------------------------------------------------------------------------
// a group: figures and charts

function kpi(name, metric, value, fmt, target, better = "high") {
  const met = target == null || value == null ? "" : (better === "low" ? value <= target : value >= target) ? " met" : " below";
  return html`<div class="kpi${met}" data-metric="${metric}" data-value="${value ?? ""}"><span class="kpi-name">${name}</span><span class="kpi-value">${fmt(value)}</span>${target != null ? html`<small>target ${better === "low" ? "≤" : "≥"} ${fmt(target)}</small>` : ""}</div>`;
}

function groupSection(group, label) {
  const f = group.figures;
  const t = report.targets;
  return html`<section class="report-group" data-group="${group.key ?? ""}">
    <h3>${label} <small><a href="${reviewHref(group.key, null)}" class="group-calls">${f.calls} calls</a></small></h3>
    <div class="kpis">
      ${kpi("QA score", "qa_score", f.qa_score, num1)}
      ${kpi("Politeness", "politeness", f.politeness, pct, t.politeness)}
      ${kpi("FCR (7-day repeat)", "fcr", f.fcr, pct, t.fcr)}
      ${kpi("First response", "first_response_s", f.first_response_s, secs, t.first_response_s, "low")}
      ${kpi("Disclosure", "disclosure", f.disclosure, pct)}
      ${kpi("Handle time", "handle_time_s", f.handle_time_s, secs)}
      ${kpi("Dead air / call", "dead_air_s", f.dead_air_s, secs)}
      ${kpi("Temperature start", "temp_start", f.temp_start, signed)}
      ${kpi("Temperature end", "temp_end", f.temp_end, signed, t.satisfaction)}
      ${kpi("Violations", "violations_total", f.violations_total, (x) => String(x ?? "–"))}
    </div>
    <div class="charts">
      ${barChart(group, "qa_score", { label: "QA score", max: 100, fmt: num1, tick: (v) => Math.round(v) })}
      ${barChart(group, "politeness", { label: "Politeness (calls without a rude remark)", max: 1, fmt: pct, tick: pct, target: t.politeness })}
      ${barChart(group, "fcr", { label: "First-contact resolution (no repeat within 7 days)", max: 1, fmt: pct, tick: pct, target: t.fcr })}
      ${barChart(group, "first_response_s", { label: "First response (mean)", fmt: secs, tick: (v) => Math.round(v), target: t.first_response_s, better: "low" })}
      ${barChart(group, "disclosure", { label: "Disclosure compliance (required steps done)", max: 1, fmt: pct, tick: pct })}
      ${barChart(group, "handle_time_s", { label: "Handle time (mean)", fmt: secs, tick: (v) => Math.round(v) })}
      ${barChart(group, "dead_air_s", { label: "Dead air per call (mean)", fmt: secs, tick: (v) => fmtNum(v, 1) })}
      ${tempChart(group)}
      ${violationsChart(group)}
    </div>
  </section>`;
}

function render() {
  const meta = `${report.overall.calls} calls · per ${report.group_by === "agent" ? "agent" : "team (queue)"} · by ${report.period}${report.truncated ? " · truncated: only the newest 20,000 calls are counted" : ""}`;
  $("report-meta").textContent = meta;
  const f = $("report-form").elements;
  if (f.target_politeness.value === "") f.target_politeness.placeholder = String(Math.round(report.targets.politeness * 100));
  if (f.target_fcr.value === "") f.target_fcr.placeholder = String(Math.round(report.targets.fcr * 100));
  if (f.target_first_response_s.value === "") f.target_first_response_s.placeholder = String(report.targets.first_response_s);
  if (f.target_satisfaction.value === "") f.target_satisfaction.placeholder = String(report.targets.satisfaction);
  const overall = { key: null, figures: report.overall, series: [] };
  const sections = [];
  if (report.groups.length > 1) sections.push(overallSection(overall));
  for (const g of report.groups) sections.push(groupSection(g, `${report.group_by === "agent" ? "Agent" : "Team"} ${g.key || "(none)"}`));
  setHtml($("report"), sections.length ? sections : html`<p class="empty">No stored calls in this range.</p>`);
  $("report").dataset.loaded = String(Date.now());
}

function overallSection(overall) {
  const f = overall.figures;
  const t = report.targets;
  return html`<section class="report-group overall" data-group="*">
    <h3>All ${report.group_by === "agent" ? "agents" : "teams"} <small><a href="${reviewHref(null, null)}">${f.calls} calls</a></small></h3>
    <div class="kpis">
      ${kpi("QA score", "qa_score", f.qa_score, num1)}
      ${kpi("Politeness", "politeness", f.politeness, pct, t.politeness)}
      ${kpi("FCR (7-day repeat)", "fcr", f.fcr, pct, t.fcr)}
      ${kpi("First response", "first_response_s", f.first_response_s, secs, t.first_response_s, "low")}
      ${kpi("Disclosure", "disclosure", f.disclosure, pct)}
      ${kpi("Handle time", "handle_time_s", f.handle_time_s, secs)}
      ${kpi("Dead air / call", "dead_air_s", f.dead_air_s, secs)}
      ${kpi("Violations", "violations_total", f.violations_total, (x) => String(x ?? "–"))}
    </div>
  </section>`;
}

async function load() {
  const params = apiParams();
  lastApiParams = params;
  try {
    report = await api(`/v1/reports?${params}`);
  } catch {
    return;
  }
  render();
}

$("report-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const url = new URL(window.location.href);
  url.search = pageParams().toString();
  window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  load();
});

const initial = new URLSearchParams(window.location.search);
fillForm(initial);
if (initial.get("since") === null) {
  // the last 28 days unless the link says otherwise (a report counts the newest 20,000 calls)
  const d = new Date(Date.now() - 28 * 86400 * 1000);
  $("r-since").value = `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}
if (getToken()) load();
