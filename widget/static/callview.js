// One call, rendered live: used by the agent widget (agent.js) and the supervisor's side panel.
//
// Load: GET /v1/calls/{id} renders the state so far, then /v1/calls/{id}/events?after=<last_seq>
// follows it (so nothing is duplicated; events are de-duplicated by seq anyway).
// Elements are looked up by id inside `root`; any that are missing are simply not rendered:
//   #call-status #call-meta #conn-state #transcript #alerts #alert-counts #fatal-banner
//   #suggestions #checklist #temperature #temperature-now #whispers #barge-notice #intents #score

import {
  api,
  openStream,
  html,
  setHtml,
  fromHtml,
  fmtTime,
  fmtNum,
  humanize,
  splitSteps,
  lineChart,
  tempClass,
  flash,
  SEVERITIES,
} from "./common.js";

const CHECK_ICONS = { due: "◷", done: "✓", missed: "✗" };
const CHANNEL_LABEL = { agent: "Agent", customer: "Customer" };

/** A summary list item may be a flat record or a whole Event: give back {seq, t_end, ...payload}. */
function flat(item) {
  if (item && typeof item === "object" && item.payload && typeof item.payload === "object" && "type" in item) {
    return { seq: item.seq, t_start: item.t_start, t_end: item.t_end, channel: item.channel, ...item.payload };
  }
  return item || {};
}

function ackKey(callId) {
  return `agent-assist.ack.${callId}`;
}
function shownKey(callId) {
  return `agent-assist.shown.${callId}`;
}
function loadSet(key) {
  try {
    return new Set(JSON.parse(window.sessionStorage.getItem(key) || "[]"));
  } catch {
    return new Set();
  }
}
function saveSet(key, set) {
  try {
    window.sessionStorage.setItem(key, JSON.stringify([...set].slice(-500)));
  } catch {
    /* ignore */
  }
}

export class CallView {
  /**
   * @param {ParentNode} root where the elements live (document, or the supervisor's panel)
   * @param {string} callId
   * @param {{feedback?: boolean, fatalBanner?: boolean, onSummary?: Function, onEvent?: Function}} opts
   */
  constructor(root, callId, opts = {}) {
    this.root = root;
    this.callId = callId;
    this.opts = { feedback: true, fatalBanner: true, ...opts };
    this.baseSeq = -1;
    this.seen = new Set();
    this.stream = null;
    this.ended = false;
    this.summary = null;
    this.emotion = []; // {t, y, warning, title}
    this.checklist = new Map();
    this.alerts = [];
    this.intents = new Map();
    this.pendingFatal = [];
    this.acked = loadSet(ackKey(callId));
    this.shown = loadSet(shownKey(callId));
    this.retryTimer = null;
    this.stopped = false;
    this.el = (id) => (root.querySelector ? root.querySelector("#" + id) : document.getElementById(id));
    this.bindUi();
    this.reset();
  }

  // -------------------------------------------------------------------------------------------
  // lifecycle

  async start() {
    this.setConn("loading");
    let summary;
    try {
      summary = await api(`/v1/calls/${encodeURIComponent(this.callId)}`, { expect: [404] });
    } catch (err) {
      if (this.stopped) return;
      if (err.status === 404) {
        // The call may not have started yet (the softphone can open the widget while ringing).
        this.setConn("waiting for the call…");
        this.retryTimer = window.setTimeout(() => this.start(), 3000);
      } else {
        this.setConn("failed");
      }
      return;
    }
    if (this.stopped) return;
    this.loadSummary(summary);
    if (!this.ended) this.follow();
    else this.setConn("");
  }

  follow() {
    const after = this.baseSeq >= 0 ? `?after=${this.baseSeq}` : "";
    this.stream = openStream(`/v1/calls/${encodeURIComponent(this.callId)}/events${after}`, {
      onEvent: (ev, type) => (type === "error" ? this.streamError(ev) : this.apply(ev)),
      onState: (s) => this.setConn(s === "open" ? "live" : s),
    });
  }

  /** The server's `event: error`: with `resync`, this client fell behind: re-read and follow again. */
  streamError(data) {
    console.warn("call stream:", data && data.detail);
    if (!data || !data.resync || this.stopped) return;
    if (this.stream) this.stream.close();
    this.stream = null;
    this.seen.clear();
    this.pendingFatal = [];
    this.start();
  }

