// Alerts page: active alerts and the recent episodes from /api/alerts, refreshed every 10 s.
"use strict";
(() => {
  const activeBody = document.querySelector("#alerts-active tbody");
  const historyBody = document.querySelector("#alerts-history tbody");
  const message = document.getElementById("alerts-message");
  const hours = document.getElementById("alerts-hours");
  const LABELS = { approval_drop: "Approval drop", fraud_spike: "Fraud spike", latency: "Latency" };
  const SEVERITY = { warning: "warn", critical: "bad" };

  // Rates are shares (0..1), latencies milliseconds.
  const value = (metric, v) => v == null ? "–" : metric.endsWith("_ms") ? PA.ms(v) : PA.pct(v);
  const label = t => PA.esc(LABELS[t] || t);
  const severity = s => PA.badge(s || "–", SEVERITY[s] || "");

  function crossed(metric, v, baseline) {
    const base = baseline != null ? ` <span class="muted small">(baseline ${value(metric, baseline)})</span>` : "";
    return `<code>${PA.esc(metric)}</code> ${value(metric, v)}${base}`;
  }

  function activeRow(a) {
    return `<tr data-alert="${PA.esc(a.alert_type)}"><th scope="row">${label(a.alert_type)}</th>
      <td>${severity(a.severity)}${a.stale ? ` ${PA.badge("stale", "warn")}` : ""}</td>
      <td>${PA.when(a.started_at)}<div class="muted small">${PA.ago(a.started_at)} · ${a.minutes} min</div></td>
      <td>${crossed(a.metric, a.value, a.baseline)}<div class="muted small">peak ${value(a.metric, a.peak_value)}</div></td>
      <td>${value(a.metric, a.threshold)}</td>
      <td>${PA.esc(a.message)}${a.stale ? `<div class="muted small">no newer minute since ${PA.when(a.last_minute)}: is the stream processor running?</div>` : ""}</td></tr>`;
  }

  function historyRow(e) {
    return `<tr><th scope="row">${label(e.alert_type)}</th><td>${PA.when(e.started_at)}</td>
      <td>${e.ongoing ? PA.badge("ongoing", "info") : PA.when(e.ended_at)}</td><td class="num">${e.minutes}</td>
      <td>${severity(e.worst_severity)}</td><td>${crossed(e.metric, e.peak_value)}</td><td>${value(e.metric, e.threshold)}</td>
      <td class="small">${PA.esc(e.peak_message)}</td></tr>`;
  }

  async function load() {
    const body = await PA.api("GET", `/api/alerts?hours=${encodeURIComponent(hours.value)}`);
    document.getElementById("alerts-updated").textContent = body.updated_at
      ? `${PA.when(body.updated_at)} (${PA.ago(body.updated_at)})` : "never";
    message.hidden = !body.message;
    message.textContent = body.message || "";
    activeBody.innerHTML = body.active.map(activeRow).join("")
      || `<tr><td colspan="6" class="muted">No active alert${body.latest_minute ? ` (latest minute judged ${PA.when(body.latest_minute)})` : ""}.</td></tr>`;
    historyBody.innerHTML = body.history.map(historyRow).join("")
      || `<tr><td colspan="8" class="muted">No alert in this window.</td></tr>`;
  }

  hours.addEventListener("change", () => load().catch(e => PA.toast(e.message, "bad")));
  PA.every(10000, load);
})();
