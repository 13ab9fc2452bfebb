/*
 * <agent-assist>: embeds the agent widget (agent.html) in a softphone page as an iframe.
 *
 *   <script src="http://127.0.0.1:8000/ui/embed.js"></script>
 *   <agent-assist server="http://127.0.0.1:8000" call="CALL_ID" token="AGENT_TOKEN"
 *                 style="width: 400px; height: 700px"></agent-assist>
 *
 * Attributes: `server` (the service's origin; default: where this script came from), `call` (the
 * call id; without it the widget lists the agent's live calls), `token` (the agent's bearer token;
 * it travels in the URL fragment, which never reaches the server or its logs), and optionally
 * `ui-path` (default "/ui/"). Changing an attribute reloads the widget. The iframe fills the
 * element; give the element a size (default 400 × 640 px).
 *
 * Without the custom element, a plain iframe does the same:
 *
 *   <iframe src="http://127.0.0.1:8000/ui/agent.html?call=CALL_ID#token=AGENT_TOKEN"
 *           title="Agent assist" style="width: 400px; height: 700px; border: 0"></iframe>
 *
 * Works as a classic script or as a module (`<script type="module" src=".../embed.js">`).
 */
(function () {
  "use strict";
  if (typeof window === "undefined" || !window.customElements || window.customElements.get("agent-assist")) return;

  var scriptOrigin = "";
  try {
    var current = document.currentScript;
    if (current && current.src) scriptOrigin = new URL(current.src, window.location.href).origin;
  } catch (e) {
    scriptOrigin = "";
  }

  var STYLE =
    ":host{display:block;width:400px;height:640px;max-width:100%;position:relative;overflow:hidden}" +
    ":host([hidden]){display:none}" +
    "iframe{position:absolute;inset:0;width:100%;height:100%;border:0;display:block;background:#f4f6f8}";

  class AgentAssistElement extends HTMLElement {
    static get observedAttributes() {
      return ["server", "call", "token", "ui-path"];
    }

    constructor() {
      super();
      this._root = this.attachShadow({ mode: "closed" });
      this._frame = document.createElement("iframe");
      this._frame.setAttribute("title", "Agent assist");
      this._frame.setAttribute("referrerpolicy", "no-referrer");
      this._frame.setAttribute("allow", "clipboard-write");
      // A constructed stylesheet is not an inline <style>, so a strict style-src CSP on the host
      // page does not block it; older browsers get a <style> element.
      var adopted = false;
      try {
        if ("adoptedStyleSheets" in this._root && typeof CSSStyleSheet === "function") {
          var sheet = new CSSStyleSheet();
          sheet.replaceSync(STYLE);
          this._root.adoptedStyleSheets = [sheet];
          adopted = true;
        }
      } catch (e) {
        adopted = false;
      }
      if (!adopted) {
        var style = document.createElement("style");
        style.textContent = STYLE;
        this._root.append(style);
      }
      this._root.append(this._frame);
      this._src = "";
    }

    connectedCallback() {
      this._render();
    }

    attributeChangedCallback() {
      if (this.isConnected) this._render();
    }

    /** The widget's URL for the current attributes (the token only in the fragment). */
    get src() {
      var server = (this.getAttribute("server") || scriptOrigin || window.location.origin).replace(/\/+$/, "");
      var path = this.getAttribute("ui-path") || "/ui/";
      if (path.charAt(0) !== "/") path = "/" + path;
      if (path.charAt(path.length - 1) !== "/") path += "/";
      var url = new URL(server + path + "agent.html");
      var call = this.getAttribute("call");
      if (call) url.searchParams.set("call", call);
      var token = this.getAttribute("token");
      if (token) url.hash = "token=" + encodeURIComponent(token);
      return url.toString();
    }

    _render() {
      var src;
      try {
        src = this.src;
      } catch (e) {
        return; // an unusable server attribute: leave the frame as it is
      }
      if (src === this._src) return;
      this._src = src;
      this._frame.src = src;
    }
  }

  window.customElements.define("agent-assist", AgentAssistElement);
})();