  stop() {
    this.stopped = true;
    if (this.retryTimer) window.clearTimeout(this.retryTimer);
    if (this.stream) this.stream.close();
    this.stream = null;
  }

  setConn(text) {
    const el = this.el("conn-state");
    if (el) {
      el.textContent = text;
      el.dataset.state = text;
    }
  }

  // -------------------------------------------------------------------------------------------
  // summary (GET /v1/calls/{id})

  loadSummary(s) {
    this.summary = s;
    this.baseSeq = Number.isFinite(Number(s.last_seq)) ? Number(s.last_seq) : -1;
    this.ended = !!s.ended;
    this.renderMeta(s);
    this.setStatus(s.ended ? "ended" : "live");

    const tr = this.el("transcript");
    if (tr) {
      tr.replaceChildren();
      for (const f of s.transcript || []) this.addFinal(flat(f));
    }
    const al = this.el("alerts");
    if (al) al.replaceChildren();
    this.alerts = [];
    for (const a of s.alerts || []) this.addAlert(flat(a), { live: false });

    this.checklist.clear();
    const cl = s.checklist && typeof s.checklist === "object" && !Array.isArray(s.checklist) ? s.checklist : {};
    for (const [step, st] of Object.entries(cl)) this.checklist.set(step, { step, ...st });
    if (Array.isArray(s.checklist)) for (const c of s.checklist) this.checklist.set(flat(c).step, flat(c));
    this.renderChecklist();

    this.emotion = (s.emotion || []).map((e) => {
      const p = flat(e);
      return { t: Number(p.t ?? p.t_end ?? 0), y: Number(p.temperature), warning: !!p.warning, title: emotionTitle(p) };
    });
    this.renderTemperature();

    const sg = this.el("suggestions");
    if (sg) sg.replaceChildren();
    for (const x of s.suggestions || []) this.addSuggestion(flat(x));

    const wh = this.el("whispers");
    if (wh) wh.replaceChildren();
    for (const w of s.whispers || []) this.addWhisper(flat(w), { live: false });

    for (const b of s.barges || []) this.showBarge(flat(b));

    this.intents.clear();
    for (const i of s.intents || []) this.addIntent(flat(i));

    if (s.scorecard) this.showScore(s.scorecard);
    if (this.opts.onSummary) this.opts.onSummary(s);
  }

  renderMeta(s) {
    const meta = this.el("call-meta");
    if (!meta) return;
    const bits = [];
    if (s.agent_id) bits.push(html`<span class="meta-agent" title="agent">${s.agent_id}</span>`);
    if (s.queue) bits.push(html`<span class="meta-queue" title="queue">${s.queue}</span>`);
    if (s.lang) bits.push(html`<span class="meta-lang" title="language">${s.lang}</span>`);
    if (s.duration_s != null) bits.push(html`<span class="meta-duration" title="duration">${fmtTime(s.duration_s)}</span>`);
    setHtml(meta, html`<span class="meta-id" title="call id">${s.call_id ?? this.callId}</span>${bits}`);
  }

  setStatus(status) {
    const el = this.el("call-status");
    if (el) {
      el.textContent = status;
      el.dataset.status = status;
      el.className = `status-pill ${status}`;
    }
  }

  // -------------------------------------------------------------------------------------------
  // live events

