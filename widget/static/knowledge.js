// Knowledge manager: snippets (edit, publish, history, rollback), rules files, analytics, dry-run.
import {
  api,
  requireToken,
  withToken,
  showMe,
  html,
  setHtml,
  fmtTime,
  fmtDate,
  fmtNum,
  fmtPct,
  debounce,
  detailText,
} from "./common.js";

const token = requireToken();
const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const FORM_FIELDS = ["id", "title", "body", "tags", "lang", "triggers", "status"];

for (const a of document.querySelectorAll("a[data-nav]")) a.href = withToken(a.getAttribute("href"));

// =============================================================================================
// tabs

const tabs = [...document.querySelectorAll('[role="tab"]')];
const loaded = { rules: false };

function showTab(name) {
  const panelName = name === "new" ? "snippets" : name;
  for (const t of tabs) t.setAttribute("aria-selected", String(t.dataset.tab === name));
  for (const p of document.querySelectorAll(".tab-panel")) p.hidden = p.id !== `panel-${panelName}`;
  if (name === "new") newSnippet();
  if (name === "rules" && !loaded.rules && token) loadRules();
  if (name === "analytics" && token) loadAnalytics();
}
for (const t of tabs) t.addEventListener("click", () => showTab(t.dataset.tab));


// =============================================================================================
// snippets: list

const form = $("snippet-form");
const state = { mode: "none", snippet: null, dirty: false };

async function loadList() {
  const params = new URLSearchParams();
  const st = $("snippet-status").value;
  const lang = $("snippet-lang").value.trim();
  const q = $("snippet-q").value.trim();
  if (st) params.set("status", st);
  if (lang) params.set("lang", lang);
  if (q) params.set("q", q);
  let list;
  try {
    list = await api(`/v1/kb/snippets${params.toString() ? "?" + params : ""}`);
  } catch {
    return;
  }
  const ul = $("snippet-list");
  if (!list || !list.length) {
    setHtml(ul, html`<li class="empty">No snippets match.</li>`);
    return;
  }
  setHtml(
    ul,
    list.map(
      (s) => html`<li data-snippet-id="${s.id}" tabindex="0" class="${state.snippet && state.snippet.id === s.id ? "selected" : ""}">
        <div class="title">${s.title}</div>
        <div class="sub"><span class="id">${s.id}</span>
          <span class="badge status-${s.status}">${s.status}</span>
          <span class="lang">${s.lang}</span><span class="ver">v${s.version}</span></div></li>`,
    ),
  );
}

const reloadList = debounce(loadList, 250);
$("snippet-q").addEventListener("input", reloadList);
$("snippet-lang").addEventListener("input", reloadList);
$("snippet-status").addEventListener("change", loadList);
$("snippet-filters").addEventListener("submit", (e) => {
  e.preventDefault();
  loadList();
});

$("snippet-list").addEventListener("click", (e) => {
  const li = e.target.closest("li[data-snippet-id]");
  if (li) openSnippet(li.dataset.snippetId);
});
$("snippet-list").addEventListener("keydown", (e) => {
  const li = e.target.closest("li[data-snippet-id]");
  if (li && e.key === "Enter") openSnippet(li.dataset.snippetId);
});

// =============================================================================================
// snippets: editor

async function openSnippet(id) {
  let s;
  try {
    s = await api(`/v1/kb/snippets/${enc(id)}`);
  } catch {
    return;
  }
  showTab("snippets");
  fillForm(s);
  loadHistory(s.id);
}

function fillForm(s) {
  state.mode = "edit";
  state.snippet = s;
  state.dirty = false;
  form.dataset.snippetId = s.id; // which snippet the form holds (set once its fields are filled)
  form.dataset.version = String(s.version);
  clearFieldErrors();
  const f = form.elements;
  f.id.value = s.id;
  f.id.readOnly = true;
  f.title.value = s.title ?? "";
  f.body.value = s.body ?? "";
  f.tags.value = (s.tags || []).join(", ");
  f.lang.value = s.lang ?? "";
  f.triggers.value = (s.triggers || []).join("\n");
  f.status.value = s.status === "published" ? "published" : "draft";
  $("editor-title").textContent = s.title || s.id;
  setHtml(
    $("snippet-meta"),
    html`<span class="badge status-${s.status}">${s.status}</span> version ${s.version}${s.updated_by ? html` · by ${s.updated_by}` : ""}${s.updated_at ? html` · ${fmtDate(s.updated_at)}` : ""}`,
  );
  $("publish").disabled = false;
  $("delete").disabled = false;
  $("save-state").textContent = "";
  for (const li of $("snippet-list").querySelectorAll("li[data-snippet-id]")) li.classList.toggle("selected", li.dataset.snippetId === s.id);
}

