// Agents page: run a specialist, ask a question or run them all; follow the run; show recommendations with
// their evidence (queries, figures, expected lift); accept (a shadow rule in the draft, or an accepted
// configuration change) or dismiss (with a reason, kept as feedback). Talks to /api/agents/*.
"use strict";
(() => {
  const $ = id => document.getElementById(id);
  const runsBody = document.querySelector("#runs tbody");
  const transcriptBody = document.querySelector("#run-transcript tbody");
  let followed = null;  // run id being followed
  let shownRun = null;  // the run shown in the run card
  const titles = {};
  document.querySelectorAll(".specialists li").forEach(li => { titles[li.dataset.agent] = li.querySelector("strong").textContent; });

  // ------------------------------------------------------------------------------ formatting
  const isMoney = key => /_usd$|^value_usd$/.test(key);
  const isRate = key => /(rate|share|_lift)$/.test(key) && !/_pp$/.test(key);
  function fmt(key, v) {
    if (v == null) return "–";
    if (typeof v === "object") return `<code>${PA.esc(JSON.stringify(v))}</code>`;
    if (isMoney(key)) return PA.esc(Number(v).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 })) + " USD";
    if (isRate(key) && typeof v === "number" && Math.abs(v) <= 1) return PA.pct(v, 2);
    if (typeof v === "number") return PA.num(v, Number.isInteger(v) ? 0 : 4);
    return PA.esc(v);
  }
  function factsTable(obj, caption) {
    const rows = Object.entries(obj || {}).filter(([, v]) => !(Array.isArray(v) && !v.length));
    if (!rows.length) return "";
    return `<table class="data figures">${caption ? `<caption class="muted small" style="text-align:left">${PA.esc(caption)}</caption>` : ""}
      <tbody>${rows.map(([k, v]) => `<tr data-figure="${PA.esc(k)}"><th scope="row">${PA.esc(k)}</th><td class="num">${
        v && typeof v === "object" && !Array.isArray(v) && ("live" in v || "delta" in v)
          ? `live ${fmt(k, v.live)} → ${fmt(k, v.candidate)} (Δ ${fmt(k, v.delta)})`
          : Array.isArray(v) ? v.map(x => `<div>${fmt(k, x)}</div>`).join("") : fmt(k, v)}</td></tr>`).join("")}</tbody></table>`;
  }
  function actionHtml(a) {
    if (!a) return "";
    if (a.kind === "rule") {
      return `<div class="small">Proposed <strong>${PA.esc(a.type)}</strong> rule <code>${PA.esc(a.rule_id)}</code>
        (priority ${PA.esc(a.priority)}): <pre>${PA.esc(a.condition)}  →  ${PA.esc(a.action)}</pre></div>`;
    }
    return `<div class="small">Proposed configuration change: <code>${PA.esc(a.key)}</code>
      ${a.current != null ? `from <code>${PA.esc(JSON.stringify(a.current))}</code> ` : ""}to <code>${PA.esc(JSON.stringify(a.proposed))}</code>
      ${a.note ? `<span class="muted">(${PA.esc(a.note)})</span>` : ""}</div>`;
  }
  function liftHtml(l) {
    if (!l) return "";
    const how = { backtest: "backtest", gold_estimate: "estimate from gold", none: "no estimate" }[l.method] || l.method;
    const cls = { estimated: "ok", not_run: "warn", failed: "bad", not_applicable: "" }[l.status] ?? "";
    return `<div class="lift" data-lift-method="${PA.esc(l.method)}" data-lift-status="${PA.esc(l.status)}">
      <strong>Expected lift</strong> ${PA.badge(how, cls)} ${PA.esc(l.summary)}</div>`;
  }
  function queriesHtml(qs) {
    return (qs || []).map(q => `<div class="query" data-tool="${PA.esc(q.tool)}">
      <div class="small"><strong>${PA.esc(q.tool)}</strong> over <code>${PA.esc(q.table)}</code>
        ${q.table_version != null ? `version ${PA.esc(q.table_version)}` : ""} · ${PA.num(q.rows)} row(s)
        · parameters <code>${PA.esc(JSON.stringify(q.parameters))}</code></div>
      <pre class="sql">${PA.esc(q.sql)}</pre></div>`).join("");
  }
  function feedbackHtml(list) {
    return (list || []).map(f => `<div class="small feedback">${PA.badge(f.verdict)} by ${PA.esc(f.actor)} ${PA.esc(PA.ago(f.at))}
      ${f.reason ? `: “${PA.esc(f.reason)}”` : ""}
      ${f.draft_rule_id ? ` · draft rule <a href="/rules" class="draft-link"><code>${PA.esc(f.draft_rule_id)}</code></a> (shadow)` : ""}</div>`).join("");
  }

  function recHtml(r) {
    const ev = r.evidence || {};
    const lift = ev.lift || {};
    const admin = PA.isAdmin();
    const buttons = r.status === "proposed" ? `<button type="button" class="primary" data-accept="${PA.esc(r.recommendation_id)}"
        ${admin ? "" : "disabled title=\"admin role needed\""}>${ev.action && ev.action.kind === "rule" ? "Accept into the draft (shadow)" : "Accept the change"}</button>
      <button type="button" data-dismiss="${PA.esc(r.recommendation_id)}" ${admin ? "" : "disabled title=\"admin role needed\""}>Dismiss</button>` : "";
    return `<article class="rec" data-id="${PA.esc(r.recommendation_id)}" data-status="${PA.esc(r.status)}" data-agent="${PA.esc(r.agent)}">
      <div class="meta">${PA.badge(r.status)} ${PA.badge(titles[r.agent] || r.agent, "info")} <span class="muted small">${PA.esc(r.category)} · ${PA.esc(r.scope)}</span></div>
      <h3>${PA.esc(r.title)}</h3>
      <p class="text">${PA.esc(r.recommendation)}</p>
      ${liftHtml(lift)}
      ${actionHtml(ev.action)}
      ${feedbackHtml(r.feedback)}
      <div class="actions-bar">${buttons}</div>
      <details class="evidence"><summary class="small">Evidence: ${(ev.queries || []).length} quer${(ev.queries || []).length === 1 ? "y" : "ies"}, figures, lift${ev.run_id ? ` (run ${PA.esc(ev.run_id)})` : ""}</summary>
        <h4 class="small">Queries</h4>${queriesHtml(ev.queries)}
        <h4 class="small">Figures</h4>${factsTable(ev.figures)}
        <h4 class="small">Lift (${PA.esc(lift.method || "")}, ${PA.esc(lift.status || "")})</h4>
        ${lift.formula ? `<p class="muted small">${PA.esc(lift.formula)}</p>` : ""}
        ${factsTable(lift.figures)}
        ${lift.backtest ? `<p class="small">Backtest run ${PA.esc(lift.backtest.run_id ?? "")} over ${PA.num(lift.backtest.rows)} transactions
          (${PA.esc(lift.backtest.range_start || "")} – ${PA.esc(lift.backtest.range_end || "")}), candidate
          <code>${PA.esc(lift.backtest.candidate_rule_set_version || "")}</code> vs live <code>${PA.esc(lift.backtest.live_rule_set_version || "")}</code></p>` : ""}
      </details>
    </article>`;
  }

  // ------------------------------------------------------------------------------ runs
  function runWhat(run) {
    if (run.kind === "question") return "Q: " + PA.esc(run.question);
    if (run.kind === "scheduled") return "every specialist";
    return PA.esc(run.agents.map(a => titles[a] || a).join(", "));
  }

  async function loadRuns() {
    const runs = await PA.api("GET", "/api/agents/runs?limit=15");
    runsBody.innerHTML = runs.map(r => `<tr data-run="${r.id}"><td>${r.id}</td><td>${runWhat(r)}</td><td>${PA.badge(r.status)}</td>
      <td>${PA.esc(r.planner)}${r.model ? ` <span class="muted small">${PA.esc(r.model)}</span>` : ""}</td><td>${PA.esc(r.started_by)}</td>
      <td>${PA.esc(PA.ago(r.started_at))}</td><td><button type="button" data-show-run="${r.id}" aria-label="Show run ${r.id}">Show</button></td></tr>`).join("")
      || `<tr><td colspan="7" class="muted">No run yet.</td></tr>`;
  }

  function eventDetail(e) {
    const skip = new Set(["at", "event"]);
    return Object.entries(e).filter(([k, v]) => !skip.has(k) && v != null && !(Array.isArray(v) && !v.length))
      .map(([k, v]) => `<span class="muted">${PA.esc(k)}</span> ${PA.esc(typeof v === "string" ? v : JSON.stringify(v)).slice(0, 600)}`).join(" · ");
  }

  function renderRun(run) {
    shownRun = run.id;
    const running = run.status === "running";
    $("run-card").dataset.runId = run.id;
    $("run-card").dataset.status = run.status;
    $("run-status").innerHTML = `Run ${run.id} ${PA.badge(run.status)} · ${runWhat(run)} · planner ${PA.esc(run.planner)}
      ${run.model ? `(${PA.esc(run.model)})` : ""} · ${PA.esc(PA.duration(run.duration_s))}${run.error ? ` <span class="error">${PA.esc(run.error)}</span>` : ""}`;
    $("run-answer").textContent = running ? "Working… (queries, analyses" + (run.backtest ? ", backtests" : "") + ")" : (run.answer || "");
    $("run-notes").innerHTML = (run.notes || []).map(n => `<li>${PA.esc(n)}</li>`).join("");
    $("run-recs").innerHTML = running ? "" : (run.recommendations || []).map(recHtml).join("")
      || `<p class="muted">No recommendation from this run.</p>`;
    transcriptBody.innerHTML = (run.transcript || []).map(e => `<tr data-event="${PA.esc(e.event)}"><td>${PA.esc(e.event)}${
      e.status ? " " + PA.badge(e.status, e.status === "ok" || e.status === "estimated" ? "ok" : e.status === "refused" || e.status === "failed" || e.status === "error" ? "bad" : "") : ""}</td>
      <td class="small">${eventDetail(e)}</td></tr>`).join("");
  }

  async function follow(runId) {
    followed = runId;
    while (followed === runId) {
      let run;
      try { run = await PA.api("GET", `/api/agents/runs/${runId}`); } catch (e) { PA.toast(e.message, "bad"); break; }
      renderRun(run);
      if (run.status !== "running") {
        PA.toast(`Agent run ${runId} ${run.status}`, run.status === "succeeded" ? undefined : "bad");
        loadRuns(); loadRecs();
        break;
      }
      await new Promise(r => setTimeout(r, 1000));
    }
    if (followed === runId) followed = null;
  }

  async function start(body) {
    try {
      const run = await PA.api("POST", "/api/agents/runs", body);
      PA.toast(`Agent run ${run.id} started`);
      loadRuns();
      follow(run.id);
      $("run-card").scrollIntoView({ behavior: "smooth", block: "start" });
    } catch (e) { PA.toast(e.message, "bad"); }
  }

  // ------------------------------------------------------------------------------ recommendations
  async function loadRecs() {
    const params = new URLSearchParams();
    if ($("recs-status").value) params.set("status", $("recs-status").value);
    if ($("recs-agent").value) params.set("agent", $("recs-agent").value);
    try {
      const data = await PA.api("GET", "/api/agents/recommendations?" + params);
      $("recs").innerHTML = data.recommendations.map(recHtml).join("") || `<p class="muted">No recommendation here.</p>`;
    } catch (e) { $("recs").innerHTML = `<p class="error">${PA.esc(e.message)}</p>`; }
  }

  async function refreshAfterDecision() {
    if (shownRun != null) renderRun(await PA.api("GET", `/api/agents/runs/${shownRun}`));
    loadRecs();
  }

  async function accept(id) {
    if (!await PA.confirmDialog("Accept this recommendation? A proposed rule joins the draft rule set in shadow " +
      "(logged, never deciding until activated on Rules); a configuration change is recorded as accepted.")) return;
    try {
      const res = await PA.api("POST", `/api/agents/recommendations/${encodeURIComponent(id)}/accept`, {});
      PA.toast(res.draft_rule ? `Rule ${res.draft_rule.id} added to the draft in shadow` : "Configuration change accepted");
      await refreshAfterDecision();
    } catch (e) { PA.toast(e.message, "bad"); }
  }

  function askReason() {
    const dlg = $("dismiss-dialog");
    $("dismiss-reason").value = "";
    return new Promise(resolve => {
      const done = value => { dlg.close(); resolve(value); };
      $("dismiss-cancel").onclick = () => done(null);
      $("dismiss-form").onsubmit = ev => {
        ev.preventDefault();
        const reason = $("dismiss-reason").value.trim();
        if (!reason) { $("dismiss-reason").setAttribute("aria-invalid", "true"); return; }
        done(reason);
      };
      dlg.oncancel = () => resolve(null);
      dlg.showModal();
      $("dismiss-reason").focus();
    });
  }

  async function dismiss(id) {
    const reason = await askReason();
    if (!reason) return;
    try {
      await PA.api("POST", `/api/agents/recommendations/${encodeURIComponent(id)}/dismiss`, { reason });
      PA.toast("Recommendation dismissed");
      await refreshAfterDecision();
    } catch (e) { PA.toast(e.message, "bad"); }
  }

  // ------------------------------------------------------------------------------ events
  if (!PA.isAdmin()) document.querySelectorAll(".admin-only").forEach(b => { b.disabled = true; b.title = "admin role needed"; });
  $("ask-form").addEventListener("submit", ev => {
    ev.preventDefault();
    const question = $("question").value.trim();
    if (!question) { $("question").setAttribute("aria-invalid", "true"); return; }
    $("question").removeAttribute("aria-invalid");
    start({ question, backtest: $("backtest").checked });
  });
  $("run-all").addEventListener("click", () => start({ scheduled: true, backtest: $("backtest").checked }));
  $("recs-status").addEventListener("change", loadRecs);
  $("recs-agent").addEventListener("change", loadRecs);
  document.addEventListener("click", ev => {
    const t = ev.target.closest("[data-run],[data-show-run],[data-accept],[data-dismiss]");
    if (!t) return;
    if (t.dataset.run) start({ agent: t.dataset.run, backtest: $("backtest").checked });
    else if (t.dataset.showRun) PA.api("GET", `/api/agents/runs/${t.dataset.showRun}`).then(run => {
      renderRun(run);
      if (run.status === "running") follow(run.id);
    }).catch(e => PA.toast(e.message, "bad"));
    else if (t.dataset.accept) accept(t.dataset.accept);
    else if (t.dataset.dismiss) dismiss(t.dataset.dismiss);
  });

  loadRuns().then(async () => {
    const first = runsBody.querySelector("tr[data-run]");
    if (first) {
      const run = await PA.api("GET", `/api/agents/runs/${first.dataset.run}`);
      renderRun(run);
      if (run.status === "running") follow(run.id);
    }
  }).catch(e => PA.toast(e.message, "bad"));
  loadRecs();
})();
