"use strict";
(() => {
  const body = document.querySelector("#audit-table tbody");
  const filter = document.getElementById("audit-filter");
  const short = v => v == null ? "" : `<code>${PA.esc(JSON.stringify(v)).slice(0, 400)}</code>`;
  async function load() {
    const q = filter.value ? "&action=" + encodeURIComponent(filter.value) : "";
    const events = await PA.api("GET", "/api/audit?limit=300" + q);
    body.innerHTML = events.map(e => `<tr><td>${PA.when(e.at)}</td><td>${PA.esc(e.actor)}</td>
      <td><code>${PA.esc(e.action)}</code></td><td>${PA.esc(e.target)}</td><td>${short(e.before)}</td><td>${short(e.after)}</td></tr>`).join("")
      || `<tr><td colspan="6" class="muted">No events yet.</td></tr>`;
  }
  filter.addEventListener("input", load);
  PA.every(10000, load);

  const users = document.querySelector("#users-table tbody");
  if (users) {
    const loadUsers = async () => {
      const list = await PA.api("GET", "/api/users");
      users.innerHTML = list.map(u => `<tr><td>${PA.esc(u.username)}</td><td>${PA.badge(u.role)}</td><td>${PA.esc(u.last_login_at || "never")}</td></tr>`).join("");
    };
    loadUsers();
    document.getElementById("new-user").addEventListener("submit", async ev => {
      ev.preventDefault();
      const f = new FormData(ev.target);
      try {
        await PA.api("POST", "/api/users", Object.fromEntries(f.entries()));
        PA.toast("User added"); ev.target.reset(); loadUsers(); load();
      } catch (e) { PA.toast(e.message, "bad"); }
    });
  }
})();