function newSnippet() {
  state.mode = "new";
  state.snippet = null;
  state.dirty = false;
  delete form.dataset.snippetId;
  delete form.dataset.version;
  clearFieldErrors();
  form.reset();
  const f = form.elements;
  f.id.readOnly = false;
  f.lang.value = "en";
  f.status.value = "draft";
  $("editor-title").textContent = "New snippet";
  $("snippet-meta").textContent = "Not saved yet.";
  $("publish").disabled = true;
  $("delete").disabled = true;
  $("save-state").textContent = "";
  $("history").replaceChildren();
  for (const li of $("snippet-list").querySelectorAll("li.selected")) li.classList.remove("selected");
  f.id.focus();
}

function splitList(text, sep) {
  return String(text || "")
    .split(sep)
    .map((x) => x.trim())
    .filter(Boolean);
}

/** The form as a snippet object (for PUT, or for a dry-run). */
function formSnippet() {
  const f = form.elements;
  return {
    id: f.id.value.trim(),
    title: f.title.value.trim(),
    body: f.body.value.trim(),
    tags: splitList(f.tags.value, ","),
    lang: f.lang.value.trim(),
    triggers: splitList(f.triggers.value, /\r?\n/),
    status: f.status.value,
  };
}

form.addEventListener("input", () => {
  if (state.mode === "none") return;
  state.dirty = true;
  $("save-state").textContent = "unsaved changes";
});

// ---- field errors (422 `detail: [{field, message}]`, or FastAPI's `[{loc, msg}]`)

function clearFieldErrors() {
  for (const el of form.querySelectorAll(".field-error")) el.remove();
  for (const el of form.querySelectorAll('[aria-invalid="true"]')) el.removeAttribute("aria-invalid");
}

function showFieldError(field, message) {
  const name = FORM_FIELDS.includes(field) ? field : "_form";
  const span = document.createElement("span");
  span.className = "field-error";
  span.dataset.field = field || "_form";
  span.id = `err-${field || "form"}-${form.querySelectorAll(".field-error").length}`;
  span.textContent = name === "_form" && field && field !== "_form" ? `${field}: ${message}` : message;
  if (name === "_form") {
    form.querySelector(".buttons").before(span);
    return;
  }
  const input = form.elements[name];
  input.setAttribute("aria-invalid", "true");
  input.setAttribute("aria-describedby", span.id);
  input.closest(".field").append(span);
}

function fieldOf(d) {
  if (d.field) return String(d.field);
  if (Array.isArray(d.loc)) {
    const parts = d.loc.filter((x) => x !== "body" && typeof x === "string");
    return parts[parts.length - 1] || "_form";
  }
  return "_form";
}

function showValidation(detail) {
  if (Array.isArray(detail)) {
    for (const d of detail) {
      if (typeof d === "string") showFieldError("_form", d);
      else showFieldError(fieldOf(d), d.message ?? d.msg ?? JSON.stringify(d));
    }
  } else {
    showFieldError("_form", detailText(detail, "invalid"));
  }
  const first = form.querySelector('[aria-invalid="true"]');
  if (first) first.focus();
}

// ---- save / publish / delete

async function save(status) {
  clearFieldErrors();
  const s = formSnippet();
  s.status = status;
  if (!s.id) return showFieldError("id", "An id is required.");
  if (!ID_PATTERN.test(s.id)) return showFieldError("id", "Letters, digits, '.', '_' and '-' only (starting with a letter or digit), at most 128.");
  if (state.mode === "new") {
    try {
      await api(`/v1/kb/snippets/${enc(s.id)}`, { expect: [404], quiet: true });
      return showFieldError("id", "A snippet with this id exists already: pick another id, or open it from the list.");
    } catch (err) {
      if (err.status !== 404) {
        if (err.status !== 401 && err.status !== 403) showFieldError("_form", err.message);
        return;
      }
    }
  }
  const { id, ...body } = s;
  setBusy(true);
  try {
    const saved = await api(`/v1/kb/snippets/${enc(id)}`, { method: "PUT", body, expect: [422] });
    fillForm(saved);
    $("save-state").textContent = `Saved v${saved.version} (${saved.status}).`;
    loadList();
    loadHistory(saved.id);
  } catch (err) {
    if (err.status === 422) showValidation(err.detail);
  } finally {
    setBusy(false);
  }
}

