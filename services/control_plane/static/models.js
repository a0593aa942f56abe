// Models page: a card per model with its versions; promote, roll back, clear challenger (admins).
"use strict";
(() => {
  const root = document.getElementById("models");
  const message = document.getElementById("models-message");
  let lastJson = "";

  const metric = v => v == null ? "–" : Number(v).toFixed(Math.abs(v) >= 10 ? 1 : 4);

  function metricsCell(v) {
    const entries = Object.entries(v.headline_metrics);
    if (!entries.length) return '<span class="muted">–</span>';
    const more = Object.keys(v.metrics).length - entries.length;
    return `<dl class="facts small">${entries.map(([k, x]) => `<dt>${PA.esc(k)}</dt><dd>${metric(x)}</dd>`).join("")}</dl>`
      + (more > 0 ? `<details class="small"><summary>${more} more</summary><dl class="facts">${
        Object.entries(v.metrics).filter(([k]) => !(k in v.headline_metrics))
          .map(([k, x]) => `<dt>${PA.esc(k)}</dt><dd>${metric(x)}</dd>`).join("")}</dl></details>` : "");
  }

  function versionRow(m, v) {
    const isChampion = m.champion === v.version, isChallenger = m.challenger === v.version;
    const badges = v.aliases.map(a => PA.badge(a)).join(" ");
    const warn = v.features_match ? "" : ` ${PA.badge("other features", "bad")}`;
    return `<tr data-model="${PA.esc(m.kind)}" data-version="${PA.esc(v.version)}">
      <th scope="row">v${PA.esc(v.version)} ${badges}${warn}</th>
      <td>${PA.when(v.created_at)}<div class="muted small">${PA.esc(v.status)} · run <code title="${PA.esc(v.run_id)}">${PA.esc((v.run_id || "").slice(0, 8))}</code></div></td>
      <td>${metricsCell(v)}</td>
      <td class="num">${v.threshold == null ? "–" : Number(v.threshold).toFixed(3)}</td>
      <td>${PA.esc(v.estimator || "–")}<div class="muted small">${PA.esc(v.fast_path || "")}</div></td>
      <td><div class="row">
        <button class="admin-only" data-promote="champion" ${isChampion ? "disabled" : ""}
          aria-label="Make v${PA.esc(v.version)} the ${PA.esc(m.kind)} champion">Make champion</button>
        <button class="admin-only" data-promote="challenger" ${isChallenger ? "disabled" : ""}
          aria-label="Make v${PA.esc(v.version)} the ${PA.esc(m.kind)} challenger">Make challenger</button>
      </div></td></tr>`;
  }

  function card(m) {
    const head = `<div class="page-head"><h2 id="h-${PA.esc(m.kind)}">${PA.esc(m.kind)} <code class="small muted">${PA.esc(m.name)}</code></h2>
      <span>${m.champion ? PA.badge("champion") + " v" + PA.esc(m.champion) : '<span class="muted">no champion: the heuristic decides</span>'}
      ${m.challenger ? " · " + PA.badge("challenger") + " v" + PA.esc(m.challenger) : ""}</span></div>`;
    if (!m.registered) {
      return `<section class="card" data-kind="${PA.esc(m.kind)}" aria-labelledby="h-${PA.esc(m.kind)}">${head}
        <p class="muted">No version registered yet.</p></section>`;
    }
    const options = m.versions.filter(v => v.version !== m.champion)
      .map(v => `<option value="${PA.esc(v.version)}">v${PA.esc(v.version)}</option>`).join("");
    const prev = m.previous_champion ? `previous champion (v${PA.esc(m.previous_champion)})` : "previous champion (unknown: choose)";
    return `<section class="card" data-kind="${PA.esc(m.kind)}" aria-labelledby="h-${PA.esc(m.kind)}">${head}
      <div class="row" style="margin-bottom:10px">
        <label>Roll back champion to
          <select data-rollback-to="${PA.esc(m.kind)}"><option value="">${prev}</option>${options}</select></label>
        <button class="admin-only danger" data-rollback="${PA.esc(m.kind)}" ${m.champion ? "" : "disabled"}>Roll back</button>
        <button class="admin-only" data-clear-challenger="${PA.esc(m.kind)}" ${m.challenger ? "" : "disabled"}>Clear challenger</button>
      </div>
      <div class="table-wrap"><table class="data">
        <caption class="muted small" style="text-align:left">Registered versions of ${PA.esc(m.kind)}, newest first</caption>
        <thead><tr><th scope="col">Version</th><th scope="col">Created</th><th scope="col">Holdout metrics</th>
          <th scope="col">Threshold</th><th scope="col">Estimator</th><th scope="col">Actions</th></tr></thead>
        <tbody>${m.versions.map(v => versionRow(m, v)).join("")}</tbody>
      </table></div></section>`;
  }

  function applyRole() {
    if (!PA.isAdmin()) root.querySelectorAll(".admin-only").forEach(b => { b.disabled = true; b.title = "admin role needed"; });
  }

  async function load(force) {
    let body;
    try {
      body = await PA.api("GET", "/api/models");
    } catch (e) {
      message.hidden = false;
      message.className = "error";
      message.textContent = e.message;
      root.setAttribute("aria-busy", "false");
      if (!lastJson) root.innerHTML = "";
      return;
    }
    document.getElementById("registry").textContent = `registry: ${body.registry}`;
    document.getElementById("pickup-note").textContent = body.note;
    message.hidden = !body.message;
    message.className = "muted";
    message.textContent = body.message || "";
    const json = JSON.stringify(body.models);
    // re-render only on change, so a focused button or an open select is not replaced every refresh
    if (!force && json === lastJson) return;
    if (!force && root.contains(document.activeElement) && document.activeElement.tagName === "SELECT") return;
    lastJson = json;
    root.innerHTML = body.models.map(card).join("");
    root.setAttribute("aria-busy", "false");
    applyRole();
  }

  async function act(label, fn) {
    try {
      const res = await fn();
      PA.toast(res.changed ? label(res) : `${res.name}: nothing to change`);
    } catch (e) { PA.toast(e.message, "bad"); }
    await load(true);
  }

  root.addEventListener("click", async ev => {
    const btn = ev.target.closest("button");
    if (!btn || btn.disabled) return;
    if (btn.dataset.promote) {
      const row = btn.closest("tr"), kind = row.dataset.model, version = row.dataset.version, alias = btn.dataset.promote;
      if (!await PA.confirmDialog(`Make ${kind} v${version} the ${alias}? ${alias === "champion"
          ? "It will decide every transaction" : "It will be scored and logged next to the champion"} once the services refresh.`)) return;
      await act(r => `${r.name}@${alias}: v${r.before ?? "–"} → v${r.version}`,
        () => PA.api("POST", `/api/models/${encodeURIComponent(kind)}/aliases/${alias}`, { version: Number(version) }));
    } else if (btn.dataset.rollback) {
      const kind = btn.dataset.rollback;
      const chosen = root.querySelector(`select[data-rollback-to="${CSS.escape(kind)}"]`).value;
      if (!await PA.confirmDialog(`Roll the ${kind} champion back to ${chosen ? "v" + chosen : "the previous champion"}?`)) return;
      await act(r => `${r.name}@champion rolled back: v${r.before ?? "–"} → v${r.version}`,
        () => PA.api("POST", `/api/models/${encodeURIComponent(kind)}/rollback`, chosen ? { version: Number(chosen) } : {}));
    } else if (btn.dataset.clearChallenger) {
      const kind = btn.dataset.clearChallenger;
      if (!await PA.confirmDialog(`Clear the ${kind} challenger? It stops being scored.`)) return;
      await act(r => `${r.name}@challenger cleared (was v${r.before})`,
        () => PA.api("DELETE", `/api/models/${encodeURIComponent(kind)}/aliases/challenger`));
    }
  });

  PA.every(5000, () => load(false));
})();
