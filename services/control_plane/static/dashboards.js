// One dashboard: widgets drawn from the data embedded in the page (no request for the first paint);
// a filter change asks /api/dashboards/<id> and redraws. Charts and the world map with ECharts.
"use strict";
(() => {
  const grid = document.getElementById("dash-grid");
  const form = document.getElementById("dash-filters");
  const message = document.getElementById("dash-message");
  const refreshed = document.getElementById("dash-refreshed");
  const hasCharts = typeof echarts !== "undefined";
  const charts = {};
  let world = null; // promise of the registered world map

  const usd = (v, compact) => v == null || isNaN(v) ? "–" : Number(v).toLocaleString(undefined, {
    style: "currency", currency: "USD", notation: compact ? "compact" : "standard",
    maximumFractionDigits: compact ? 1 : 0,
  });
  function fmt(format, v, compact) {
    if (v == null || (typeof v === "number" && isNaN(v))) return "–";
    switch (format) {
      case "int": return compact && Math.abs(v) >= 1e6 ? Number(v).toLocaleString(undefined, { notation: "compact", maximumFractionDigits: 2 }) : PA.num(v);
      case "pct": return PA.pct(v, 1);
      case "pp": return (v >= 0 ? "+" : "") + (100 * v).toFixed(1) + " pp";
      case "change": return (v >= 0 ? "+" : "") + PA.pct(v, 1);
      case "usd": return usd(v, compact);
      case "ms": return PA.ms(v);
      case "seconds": return v < 60 ? Number(v).toFixed(1) + " s" : v < 3600 ? (v / 60).toFixed(1) + " min"
        : v < 86400 ? (v / 3600).toFixed(1) + " h" : (v / 86400).toFixed(1) + " d";
      case "score": return Number(v).toFixed(3);
      case "num": return PA.num(v, 2);
      case "datetime": return PA.when(v);
      default: return String(v);
    }
  }
  const axisLabel = format => ({
    pct: v => (100 * v).toFixed(v !== 0 && Math.abs(v) < 0.05 ? 1 : 0) + "%",
    change: v => (100 * v).toFixed(0) + "%",
    pp: v => (100 * v).toFixed(v !== 0 && Math.abs(v) < 0.05 ? 1 : 0) + " pp", usd: v => usd(v, true),
    ms: v => PA.ms(v), int: v => Number(v).toLocaleString(undefined, { notation: "compact" }),
    seconds: v => fmt("seconds", v),
  }[format]);
  const temporal = f => f.format === "date" || f.format === "datetime";
  const fieldOf = (w, role) => w.fields.find(f => f.role === role);

  function chart(el, name) {
    if (!charts[name] || charts[name].getDom() !== el) {
      el.innerHTML = "";
      charts[name] = echarts.init(el, null, { renderer: "canvas" });
    }
    return charts[name];
  }
  window.addEventListener("resize", () => Object.values(charts).forEach(c => c.resize()));

  function counter(w, body) {
    const f = fieldOf(w, "value"), row = w.rows[0];
    body.innerHTML = `<div class="value">${PA.esc(fmt(f.format, row ? row[f.name] : null, true))}</div>`;
    body.title = row ? fmt(f.format, row[f.name], false) : "";
  }

  function table(w, body) {
    const cols = w.fields;
    const numeric = c => !["text", "date", "datetime"].includes(c.format);
    body.innerHTML = `<table class="data"><thead><tr>${cols.map(c => `<th scope="col"${numeric(c) ? ' class="num"' : ""}>${PA.esc(c.title)}</th>`).join("")}</tr></thead>
      <tbody>${w.rows.map(r => `<tr>${cols.map(c => `<td${numeric(c) ? ' class="num"' : ""}>${PA.esc(fmt(c.format, r[c.name]))}</td>`).join("")}</tr>`).join("")
      || `<tr><td colspan="${cols.length}" class="muted">No rows.</td></tr>`}</tbody></table>`;
  }

  function xyChart(w, body) {
    const x = fieldOf(w, "x"), y = fieldOf(w, "y"), color = fieldOf(w, "color");
    // days as bars read best as one labelled bar per day; lines and hours use a time axis
    const time = x.format === "datetime" || (temporal(x) && w.kind !== "bar");
    const groups = new Map();
    for (const r of w.rows) {
      const key = color ? String(r[color.name] ?? "–") : y.title;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(r);
    }
    const categories = time ? null : [...new Set(w.rows.map(r => String(r[x.name] ?? "–")))];
    const type = w.kind === "histogram" ? "bar" : w.kind === "area" ? "line" : w.kind;
    const series = [...groups.entries()].map(([name, rows]) => {
      let data;
      if (time) data = rows.map(r => [r[x.name], r[y.name]]);
      else {
        const byX = new Map(rows.map(r => [String(r[x.name] ?? "–"), r[y.name]]));
        data = categories.map(c => byX.has(c) ? byX.get(c) : null);
      }
      return {
        name, type, data, showSymbol: data.length <= 48, connectNulls: false,
        ...(w.kind === "area" ? { areaStyle: { opacity: 0.25 } } : {}),
        ...(w.kind === "histogram" ? { barCategoryGap: "8%" } : {}),
      };
    });
    // lines show change, not size: their value axis need not start at zero
    const valueAxis = { type: "value", scale: type === "line" && w.kind !== "area", axisLabel: { formatter: axisLabel(y.format) } };
    const crowded = !w.horizontal && categories && categories.length > 4;
    const catAxis = time ? { type: "time", axisLabel: { hideOverlap: true } } : {
      type: "category", data: categories,
      axisLabel: { interval: 0, rotate: crowded ? 30 : 0, width: w.horizontal ? 110 : crowded ? 90 : 120, overflow: "truncate" },
    };
    if (w.horizontal) catAxis.inverse = true;
    chart(body, w.name).setOption({
      animation: false,
      grid: { left: 8, right: 16, top: color ? 34 : 12, bottom: 4, containLabel: true },
      tooltip: { trigger: "axis", valueFormatter: v => fmt(y.format, v) },
      legend: color ? { top: 0, type: "scroll" } : { show: false },
      xAxis: w.horizontal ? valueAxis : catAxis,
      yAxis: w.horizontal ? catAxis : valueAxis,
      series,
    }, true);
  }

  function loadWorld() {
    if (!world) {
      world = fetch("/vendor/world-countries.geo.json", { credentials: "same-origin" })
        .then(r => { if (!r.ok) throw new Error("map data missing: run `make web`"); return r.json(); })
        .then(geo => { echarts.registerMap("world", geo); return true; });
    }
    return world;
  }

  async function map(w, body, note) {
    const region = fieldOf(w, "region"), value = fieldOf(w, "value"), label = fieldOf(w, "label");
    try { await loadWorld(); } catch (e) { note.textContent = e.message; return; }
    const data = w.rows.filter(r => r.iso_n3).map(r => ({
      name: r.iso_n3, value: r[value.name], label: label ? r[label.name] : r[region.name],
    }));
    const values = data.map(d => d.value).filter(v => v != null);
    chart(body, w.name).setOption({
      animation: false,
      tooltip: { trigger: "item", formatter: p => p.data ? `${PA.esc(p.data.label)}: ${PA.esc(fmt(value.format, p.data.value))}` : "" },
      visualMap: {
        min: values.length ? Math.min(...values) : 0, max: values.length ? Math.max(...values) : 1,
        left: 8, bottom: 8, calculable: true, text: [value.title, ""], formatter: v => fmt(value.format, v, true),
        inRange: { color: ["#cfe2f3", "#0b5cad"] },
      },
      series: [{
        type: "map", map: "world", nameProperty: "iso_n3", roam: true, data,
        itemStyle: { areaColor: "#eef1f4", borderColor: "#aab4be", borderWidth: 0.4 },
        emphasis: { label: { show: false }, itemStyle: { areaColor: "#f5a623" } },
        select: { disabled: true },
      }],
    }, true);
    const missing = w.rows.filter(r => !r.iso_n3).length;
    if (missing) note.textContent = `${missing} countries without a map shape`;
  }

  async function drawWidget(w) {
    const section = document.getElementById("w-" + w.name);
    const body = section.querySelector(".body"), note = section.querySelector(".note");
    const empty = !w.rows.length;
    const notes = [empty && w.kind !== "counter" ? null : w.message,
      w.filtered_by.length ? "filtered by " + w.filtered_by.join(", ") : ""].filter(Boolean);
    note.textContent = notes.join(" · ");
    section.classList.toggle("empty", empty);
    if (w.kind === "counter") return counter(w, body);
    if (empty) {  // the reason in place of the chart or table
      charts[w.name]?.dispose();
      delete charts[w.name];
      body.innerHTML = `<p class="muted empty-msg">${PA.esc(w.message || "No rows.")}</p>`;
      return;
    }
    if (w.kind === "table") return table(w, body);
    if (!hasCharts) { body.textContent = "Charts unavailable: /vendor/echarts.min.js is missing (run `make web`)"; return; }
    if (w.kind === "map") return map(w, body, note);
    return xyChart(w, body);
  }

  async function render(data) {
    grid.setAttribute("aria-busy", "true");
    delete grid.dataset.ready;
    refreshed.textContent = data.refreshed_at ? `${PA.when(data.refreshed_at)} (${PA.ago(data.refreshed_at)})` : "never";
    message.hidden = !data.message;
    message.textContent = data.message || "";
    await Promise.all(data.widgets.map(w => drawWidget(w).catch(e => {
      document.querySelector(`#w-${CSS.escape(w.name)} .note`).textContent = "could not draw: " + e.message;
    })));
    grid.dashboardData = data;  // what is drawn (for tests and the console)
    grid.setAttribute("aria-busy", "false");
    grid.dataset.ready = "1";
  }

  function params() {
    const p = new URLSearchParams();
    if (!form) return p;
    for (const [k, v] of new FormData(form)) if (v) p.append(k, v);
    return p;
  }

  async function refilter() {
    const p = params();
    history.replaceState(null, "", p.toString() ? "?" + p : location.pathname);
    form?.querySelectorAll("details.multi").forEach(d => {
      const chosen = [...d.querySelectorAll("input:checked")].map(i => i.value);
      d.querySelector(".chosen").textContent = chosen.length ? chosen.join(", ") : "all";
    });
    try {
      render(await PA.api("GET", `/api/dashboards/${encodeURIComponent(grid.dataset.dashboard)}?${p}`));
    } catch (e) { PA.toast(e.message, "bad"); }
  }

  if (form) {
    form.addEventListener("change", refilter);
    form.addEventListener("submit", e => { e.preventDefault(); refilter(); });
    document.getElementById("dash-clear").addEventListener("click", () => {
      form.querySelectorAll('input[type="checkbox"]').forEach(i => { i.checked = false; });
      form.querySelectorAll('input[type="date"]').forEach(i => { i.value = ""; });
      refilter();
    });
  }
  // admins: run the Gold views step (it refreshes the dashboard tables), then redraw with the new numbers
  const refreshButton = document.getElementById("dash-refresh");
  if (refreshButton) {
    refreshButton.addEventListener("click", async () => {
      refreshButton.disabled = true;
      try {
        const run = await PA.api("POST", "/api/steps/gold_views/run", { params: {} });
        PA.toast(`Gold views run #${run.id} started: the numbers update when it ends (progress on Setup & Run)`);
        let state = run;
        while (["queued", "running"].includes(state.status)) {
          await new Promise(r => setTimeout(r, 3000));
          state = await PA.api("GET", `/api/runs/${run.id}?tail=0`);
        }
        if (state.status === "succeeded") { PA.toast("Dashboard data refreshed"); await refilter(); }
        else PA.toast(`Gold views run #${run.id} ${state.status}: see its log on Setup & Run`, "bad");
      } catch (e) { PA.toast(e.message, "bad"); }
      refreshButton.disabled = false;
    });
  }

  // a multi-select closes when the user clicks elsewhere
  document.addEventListener("click", e => {
    document.querySelectorAll("details.multi[open]").forEach(d => { if (!d.contains(e.target)) d.open = false; });
  });
  if (!hasCharts) PA.toast("Charts unavailable: /vendor/echarts.min.js is missing (run `make web`)", "bad");
  render(JSON.parse(document.getElementById("dash-data").textContent));
})();