function setBusy(busy) {
  for (const id of ["save-draft", "save-publish", "publish", "delete"]) {
    const needsSnippet = id === "publish" || id === "delete";
    $(id).disabled = busy || (needsSnippet && !state.snippet);
  }
}

// Enter in a field does not save (every save is a new version): only the buttons do.
form.addEventListener("submit", (e) => e.preventDefault());
$("save-draft").addEventListener("click", () => {
  if (state.mode === "none") newSnippetFromEmptyForm();
  save("draft");
});
$("save-publish").addEventListener("click", () => {
  if (state.mode === "none") newSnippetFromEmptyForm();
  save("published");
});

/** Typing into the form before choosing a snippet is a new snippet. */
function newSnippetFromEmptyForm() {
  state.mode = "new";
  form.elements.id.readOnly = false;
}

$("publish").addEventListener("click", async () => {
  if (!state.snippet) return;
  clearFieldErrors();
  if (state.dirty) $("save-state").textContent = "Unsaved edits were not published (use Save & publish).";
  try {
    const s = await api(`/v1/kb/snippets/${enc(state.snippet.id)}/publish`, { method: "POST", expect: [422] });
    const note = state.dirty ? $("save-state").textContent : "";
    fillForm(s);
    $("save-state").textContent = note || `Published v${s.version}.`;
    loadList();
    loadHistory(s.id);
  } catch (err) {
    if (err.status === 422) showValidation(err.detail);
  }
});

$("delete").addEventListener("click", async () => {
  if (!state.snippet) return;
  const id = state.snippet.id;
  if (!window.confirm(`Delete snippet "${id}"? Live calls stop suggesting it at once.`)) return;
  try {
    await api(`/v1/kb/snippets/${enc(id)}`, { method: "DELETE" });
    newSnippet();
    state.mode = "none";
    $("editor-title").textContent = "Select a snippet";
    $("snippet-meta").textContent = `Deleted "${id}".`;
    loadList();
  } catch {
    /* banner */
  }
});

// ---- history and rollback

async function loadHistory(id) {
  let versions;
  try {
    versions = await api(`/v1/kb/snippets/${enc(id)}/history`);
  } catch {
    return;
  }
  if (!state.snippet || state.snippet.id !== id) return;
  const current = state.snippet.version;
  const list = (versions || []).slice().sort((a, b) => Number(b.version) - Number(a.version));
  setHtml(
    $("history"),
    list.map(
      (v) => html`<li data-version="${v.version}" class="${v.version === current ? "current" : ""}">
        <div class="hist-head"><strong>v${v.version}</strong>
          <span class="badge status-${v.status}">${v.status}</span>
          <span class="sub">${v.updated_by || ""} ${v.updated_at ? "· " + fmtDate(v.updated_at) : ""}</span>
          ${v.version === current ? html`<span class="current-tag">current</span>` : ""}
          <button type="button" class="rollback" data-version="${v.version}" ${v.version === current ? html`disabled title="this is the current version"` : ""}>Rollback</button></div>
        <details><summary>${v.title}</summary><pre class="hist-body">${v.body}</pre>
          <div class="sub">tags: ${(v.tags || []).join(", ")} · lang: ${v.lang}${v.triggers && v.triggers.length ? " · triggers: " + v.triggers.join(" | ") : ""}</div></details></li>`,
    ),
  );
}

$("history").addEventListener("click", async (e) => {
  const btn = e.target.closest("button.rollback");
  if (!btn || !state.snippet) return;
  const version = Number(btn.dataset.version);
  btn.disabled = true;
  try {
    const s = await api(`/v1/kb/snippets/${enc(state.snippet.id)}/rollback`, { method: "POST", body: { version } });
    fillForm(s);
    $("save-state").textContent = `Rolled back to v${version} (now v${s.version}).`;
    loadList();
    loadHistory(s.id);
  } catch {
    btn.disabled = false;
  }
});

