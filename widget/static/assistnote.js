// The language model's buttons: "Summary" (the hand-off note: need, verified, promised, risk) in
// the agent widget and the supervisor's call panel, and "Draft reply" in the agent widget (an
// editable sentence that follows a procedure card shown, with Copy / Used / Dismiss).
// Self-mounting: the panel is added to the page and shown only when GET /v1/capabilities says the
// language model is available; a 503 later hides it again.
import { api, html, setHtml } from "./common.js";

const agentView = document.getElementById("call-view"); // agent.html
const supervisorPanel = document.getElementById("call-panel"); // supervisor.html

function currentCall() {
  if (supervisorPanel) return supervisorPanel.dataset.callId || null;
  return new URLSearchParams(window.location.search).get("call");
}

function build(withReply) {
  const section = document.createElement("section");
  section.className = "panel llm-panel";
  section.id = "llm-panel";
  section.hidden = true;
  setHtml(
    section,
    html`<h2>Assistant</h2>
      <div class="actions">
        <button type="button" id="llm-summary" title="What the customer needs, what was verified and promised, what is open">Summary</button>
        ${withReply ? html`<button type="button" id="llm-reply" title="A draft of your next words from the procedure shown">Draft reply</button>` : ""}
      </div>
      <p id="llm-state" class="hint" role="status" aria-live="polite"></p>
      <ul id="llm-note" class="llm-note"></ul>
      ${withReply
        ? html`<div id="llm-draft" class="llm-draft" hidden>
            <textarea id="llm-draft-text" rows="3" aria-label="Drafted reply (you can edit it)"></textarea>
            <p id="llm-cite" class="hint"></p>
            <div class="actions">
              <button type="button" data-reply="copy">Copy</button>
              <button type="button" data-reply="used">Used</button>
              <button type="button" data-reply="dismissed">Dismiss</button>
            </div>
          </div>`
        : ""}`,
  );
  return section;
}

function place(section) {
  if (agentView) {
    const main = agentView.querySelector(".col-main");
    const alerts = main && main.querySelector("#alerts");
    const before = alerts ? alerts.closest("section") : null;
    if (main) main.insertBefore(section, before);
  } else if (supervisorPanel) {
    const after = supervisorPanel.querySelector("#ended-notice") || supervisorPanel.querySelector("#barge-form");
    if (after) after.after(section);
    else supervisorPanel.append(section);
  }
}

function explain(err) {
  if (err.status === 429) return "The assistant is busy: try again in a few seconds.";
  if (err.status === 409) return "No transcript yet.";
  if (err.status === 504) return "The assistant took too long: try again.";
  return err.message || "The assistant failed.";
}

async function mount() {
  if (!agentView && !supervisorPanel) return;
  let caps;
  try {
    caps = await api("/v1/capabilities", { quiet: "all" });
  } catch {
    return; // no token yet, or an older service: no buttons
  }
  if (!caps || !caps.summary) return;
  const withReply = Boolean(agentView && caps.reply);
  const section = build(withReply);
  place(section);
  if (!currentCall() && !supervisorPanel) return;
  section.hidden = false;
  const state = section.querySelector("#llm-state");
  const note = section.querySelector("#llm-note");
  const draftBox = section.querySelector("#llm-draft");
  let draft = null;

  async function run(button, work) {
    const id = currentCall();
    if (!id) return;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    state.textContent = "Thinking…";
    try {
      await work(id);
      state.textContent = "";
    } catch (err) {
      if (err.status === 503) section.hidden = true;
      state.textContent = explain(err);
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }

  section.querySelector("#llm-summary").addEventListener("click", (e) =>
    run(e.currentTarget, async (id) => {
      const out = await api(`/v1/calls/${encodeURIComponent(id)}/summary`, { quiet: true });
      setHtml(note, html`${out.lines.map((line) => html`<li>${line}</li>`)}`);
      note.dataset.callId = id;
    }),
  );

  if (withReply) {
    const text = section.querySelector("#llm-draft-text");
    section.querySelector("#llm-reply").addEventListener("click", (e) =>
      run(e.currentTarget, async (id) => {
        draft = await api(`/v1/calls/${encodeURIComponent(id)}/reply`, { method: "POST", quiet: true });
        text.value = draft.text;
        section.querySelector("#llm-cite").textContent = draft.snippet_id ? `Follows procedure ${draft.snippet_id}` : "";
        draftBox.hidden = false;
        for (const b of draftBox.querySelectorAll("button")) b.disabled = false;
      }),
    );
    draftBox.addEventListener("click", async (e) => {
      const btn = e.target.closest("button[data-reply]");
      if (!btn || !draft) return;
      if (btn.dataset.reply === "copy") {
        text.select();
        try {
          await navigator.clipboard.writeText(text.value);
        } catch {
          document.execCommand("copy");
        }
        return;
      }
      btn.disabled = true;
      try {
        await api(`/v1/calls/${encodeURIComponent(draft.call_id)}/reply/feedback`, {
          method: "POST",
          body: { reply_id: draft.reply_id, kind: btn.dataset.reply, edited: text.value.trim() !== draft.text.trim() },
        });
        btn.setAttribute("aria-pressed", "true");
        if (btn.dataset.reply === "dismissed") draftBox.hidden = true;
      } catch {
        btn.disabled = false;
      }
    });
  }

  if (supervisorPanel) {
    // another call opened in the panel: its note is not this one
    new MutationObserver(() => {
      if (note.dataset.callId !== currentCall()) {
        note.replaceChildren();
        state.textContent = "";
      }
    }).observe(supervisorPanel, { attributes: true, attributeFilter: ["data-call-id"] });
  }
}

mount();
