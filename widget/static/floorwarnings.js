// The floor's early warnings (sidecar.qa) on the supervisor console: GET /v1/floor/warnings/events
// (SSE) replays the warnings the bus retains, then follows them; folded here by episode into the
// active ones (raised and not yet cleared), newest first. Each names the calls behind it (links to
// their stored record in the review page).
import { openStream, html, setHtml, withToken, getToken, fmtDate } from "./common.js";

const box = document.getElementById("floor-warnings");
const list = document.getElementById("warnings");
const active = new Map(); // episode -> warning

const KIND_NAMES = {
  complaint_burst: "complaint burst",
  queue_spike: "queue spike",
  topic_share: "topic rising",
  agent_hot: "agent running hot",
  negative_share: "negative words",
};

function render() {
  const items = [...active.values()].sort((a, b) => b.window_end - a.window_end || (a.episode < b.episode ? -1 : 1));
  box.hidden = items.length === 0;
  box.dataset.count = String(items.length);
  document.getElementById("warning-count").textContent = items.length ? String(items.length) : "";
  setHtml(
    list,
    items.map(
      (w) => html`<li class="floor-warning" data-episode="${w.episode}" data-kind="${w.kind}" data-key="${w.key}">
        <span class="w-kind">${KIND_NAMES[w.kind] || w.kind.replace(/_/g, " ")}</span>
        <span class="w-msg">${w.message}</span>
        <span class="when" title="the span of the calls behind it">${fmtDate(w.window_start)} – ${fmtDate(w.window_end)}</span>
        <span class="w-calls">${w.call_ids.slice(0, 12).map((id) => html`<a href="${withToken(`review.html?call=${encodeURIComponent(id)}`)}" target="_blank" rel="noopener" data-call-id="${id}">${id}</a> `)}${w.call_ids.length > 12 ? `+${w.call_ids.length - 12}` : ""}</span>
      </li>`,
    ),
  );
}

function onEvent(data, type) {
  if (type === "warning.raised") active.set(data.episode, data);
  else if (type === "warning.cleared") active.delete(data.episode);
  else return;
  render();
}

if (box && list && getToken()) {
  openStream("/v1/floor/warnings/events", { onEvent, types: ["warning.raised", "warning.cleared", "reset"], resumeParam: null });
}