// =============================================================================================
// rules

const rules = { version: "", files: new Map(), current: null, problems: [] };
const editor = $("rules-editor");
const textarea = editor.querySelector("textarea");
const gutter = editor.querySelector(".gutter");
const marks = editor.querySelector(".code-marks");
const LINE_H = 18;
const PAD = 8;

async function loadRules() {
  let data;
  try {
    data = await api("/v1/rules");
  } catch {
    return;
  }
  loaded.rules = true;
  rules.version = data.version || "";
  rules.files = new Map((data.files || []).map((f) => [f.name, { original: f.text ?? "", text: f.text ?? "", size: f.size }]));
  rules.problems = [];
  renderSummary(data.summary, data.version);
  const first = rules.current && rules.files.has(rules.current) ? rules.current : (data.files || [])[0]?.name;
  renderFileList();
  if (first) selectFile(first);
  renderProblems();
}

function renderSummary(summary, version) {
  const s = summary || {};
  setHtml(
    $("rules-summary"),
    html`${version ? html`version <code>${String(version).slice(0, 12)}</code><br>` : ""}${Object.entries(s).map(([k, v]) => html`<span class="stat">${v} ${k}</span> `)}`,
  );
}

function renderFileList() {
  const counts = new Map();
  for (const p of rules.problems) counts.set(p.file, (counts.get(p.file) || 0) + 1);
  setHtml(
    $("rules-file-list"),
    [...rules.files.entries()].map(
      ([name, f]) => html`<li data-file="${name}" tabindex="0" class="${[name === rules.current ? "selected" : "", f.text !== f.original ? "dirty" : ""].join(" ")}">
        <span class="name">${name}</span>${f.text !== f.original ? html`<span class="dirty-dot" title="modified">●</span>` : ""}
        ${counts.get(name) ? html`<span class="problem-count" title="problems">${counts.get(name)}</span>` : ""}</li>`,
    ),
  );
}

function selectFile(name) {
  const f = rules.files.get(name);
  if (!f) return;
  rules.current = name;
  textarea.value = f.text;
  $("rules-current").textContent = name;
  editor.scrollTop = 0;
  textarea.scrollLeft = 0;
  updateEditor();
  renderFileList();
}

function updateEditor() {
  const f = rules.files.get(rules.current);
  const lines = textarea.value.split("\n").length;
  let nums = "";
  for (let i = 1; i <= lines; i++) nums += i + "\n";
  gutter.textContent = nums;
  textarea.style.height = "auto";
  textarea.style.height = Math.max(textarea.scrollHeight, lines * LINE_H + 2 * PAD) + LINE_H + "px";
  $("rules-dirty").hidden = !f || f.text === f.original;
  // problem lines of this file
  marks.replaceChildren();
  for (const p of rules.problems) {
    if (p.file !== rules.current || !p.line) continue;
    const m = document.createElement("div");
    m.className = "mark";
    m.dataset.line = String(p.line);
    m.style.top = PAD + (Number(p.line) - 1) * LINE_H + "px";
    m.title = p.message || "";
    marks.append(m);
  }
}

textarea.addEventListener("input", () => {
  const f = rules.files.get(rules.current);
  if (!f) return;
  const wasDirty = f.text !== f.original;
  f.text = textarea.value;
  updateEditor();
  if (wasDirty !== (f.text !== f.original)) renderFileList();
});
textarea.addEventListener("keydown", (e) => {
  // Tab inserts two spaces (YAML has no tabs)
  if (e.key === "Tab" && !e.shiftKey && !e.ctrlKey && !e.metaKey) {
    e.preventDefault();
    const { selectionStart: a, selectionEnd: b } = textarea;
    textarea.setRangeText("  ", a, b, "end");
    textarea.dispatchEvent(new Event("input"));
  }
});

$("rules-file-list").addEventListener("click", (e) => {
  const li = e.target.closest("li[data-file]");
  if (li) selectFile(li.dataset.file);
});
$("rules-file-list").addEventListener("keydown", (e) => {
  const li = e.target.closest("li[data-file]");
  if (li && e.key === "Enter") selectFile(li.dataset.file);
});

$("rules-revert").addEventListener("click", () => {
  const f = rules.files.get(rules.current);
  if (!f) return;
  f.text = f.original;
  selectFile(rules.current);
});

