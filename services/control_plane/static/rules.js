// Rules page: the draft rule set (edit with inline errors at the parser's position), its diff against the
// live set, backtest of the draft, activation, history and rollback. Talks to /api/rules/*.
"use strict";
(() => {
  const $ = id => document.getElementById(id);
  const form = $("rule-form");
  const cond = $("rule-condition");
  const draftBody = document.querySelector("#draft-table tbody");
  const historyBody = document.querySelector("#history-table tbody");
  const backtestsBody = document.querySelector("#backtests-table tbody");
  const FORM_FIELDS = ["id", "name", "type", "condition", "action", "priority", "active", "shadow", "description"];
  let meta = { fields: [], action_examples: {}, metrics: [] };
  let view = null;          // the last GET /api/rules
  let editing = null;       // id of the draft rule in the form (null: a new rule)
  let followedRun = null;   // backtest run being followed
  let typingTimer = null;

  // ------------------------------------------------------------------------------ formatting
  const sign = v => (v > 0 ? "+" : v < 0 ? "−" : "");
  function fmtValue(v, format) {
    if (v == null) return "–";
    if (format === "pct") return PA.pct(v, 2);
    if (format === "usd") return "$" + PA.num(v, 2);
    if (format === "count") return PA.num(v);
    return PA.num(v, 4);
  }
  function fmtDelta(v, format) {
    if (v == null) return "–";
    const size = Math.abs(v);
    if (format === "pct") return sign(v) + (100 * size).toFixed(2) + " pp";
    if (format === "usd") return sign(v) + "$" + PA.num(size, 2);
    if (format === "count") return sign(v) + PA.num(size);
    return sign(v) + PA.num(size, 4);
  }
  const verdictText = { better: "▲ better", worse: "▼ worse", same: "no change", neutral: "" };
  const code = v => `<code>${PA.esc(typeof v === "string" ? v : JSON.stringify(v))}</code>`;

  // ------------------------------------------------------------------------------ live + draft
  function renderLive(live, file) {
    let html = `Live rule set: <strong>${PA.esc(live.label)}</strong> <code>${PA.esc(live.full_version)}</code>
      <span class="small">by ${PA.esc(live.created_by)}, ${PA.esc(PA.ago(live.created_at))}</span>`;
    if (file.error) html += ` ${PA.badge("published file invalid", "bad")} <span class="small">${PA.esc(file.error)}</span>`;
    else if (!live.file_in_sync) html += ` ${PA.badge("published file differs", "warn")} <span class="small">${PA.esc(file.path)}: ${PA.esc(file.full_version)}</span>`;
    $("live-version").innerHTML = html;
  }

  function statusCell(rule) {
    if (rule.status === "added") return PA.badge("added", "ok");
    if (rule.status === "changed") return `<span title="changed: ${PA.esc(rule.changed_fields.join(", "))}">${PA.badge("changed", "warn")}</span>
      <div class="muted small">${PA.esc(rule.changed_fields.join(", "))}</div>`;
    if (rule.status === "invalid") return `<span title="${PA.esc(rule.error)}">${PA.badge("invalid", "bad")}</span>`;
    return `<span class="muted small">same</span>`;
  }

  function renderDraft() {
    const rows = view.draft.map(r => `<tr data-rule-id="${PA.esc(r.id)}" class="${r.id === editing ? "selected" : ""}">
      <td><code>${PA.esc(r.id)}</code></td><td>${PA.esc(r.name)}</td><td>${PA.esc(r.type)}</td>
      <td class="cond"><code>${PA.esc(r.condition)}</code></td><td>${PA.badge(r.action, String(r.action).split(":")[0])}</td>
      <td class="num">${PA.esc(r.priority)}</td><td>${r.active ? "yes" : `<span class="muted">no</span>`}</td>
      <td>${r.shadow ? PA.badge("shadow") : `<span class="muted">no</span>`}</td><td>${statusCell(r)}</td>
      <td><button type="button" data-edit="${PA.esc(r.id)}" aria-label="Edit rule ${PA.esc(r.id)}">Edit</button></td></tr>`);
    const removed = view.diff.removed.map(r => `<tr class="removed"><td><code>${PA.esc(r.id)}</code></td><td>${PA.esc(r.name)}</td>
      <td>${PA.esc(r.type)}</td><td class="cond"><code>${PA.esc(r.condition)}</code></td><td>${PA.esc(r.action)}</td>
      <td class="num">${PA.esc(r.priority)}</td><td></td><td></td><td>${PA.badge("removed", "bad")}</td><td></td></tr>`);
    draftBody.innerHTML = rows.concat(removed).join("") || `<tr><td colspan="10" class="muted">The draft has no rules.</td></tr>`;
    const d = view.diff;
    $("draft-summary").textContent = d.identical ? "The draft is the live set."
      : `${d.added.length} added, ${d.changed.length} changed, ${d.removed.length} removed vs live`;
    $("draft-diff").innerHTML = diffHtml(d, "The draft is identical to the live set: nothing to activate.");
    $("activate").disabled = !PA.isAdmin() || d.identical;
  }

  function diffHtml(diff, emptyText) {
    if (diff.identical) return `<p class="muted small">${PA.esc(emptyText)}</p>`;
    const added = diff.added.map(r => `<li class="diff-add"><strong>added</strong> <code>${PA.esc(r.id)}</code> ${PA.esc(r.name)}:
      ${code(r.condition)} → ${code(r.action)}${r.shadow ? " (shadow)" : ""}${r.active ? "" : " (inactive)"}</li>`);
    const removed = diff.removed.map(r => `<li class="diff-del"><strong>removed</strong> <code>${PA.esc(r.id)}</code> ${PA.esc(r.name)}</li>`);
    const changed = diff.changed.map(c => `<li><strong>changed</strong> <code>${PA.esc(c.id)}</code> ${PA.esc(c.name)}<ul class="diff-list">
      ${c.fields.map(f => `<li>${PA.esc(f.field)}: <span class="diff-del">${code(f.before)}</span> → <span class="diff-add">${code(f.after)}</span></li>`).join("")}</ul></li>`);
    return `<ul class="diff-list">${added.concat(changed, removed).join("")}</ul>`;
  }

  async function loadDraft() {
    view = await PA.api("GET", "/api/rules");
    renderLive(view.live, view.file);
    renderDraft();
    applyRole();
  }

  // ------------------------------------------------------------------------------ history
  async function loadHistory() {
    const versions = await PA.api("GET", "/api/rules/versions");
    historyBody.innerHTML = versions.map(v => {
      const ch = v.changes;
      const summary = v.previous_label ? `${ch.added} added, ${ch.changed} changed, ${ch.removed} removed vs ${v.previous_label}` : "first version";
      const rollback = v.live ? PA.badge("live", "ok")
        : `<button type="button" class="admin-only" data-rollback="${v.id}" data-label="${PA.esc(v.label)}">Roll back to ${PA.esc(v.label)}</button>`;
      return `<tr data-version="${v.id}"><td><strong>${PA.esc(v.label)}</strong></td><td><code class="small">${PA.esc(v.full_version)}</code></td>
        <td>${PA.esc(v.created_by)}</td><td title="${PA.esc(v.created_at)}">${PA.esc(PA.when(v.created_at))}</td>
        <td>${PA.esc(v.comment)}${v.rolled_back_from_label ? ` ${PA.badge("rollback to " + v.rolled_back_from_label, "warn")}` : ""}</td>
        <td class="num">${v.rules} <span class="muted small">(${v.shadow_rules} shadow)</span></td>
        <td><details><summary>${PA.esc(summary)}</summary>${v.previous_label ? diffHtml(v.diff, "No rule changes.") : `<p class="muted small">${v.rules} rules</p>`}</details></td>
        <td>${rollback}</td></tr>`;
    }).join("") || `<tr><td colspan="8" class="muted">No versions yet.</td></tr>`;
    applyRole();
  }

  // ------------------------------------------------------------------------------ the form
  function clearErrors() {
    form.querySelectorAll("[aria-invalid]").forEach(el => el.removeAttribute("aria-invalid"));
    form.querySelectorAll(".field-error").forEach(el => { el.textContent = ""; });
    $("condition-note").textContent = "";
  }

  function showConditionError(err, moveCursor) {
    cond.setAttribute("aria-invalid", "true");
    const caret = " ".repeat(Math.max(err.column - 1, 0)) + "^";
    $("condition-error").innerHTML = `<span>Line ${err.line}, column ${err.column} (character ${err.pos}): ${PA.esc(err.message)}</span>
      <pre aria-hidden="true">${PA.esc(err.source_line)}\n${caret}</pre>`;
    if (moveCursor) { cond.focus(); cond.setSelectionRange(err.pos, err.pos); }
  }

  // Show validation errors next to their fields; returns true when there were none.
  function showErrors(errors, moveCursor) {
    clearErrors();
    for (const err of errors) {
      if (err.field === "condition" && err.line != null) { showConditionError(err, moveCursor); continue; }
      const input = form.elements[err.field];
      const target = $("err-" + err.field) || $("form-status");
      if (input && input.setAttribute) input.setAttribute("aria-invalid", "true");
      target.textContent = (target.textContent ? target.textContent + " " : "") + err.message;
      if (err.field === "condition") $("condition-error").textContent = err.message;
    }
    if (moveCursor && errors.length && !errors.some(e => e.field === "condition")) form.elements[errors[0].field]?.focus?.();
    return !errors.length;
  }

  function readForm() {
    const body = {};
    for (const name of FORM_FIELDS) {
      const el = form.elements[name];
      if (el.type === "checkbox") body[name] = el.checked;
      else if (name === "priority") body[name] = el.value === "" ? 100 : Number(el.value);
      else body[name] = el.value;
    }
    return body;
  }

  function fillForm(rule) {
    editing = rule ? rule.id : null;
    clearErrors();
    for (const name of FORM_FIELDS) {
      const el = form.elements[name];
      const value = rule ? rule[name] : { type: "risk", priority: 100, active: true, shadow: false }[name];
      if (el.type === "checkbox") el.checked = !!value; else el.value = value ?? "";
    }
    form.elements.id.readOnly = !!rule;  // a rule's id never changes
    $("form-title").textContent = rule ? `Edit rule ${rule.id}` : "New rule";
    $("rule-delete").hidden = !rule;
    $("rule-save").textContent = rule ? "Save changes to draft" : "Add to draft";
    $("form-status").textContent = "";
    $("condition-error").textContent = "";
    updateActionOptions();
    if (view) renderDraft();
  }

  function updateActionOptions() {
    const examples = meta.action_examples[form.elements.type.value] || [];
    $("action-options").innerHTML = examples.map(a => `<option value="${PA.esc(a)}"></option>`).join("");
  }

  async function validateCondition() {
    const text = cond.value;
    if (!text.trim()) { $("condition-error").textContent = ""; cond.removeAttribute("aria-invalid"); return; }
    const res = await PA.api("POST", "/api/rules/validate", { condition: text });
    if (cond.value !== text) return;  // the user typed on meanwhile
    const err = res.errors.find(e => e.field === "condition");
    if (err) { showConditionError(err, false); $("condition-note").textContent = ""; }
    else {
      cond.removeAttribute("aria-invalid");
      $("condition-error").textContent = "";
      $("condition-note").textContent = res.fields_used.length ? "Valid. Uses " + res.fields_used.join(", ") + "." : "Valid.";
    }
  }

  async function validateForm() {
    const res = await PA.api("POST", "/api/rules/validate", readForm());
    if (showErrors(res.errors, true)) {
      $("condition-note").textContent = "Valid rule" + (res.fields_used.length ? "; uses " + res.fields_used.join(", ") : "") + ".";
    }
    return res.valid;
  }

  // ------------------------------------------------------------------------------ autocomplete
  function currentWord() {
    const upto = cond.value.slice(0, cond.selectionStart);
    const m = /[A-Za-z_][A-Za-z0-9_]*$/.exec(upto);
    return m ? { word: m[0], start: cond.selectionStart - m[0].length } : null;
  }

  function suggest() {
    const box = $("condition-suggest");
    const cur = currentWord();
    const names = meta.fields.map(f => f.name);
    const matches = cur && !names.includes(cur.word)
      ? names.filter(n => n.startsWith(cur.word.toLowerCase())).concat(names.filter(n => !n.startsWith(cur.word.toLowerCase()) && n.includes(cur.word.toLowerCase()))).slice(0, 8)
      : [];
    box.innerHTML = matches.map(n => `<li><button type="button" data-complete="${PA.esc(n)}">${PA.esc(n)}</button></li>`).join("");
  }

  function insertAtCursor(text, replaceFrom) {
    const start = replaceFrom ?? cond.selectionStart, end = cond.selectionEnd;
    cond.setRangeText(text, start, end, "end");
    cond.focus();
    cond.dispatchEvent(new Event("input"));
  }

  // ------------------------------------------------------------------------------ backtest
  function metricsTable(bt) {
    if (!bt.metrics.length) return "";
    return `<table class="data"><caption class="muted small" style="text-align:left">Draft <code>${PA.esc(bt.candidate_full_version || "")}</code>
      against live <code>${PA.esc(bt.live_full_version || "")}</code> on ${PA.num(bt.rows)} transactions
      (${PA.esc(bt.range_start || "")} – ${PA.esc(bt.range_end || "")})</caption>
      <thead><tr><th scope="col">Metric</th><th scope="col">Live</th><th scope="col">Draft</th><th scope="col">Δ (draft − live)</th><th scope="col">Verdict</th></tr></thead>
      <tbody>${bt.metrics.map(m => `<tr data-metric="${PA.esc(m.metric)}" data-verdict="${m.verdict}">
        <th scope="row">${PA.esc(m.label)}</th><td class="num">${fmtValue(m.live, m.format)}</td><td class="num">${fmtValue(m.candidate, m.format)}</td>
        <td class="num ${m.verdict === "better" || m.verdict === "worse" ? m.verdict : ""}">${fmtDelta(m.delta, m.format)}</td>
        <td class="${m.verdict}">${verdictText[m.verdict] || ""}</td></tr>`).join("")}</tbody></table>`;
  }

  function renderBacktest(bt) {
    const forDraft = view && bt.candidate_full_version === view.draft_full_version;
    const state = bt.status === "running" || bt.status === "queued";
    $("backtest-status").innerHTML = `Run ${bt.id} ${PA.badge(bt.status)} ${state ? "" : PA.esc(PA.duration(bt.duration_s))}
      ${!state && !forDraft ? `<span class="muted">(an earlier draft; the draft changed since)</span>` : ""}`;
    $("backtest-log").textContent = (bt.log_tail || []).join("\n");
    if (state) { $("backtest-result").innerHTML = `<p class="muted small">Replaying history…</p>`; return; }
    if (bt.status !== "succeeded" || !bt.has_result) {
      $("backtest-result").innerHTML = `<p class="error small">The backtest ${PA.esc(bt.status)} without a result; see its log.</p>`;
      $("backtest-log-box").open = true;
      return;
    }
    $("backtest-result").innerHTML = (bt.live_matches === false
      ? `<p class="error small">The job compared against ${PA.esc(bt.live_full_version)}, not the live set of the control plane
         (${PA.esc(bt.live_label)}): it reads another data folder.</p>` : "") + metricsTable(bt);
  }

  async function followBacktest(runId) {
    followedRun = runId;
    $("backtest-draft").disabled = true;
    while (followedRun === runId) {
      let bt;
      try { bt = await PA.api("GET", `/api/rules/backtests/${runId}`); } catch (e) { PA.toast(e.message, "bad"); break; }
      renderBacktest(bt);
      if (bt.status !== "running" && bt.status !== "queued") {
        PA.toast(`Backtest run ${runId} ${bt.status}`, bt.status === "succeeded" ? undefined : "bad");
        loadBacktests();
        break;
      }
      await new Promise(r => setTimeout(r, 2000));
    }
    if (followedRun === runId) followedRun = null;
    $("backtest-draft").disabled = !PA.isAdmin();
  }

  async function loadBacktests(first) {
    const list = await PA.api("GET", "/api/rules/backtests?limit=10");
    const delta = (bt, metric) => {
      const m = bt.metrics.find(x => x.metric === metric);
      return m ? `<span class="${m.verdict}">${fmtDelta(m.delta, m.format)}</span>` : "–";
    };
    backtestsBody.innerHTML = list.map(bt => `<tr><td>${bt.id}</td><td>${PA.badge(bt.status)}</td>
      <td><code class="small">${PA.esc(bt.candidate_full_version || "")}</code>${view && bt.candidate_full_version === view.draft_full_version ? " " + PA.badge("current draft", "info") : ""}</td>
      <td>${PA.esc(bt.live_label || "")}</td><td>${PA.esc(bt.started_by)}</td><td>${PA.esc(PA.ago(bt.started_at))}</td>
      <td class="num">${delta(bt, "approval_rate")}</td><td class="num">${delta(bt, "fraud_caught")}</td>
      <td class="num">${delta(bt, "false_decline_value_usd")}</td>
      <td><button type="button" data-show-backtest="${bt.id}" aria-label="Show backtest ${bt.id}">Show</button></td></tr>`).join("")
      || `<tr><td colspan="10" class="muted">No backtest of a draft yet.</td></tr>`;
    if (first && list.length && followedRun == null) {
      const latest = list[0];
      if (latest.status === "running" || latest.status === "queued") followBacktest(latest.id); else renderBacktest(latest);
    }
  }

  function backtestedCurrentDraft() {
    const rows = [...backtestsBody.querySelectorAll("tr")];
    return rows.some(tr => tr.textContent.includes("current draft") && tr.textContent.includes("succeeded"));
  }

  // ------------------------------------------------------------------------------ events
  function applyRole() {
    if (!PA.isAdmin()) document.querySelectorAll(".admin-only").forEach(b => { b.disabled = true; b.title = "admin role needed"; });
  }

  cond.addEventListener("input", () => {
    suggest();
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => validateCondition().catch(e => PA.toast(e.message, "bad")), 350);
  });
  cond.addEventListener("click", suggest);
  cond.addEventListener("change", () => { clearTimeout(typingTimer); validateCondition().catch(e => PA.toast(e.message, "bad")); });
  cond.addEventListener("keydown", ev => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); validateForm().catch(e => PA.toast(e.message, "bad")); }
    if (ev.key === "Escape") $("condition-suggest").innerHTML = "";
  });
  form.elements.type.addEventListener("change", updateActionOptions);

  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    const body = readForm();
    try {
      const saved = editing
        ? await PA.api("PUT", `/api/rules/${encodeURIComponent(editing)}`, body)
        : await PA.api("POST", "/api/rules", body);
      PA.toast(`Rule ${saved.id} saved to the draft`);
      $("form-status").textContent = `Saved ${saved.id} to the draft.`;
      editing = saved.id;
      await loadDraft();
      fillForm(view.draft.find(r => r.id === saved.id) || saved);
      $("form-status").textContent = `Saved ${saved.id} to the draft.`;
    } catch (e) {
      const detail = e.data && e.data.detail;
      if (e.status === 422 && detail && Array.isArray(detail.errors) && detail.errors.length) showErrors(detail.errors, true);
      else { $("form-status").textContent = e.message; PA.toast(e.message, "bad"); }
    }
  });

  $("rule-validate").addEventListener("click", () => validateForm().catch(e => PA.toast(e.message, "bad")));
  $("rule-cancel").addEventListener("click", () => fillForm(null));
  $("rule-new").addEventListener("click", () => { fillForm(null); form.elements.id.focus(); });

  $("rule-delete").addEventListener("click", async () => {
    if (!editing || !await PA.confirmDialog(`Delete rule ${editing} from the draft? The live set changes only when you activate.`)) return;
    try {
      await PA.api("DELETE", `/api/rules/${encodeURIComponent(editing)}`);
      PA.toast(`Rule ${editing} deleted from the draft`);
      fillForm(null);
      await loadDraft();
    } catch (e) { PA.toast(e.message, "bad"); }
  });

  $("draft-discard").addEventListener("click", async () => {
    if (!await PA.confirmDialog("Discard every change of the draft? It becomes a copy of the live set again.")) return;
    try {
      const res = await PA.api("POST", "/api/rules/draft/discard");
      PA.toast(`Draft reset to ${res.reset_to}`);
      fillForm(null);
      await loadDraft();
    } catch (e) { PA.toast(e.message, "bad"); }
  });

  $("backtest-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const f = ev.target.elements;
    const body = {};
    if (f.days.value !== "") body.days = parseInt(f.days.value, 10);
    if (f.max_rows.value !== "") body.max_rows = parseInt(f.max_rows.value, 10);
    try {
      const run = await PA.api("POST", "/api/rules/backtest", body);
      PA.toast(`Backtest started (run ${run.id})`);
      loadBacktests();
      followBacktest(run.id);
    } catch (e) { PA.toast(e.message, "bad"); }
  });

  $("activate-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    if (!view) return;
    const d = view.diff;
    const untested = backtestedCurrentDraft() ? "" : " This draft has not been backtested.";
    const msg = `Activate the draft as the next live version (${d.added.length} added, ${d.changed.length} changed, ` +
      `${d.removed.length} removed vs ${view.live.label})? The scoring API and the stream pick it up within their refresh interval.${untested}`;
    if (!await PA.confirmDialog(msg)) return;
    try {
      const v = await PA.api("POST", "/api/rules/activate", { comment: $("activate-comment").value, base_version_id: view.live.id });
      PA.toast(`Activated ${v.label} (${v.full_version})`);
      $("activate-comment").value = "";
      await Promise.all([loadDraft(), loadHistory()]);
    } catch (e) { PA.toast(e.message, "bad"); }
  });

  document.addEventListener("click", async ev => {
    const t = ev.target.closest("[data-edit],[data-rollback],[data-complete],[data-insert],[data-show-backtest]");
    if (!t) return;
    if (t.dataset.edit) {
      const rule = view.draft.find(r => r.id === t.dataset.edit);
      fillForm(rule);
      form.scrollIntoView({ behavior: "smooth", block: "nearest" });
      form.elements.name.focus();
    } else if (t.dataset.complete) {
      const cur = currentWord();
      insertAtCursor(t.dataset.complete, cur ? cur.start : undefined);
      $("condition-suggest").innerHTML = "";
    } else if (t.dataset.insert) {
      insertAtCursor(t.dataset.insert);
    } else if (t.dataset.showBacktest) {
      const bt = await PA.api("GET", `/api/rules/backtests/${t.dataset.showBacktest}`);
      if (bt.status === "running" || bt.status === "queued") followBacktest(bt.id); else renderBacktest(bt);
      $("backtest-result").scrollIntoView({ behavior: "smooth", block: "nearest" });
    } else if (t.dataset.rollback) {
      const label = t.dataset.label;
      if (!await PA.confirmDialog(`Roll back to ${label}? Its rules are published again as a new version, and the draft is reset to them (unsaved draft changes are lost).`)) return;
      try {
        const v = await PA.api("POST", `/api/rules/versions/${t.dataset.rollback}/rollback`, {});
        PA.toast(`Rolled back: ${v.label} has the rules of ${label}`);
        fillForm(null);
        await Promise.all([loadDraft(), loadHistory()]);
      } catch (e) { PA.toast(e.message, "bad"); }
    }
  });

  // ------------------------------------------------------------------------------ start
  // what is typed into the form before the page has loaded its field list is kept, not reset
  let typedEarly = false;
  form.addEventListener("input", () => { typedEarly = true; }, { once: true });
  form.addEventListener("change", () => { typedEarly = true; }, { once: true });
  (async () => {
    try { meta = await PA.api("GET", "/api/rules/meta"); } catch (e) { PA.toast(e.message, "bad"); }
    if (typedEarly) updateActionOptions(); else fillForm(null);
    await loadDraft().catch(e => PA.toast(e.message, "bad"));
    await loadBacktests(true).catch(e => PA.toast(e.message, "bad"));
    PA.every(15000, () => Promise.all([loadDraft(), loadHistory(), loadBacktests()]));
  })();
})();
