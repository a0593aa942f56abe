// /decisions: the live decision stream (server-sent events), a decision's detail, "Try a transaction".
"use strict";
(() => {
  const MAX_ROWS = 200;
  const table = document.getElementById("decisions-table");
  const tbody = table.querySelector("tbody");
  const filtersForm = document.getElementById("filters");
  const pauseBtn = document.getElementById("pause");
  const counterEl = document.getElementById("counter");
  const statusEl = document.getElementById("feed-status");
  const detailPanel = document.getElementById("decision-detail");
  const detailBody = document.getElementById("detail-body");
  const similarBody = document.getElementById("detail-similar");
  const STATUS_CLASS = { connected: "ok", starting: "warn", error: "bad", stopped: "bad", disabled: "" };

  // pending: decisions that arrived while paused, by transaction id (a late join replaces, not adds)
  let source = null, paused = false, pending = new Map(), received = 0, selectedId = null;

  // ------------------------------------------------------------------ live table
  const emptyRow = text => `<tr class="empty"><td colspan="11" class="muted">${PA.esc(text)}</td></tr>`;
  const rowFor = id => tbody.querySelector(`tr[data-transaction-id="${CSS.escape(id)}"]`);

  function filterParams() {
    const params = new URLSearchParams();
    for (const [key, value] of new FormData(filtersForm)) {
      if (String(value).trim()) params.set(key, String(value).trim());
    }
    return params;
  }

  function reasonsText(codes) {
    if (!codes || !codes.length) return '<span class="muted">–</span>';
    const shown = codes.slice(0, 3).map(r => `<code>${PA.esc(r.code)}</code>`).join(" ");
    return shown + (codes.length > 3 ? ` <span class="muted small">+${codes.length - 3}</span>` : "");
  }

  function cells(d) {
    const tx = d.transaction;
    const decided = d.decided_at ? new Date(d.decided_at).toLocaleTimeString() : "–";
    return `<td title="${PA.esc(d.decided_at)}">${PA.esc(decided)}</td>
      <td><code class="small">${PA.esc(d.transaction_id)}</code></td>
      <td>${PA.badge(d.outcome)}</td>
      <td>${tx ? `${PA.esc(tx.merchant_id)}<div class="muted small">${PA.esc(tx.merchant_segment)}</div>`
               : '<span class="muted">–</span>'}</td>
      <td class="num">${tx ? `${PA.esc(tx.amount)} ${PA.esc(tx.currency)}` : "–"}</td>
      <td>${tx ? PA.esc(tx.card_network) : "–"}</td>
      <td>${PA.esc(d.recommended_route)}</td>
      <td>${reasonsText(d.reason_codes)}</td>
      <td class="num">${PA.pct(d.risk_score)}</td>
      <td class="num">${PA.ms(d.latency_ms)}</td>
      <td>${PA.badge(d.source, "")}</td>`;
  }

  function upsert(d) {
    tbody.querySelector("tr.empty")?.remove();
    let row = rowFor(d.transaction_id);
    if (row) {
      row.innerHTML = cells(d);  // the same decision again, now with its transaction's facts
    } else {
      row = document.createElement("tr");
      row.className = "clickable fresh";
      row.tabIndex = 0;
      row.dataset.transactionId = d.transaction_id;
      row.innerHTML = cells(d);
      tbody.prepend(row);
      received++;
      while (tbody.rows.length > MAX_ROWS) tbody.lastElementChild.remove();
    }
    row.classList.toggle("selected", d.transaction_id === selectedId);
    if (d.transaction_id === selectedId) {
      renderDetail(d);
      // its facts just arrived: look the similar transactions up by them (the index may not hold it yet)
      if (d.transaction && similarFor.id === d.transaction_id && !similarFor.hadFacts) loadSimilar(d.transaction_id, true);
    }
  }

  function onDecision(d) {
    if (paused) {
      pending.set(d.transaction_id, d);
      if (pending.size > MAX_ROWS) pending.delete(pending.keys().next().value);
    } else {
      upsert(d);
    }
    updateCounter();
  }

  function updateCounter() {
    const shown = tbody.querySelectorAll("tr[data-transaction-id]").length;
    counterEl.textContent = `${PA.num(shown)} shown · ${PA.num(received)} received` +
      (paused ? ` · paused, ${PA.num(pending.size)} waiting` : "");
  }

  function showStatus(s) {
    const bits = [`Feed ${PA.badge(s.status, STATUS_CLASS[s.status] ?? "")}`,
      `${PA.num(s.consumed.decisions)} decisions consumed`,
      `${PA.num(s.invalid.decisions)} invalid skipped`,
      `buffer ${PA.num(s.buffered)}/${PA.num(s.buffer_size)}`];
    if (s.error && s.status !== "connected") bits.push(`<span class="error">${PA.esc(s.error)}</span>`);
    if (s.dropped) bits.push(`${PA.num(s.dropped)} dropped (browser too slow)`);
    statusEl.innerHTML = bits.join(" · ");
  }

  function connect() {
    if (source) source.close();
    tbody.innerHTML = emptyRow("Waiting for decisions…");
    pending = new Map(); received = 0;
    const params = filterParams();
    history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
    params.set("backlog", MAX_ROWS);
    source = new EventSource("/api/decisions/stream?" + params);
    source.addEventListener("decision", ev => onDecision(JSON.parse(ev.data)));
    source.addEventListener("status", ev => showStatus(JSON.parse(ev.data)));
    source.addEventListener("error", () => {
      // EventSource reconnects by itself; rows already shown are updated in place, not duplicated
      statusEl.innerHTML = `Stream ${PA.badge("reconnecting", "warn")}`;
    });
    updateCounter();
  }

  function loadFiltersFromUrl() {
    const params = new URLSearchParams(location.search);
    for (const el of filtersForm.elements) {
      if (el.name && params.has(el.name)) el.value = params.get(el.name);
    }
  }

  filtersForm.addEventListener("submit", ev => { ev.preventDefault(); connect(); });
  filtersForm.addEventListener("reset", () => setTimeout(connect, 0));  // after the form has cleared
  filtersForm.querySelectorAll("select").forEach(el => el.addEventListener("change", connect));

  pauseBtn.addEventListener("click", () => {
    paused = !paused;
    pauseBtn.setAttribute("aria-pressed", String(paused));
    pauseBtn.textContent = paused ? "Resume" : "Pause";
    if (!paused) { pending.forEach(d => upsert(d)); pending = new Map(); }
    updateCounter();
  });

  // ------------------------------------------------------------------ detail
  function factsList(pairs) {
    return `<dl class="facts">${pairs.map(([k, v]) => `<dt>${PA.esc(k)}</dt><dd>${v}</dd>`).join("")}</dl>`;
  }

  function reasonList(codes, attr) {
    if (!codes || !codes.length) return '<p class="muted">None.</p>';
    return `<ul class="reasons">${codes.map(r => `<li ${attr}="${PA.esc(r.code)}"><code>${PA.esc(r.code)}</code>
      ${PA.badge(r.kind, "info")} ${PA.esc(r.detail)}</li>`).join("")}</ul>`;
  }

  function shadowList(d) {
    if (!d.shadow_reason_codes?.length) return "";
    return `<h3>Shadow rules (not applied)</h3>${reasonList(d.shadow_reason_codes, "data-shadow-reason-code")}`;
  }

  function retryText(retry) {
    if (!retry) return '<span class="muted">–</span>';
    if (!retry.should_retry) return `no retry (max ${PA.esc(retry.max_attempts)} attempts)`;
    return `retry after ${PA.esc(retry.retry_after_seconds ?? 0)} s, at most ${PA.esc(retry.max_attempts)} attempts`;
  }

  function versionsText(versions) {
    const entries = Object.entries(versions || {});
    if (!entries.length) return '<span class="muted">none (heuristics)</span>';
    return entries.map(([name, v]) => `${PA.esc(name)} <code>${PA.esc(v)}</code>`).join("<br>");
  }

  function decisionFacts(d) {
    const pairs = [
      ["Approval probability", PA.pct(d.approval_probability)],
      ["Risk score", PA.pct(d.risk_score)],
      ["Recommended route", PA.esc(d.recommended_route)],
      ["Retry advice", retryText(d.retry)],
      ["Rule set", `<code>${PA.esc(d.rule_set_version)}</code>`],
      ["Models", versionsText(d.model_versions)],
      ["Latency", PA.ms(d.latency_ms)],
      ["Decided at", PA.esc(PA.when(d.decided_at))],
      ["Source", PA.esc(d.source)],
      ["Decision id", `<code class="small">${PA.esc(d.decision_id)}</code>`],
    ];
    if (d.challenger_outcome) pairs.push(["Challenger would", PA.badge(d.challenger_outcome)]);
    return factsList(pairs);
  }

  function renderDetail(d) {
    const tx = d.transaction;
    detailBody.innerHTML = `<p>${PA.badge(d.outcome)} <code>${PA.esc(d.transaction_id)}</code></p>
      ${decisionFacts(d)}
      <h3>Reason codes</h3>${reasonList(d.reason_codes, "data-reason-code")}
      ${shadowList(d)}
      <h3>Transaction</h3>
      ${tx ? factsList(transactionFacts(tx))
           : '<p class="muted">Its transaction has not been seen on payments.transactions (yet).</p>'}`;
  }

  // the facts people look at first, then every other field of the transaction as it came
  const FIRST_FACTS = ["merchant_id", "merchant_segment", "amount", "card_network", "payment_method_type",
    "geo_country", "issuer_country", "payment_solution", "fraud_score", "aml_risk_score", "device_trust_score"];
  const SKIPPED_FACTS = new Set(["currency", "amount_minor", "schema_version"]);

  function transactionFacts(tx) {
    const value = k => k === "amount" ? `${PA.esc(tx.amount)} ${PA.esc(tx.currency)}` : PA.esc(tx[k] ?? "–");
    const rest = Object.keys(tx).filter(k => !FIRST_FACTS.includes(k) && !SKIPPED_FACTS.has(k));
    return [...FIRST_FACTS.filter(k => k in tx), ...rest].map(k => [k, value(k)]);
  }

  async function select(id, focusDetail) {
    selectedId = id;
    tbody.querySelectorAll("tr.selected").forEach(r => r.classList.remove("selected"));
    rowFor(id)?.classList.add("selected");
    similarBody.innerHTML = "";
    try {
      const d = await PA.api("GET", `/api/decisions/${encodeURIComponent(id)}`);
      renderDetail(d);
      loadSimilar(id, !!d.transaction);
    } catch (e) {
      detailBody.innerHTML = `<p class="error">${PA.esc(e.message)}</p>`;
    }
    if (focusDetail) detailPanel.focus();
  }

  tbody.addEventListener("click", ev => {
    const row = ev.target.closest("tr[data-transaction-id]");
    if (row) select(row.dataset.transactionId, false);
  });
  tbody.addEventListener("keydown", ev => {
    const row = ev.target.closest("tr[data-transaction-id]");
    if (!row) return;
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(row.dataset.transactionId, true); }
    else if (ev.key === "ArrowDown") { ev.preventDefault(); row.nextElementSibling?.focus(); }
    else if (ev.key === "ArrowUp") { ev.preventDefault(); row.previousElementSibling?.focus(); }
  });

  // ------------------------------------------------------------------ similar past transactions
  const SIMILAR_K = 10;
  let similarFor = { id: null, hadFacts: false };

  function mixFacts(mix) {
    const top = mix.top_decline_reason
      ? `<code>${PA.esc(mix.top_decline_reason)}</code> <span class="muted small">(${PA.num(mix.top_decline_reason_count)}
         of ${PA.num(mix.declines)} declines)</span>`
      : '<span class="muted">no declines</span>';
    const fraud = mix.fraud_share == null ? '<span class="muted">no labels</span>' : PA.pct(mix.fraud_share);
    return factsList([["Approval rate", PA.pct(mix.approval_rate)], ["Most common decline", top], ["Fraud share", fraud]]);
  }

  // three columns: the detail panel is narrow
  function similarRows(neighbours) {
    return neighbours.map(n => `<tr data-similar-id="${PA.esc(n.transaction_id)}">
      <td><code class="small">${PA.esc(n.transaction_id)}</code>
        <div class="muted small">${PA.esc(PA.when(n.event_timestamp))} · distance ${PA.num(n.distance, 2)}</div></td>
      <td class="num">${PA.esc(n.amount ?? "–")} ${PA.esc(n.currency ?? "")}
        <div class="muted small">${PA.esc(n.merchant_segment ?? "–")} · ${PA.esc(n.card_network ?? "")}
          · ${PA.esc(n.payment_solution ?? "")} · ${PA.esc(n.geo_country)}</div></td>
      <td>${n.is_approved ? PA.badge("approved", "ok") : PA.badge("declined", "bad")}
        ${n.is_fraud ? PA.badge("fraud", "bad") : ""}
        ${n.decline_reason ? `<div class="small"><code>${PA.esc(n.decline_reason)}</code></div>` : ""}</td></tr>`).join("");
  }

  function renderSimilar(s) {
    const table = s.neighbours.length
      ? `<div class="table-wrap"><table class="data" id="similar-table"><thead><tr>
          <th scope="col">Transaction</th><th scope="col" class="num">Amount</th><th scope="col">Outcome</th>
          </tr></thead><tbody>${similarRows(s.neighbours)}</tbody></table></div>`
      : '<p class="muted">The index holds no other transaction.</p>';
    similarBody.innerHTML = `<h3>Similar past transactions</h3>
      <p class="muted small">The ${PA.num(s.neighbours.length)} nearest of ${PA.num(s.index.transactions)} indexed
        transactions (the models' features: amount, merchant, card, route, risk, time of day).</p>
      <div id="similar-mix">${mixFacts(s.mix)}</div>${table}`;
  }

  async function loadSimilar(id, hasFacts) {
    similarFor = { id, hadFacts: hasFacts };
    similarBody.innerHTML = '<h3>Similar past transactions</h3><p class="muted">Looking up…</p>';
    try {
      const s = await PA.api("GET", `/api/decisions/${encodeURIComponent(id)}/similar?k=${SIMILAR_K}`);
      if (selectedId === id) renderSimilar(s);
    } catch (e) {
      if (selectedId !== id) return;
      similarBody.innerHTML = `<h3>Similar past transactions</h3>
        <p class="muted" role="status" id="similar-error">${PA.esc(e.message)}</p>`;
    }
  }

  // ------------------------------------------------------------------ try a transaction
  const form = document.getElementById("try-form");
  const raw = document.getElementById("t-raw");
  const note = document.getElementById("try-note");
  const result = document.getElementById("try-result");
  const exponents = JSON.parse(form.dataset.exponents || "{}");
  const TEXT_FIELDS = ["currency", "merchant_segment", "merchant_id", "card_network", "payment_solution",
    "geo_country", "issuer_country"];
  const NUMBER_FIELDS = ["fraud_score", "device_trust_score", "aml_risk_score"];
  const INT_FIELDS = ["retry_count"];
  const CHECK_FIELDS = ["uses_3ds", "is_network_token", "has_passkey", "is_recurring", "is_retry"];
  // the API names contract fields; the form shows some of them differently
  const INPUT_OF_FIELD = { amount_minor: "amount" };
  let body = {}, lastSubmittedId = null;

  // Money never goes through a float: minor units <-> decimal text by string arithmetic.
  function minorToMajor(minor, currency) {
    const exp = exponents[currency] ?? 2;
    if (!Number.isInteger(minor)) return minor == null ? "" : String(minor);
    const digits = String(Math.abs(minor)).padStart(exp + 1, "0");
    const text = exp ? `${digits.slice(0, -exp)}.${digits.slice(-exp)}` : digits;
    return (minor < 0 ? "-" : "") + text;
  }

  function majorToMinor(text, currency) {
    const exp = exponents[currency] ?? 2;
    const m = /^\s*(-?)(\d*)(?:[.,](\d*))?\s*$/.exec(text);
    if (!m || (!m[2] && !m[3])) throw new Error("an amount like 54.00");
    const frac = m[3] || "";
    if (frac.length > exp) throw new Error(`at most ${exp} decimals for ${currency}`);
    const minor = Number(BigInt((m[2] || "0") + frac.padEnd(exp, "0")));
    return m[1] ? -minor : minor;
  }

  const input = name => document.getElementById(`t-${name}`);

  function fillFields() {
    input("amount").value = minorToMajor(body.amount_minor, body.currency);
    for (const f of [...TEXT_FIELDS, ...NUMBER_FIELDS, ...INT_FIELDS]) input(f).value = body[f] ?? "";
    for (const f of CHECK_FIELDS) input(f).checked = !!body[f];
  }

  function writeRaw() {
    raw.value = JSON.stringify(body, null, 2);
    setError("raw", "");
  }

  function setError(name, message) {
    const el = document.getElementById(`e-${name}`);
    const field = name === "raw" ? raw : input(name);
    if (el) el.textContent = message;
    if (field) field.setAttribute("aria-invalid", message ? "true" : "false");
  }

  function clearErrors() {
    form.querySelectorAll(".field-error").forEach(el => { el.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach(el => el.setAttribute("aria-invalid", "false"));
  }

  function readField(el) {
    const name = el.name;
    if (name === "amount" || name === "currency") {
      if (name === "currency") body.currency = el.value;
      try {
        body.amount_minor = majorToMinor(input("amount").value, body.currency);
        setError("amount", "");
      } catch (e) {
        setError("amount", e.message);
        return;
      }
    } else if (CHECK_FIELDS.includes(name)) {
      body[name] = el.checked;
    } else if (NUMBER_FIELDS.includes(name) || INT_FIELDS.includes(name)) {
      // an empty or unparsable number is sent as null: the API then names the field
      const value = el.value === "" ? null : Number(el.value);
      body[name] = value == null || isNaN(value) ? null : value;
    } else if (name === "geo_country" || name === "issuer_country") {
      body[name] = el.value.trim().toUpperCase();
    } else {
      body[name] = el.value;
    }
    setError(name, "");
    writeRaw();
  }

  form.addEventListener("input", ev => {
    if (ev.target === raw) {
      try {
        const parsed = JSON.parse(raw.value);
        if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("must be a JSON object");
        body = parsed;
        fillFields();
        setError("raw", "");
      } catch (e) {
        setError("raw", `Not valid JSON: ${e.message}`);
      }
    } else if (ev.target.name) {
      readField(ev.target);
    }
  });
  form.addEventListener("change", ev => {
    if (ev.target.tagName === "SELECT" || ev.target.type === "checkbox") readField(ev.target);
  });

  async function newSample() {
    try {
      body = await PA.api("GET", "/api/decisions/sample");
      lastSubmittedId = null;
      clearErrors();
      fillFields();
      writeRaw();
      note.textContent = `Sample ${body.transaction_id}`;
    } catch (e) {
      PA.toast(`Could not load a sample: ${e.message}`, "bad");
    }
  }

  function randomTransactionId() {
    const bytes = crypto.getRandomValues(new Uint8Array(8));
    return "txn_" + Array.from(bytes, b => b.toString(16).padStart(2, "0")).join("");
  }

  function renderResult(d) {
    result.innerHTML = `<h3>Decision</h3>
      <div class="result-head">${PA.badge(d.outcome, `${d.outcome} outcome`)}
        <span>approval probability <strong>${PA.pct(d.approval_probability)}</strong></span>
        <span>risk <strong>${PA.pct(d.risk_score)}</strong></span>
        <span>route <strong>${PA.esc(d.recommended_route)}</strong></span></div>
      <h3>Why</h3>${reasonList(d.reason_codes, "data-reason-code")}
      ${shadowList(d)}
      ${decisionFacts(d)}`;
  }

  function showApiError(e) {
    const detail = e.data?.detail;
    if (e.status === 422 && Array.isArray(detail)) {
      const items = detail.map(err => {
        const loc = (err.loc || []).filter(p => p !== "body");
        const field = String(loc[0] ?? "");
        const inputName = INPUT_OF_FIELD[field] ?? field;
        const message = err.msg || "invalid";
        if (input(inputName) && inputName !== "raw") setError(inputName, message);
        else { setError("raw", `${loc.join(".")}: ${message}`); raw.closest("details").open = true; }
        return `<li data-error-field="${PA.esc(field)}"><code>${PA.esc(loc.join(".") || "body")}</code>:
          ${PA.esc(message)}</li>`;
      });
      result.innerHTML = `<div role="alert"><p class="error">The scoring API refused the transaction:</p>
        <ul>${items.join("")}</ul></div>`;
    } else {
      const status = e.status ? `${e.status}: ` : "";
      result.innerHTML = `<p class="error" role="alert">${PA.esc(status)}${PA.esc(e.message)}</p>`;
    }
  }

  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    clearErrors();
    let request;
    try {
      request = JSON.parse(raw.value);
    } catch (e) {
      setError("raw", `Not valid JSON: ${e.message}`);
      raw.closest("details").open = true;
      raw.focus();
      return;
    }
    if (request.transaction_id && request.transaction_id === lastSubmittedId) {
      // the API is idempotent per transaction_id: a changed transaction needs a new id to be decided anew
      request.transaction_id = randomTransactionId();
      body = request;
      writeRaw();
      note.textContent = `New transaction_id ${request.transaction_id} ` +
        "(the API answers the same id with its stored decision)";
    }
    const submit = document.getElementById("try-submit");
    submit.disabled = true;
    result.innerHTML = '<p class="muted">Scoring…</p>';
    try {
      const decision = await PA.api("POST", "/api/decisions/try", request);
      lastSubmittedId = request.transaction_id;
      renderResult(decision);
    } catch (e) {
      showApiError(e);
    } finally {
      submit.disabled = false;
    }
  });
  document.getElementById("try-new-sample").addEventListener("click", newSample);

  // ------------------------------------------------------------------ start
  loadFiltersFromUrl();
  connect();
  newSample();
  window.addEventListener("beforeunload", () => source?.close());
})();
