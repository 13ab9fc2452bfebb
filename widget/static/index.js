// Landing page: links to the three UIs, carrying the token (from #token=...) in their fragment.
import { initToken, getToken, withToken, api } from "./common.js";

initToken();
for (const a of document.querySelectorAll(".links a")) a.href = withToken(a.getAttribute("href"));

if (getToken()) {
  api("/v1/me", { quiet: true })
    .then((me) => {
      if (!me) return;
      document.getElementById("me").textContent = `${me.name} (${me.role})`;
      const role = me.role === "admin" ? null : me.role;
      for (const a of document.querySelectorAll(".links a")) a.classList.toggle("suggested", a.dataset.role === role);
    })
    .catch(() => {});
}