  apply(ev) {
    if (!ev || typeof ev !== "object") return;
    const seq = Number(ev.seq);
    if (Number.isFinite(seq)) {
      if (seq <= this.baseSeq || this.seen.has(seq)) return;
      this.seen.add(seq);
    }
    const p = { seq: ev.seq, t_start: ev.t_start, t_end: ev.t_end, channel: ev.channel, ...(ev.payload || {}) };
    switch (ev.type) {
      case "call.started": {
        const m = p.meta || {};
        this.summary = { ...(this.summary || {}), call_id: ev.call_id, lang: p.lang, agent_id: m.agent_id ?? this.summary?.agent_id, queue: m.queue ?? this.summary?.queue };
        this.renderMeta(this.summary);
        this.setStatus("live");
        break;
      }
      case "call.ended":
        this.ended = true;
        this.setStatus("ended");
        this.clearPartials();
        if (this.summary) {
          this.summary.duration_s = p.duration_s;
          this.renderMeta(this.summary);
        }
        this.showEnded(p);
        if (this.stream) {
          this.stream.close();
          this.stream = null;
        }
        this.setConn("");
        break;
      case "transcript.partial":
        this.setPartial(p);
        break;
      case "transcript.final":
        this.addFinal(p);
        break;
      case "transcript.redacted":
        this.redactFinal(p);
        break;
      case "alert":
        this.addAlert(p, { live: true });
        break;
      case "checklist":
        this.checklist.set(p.step, p);
        this.renderChecklist(p.step);
        break;
      case "intent":
        this.addIntent(p);
        break;
      case "emotion":
        this.emotion.push({ t: Number(ev.t_end), y: Number(p.temperature), warning: !!p.warning, title: emotionTitle(p) });
        this.renderTemperature();
        break;
      case "suggestion":
        this.addSuggestion(p);
        break;
      case "whisper":
        this.addWhisper(p, { live: true });
        break;
      case "barge":
        this.showBarge(p);
        break;
      case "score":
        this.showScore(p);
        break;
      default:
        break;
    }
    if (this.opts.onEvent) this.opts.onEvent(ev);
  }

  // -------------------------------------------------------------------------------------------
  // transcript

  scrollKeeper() {
    const tr = this.el("transcript");
    if (!tr) return () => {};
    const atBottom = tr.scrollTop + tr.clientHeight >= tr.scrollHeight - 40;
    return () => {
      if (atBottom) tr.scrollTop = tr.scrollHeight;
    };
  }

  addFinal(f) {
    const tr = this.el("transcript");
    if (!tr) return;
    const keep = this.scrollKeeper();
    const ch = f.channel || "unknown";
    const t = Number(f.t_start ?? f.t_end ?? 0);
    const el = fromHtml(html`<div class="final ch-${ch}" data-seq="${f.seq}" data-channel="${ch}" data-segment="${f.segment ?? ""}" data-t="${t}">
      <span class="who">${CHANNEL_LABEL[ch] || ch}</span><span class="when">${fmtTime(t)}</span>
      <span class="text">${f.text}</span></div>`);
    // keep conversation order by start time; partials stay at the end
    const finals = tr.querySelectorAll(".final");
    let after = null;
    for (let i = finals.length - 1; i >= 0; i--) {
      if (Number(finals[i].dataset.t) <= t) {
        after = finals[i];
        break;
      }
    }
    if (after) after.after(el);
    else tr.prepend(el);
    const partial = tr.querySelector(`.partial[data-channel="${CSS.escape(ch)}"]`);
    if (partial) partial.remove();
    const empty = tr.querySelector(".empty");
    if (empty) empty.remove();
    keep();
  }

  // A number read across two utterances: the earlier final, already shown, comes again redacted.
  redactFinal(p) {
    const tr = this.el("transcript");
    if (!tr) return;
    const ch = p.channel || "unknown";
    const sel = `.final[data-channel="${CSS.escape(ch)}"][data-segment="${CSS.escape(String(p.segment ?? ""))}"] .text`;
    const shown = tr.querySelectorAll(sel);
    if (shown.length) shown[shown.length - 1].textContent = String(p.text ?? "");
  }

  setPartial(p) {
    const tr = this.el("transcript");
    if (!tr) return;
    const keep = this.scrollKeeper();
    const ch = p.channel || "unknown";
    const stable = String(p.stable_text || "");
    const text = String(p.text || "");
    const rest = text.startsWith(stable) ? text.slice(stable.length) : text;
    const shownStable = text.startsWith(stable) ? stable : "";
    let el = tr.querySelector(`.partial[data-channel="${CSS.escape(ch)}"]`);
    const markup = html`<span class="who">${CHANNEL_LABEL[ch] || ch}</span><span class="when">${fmtTime(p.t_start)}</span>
      <span class="text"><span class="stable">${shownStable}</span><span class="unstable">${rest}</span></span>`;
    if (!el) {
      el = document.createElement("div");
      el.className = `partial ch-${ch}`;
      el.dataset.channel = ch;
      tr.append(el);
    }
    el.dataset.segment = p.segment ?? "";
    setHtml(el, markup);
    keep();
  }

  clearPartials() {
    const tr = this.el("transcript");
    if (tr) tr.querySelectorAll(".partial").forEach((x) => x.remove());
  }

