// Dashboard: KPI tiles and ECharts charts from /api/dashboard, refreshed every 5 s without a reload.
"use strict";
(() => {
  const windowSelect = document.getElementById("window");
  const message = document.getElementById("dashboard-message");
  const hasCharts = typeof echarts !== "undefined";
  const charts = {};
  const COLORS = { approve: "#1a7f37", challenge_3ds: "#bf8700", review: "#8250df", decline: "#cf222e" };

  function chart(id) {
    if (!hasCharts) return null;
    if (!charts[id]) charts[id] = echarts.init(document.getElementById(id), null, { renderer: "canvas" });
    return charts[id];
  }
  window.addEventListener("resize", () => Object.values(charts).forEach(c => c.resize()));

  function tile(id, value, sub) {
    const el = document.getElementById(id);
    el.querySelector(".value").textContent = value;
    el.querySelector(".sub").textContent = sub || "";
  }

  const base = (yAxis, extra) => ({
    animation: false, grid: { left: 56, right: 16, top: 58, bottom: 30, containLabel: false },
    tooltip: { trigger: "axis" }, legend: { top: 0 },
    xAxis: { type: "time", axisLabel: { hideOverlap: true } }, yAxis, ...extra,
  });
  const line = (name, data, color) => ({ name, type: "line", showSymbol: false, data, ...(color ? { color } : {}) });
  const pctAxis = { type: "value", axisLabel: { formatter: v => Math.round(v * 100) + "%" } };

  function render(body) {
    const k = body.kpis, lat = body.latency, dlq = body.dlq, minutes = body.window_minutes;
    document.getElementById("updated").textContent = body.updated_at ? `${PA.when(body.updated_at)} (${PA.ago(body.updated_at)})` : "never";
    const notes = [body.message, body.value && body.value.message, dlq && dlq.message].filter(Boolean);
    message.hidden = !notes.length;
    message.textContent = notes.join(" · ");

    tile("kpi-approval", k ? PA.pct(k.decision_approval_rate) : "–", k ? `${PA.num(k.outcomes.approve)} approved of ${PA.num(k.transactions)}` : "");
    tile("kpi-processor", k ? PA.pct(k.processor_approval_rate) : "–", "approved by the processor");
    tile("kpi-volume", k ? PA.num(k.transactions) : "–", k ? `${PA.num(k.transactions_per_minute, 1)} per minute` : "");
    const values = body.value && body.value.by_currency || [];
    tile("kpi-value", values.length ? `${PA.num(Number(values[0].total), 0)} ${values[0].currency}` : "–",
      values.length ? `approved ${PA.num(Number(values[0].approved), 0)} ${values[0].currency}${values.length > 1 ? ` · +${values.length - 1} currencies` : ""}`
        : (body.value && body.value.message) || "");
    tile("kpi-fraud", k ? PA.pct(k.high_risk_share, 2) : "–", k && k.avg_fraud_score != null ? `avg fraud score ${PA.num(k.avg_fraud_score, 3)}` : "");
    tile("kpi-latency", lat ? `${PA.ms(lat.decision_p50_ms)} / ${PA.ms(lat.decision_p99_ms)}` : "–",
      lat ? `worst minute p99 ${PA.ms(lat.worst_minute_decision_p99_ms)}` : "");
    tile("kpi-e2e", lat ? `${PA.ms(lat.e2e_p50_ms)} / ${PA.ms(lat.e2e_p99_ms)}` : "–",
      lat ? (lat.exact ? "over every decision of the window" : lat.note) : "");
    tile("kpi-dlq", dlq && dlq.per_minute != null ? `${PA.num(dlq.per_minute, 2)} /min` : "–",
      dlq && dlq.dead_letters != null ? `${PA.num(dlq.dead_letters)} in ${minutes} min${dlq.share != null ? ` · ${PA.pct(dlq.share, 2)} of received` : ""} (${dlq.source})` : "unknown");

    document.getElementById("value-note").textContent = body.value && body.value.source
      ? `From ${body.value.source}, decided in the window.` : (body.value && body.value.message) || "";
    document.querySelector("#value-table tbody").innerHTML = values.map(v => `<tr><th scope="row">${PA.esc(v.currency)}</th>
      <td class="num">${PA.num(v.transactions)}</td><td class="num">${PA.esc(v.total ?? v.total_minor + " (minor units)")}</td>
      <td class="num">${PA.esc(v.approved ?? v.approved_minor + " (minor units)")}</td>
      <td class="num">${PA.esc(v.declined ?? v.declined_minor + " (minor units)")}</td></tr>`).join("")
      || `<tr><td colspan="5" class="muted">No value data.</td></tr>`;

    if (!hasCharts) return;
    const s = body.series, at = r => r.minute;
    chart("chart-approval").setOption(base(pctAxis, { series: [
      line("decisions approved", s.map(r => [at(r), r.decision_approval_rate])),
      line("processor approved", s.map(r => [at(r), r.processor_approval_rate])),
    ] }), true);
    chart("chart-volume").setOption(base({ type: "value" }, { series: [
      { name: "transactions", type: "bar", data: s.map(r => [at(r), r.transactions]) },
    ] }), true);
    chart("chart-latency").setOption(base({ type: "value", axisLabel: { formatter: v => PA.ms(v) } }, {
      tooltip: { trigger: "axis", valueFormatter: v => PA.ms(v) },
      series: [
        line("e2e p50", s.map(r => [at(r), r.e2e_latency_p50_ms])),
        line("e2e p99", s.map(r => [at(r), r.e2e_latency_p99_ms])),
        line("decision p99", s.map(r => [at(r), r.decision_latency_p99_ms])),
      ] }), true);
    chart("chart-outcomes").setOption(base({ type: "value" }, { series: ["approve", "challenge_3ds", "review", "decline"].map(o => ({
      name: o, type: "bar", stack: "outcomes", color: COLORS[o], data: s.map(r => [at(r), r[o]]),
    })) }), true);
  }

  async function load() {
    render(await PA.api("GET", `/api/dashboard?minutes=${encodeURIComponent(windowSelect.value)}`));
  }

  windowSelect.addEventListener("change", () => load().catch(e => PA.toast(e.message, "bad")));
  if (!hasCharts) PA.toast("Charts unavailable: /vendor/echarts.min.js is missing (run `make web`)", "bad");
  PA.every(5000, load);
})();
