// Shared helpers of every page: API calls with the CSRF token, formatting, toasts.
"use strict";
const PA = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";

  async function api(method, url, body) {
    const opts = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf();
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    const resp = await fetch(url, opts);
    const text = await resp.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = text; }
    if (resp.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); }
    if (!resp.ok) {
      const err = new Error(detailText(data) || resp.statusText);
      err.status = resp.status; err.data = data;
      throw err;
    }
    return data;
  }

  function detailText(data) {
    if (!data) return "";
    if (typeof data === "string") return data;
    const d = data.detail;
    if (typeof d === "string") return d;
    if (Array.isArray(d)) return d.map(e => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
    if (d && typeof d === "object") return d.message || JSON.stringify(d);
    return JSON.stringify(data);
  }

  function toast(message, kind) {
    const el = document.createElement("div");
    el.className = "toast" + (kind ? " " + kind : "");
    el.textContent = message;
    document.getElementById("toasts").appendChild(el);
    setTimeout(() => el.remove(), kind === "bad" ? 9000 : 4000);
  }

  const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const pct = (v, digits = 1) => v == null || isNaN(v) ? "–" : (100 * v).toFixed(digits) + "%";
  const num = (v, digits = 0) => v == null || isNaN(v) ? "–" : Number(v).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
  const ms = v => v == null || isNaN(v) ? "–" : (v >= 1000 ? (v / 1000).toFixed(2) + " s" : Number(v).toFixed(v < 10 ? 2 : 0) + " ms");
  const when = iso => iso ? new Date(iso).toLocaleString() : "–";
  const ago = iso => {
    if (!iso) return "–";
    const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
    if (s < 60) return s + " s ago"; if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago"; return Math.round(s / 86400) + " d ago";
  };
  const duration = s => s == null ? "–" : s < 60 ? s.toFixed(1) + " s" : Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  const badge = (text, cls) => `<span class="badge ${esc(cls ?? text)}">${esc(text)}</span>`;
  const isAdmin = () => document.getElementById("main")?.dataset.role === "admin";

  // Run `fn` now and every `ms` while the tab is visible.
  function every(msec, fn) {
    let timer = null;
    const tick = async () => { try { await fn(); } catch (e) { console.warn(e); } timer = setTimeout(tick, msec); };
    tick();
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) { clearTimeout(timer); } else { clearTimeout(timer); tick(); }
    });
  }

  function confirmDialog(message) {
    return new Promise(resolve => {
      const dlg = document.createElement("dialog");
      dlg.innerHTML = `<p>${esc(message)}</p><div class="row"><button value="no">Cancel</button><button value="yes" class="primary">Confirm</button></div>`;
      document.body.appendChild(dlg);
      dlg.querySelectorAll("button").forEach(b => b.addEventListener("click", () => { dlg.close(); dlg.remove(); resolve(b.value === "yes"); }));
      dlg.addEventListener("cancel", () => { dlg.remove(); resolve(false); });
      dlg.showModal();
      dlg.querySelector("button.primary").focus();
    });
  }

  return { api, toast, esc, pct, num, ms, when, ago, duration, badge, isAdmin, every, confirmDialog, csrf, detailText };
})();