  // -------------------------------------------------------------------------------------------
  // alerts

  addAlert(a, { live }) {
    this.alerts.push(a);
    const list = this.el("alerts");
    if (list) {
      const sev = SEVERITIES.includes(a.severity) ? a.severity : "general";
      const hasSnippet = a.snippet_id ? html`<button type="button" class="link show-procedure" data-snippet="${a.snippet_id}">procedure</button>` : "";
      const el = fromHtml(html`<li class="alert sev-${sev}" data-severity="${sev}" data-seq="${a.seq}" data-rule="${a.rule_id}">
        <div class="alert-head"><span class="sev-badge">${sev}</span>
          <span class="alert-msg">${a.message}</span><span class="when">${fmtTime(a.t_end ?? a.t_start)}</span></div>
        ${a.evidence ? html`<div class="evidence">“${a.evidence}”</div>` : ""}
        <div class="alert-foot"><span class="category">${humanize(a.category)}</span>
          ${a.step ? html`<span class="step">step: ${humanize(a.step)}</span>` : ""}
          ${a.reason ? html`<span class="reason" title="what matched">${a.reason}</span>` : ""}${hasSnippet}</div>
      </li>`);
      list.prepend(el); // newest first
      if (live) flash(el);
    }
    this.renderAlertCounts();
    if (a.severity === "fatal" && this.opts.fatalBanner && !this.acked.has(String(a.seq))) {
      this.pendingFatal.push(a);
      this.renderFatal();
    }
  }

  renderAlertCounts() {
    const el = this.el("alert-counts");
    if (!el) return;
    const counts = { fatal: 0, serious: 0, general: 0 };
    for (const a of this.alerts) counts[SEVERITIES.includes(a.severity) ? a.severity : "general"] += 1;
    setHtml(
      el,
      SEVERITIES.map((s) => html`<span class="count sev-${s}${counts[s] ? "" : " zero"}" data-severity="${s}" title="${s}">${counts[s]}</span>`),
    );
  }

  renderFatal() {
    const banner = this.el("fatal-banner");
    if (!banner) return;
    if (!this.pendingFatal.length) {
      banner.hidden = true;
      banner.replaceChildren();
      return;
    }
    const items = this.pendingFatal
      .slice()
      .reverse()
      .map((a) => html`<li data-seq="${a.seq}"><strong>${a.message}</strong>${a.evidence ? html` <span class="evidence">“${a.evidence}”</span>` : ""} <span class="when">${fmtTime(a.t_end)}</span></li>`);
    setHtml(
      banner,
      html`<div class="fatal-inner"><span class="fatal-icon" aria-hidden="true">⚠</span>
        <div class="fatal-body"><div class="fatal-title">Fatal violation${this.pendingFatal.length > 1 ? html` (${this.pendingFatal.length})` : ""}</div><ul>${items}</ul></div>
        <button type="button" class="ack">Acknowledge</button></div>`,
    );
    banner.hidden = false;
  }

  acknowledgeFatal() {
    for (const a of this.pendingFatal) this.acked.add(String(a.seq));
    saveSet(ackKey(this.callId), this.acked);
    this.pendingFatal = [];
    this.renderFatal();
  }

  // -------------------------------------------------------------------------------------------
  // checklist, intents, temperature

  renderChecklist(changed = null) {
    const ul = this.el("checklist");
    if (!ul) return;
    if (!this.checklist.size) {
      setHtml(ul, html`<li class="empty">No disclosures due yet.</li>`);
      return;
    }
    const order = { missed: 0, due: 1, done: 2 };
    const steps = [...this.checklist.values()].sort((a, b) => (order[a.state] ?? 3) - (order[b.state] ?? 3) || String(a.step).localeCompare(String(b.step)));
    setHtml(
      ul,
      steps.map(
        (c) => html`<li class="check state-${c.state}" data-step="${c.step}" data-state="${c.state}" title="${c.evidence || ""}">
          <span class="icon" aria-hidden="true">${CHECK_ICONS[c.state] || "?"}</span>
          <span class="step-name">${humanize(c.step)}</span>
          ${c.mandatory ? html`<span class="mandatory" title="mandatory">required</span>` : ""}
          <span class="state-text">${c.state}</span>
          ${c.evidence ? html`<div class="evidence">“${c.evidence}”</div>` : ""}</li>`,
      ),
    );
    if (changed) flash(ul.querySelector(`li[data-step="${CSS.escape(changed)}"]`));
  }