/** The files to send: the modified ones, or every file when nothing was modified. */
function changedFiles() {
  const out = {};
  for (const [name, f] of rules.files) if (f.text !== f.original) out[name] = f.text;
  if (!Object.keys(out).length) for (const [name, f] of rules.files) out[name] = f.text;
  return out;
}

function setRulesResult(text, ok) {
  const el = $("rules-result");
  el.textContent = text;
  el.className = `result-line ${ok ? "ok" : "bad"}`;
}

function summaryText(summary) {
  return Object.entries(summary || {})
    .map(([k, v]) => `${v} ${k}`)
    .join(", ");
}

$("rules-validate").addEventListener("click", async () => {
  const btn = $("rules-validate");
  btn.disabled = true;
  try {
    const res = await api("/v1/rules/validate", { method: "POST", body: { files: changedFiles() }, expect: [422] });
    rules.problems = res.problems || [];
    setRulesResult(res.ok ? `Valid${res.summary ? ": " + summaryText(res.summary) : ""}.` : `${rules.problems.length} problem(s).`, !!res.ok);
  } catch (err) {
    if (err.status === 422) {
      rules.problems = (err.detail && err.detail.problems) || [];
      setRulesResult(rules.problems.length ? `${rules.problems.length} problem(s).` : err.message, false);
    }
  } finally {
    btn.disabled = false;
    renderProblems();
  }
});

$("rules-publish").addEventListener("click", async () => {
  const btn = $("rules-publish");
  btn.disabled = true;
  const files = changedFiles();
  try {
    const res = await api("/v1/rules/publish", { method: "POST", body: { files }, expect: [422] });
    rules.problems = [];
    for (const name of Object.keys(files)) {
      const f = rules.files.get(name);
      if (f) f.original = files[name];
    }
    rules.version = res.version || rules.version;
    renderSummary(res.summary, res.version);
    setRulesResult(`Published version ${String(res.version || "").slice(0, 12)}${res.summary ? ": " + summaryText(res.summary) : ""}. Live calls pick it up at their next utterance.`, true);
    renderFileList();
    updateEditor();
  } catch (err) {
    if (err.status === 422) {
      rules.problems = (err.detail && err.detail.problems) || [];
      setRulesResult(`Not published: ${rules.problems.length ? rules.problems.length + " problem(s)." : err.message}`, false);
    }
  } finally {
    btn.disabled = false;
    renderProblems();
  }
});

function renderProblems() {
  setHtml(
    $("rules-problems"),
    rules.problems.map(
      (p) => html`<li data-file="${p.file ?? ""}" data-line="${p.line ?? 0}" tabindex="0">
        <span class="loc">${p.file ?? ""}${p.line ? ":" + p.line : ""}</span> <span class="msg">${p.message}</span></li>`,
    ),
  );
  renderFileList();
  updateEditor();
}

function goToProblem(file, line) {
  if (file && rules.files.has(file) && file !== rules.current) selectFile(file);
  if (!line) return;
  const lines = textarea.value.split("\n");
  const n = Math.min(Math.max(1, line), lines.length);
  let start = 0;
  for (let i = 0; i < n - 1; i++) start += lines[i].length + 1;
  const end = start + lines[n - 1].length;
  textarea.focus({ preventScroll: true });
  textarea.setSelectionRange(start, end);
  editor.scrollTop = Math.max(0, PAD + (n - 1) * LINE_H - editor.clientHeight / 3);
  const m = marks.querySelector(`.mark[data-line="${n}"]`);
  if (m) {
    m.classList.remove("flash");
    void m.offsetWidth;
    m.classList.add("flash");
  }
}

$("rules-problems").addEventListener("click", (e) => {
  const li = e.target.closest("li[data-file]");
  if (li) goToProblem(li.dataset.file, Number(li.dataset.line));
});
$("rules-problems").addEventListener("keydown", (e) => {
  const li = e.target.closest("li[data-file]");
  if (li && e.key === "Enter") goToProblem(li.dataset.file, Number(li.dataset.line));
});

// =============================================================================================
// analytics

let analytics = [];
let sortKey = "shown";
let sortDesc = true;

