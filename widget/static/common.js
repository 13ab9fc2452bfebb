// Shared helpers for the agent-assist browser UIs (no build step, no dependencies).
//
// - token handling: `#token=...` in the URL fragment is moved into sessionStorage and removed
//   from the address bar (the fragment never reaches the server or its logs);
// - `api(path, opts)`: fetch with `Authorization: Bearer`, JSON in and out, errors as `ApiError`
//   carrying the server's `detail`; API errors are shown in `#error-banner`;
// - `openStream(path, {onEvent, onOpen, onError, onState})`: EventSource with `?access_token=`,
//   listening to the named SSE events the service sends (`event: <type>`);
// - `html` tagged template that escapes every interpolated value (use `raw()` to opt out),
//   `escapeHtml`, `fmtTime`, `sparkline` and `lineChart` SVG builders.

export const TOKEN_KEY = "agent-assist.token";

/** Every event type of the replay contract (sidecar/kernel/events.py) plus the floor's `call`. */
export const CALL_EVENT_TYPES = [
  "call.started",
  "call.ended",
  "transcript.partial",
  "transcript.final",
  "transcript.redacted",
  "alert",
  "checklist",
  "intent",
  "emotion",
  "suggestion",
  "whisper",
  "barge",
  "score",
];
export const FLOOR_EVENT_TYPES = ["call", "alert"];

export const SEVERITIES = ["fatal", "serious", "general"];
export const SEVERITY_RANK = { fatal: 3, serious: 2, general: 1 };

// ---------------------------------------------------------------------------------------------
// Token

let memoryToken = null; // fallback when sessionStorage is not available (sandboxed iframes)

function storageGet() {
  try {
    return window.sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return memoryToken;
  }
}

export function setToken(token) {
  memoryToken = token || null;
  try {
    if (token) window.sessionStorage.setItem(TOKEN_KEY, token);
    else window.sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage disabled: keep it in memory for this page */
  }
}

export function getToken() {
  return storageGet() || memoryToken;
}

/** Move `#token=...` from the fragment into sessionStorage and strip it from the URL. */
export function initToken() {
  const hash = window.location.hash.replace(/^#/, "");
  if (!hash) return getToken();
  // parsed by hand: URLSearchParams would turn a "+" in a token into a space
  const parts = hash.split("&");
  const at = parts.findIndex((p) => p.startsWith("token="));
  if (at < 0) return getToken();
  let token = parts[at].slice("token=".length);
  try {
    token = decodeURIComponent(token);
  } catch {
    /* not percent-encoded: keep it as it is */
  }
  setToken(token.trim());
  parts.splice(at, 1);
  const rest = parts.join("&");
  const url = window.location.pathname + window.location.search + (rest ? "#" + rest : "");
  try {
    window.history.replaceState(window.history.state, "", url);
  } catch {
    window.location.hash = rest;
  }
  return getToken();
}

/** A link to another UI page that carries the token in the fragment (for new tabs/windows). */
export function withToken(href) {
  const token = getToken();
  if (!token) return href;
  const i = href.indexOf("#");
  const base = i < 0 ? href : href.slice(0, i);
  const rest = (i < 0 ? "" : href.slice(i + 1)).split("&").filter((p) => p && !p.startsWith("token="));
  return base + "#" + ["token=" + encodeURIComponent(token), ...rest].join("&");
}

// ---------------------------------------------------------------------------------------------
// Error banner

function bannerEl() {
  let el = document.getElementById("error-banner");
  if (!el) {
    el = document.createElement("div");
    el.id = "error-banner";
    el.hidden = true;
    document.body.prepend(el);
  }
  el.setAttribute("role", "alert");
  return el;
}

/** Show a message in `#error-banner` (kept until closed or replaced). */
export function showError(message, { status = null, sticky = false } = {}) {
  const el = bannerEl();
  el.replaceChildren();
  el.dataset.status = status == null ? "" : String(status);
  const text = document.createElement("span");
  text.className = "error-text";
  text.textContent = message;
  el.append(text);
  if (status === 401 && !sticky) {
    el.append(tokenForm());
  }
  const close = document.createElement("button");
  close.type = "button";
  close.className = "close";
  close.setAttribute("aria-label", "Close");
  close.textContent = "×";
  close.addEventListener("click", () => clearError());
  el.append(close);
  el.hidden = false;
}

export function clearError() {
  const el = document.getElementById("error-banner");
  if (el) {
    el.hidden = true;
    el.replaceChildren();
    el.dataset.status = "";
  }
}

/** A small form to paste a token (shown with 401s and when no token is known). */
function tokenForm() {
  const form = document.createElement("form");
  form.className = "token-form";
  const input = document.createElement("input");
  input.type = "password";
  input.name = "token";
  input.placeholder = "paste a token";
  input.autocomplete = "off";
  const btn = document.createElement("button");
  btn.type = "submit";
  btn.textContent = "Use token";
  form.append(input, btn);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (input.value.trim()) {
      setToken(input.value.trim());
      window.location.reload();
    }
  });
  return form;
}