  addIntent(i) {
    if (!i || !i.intent) return;
    const prev = this.intents.get(i.intent);
    if (!prev || Number(i.confidence) >= Number(prev.confidence)) this.intents.set(i.intent, i);
    const el = this.el("intents");
    if (!el) return;
    setHtml(
      el,
      [...this.intents.values()].map((x) => html`<span class="chip" data-intent="${x.intent}" title="${x.evidence || ""}">${humanize(x.intent)} <small>${fmtNum(x.confidence, 2)}</small></span>`),
    );
  }

  renderTemperature() {
    const box = this.el("temperature");
    if (!box) return;
    setHtml(box, lineChart(this.emotion));
    const now = this.el("temperature-now");
    if (now) {
      const last = this.emotion[this.emotion.length - 1];
      now.className = `temp-now ${tempClass(last ? last.y : null)}`;
      now.textContent = last ? `${last.y > 0 ? "+" : ""}${fmtNum(last.y)}${last.warning ? " ⚠ falling fast" : ""}` : "–";
    }
  }

  // -------------------------------------------------------------------------------------------
  // suggestions

  addSuggestion(s) {
    const box = this.el("suggestions");
    if (!box || !s.snippet_id) return;
    const id = String(s.snippet_id);
    const version = s.version ?? 0;
    const existing = box.querySelector(`.card[data-snippet-id="${CSS.escape(id)}"]`);
    if (existing && existing.dataset.version === String(version) && !existing.classList.contains("dismissed")) {
      box.prepend(existing); // pushed again: bring it back to the top
      flash(existing);
      return;
    }
    const updated = existing && existing.dataset.version !== String(version);
    const steps = splitSteps(s.body);
    const body = steps.length > 1 ? html`<ol class="steps">${steps.map((x) => html`<li>${x}</li>`)}</ol>` : html`<p class="body">${s.body}</p>`;
    const actions = this.opts.feedback
      ? html`<div class="actions">
          <button type="button" data-feedback="used">Used</button>
          <button type="button" data-feedback="helpful">Helpful</button>
          <button type="button" data-feedback="dismissed">Dismiss</button></div>`
      : "";
    const card = fromHtml(html`<article class="card suggestion" data-snippet-id="${id}" data-version="${version}" data-seq="${s.seq ?? ""}">
      <header><h3>${s.title}</h3><span class="version" title="snippet version">v${version}</span>${updated ? html`<span class="updated">updated</span>` : ""}</header>
      ${body}
      ${s.reason ? html`<p class="reason" title="why it is shown">${s.reason}${s.score != null ? html` · ${fmtNum(s.score, 2)}` : ""}</p>` : ""}
      ${actions}</article>`);
    if (existing) existing.remove();
    box.prepend(card);
    const empty = box.querySelector(".empty");
    if (empty) empty.remove();
    flash(card);
    if (this.opts.feedback) {
      const key = `${id}@${version}`;
      if (!this.shown.has(key)) {
        this.shown.add(key);
        saveSet(shownKey(this.callId), this.shown);
        this.sendFeedback(id, "shown").catch(() => {});
      }
    }
  }

  sendFeedback(snippetId, kind) {
    return api("/v1/kb/feedback", { method: "POST", body: { call_id: this.callId, snippet_id: snippetId, kind }, quiet: kind === "shown" });
  }

  // -------------------------------------------------------------------------------------------
  // whispers, barge, end, score

  addWhisper(w, { live }) {
    const box = this.el("whispers");
    if (!box) return;
    const el = fromHtml(html`<div class="whisper" data-seq="${w.seq ?? ""}">
      <div class="whisper-head"><span class="whisper-icon" aria-hidden="true">✉</span><span class="author">${w.author || "supervisor"}</span>
      <span class="when">${fmtTime(w.t_end)}</span></div><div class="whisper-text">${w.text}</div></div>`);
    box.prepend(el);
    box.hidden = false;
    if (live) flash(el);
  }

  showBarge(b) {
    const el = this.el("barge-notice");
    if (!el) return;
    setHtml(
      el,
      html`<span class="barge-icon" aria-hidden="true">☎</span> <strong>${b.author || "A supervisor"}</strong> is joining the call${b.reason ? html`: <span class="reason">${b.reason}</span>` : "."}`,
    );
    el.hidden = false;
    flash(el);
  }