async function loadAnalytics() {
  try {
    analytics = (await api("/v1/kb/analytics")) || [];
  } catch {
    return;
  }
  for (const r of analytics) {
    if (r.helpful_rate === undefined) r.helpful_rate = r.shown ? (r.helpful || 0) / r.shown : null;
  }
  renderAnalytics();
  loadAudit();
}

function renderAnalytics() {
  const rows = analytics.slice().sort((a, b) => {
    const x = a[sortKey];
    const y = b[sortKey];
    const c = typeof x === "string" || typeof y === "string" ? String(x ?? "").localeCompare(String(y ?? "")) : (Number(x) || 0) - (Number(y) || 0);
    return sortDesc ? -c : c;
  });
  const tbody = $("analytics").querySelector("tbody");
  if (!rows.length) {
    setHtml(tbody, html`<tr class="empty"><td colspan="8">No feedback yet.</td></tr>`);
    return;
  }
  setHtml(
    tbody,
    rows.map(
      (r) => html`<tr data-snippet-id="${r.snippet_id}" tabindex="0" title="open in the editor">
        <td><div>${r.title || r.snippet_id}</div><div class="sub">${r.snippet_id}</div></td>
        <td class="num">${r.shown ?? 0}</td><td class="num">${r.used ?? 0}</td><td class="num">${r.dismissed ?? 0}</td><td class="num">${r.helpful ?? 0}</td>
        <td class="num">${fmtPct(r.use_rate)}</td><td class="num">${fmtPct(r.dismiss_rate)}</td><td class="num">${fmtPct(r.helpful_rate)}</td></tr>`,
    ),
  );
  for (const th of $("analytics").querySelectorAll("th[data-sort]")) {
    th.setAttribute("aria-sort", th.dataset.sort === sortKey ? (sortDesc ? "descending" : "ascending") : "none");
  }
}

$("analytics").querySelector("thead").addEventListener("click", (e) => {
  const th = e.target.closest("th[data-sort]");
  if (!th) return;
  if (sortKey === th.dataset.sort) sortDesc = !sortDesc;
  else {
    sortKey = th.dataset.sort;
    sortDesc = sortKey !== "title";
  }
  renderAnalytics();
});
$("analytics").querySelector("tbody").addEventListener("click", (e) => {
  const tr = e.target.closest("tr[data-snippet-id]");
  if (tr) openSnippet(tr.dataset.snippetId);
});
$("analytics-refresh").addEventListener("click", loadAnalytics);

async function loadAudit() {
  let entries;
  try {
    entries = await api("/v1/kb/audit?limit=100", { quiet: "all" }); // optional extra: never a banner
  } catch {
    return;
  }
  setHtml(
    $("audit"),
    (entries || []).map((a) => {
      if (typeof a !== "object" || a === null) return html`<li>${String(a)}</li>`;
      const when = a.at ?? a.ts ?? a.time ?? a.timestamp ?? a.updated_at;
      const who = a.by ?? a.user ?? a.actor ?? a.updated_by ?? a.name;
      const what = a.action ?? a.event ?? a.kind ?? "";
      const id = a.snippet_id ?? a.id ?? "";
      const ver = a.version != null ? ` v${a.version}` : "";
      return html`<li><span class="sub">${when ? fmtDate(when) : ""}</span> <strong>${who || ""}</strong> ${what} <code>${id}${ver}</code></li>`;
    }),
  );
}

// =============================================================================================
// dry-run

function snippetForTry(s) {
  const out = { id: s.id, title: s.title, body: s.body, tags: s.tags, lang: s.lang };
  if (s.triggers && s.triggers.length) out.triggers = s.triggers;
  return out;
}

$("dryrun-insert-current").addEventListener("click", () => {
  const s = formSnippet();
  const errs = $("dryrun-errors");
  errs.replaceChildren();
  if (!s.id || !s.title) {
    setHtml(errs, html`<li>Open or write a snippet in the editor first.</li>`);
    return;
  }
  const input = $("dryrun-input");
  const line = JSON.stringify(snippetForTry(s));
  input.value = input.value.trim() ? input.value.trimEnd() + "\n" + line : line;
});

function parseJsonl(text) {
  const snippets = [];
  const errors = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (!line.trim()) return;
    try {
      const obj = JSON.parse(line);
      if (!obj || typeof obj !== "object" || Array.isArray(obj)) errors.push({ line: i + 1, message: "not a JSON object" });
      else snippets.push(obj);
    } catch (err) {
      errors.push({ line: i + 1, message: err.message });
    }
  });
  return { snippets, errors };
}