/** Call at start-up: when there is no token, say so in the banner (with a field to paste one). */
export function requireToken() {
  const token = initToken();
  if (!token) {
    showError("401 — no access token. Open this page with #token=YOUR_TOKEN at the end of the URL, or paste one:", {
      status: 401,
    });
  }
  return token;
}

// ---------------------------------------------------------------------------------------------
// REST

export class ApiError extends Error {
  constructor(status, detail, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
  }
}

/** A one-line reading of a FastAPI `detail` (string, validation list, or object). */
export function detailText(detail, fallback = "") {
  if (detail == null) return fallback;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((d) => {
        if (typeof d === "string") return d;
        const field = d.field ?? (Array.isArray(d.loc) ? d.loc.filter((x) => x !== "body").join(".") : "");
        const msg = d.message ?? d.msg ?? JSON.stringify(d);
        return field ? `${field}: ${msg}` : msg;
      })
      .join("; ");
  }
  if (typeof detail === "object") {
    if (Array.isArray(detail.problems)) {
      const n = detail.problems.length;
      return `${n} problem${n === 1 ? "" : "s"}: ` + detail.problems.map((p) => `${p.file ?? ""}${p.line ? ":" + p.line : ""} ${p.message ?? ""}`.trim()).join("; ");
    }
    if (detail.message) return String(detail.message);
    return JSON.stringify(detail);
  }
  return String(detail);
}

const STATUS_WORDS = { 400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 409: "Conflict", 422: "Invalid", 429: "Too many requests" };

/**
 * fetch `path` (e.g. "/v1/calls") with the bearer token. `opts.body` objects are sent as JSON.
 * Resolves to the parsed JSON (or null for 204/empty). Non-2xx throws ApiError(status, detail).
 * 401/403 show in `#error-banner` (unless `opts.quiet` is "all"); other errors too unless
 * `opts.quiet` is set or the status is listed in `opts.expect` (e.g. [404, 422] handled by the caller).
 */
export async function api(path, opts = {}) {
  const { body, quiet = false, expect = [], headers = {}, ...rest } = opts;
  const init = { ...rest, headers: { Accept: "application/json", ...headers } };
  const token = getToken();
  if (token) init.headers.Authorization = "Bearer " + token;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    const e = new ApiError(0, null, `Network error: cannot reach the service (${err.message || err})`);
    if (!quiet) showError(e.message, { status: 0 });
    throw e;
  }
  let data = null;
  const text = resp.status === 204 ? "" : await resp.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!resp.ok) {
    const detail = data && typeof data === "object" && "detail" in data ? data.detail : data;
    const word = STATUS_WORDS[resp.status] || resp.statusText || "Error";
    const msg = detailText(detail, word);
    const e = new ApiError(resp.status, detail, msg);
    if ((resp.status === 401 || resp.status === 403) && quiet !== "all") {
      showError(`${resp.status} ${word}: ${msg}`, { status: resp.status });
    } else if (!quiet && !expect.includes(resp.status)) {
      showError(`${resp.status} ${word}: ${msg}`, { status: resp.status });
    }
    throw e;
  }
  return data;
}

