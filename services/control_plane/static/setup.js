"use strict";
(() => {
  const stepsBody = document.querySelector("#steps tbody");
  const historyBody = document.querySelector("#history tbody");
  const servicesBody = document.querySelector("#services tbody");
  const logPanel = document.getElementById("log-panel");
  const logEl = document.getElementById("log");
  let source = null, followed = null, stepsRendered = false;

  function paramInput(step, p) {
    const id = `p-${step.id}-${p.name}`;
    const common = `id="${id}" name="${PA.esc(p.name)}" data-kind="${p.kind}"`;
    let input;
    if (p.kind === "bool") input = `<input type="checkbox" ${common} ${p.default ? "checked" : ""}>`;
    else if (p.kind === "choice") input = `<select ${common}>${p.choices.map(c => `<option ${c === p.default ? "selected" : ""}>${PA.esc(c)}</option>`).join("")}</select>`;
    else input = `<input type="number" ${common} ${p.kind === "float" ? 'step="any"' : 'step="1"'} size="8"
        ${p.minimum != null ? `min="${p.minimum}"` : ""} ${p.maximum != null ? `max="${p.maximum}"` : ""}
        value="${p.default ?? ""}" placeholder="${p.default == null ? "default" : ""}" style="width:8em">`;
    return `<label class="${p.kind === "bool" ? "check" : ""}" title="${PA.esc(p.help)}">${PA.esc(p.label)} ${input}</label>`;
  }

  function readParams(row) {
    const out = {};
    row.querySelectorAll("[data-kind]").forEach(el => {
      if (el.dataset.kind === "bool") out[el.name] = el.checked;
      else if (el.value !== "") out[el.name] = el.dataset.kind === "int" ? parseInt(el.value, 10) : el.dataset.kind === "float" ? parseFloat(el.value) : el.value;
    });
    return out;
  }

  function runCell(run) {
    if (!run) return `<span class="muted">never</span>`;
    return `${PA.badge(run.status)} <a href="#" data-log="${run.id}">run ${run.id}</a> <span class="muted small">${PA.ago(run.started_at)}</span>`;
  }

  async function loadSteps() {
    const steps = await PA.api("GET", "/api/steps");
    if (!stepsRendered) {
      stepsBody.innerHTML = steps.map((s, i) => `<tr data-step="${s.id}">
        <td>${i + 1}</td>
        <td><strong>${PA.esc(s.title)}</strong><div class="muted small">${PA.esc(s.description)}</div><code class="small">${PA.esc(s.command)}</code></td>
        <td><div class="row">${s.params.map(p => paramInput(s, p)).join("") || '<span class="muted">–</span>'}</div></td>
        <td class="last"></td><td class="dur"></td>
        <td><div class="row"><button class="primary admin-only" data-run="${s.id}" ${s.available ? "" : "disabled title='not in this build'"}>Run</button>
            <button class="admin-only" data-cancel="${s.id}" hidden>Cancel</button></div></td></tr>`).join("");
      stepsRendered = true;
    }
    for (const s of steps) {
      const row = stepsBody.querySelector(`tr[data-step="${s.id}"]`);
      const run = s.last_run;
      row.querySelector(".last").innerHTML = runCell(run);
      row.querySelector(".dur").textContent = run ? PA.duration(run.duration_s) : "–";
      const active = run && (run.status === "running" || run.status === "queued");
      row.querySelector("[data-run]").disabled = !s.available || active;
      const cancel = row.querySelector("[data-cancel]");
      cancel.hidden = !active; cancel.dataset.runId = active ? run.id : "";
    }
    applyRole();
  }

  async function loadHistory() {
    const runs = await PA.api("GET", "/api/runs?limit=30");
    historyBody.innerHTML = runs.map(r => `<tr class="clickable" data-log="${r.id}"><td>${r.id}</td><td>${PA.esc(r.step)}</td>
      <td>${PA.badge(r.status)}${r.note ? ` <span class="muted small">${PA.esc(r.note)}</span>` : ""}</td><td>${PA.when(r.started_at)}</td>
      <td>${PA.esc(r.started_by)}</td><td>${PA.duration(r.duration_s)}</td><td><code class="small">${PA.esc(JSON.stringify(r.params))}</code></td></tr>`).join("")
      || `<tr><td colspan="7" class="muted">No runs yet.</td></tr>`;
  }

  async function loadServices() {
    const body = await PA.api("GET", "/api/services");
    document.getElementById("services-note").textContent = body.managed ? "" : body.error;
    servicesBody.innerHTML = body.services.map(s => `<tr data-service="${s.name}"><td><strong>${PA.esc(s.title)}</strong></td>
      <td>${PA.badge(s.state)}</td><td class="num">${s.rate_per_s == null ? "–" : PA.num(s.rate_per_s, 1) + " /s"}
      <div class="muted small">${PA.esc(s.rate_topic)}</div></td><td class="small">${PA.esc(s.description || "")}</td>
      <td><div class="row"><button class="admin-only" data-svc="${s.name}" data-action="start" ${!body.managed || s.state === "RUNNING" ? "disabled" : ""}>Start</button>
      <button class="admin-only" data-svc="${s.name}" data-action="stop" ${!body.managed || s.state !== "RUNNING" ? "disabled" : ""}>Stop</button></div></td></tr>`).join("");
    const sel = document.getElementById("scenario");
    if (!sel.options.length) {
      sel.innerHTML = body.scenarios.map(s => `<option value="${s.name}" title="${PA.esc(s.description)}">${s.name}</option>`).join("");
      const help = () => document.getElementById("scenario-help").textContent = body.scenarios.find(s => s.name === sel.value)?.description || "";
      sel.addEventListener("change", help); help();
    }
    applyRole();
  }

  async function loadPlatform() {
    const p = await PA.api("GET", "/api/platform");
    document.getElementById("platform").innerHTML = `Scoring API ${PA.badge(p.scoring_api.status)} · Kafka ${PA.badge(p.kafka.status)}`;
  }

  async function loadFirstRun() {
    const state = await PA.api("GET", "/api/first-run");
    const panel = document.getElementById("first-run");
    panel.hidden = state.status === "not_started";
    document.getElementById("first-run-steps").innerHTML = state.steps.map(s => `<li>${PA.esc(s.title)} ${PA.badge(s.status)}${s.run_id ? ` <a href="#" data-log="${s.run_id}">log</a>` : ""}</li>`).join("");
    const summary = document.getElementById("first-run-summary");
    const current = state.steps.findIndex(s => s.status === "running");
    if (state.status === "running") summary.textContent = `Running step ${current + 1} of ${state.steps.length}; the platform is usable meanwhile.`;
    else if (state.status === "succeeded") summary.innerHTML = `Done ${PA.ago(state.finished_at)}: dashboards, rules backtests and models now have real numbers.`;
    else if (state.status === "failed") {
      const failed = state.steps.find(s => s.status !== "succeeded" && s.status !== "pending");
      summary.innerHTML = `Stopped at <strong>${PA.esc(failed?.title || "a step")}</strong>: open its log, fix the cause, then
        <button class="admin-only" id="first-run-again">run the sequence again</button>.`;
      applyRole();
    }
  }

  function follow(runId) {
    if (source) source.close();
    followed = runId;
    logPanel.hidden = false;
    logEl.textContent = "";
    document.getElementById("log-title").textContent = `Log of run ${runId}`;
    document.getElementById("log-status").innerHTML = PA.badge("running");
    source = new EventSource(`/api/runs/${runId}/log?tail=400`);
    source.addEventListener("line", ev => {
      const atEnd = logEl.scrollTop + logEl.clientHeight >= logEl.scrollHeight - 20;
      logEl.textContent += JSON.parse(ev.data) + "\n";
      if (atEnd) logEl.scrollTop = logEl.scrollHeight;
    });
    source.addEventListener("end", ev => {
      const run = JSON.parse(ev.data);
      document.getElementById("log-status").innerHTML = `${PA.badge(run.status)} <span class="muted small">exit ${run.exit_code ?? "–"}, ${PA.duration(run.duration_s)}</span>`;
      source.close(); source = null;
      refresh();
    });
    logPanel.scrollIntoView({ behavior: "smooth", block: "nearest" });
  }

  function applyRole() {
    if (!PA.isAdmin()) document.querySelectorAll(".admin-only").forEach(b => { b.disabled = true; b.title = "admin role needed"; });
  }

  document.addEventListener("click", async ev => {
    const t = ev.target.closest("[data-run],[data-cancel],[data-log],[data-svc]");
    if (!t) return;
    ev.preventDefault();
    try {
      if (t.dataset.run) {
        const run = await PA.api("POST", `/api/steps/${t.dataset.run}/run`, { params: readParams(t.closest("tr")) });
        PA.toast(`Started ${run.step} (run ${run.id})`);
        follow(run.id);
      } else if (t.dataset.cancel !== undefined && t.dataset.runId) {
        if (!await PA.confirmDialog(`Cancel run ${t.dataset.runId}?`)) return;
        await PA.api("POST", `/api/runs/${t.dataset.runId}/cancel`);
        PA.toast(`Cancelling run ${t.dataset.runId}`);
      } else if (t.dataset.log) {
        follow(t.dataset.log);
      } else if (t.dataset.svc) {
        await PA.api("POST", `/api/services/${t.dataset.svc}/${t.dataset.action}`);
        PA.toast(`${t.dataset.svc}: ${t.dataset.action} requested`);
        loadServices();
      }
      refresh();
    } catch (e) { PA.toast(e.message, "bad"); }
  });

  document.addEventListener("click", async ev => {
    if (ev.target.id !== "first-run-again") return;
    try { await PA.api("POST", "/api/first-run"); PA.toast("First-run sequence started"); loadFirstRun(); }
    catch (e) { PA.toast(e.message, "bad"); }
  });

  document.getElementById("scenario-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const f = Object.fromEntries(new FormData(ev.target).entries());
    try {
      const sw = await PA.api("POST", "/api/simulator/scenario", { scenario: f.scenario, issuer: f.issuer || null });
      PA.toast(`Scenario switched to ${sw.scenario}`);
    } catch (e) { PA.toast(e.message, "bad"); }
  });

  const refresh = () => Promise.all([loadSteps(), loadHistory(), loadFirstRun()]);
  PA.every(3000, refresh);
  PA.every(5000, loadServices);
  PA.every(10000, loadPlatform);
})();