$("dryrun-run").addEventListener("click", async () => {
  const errs = $("dryrun-errors");
  const out = $("dryrun-results");
  errs.replaceChildren();
  const text = $("dryrun-input").value;
  let snippets;
  if (text.trim()) {
    const parsed = parseJsonl(text);
    if (parsed.errors.length) {
      setHtml(errs, parsed.errors.map((e) => html`<li data-line="${e.line}">line ${e.line}: ${e.message}</li>`));
      return;
    }
    snippets = parsed.snippets;
  } else {
    const s = formSnippet();
    if (!s.id || !s.title || !s.body) {
      setHtml(errs, html`<li>Paste snippets (one JSON object a line), or open a snippet in the editor to try it.</li>`);
      return;
    }
    snippets = [snippetForTry(s)];
  }
  const callNames = splitList($("dryrun-calls").value, ",");
  const btn = $("dryrun-run");
  btn.disabled = true;
  out.setAttribute("aria-busy", "true");
  setHtml(out, html`<p class="hint">Running over the recorded calls…</p>`);
  try {
    const report = await api("/v1/kb/try", { method: "POST", body: { snippets, calls: callNames.length ? callNames : null }, expect: [422] });
    renderDryrun(report || {}, snippets);
  } catch (err) {
    out.replaceChildren();
    if (err.status === 422) {
      const items = Array.isArray(err.detail) ? err.detail.map((d) => (typeof d === "string" ? d : `${fieldOf(d)}: ${d.message ?? d.msg}`)) : [detailText(err.detail, err.message)];
      setHtml(errs, items.map((m) => html`<li>${m}</li>`));
    }
  } finally {
    btn.disabled = false;
    out.removeAttribute("aria-busy");
  }
});

function renderDryrun(report, snippets) {
  const calls = report.calls || [];
  const totals = (report.totals || []).slice().sort((a, b) => (b.count || 0) - (a.count || 0));
  const never = report.never_fired || [];
  const firingsTotal = calls.reduce((n, c) => n + (c.firings || []).length, 0);
  setHtml(
    $("dryrun-results"),
    html`<p class="result-line">${snippets.length} snippet(s) over ${calls.length} call(s): ${firingsTotal} firing(s).</p>
    <div class="dryrun-grid">
      <section class="totals"><h3>Totals</h3>
        ${totals.length
          ? html`<table class="data-table"><thead><tr><th>Snippet</th><th class="num">Firings</th></tr></thead><tbody>
            ${totals.map((t) => html`<tr data-snippet-id="${t.snippet_id}"><td>${t.title || t.snippet_id}<div class="sub">${t.snippet_id}</div></td><td class="num">${t.count}</td></tr>`)}</tbody></table>`
          : html`<p class="empty">Nothing fired.</p>`}
      </section>
      <section class="never"><h3>Never fired</h3>
        ${never.length ? html`<ul class="never-fired">${never.map((id) => html`<li data-snippet-id="${id}">${id}</li>`)}</ul>` : html`<p class="empty">Every snippet fired at least once.</p>`}
      </section>
    </div>
    <h3>Per call</h3>
    ${calls.map(
      (c) => html`<details class="dryrun-call" data-call="${c.call}" ${(c.firings || []).length ? "open" : ""}>
        <summary><strong>${c.call}</strong> — ${(c.firings || []).length} firing(s)</summary>
        ${(c.firings || []).length
          ? html`<table class="data-table"><thead><tr><th>Time</th><th>Snippet</th><th class="num">Score</th><th>Reason</th><th>Excerpt</th></tr></thead><tbody>
            ${c.firings.map(
              (f) => html`<tr data-snippet-id="${f.snippet_id}"><td class="num">${fmtTime(f.t_s)}</td><td>${f.title || f.snippet_id}<div class="sub">${f.snippet_id}</div></td>
                <td class="num">${fmtNum(f.score, 2)}</td><td>${f.reason}</td><td class="excerpt">${f.excerpt}</td></tr>`,
            )}</tbody></table>`
          : ""}
      </details>`,
    )}`,
  );
}

// =============================================================================================
// start

$("publish").disabled = true;
$("delete").disabled = true;

if (token) {
  showMe($("me"));
  loadList();
}
