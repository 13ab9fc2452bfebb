// Agent widget: one call (?call=ID), or the agent's live calls when no call is given.
// ?follow=1 (a softphone side panel): always show the agent's newest live call, moving on to the
// next one a few seconds after a call ends.
import { api, requireToken, html, setHtml, fmtTime, fmtNum, splitSteps, tempClass } from "./common.js";
import { CallView } from "./callview.js";

const token = requireToken();
const params = new URLSearchParams(window.location.search);
const callId = params.get("call");
const follow = params.get("follow") === "1";
const FOLLOW_POLL_MS = 2000;
const FOLLOW_LINGER_MS = 8000;

if (callId) startCall(callId);
else if (follow && token) followNewest(null);
else startPicker();

// the newest live call other than `current`, then go there (the token stays in sessionStorage)
async function followNewest(current) {
  let waiting = false;
  for (;;) {
    try {
      const calls = (await api("/v1/calls?status=live", { quiet: true })) || [];
      const next = calls.filter((c) => c.call_id !== current).sort((a, b) => b.started_at - a.started_at)[0];
      if (next) {
        window.location.search = `?call=${encodeURIComponent(next.call_id)}&follow=1`;
        return;
      }
    } catch (err) {
      if (err.status === 401 || err.status === 403) return;
    }
    if (!current && !waiting) {
      startPicker(); // "No live calls right now" while we wait
      waiting = true;
    }
    await new Promise((r) => window.setTimeout(r, FOLLOW_POLL_MS));
  }
}

function startCall(id) {
  document.getElementById("call-view").hidden = false;
  document.title = `Assist · ${id}`;
  const view = new CallView(document, id, {
    feedback: true,
    fatalBanner: true,
    onEvent: (ev) => {
      if (ev.type === "alert" && ev.payload && ev.payload.severity === "fatal") document.title = `⚠ Assist · ${id}`;
      if (ev.type === "call.ended" && follow) window.setTimeout(() => followNewest(id), FOLLOW_LINGER_MS);
    },
  });
  document.getElementById("fatal-banner").addEventListener("click", (e) => {
    if (e.target.closest("button.ack")) document.title = `Assist · ${id}`;
  });
  bindSearch(id);
  if (token) view.start();
}

// ---------------------------------------------------------------------------------------------
// knowledge search (GET /v1/kb/search?q=&k=5)

function bindSearch(id) {
  const form = document.getElementById("search");
  const results = document.getElementById("search-results");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const q = form.elements.q.value.trim();
    if (!q) {
      results.replaceChildren();
      return;
    }
    results.setAttribute("aria-busy", "true");
    try {
      const hits = await api(`/v1/kb/search?q=${encodeURIComponent(q)}&k=5`);
      renderResults(results, hits || []);
    } catch {
      results.replaceChildren();
    } finally {
      results.removeAttribute("aria-busy");
    }
  });
  results.addEventListener("click", async (e) => {
    const btn = e.target.closest("button[data-feedback]");
    if (btn) {
      const card = btn.closest(".card");
      btn.disabled = true;
      try {
        await api("/v1/kb/feedback", { method: "POST", body: { call_id: id, snippet_id: card.dataset.snippetId, kind: btn.dataset.feedback } });
        btn.setAttribute("aria-pressed", "true");
        btn.classList.add("done");
      } catch {
        btn.disabled = false;
      }
      return;
    }
    if (e.target.closest("button.clear-results")) {
      results.replaceChildren();
      form.elements.q.value = "";
      form.elements.q.focus();
    }
  });
}

function renderResults(box, hits) {
  if (!hits.length) {
    setHtml(box, html`<p class="empty">Nothing found.</p>`);
    return;
  }
  setHtml(
    box,
    html`${hits.map((h) => {
      const steps = splitSteps(h.body);
      const body = steps.length > 1 ? html`<ol class="steps">${steps.map((s) => html`<li>${s}</li>`)}</ol>` : html`<p class="body">${h.body}</p>`;
      return html`<article class="card result" data-snippet-id="${h.snippet_id}" data-version="${h.version ?? ""}">
        <header><h3>${h.title}</h3>${h.version != null ? html`<span class="version">v${h.version}</span>` : ""}<span class="score" title="match score">${fmtNum(h.score, 2)}</span></header>
        ${body}
        <div class="actions"><button type="button" data-feedback="used">Used</button><button type="button" data-feedback="helpful">Helpful</button></div>
      </article>`;
    })}<button type="button" class="link clear-results">Clear results</button>`,
  );
}

// ---------------------------------------------------------------------------------------------
// no ?call=: the calls this agent may see

function startPicker() {
  document.getElementById("call-picker").hidden = false;
  document.getElementById("call-status").hidden = true;
  const list = document.getElementById("call-list");
  let timer = null;
  async function refresh() {
    try {
      const calls = await api("/v1/calls?status=live", { quiet: timer !== null });
      if (!calls || !calls.length) {
        setHtml(list, html`<li class="empty">No live calls right now.</li>`);
      } else {
        setHtml(
          list,
          calls.map(
            (c) => html`<li data-call-id="${c.call_id}"><a href="?call=${encodeURIComponent(c.call_id)}">
              <span class="call-id">${c.call_id}</span>
              <span class="meta">${c.queue || ""} ${c.lang ? "· " + c.lang : ""} · ${fmtTime(c.duration_s)}</span>
              <span class="temp ${tempClass(c.temperature)}">${c.temperature != null ? fmtNum(c.temperature) : ""}</span></a></li>`,
          ),
        );
      }
    } catch (err) {
      if (err.status === 401 || err.status === 403) return; // banner shown; stop polling
    }
    timer = window.setTimeout(refresh, 5000);
  }
  if (token) refresh();
}