  showEnded(p) {
    const el = this.el("ended-notice");
    if (!el) return;
    setHtml(el, html`Call ended${p.reason ? html` (${humanize(p.reason)})` : ""} after ${fmtTime(p.duration_s)}.`);
    el.hidden = false;
  }

  showScore(sc) {
    const el = this.el("score");
    if (!el || !sc) return;
    const sections = Object.entries(sc.sections || {});
    const items = sc.items || [];
    setHtml(
      el,
      html`<div class="score-total"><span class="score-num">${Math.round(Number(sc.total) * 10) / 10}</span><span class="score-of">/ 100</span></div>
      ${sections.length ? html`<ul class="score-sections">${sections.map(([k, v]) => html`<li><span>${humanize(k)}</span><span class="num">${fmtNum(v, Number(v) <= 1 ? 2 : 0)}</span></li>`)}</ul>` : ""}
      ${items.length
        ? html`<details class="score-items"><summary>${items.length} items</summary><table><thead><tr><th>item</th><th>score</th><th>weight</th></tr></thead><tbody>
          ${items.map((it) => html`<tr title="${it.detail || ""}"><td>${humanize(it.name)}<div class="detail">${it.detail}</div></td><td class="num">${fmtNum(it.score, 2)}</td><td class="num">${fmtNum(it.weight, 2)}</td></tr>`)}
          </tbody></table></details>`
        : ""}`,
    );
    el.hidden = false;
    const box = el.closest(".score-box");
    if (box) box.hidden = false;
  }

  // -------------------------------------------------------------------------------------------
  // UI wiring (event delegation; no inline handlers)

  bindUi() {
    // Handlers are bound once per element and always act for the element's current view (the
    // supervisor's panel reuses its elements for each call it opens).
    const bind = (id, handler) => {
      const el = this.el(id);
      if (!el) return;
      el.__callView = this;
      if (el.dataset.bound) return;
      el.dataset.bound = "1";
      el.addEventListener("click", (e) => {
        const view = el.__callView;
        if (view && !view.stopped) handler.call(view, e);
      });
    };
    bind("fatal-banner", function (e) {
      if (e.target.closest("button.ack")) this.acknowledgeFatal();
    });
    bind("suggestions", async function (e) {
      const btn = e.target.closest("button[data-feedback]");
      if (!btn) return;
      const card = btn.closest(".card");
      const kind = btn.dataset.feedback;
      btn.disabled = true;
      try {
        await this.sendFeedback(card.dataset.snippetId, kind);
        btn.setAttribute("aria-pressed", "true");
        btn.classList.add("done");
        card.dataset.feedback = kind;
        if (kind === "dismissed") card.classList.add("dismissed");
        if (kind === "used") card.classList.add("used");
      } catch {
        btn.disabled = false;
      }
    });
    bind("alerts", function (e) {
      const btn = e.target.closest("button.show-procedure");
      if (!btn) return;
      const card = this.el("suggestions")?.querySelector(`.card[data-snippet-id="${CSS.escape(btn.dataset.snippet)}"]`);
      if (card) {
        card.scrollIntoView({ behavior: "smooth", block: "nearest" });
        flash(card);
      }
    });
  }

  /** Empty every element (a fresh view in a reused panel). */
  reset() {
    for (const id of ["transcript", "alerts", "suggestions", "whispers", "intents", "score", "checklist", "temperature", "call-meta", "alert-counts"]) {
      const el = this.el(id);
      if (el) el.replaceChildren();
    }
    for (const id of ["barge-notice", "ended-notice", "fatal-banner"]) {
      const el = this.el(id);
      if (el) {
        el.hidden = true;
        el.replaceChildren();
      }
    }
    const score = this.el("score");
    const box = score && score.closest(".score-box");
    if (box) box.hidden = true;
    this.setStatus("");
    this.renderTemperature();
    this.renderChecklist();
  }
}

function emotionTitle(p) {
  const bits = [];
  if (p.label) bits.push(p.label);
  if (p.drivers && p.drivers.length) bits.push(p.drivers.join(", "));
  if (p.utterance !== undefined) bits.push(`utterance ${fmtNum(p.utterance)}`);
  return bits.join(" · ");
}