// ---------------------------------------------------------------------------------------------
// Server-sent events

/**
 * Follow an SSE endpoint. `onEvent(data, type, messageEvent)` gets each parsed JSON message.
 *
 * Reconnecting: with `resumeParam` (the per-call stream's `?after=`), a dropped connection is
 * reopened here with `?after=<last id seen>` (the browser's own retry would reuse the first URL,
 * whose `after=` the server prefers to Last-Event-ID); without it (the floor) the browser
 * reconnects by itself, sending Last-Event-ID. When the browser gives up (a non-200 answer, e.g.
 * 401/403/404) the endpoint is probed with a normal fetch to learn why: auth errors and 404 go to
 * the banner and stop; anything else is retried with back-off.
 *
 * The server's own `event: error` message (`{"detail", "resync": true}` when this client fell
 * too far behind) reaches `onEvent(data, "error")`; the caller re-reads the state and calls
 * `restart()` (a fresh connection that does not resume).
 * Returns {close(), restart(), get lastId}.
 */
export function openStream(path, { onEvent, onOpen, onError, onState, types = CALL_EVENT_TYPES, resumeParam = "after" } = {}) {
  let es = null;
  let closed = false;
  let lastId = null;
  let attempts = 0;
  let timer = null;

  function buildUrl(withToken = true) {
    const u = new URL(path, window.location.href);
    const token = getToken();
    if (withToken && token) u.searchParams.set("access_token", token);
    if (resumeParam && lastId !== null && lastId !== "") u.searchParams.set(resumeParam, lastId);
    return u;
  }

  const state = (s) => {
    if (onState) onState(s);
  };

  function deliver(e, type) {
    let data;
    try {
      data = JSON.parse(e.data);
    } catch {
      return;
    }
    try {
      onEvent(data, type, e);
    } catch (err) {
      console.error("event handler failed", err);
    }
  }

  function handle(e) {
    if (closed) return;
    if (e.lastEventId) lastId = e.lastEventId;
    let type = e.type;
    if (type === "message") {
      try {
        type = JSON.parse(e.data).type || type;
      } catch {
        /* keep "message" */
      }
    }
    deliver(e, type);
  }

  function schedule(base) {
    attempts += 1;
    const delay = Math.min(30000, base * 2 ** Math.min(attempts - 1, 6));
    state("reconnecting");
    if (timer) window.clearTimeout(timer);
    timer = window.setTimeout(connect, delay);
  }

  function connect() {
    if (closed) return;
    timer = null;
    if (es) es.close();
    state("connecting");
    const source = new EventSource(buildUrl().toString());
    es = source;
    source.onopen = () => {
      if (source !== es) return;
      attempts = 0;
      state("open");
      if (onOpen) onOpen();
    };
    for (const t of types) if (t !== "error") source.addEventListener(t, handle);
    source.addEventListener("message", handle);
    // "error" is both the connection's error and the server's `event: error` message
    source.onerror = (e) => {
      if (closed || source !== es) return;
      if (typeof e.data === "string") {
        deliver(e, "error");
        return;
      }
      if (source.readyState === EventSource.CLOSED) {
        state("closed");
        probe();
      } else if (resumeParam) {
        source.close();
        schedule(1000);
      } else {
        state("reconnecting");
      }
    };
  }

  async function probe() {
    let status = 0;
    let detail = null;
    const ctrl = new AbortController();
    try {
      const headers = { Accept: "text/event-stream" };
      const token = getToken();
      if (token) headers.Authorization = "Bearer " + token;
      const resp = await fetch(buildUrl(false).toString(), { headers, signal: ctrl.signal });
      status = resp.status;
      if (!resp.ok) {
        try {
          detail = (await resp.json()).detail;
        } catch {
          /* not JSON */
        }
      }
      ctrl.abort();
    } catch {
      /* network error or our own abort */
    }
    if (closed) return;
    if (status === 401 || status === 403 || status === 404) {
      const word = STATUS_WORDS[status];
      showError(`${status} ${word}: live updates refused — ${detailText(detail, word)}`, { status });
      state("failed");
      if (onError) onError(new ApiError(status, detail, detailText(detail, word)));
      return;
    }
    if (onError) onError(new ApiError(status, detail, "stream interrupted"));
    schedule(2000);
  }

  connect();
  return {
    close() {
      closed = true;
      if (timer) window.clearTimeout(timer);
      if (es) es.close();
      state("closed");
    },
    /** A fresh connection to the original path (no resume), e.g. after a resync. */
    restart() {
      if (closed) return;
      lastId = null;
      attempts = 0;
      if (timer) window.clearTimeout(timer);
      connect();
    },
    get lastId() {
      return lastId;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// HTML

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "`": "&#96;" };

export function escapeHtml(value) {
  if (value === null || value === undefined) return "";
  return String(value).replace(/[&<>"'`]/g, (c) => ESCAPES[c]);
}

class Raw {
  constructor(s) {
    this.s = s;
  }
  toString() {
    return this.s;
  }
}

/** Mark trusted markup (built by `html` or the SVG builders) so `html` does not escape it. */
export const raw = (s) => (s instanceof Raw ? s : new Raw(String(s)));

function toHtml(v) {
  if (v instanceof Raw) return v.s;
  if (Array.isArray(v)) return v.map(toHtml).join("");
  if (v === null || v === undefined || v === false) return "";
  return escapeHtml(v);
}

/** Tagged template: every interpolated value is escaped unless it is `raw(...)`/`html`...``. */
export function html(strings, ...values) {
  let out = strings[0];
  for (let i = 0; i < values.length; i++) out += toHtml(values[i]) + strings[i + 1];
  return new Raw(out);
}

/** Replace an element's content with `html` markup. */
export function setHtml(el, markup) {
  el.innerHTML = toHtml(markup);
}

/** Parse `html` markup into a single element. */
export function fromHtml(markup) {
  const t = document.createElement("template");
  t.innerHTML = toHtml(markup).trim();
  return t.content.firstElementChild;
}

// ---------------------------------------------------------------------------------------------
// Formatting

/** Seconds as m:ss (mm:ss, or h:mm:ss past an hour). */
export function fmtTime(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(Number(seconds))) return "–";
  let s = Math.max(0, Math.floor(Number(seconds)));
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${String(m).padStart(2, "0")}:${ss}`;
}

/** Epoch seconds as a local date-time string. */
export function fmtDate(epochSeconds) {
  if (!epochSeconds) return "–";
  const d = new Date(Number(epochSeconds) * 1000);
  return d.toLocaleString();
}

export function fmtPct(x) {
  if (x === null || x === undefined || !Number.isFinite(Number(x))) return "–";
  return `${Math.round(Number(x) * 100)}%`;
}

export function fmtNum(x, digits = 2) {
  if (x === null || x === undefined || !Number.isFinite(Number(x))) return "–";
  return Number(x).toFixed(digits);
}

export function humanize(s) {
  return String(s ?? "").replace(/[_-]+/g, " ");
}

/** Split a procedure body into steps: numbered "1. … 2. …" items, else sentences. */
export function splitSteps(body) {
  const text = String(body ?? "").trim();
  if (!text) return [];
  const numbered = /(?:^|\s)(\d{1,2})[.)]\s+/g;
  const marks = [...text.matchAll(numbered)];
  if (marks.length >= 2 && Number(marks[0][1]) === 1) {
    const steps = [];
    for (let i = 0; i < marks.length; i++) {
      const start = marks[i].index + marks[i][0].length;
      const end = i + 1 < marks.length ? marks[i + 1].index : text.length;
      const step = text.slice(start, end).trim();
      if (step) steps.push(step);
    }
    const lead = text.slice(0, marks[0].index).trim();
    return lead ? [lead, ...steps] : steps;
  }
  const lines = text.split(/\n+/).map((l) => l.replace(/^\s*[-*•]\s+/, "").trim()).filter(Boolean);
  if (lines.length > 1) return lines;
  const sentences = text
    .split(/(?<=[.!?])\s+(?=[\p{Lu}\p{Lo}\d"“'(])|(?<=[。！？；])/u)
    .map((s) => s.trim())
    .filter(Boolean);
  return sentences;
}

/** Colour class for a temperature −1..1. */
export function tempClass(t) {
  if (t === null || t === undefined) return "temp-none";
  if (t <= -0.5) return "temp-angry";
  if (t < -0.15) return "temp-negative";
  if (t > 0.15) return "temp-positive";
  return "temp-neutral";
}

// ---------------------------------------------------------------------------------------------
// SVG

const r1 = (x) => Math.round(x * 10) / 10;

/** A small inline SVG sparkline of values in [min, max] (default −1..1), with a zero line. */
export function sparkline(values, { width = 100, height = 24, min = -1, max = 1, label = "temperature trend" } = {}) {
  const vals = (values || []).map(Number).filter((v) => Number.isFinite(v));
  const pad = 2;
  const y = (v) => r1(pad + ((max - Math.min(max, Math.max(min, v))) / (max - min)) * (height - 2 * pad));
  const zero = min < 0 && max > 0 ? html`<line class="zero" x1="0" x2="${width}" y1="${y(0)}" y2="${y(0)}"/>` : "";
  let body = "";
  if (vals.length) {
    const n = vals.length;
    const x = (i) => r1(n === 1 ? width - pad : pad + (i / (n - 1)) * (width - 2 * pad));
    const pts = n === 1 ? `${pad},${y(vals[0])} ${width - pad},${y(vals[0])}` : vals.map((v, i) => `${x(i)},${y(v)}`).join(" ");
    const last = vals[n - 1];
    body = html`<polyline class="line" points="${pts}"/><circle class="dot ${tempClass(last)}" cx="${x(n - 1)}" cy="${y(last)}" r="2"/>`;
  }
  return html`<svg class="sparkline" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${label}" preserveAspectRatio="none">${zero}${body}</svg>`;
}

function niceStep(span, maxTicks) {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
  for (const s of steps) if (span / s <= maxTicks) return s;
  return Math.ceil(span / maxTicks / 3600) * 3600;
}

/**
 * A line chart for the customer's temperature over call time.
 * points: [{t, y, warning?, title?}] (t seconds, y in yMin..yMax).
 */
export function lineChart(points, { width = 380, height = 150, yMin = -1, yMax = 1, label = "customer temperature over call time" } = {}) {
  const m = { l: 30, r: 16, t: 10, b: 20 };
  const pts = (points || []).filter((p) => Number.isFinite(Number(p.t)) && Number.isFinite(Number(p.y)));
  const tMax = Math.max(30, ...pts.map((p) => Number(p.t)));
  const w = width - m.l - m.r;
  const h = height - m.t - m.b;
  const X = (t) => r1(m.l + (Number(t) / tMax) * w);
  const Y = (v) => r1(m.t + ((yMax - Math.min(yMax, Math.max(yMin, Number(v)))) / (yMax - yMin)) * h);
  const parts = [];
  // bands: positive (top) and negative (bottom) halves
  parts.push(html`<rect class="band-pos" x="${m.l}" y="${m.t}" width="${w}" height="${r1(Y(0) - m.t)}"/>`);
  parts.push(html`<rect class="band-neg" x="${m.l}" y="${Y(0)}" width="${w}" height="${r1(m.t + h - Y(0))}"/>`);
  // y axis ticks
  for (const v of [yMax, yMax / 2, 0, yMin / 2, yMin]) {
    parts.push(html`<line class="grid${v === 0 ? " zero" : ""}" x1="${m.l}" x2="${m.l + w}" y1="${Y(v)}" y2="${Y(v)}"/>`);
    parts.push(html`<text class="tick y" x="${m.l - 4}" y="${r1(Y(v) + 3)}" text-anchor="end">${v > 0 ? "+" + v : v}</text>`);
  }
  // x axis ticks
  const step = niceStep(tMax, 6);
  for (let t = 0; t <= tMax + 0.001; t += step) {
    parts.push(html`<line class="xtick" x1="${X(t)}" x2="${X(t)}" y1="${m.t + h}" y2="${m.t + h + 3}"/>`);
    parts.push(html`<text class="tick x" x="${X(t)}" y="${height - 5}" text-anchor="middle">${fmtTime(t)}</text>`);
  }
  parts.push(html`<line class="axis" x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${m.t + h}"/>`);
  parts.push(html`<line class="axis" x1="${m.l}" x2="${m.l + w}" y1="${m.t + h}" y2="${m.t + h}"/>`);
  if (pts.length) {
    const poly = pts.map((p) => `${X(p.t)},${Y(p.y)}`).join(" ");
    parts.push(html`<polyline class="curve" points="${poly}"/>`);
    const recent = pts.slice(-300);
    for (const p of recent) {
      parts.push(html`<circle class="pt ${tempClass(Number(p.y))}" cx="${X(p.t)}" cy="${Y(p.y)}" r="2.2"><title>${fmtTime(p.t)}  ${fmtNum(p.y)}${p.title ? "  " + p.title : ""}</title></circle>`);
    }
    for (const p of pts.filter((q) => q.warning)) {
      const cx = X(p.t);
      const cy = Y(p.y);
      parts.push(
        html`<g class="warning-marker"><path d="M${cx},${r1(cy - 12)} l5,9 h-10 z"/><text x="${cx}" y="${r1(cy - 5)}" text-anchor="middle">!</text><title>Warning at ${fmtTime(p.t)}: temperature falling fast (${fmtNum(p.y)})</title></g>`,
      );
    }
  } else {
    parts.push(html`<text class="empty" x="${m.l + w / 2}" y="${m.t + h / 2 - 6}" text-anchor="middle">no readings yet</text>`);
  }
  return html`<svg class="line-chart" viewBox="0 0 ${width} ${height}" role="img" aria-label="${label}" preserveAspectRatio="xMidYMid meet">${parts}</svg>`;
}

/** A horizontal 0..1 bar as SVG (no inline styles, so it works under a strict CSP). */
export function riskBar(value, { width = 60, height = 8 } = {}) {
  const v = Math.max(0, Math.min(1, Number(value) || 0));
  const cls = v >= 0.7 ? "high" : v >= 0.4 ? "mid" : "low";
  return html`<svg class="riskbar ${cls}" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" aria-hidden="true"><rect class="track" width="${width}" height="${height}" rx="2"/><rect class="fill" width="${r1(v * width)}" height="${height}" rx="2"/></svg>`;
}

// ---------------------------------------------------------------------------------------------
// Misc

/** `GET /v1/me` shown in an element (quietly; 401 still shows in the banner). */
export async function showMe(el) {
  try {
    const me = await api("/v1/me", { quiet: true });
    if (el && me) el.textContent = `${me.name} (${me.role})`;
    return me;
  } catch {
    return null;
  }
}

export function debounce(fn, ms = 250) {
  let t = null;
  return (...args) => {
    window.clearTimeout(t);
    t = window.setTimeout(() => fn(...args), ms);
  };
}

/** Restart a CSS animation class on an element (e.g. a flash). */
export function flash(el, cls = "flash") {
  if (!el) return;
  el.classList.remove(cls);
  void el.offsetWidth; // reflow so the animation runs again
  el.classList.add(cls);
}
