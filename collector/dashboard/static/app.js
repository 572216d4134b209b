// lethelog security dashboard: plain JS, no dependencies, hand-drawn SVG.
// Data: GET /dashboard/api/summary (same-origin cookie); live: EventSource /dashboard/api/stream.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  let state = { preset: "all", from: null, to: null, last: null, busy: false, again: false };

  const fmtInt = (n) => (n == null ? "–" : Number(n).toLocaleString("en-US"));
  const pct = (a, b) => (b ? (100 * a / b).toFixed(b >= 1000 ? 2 : 1) + " %" : "–");
  const iso = (t) => new Date(t * 1000).toISOString().replace(".000Z", "Z");
  const el = (tag, attrs, text) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text != null) e.textContent = text;
    return e;
  };

  function range() {
    if (state.preset === "all" || state.last == null) return {};
    if (state.preset === "custom") {
      const r = {};
      if (state.from) r.start = state.from;
      if (state.to) r.end = state.to;
      return r;
    }
    return { start: state.last - Number(state.preset), end: state.last };
  }

  async function refresh() {
    if (state.busy) { state.again = true; return; }
    state.busy = true;
    try {
      const q = new URLSearchParams(range());
      const resp = await fetch("/dashboard/api/summary?" + q.toString(),
        { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (resp.status === 401 || resp.status === 403) { location.href = "/dashboard/login"; return; }
      if (!resp.ok) { $("span").textContent = "Could not load data (HTTP " + resp.status + ")"; return; }
      render(await resp.json());
    } catch (e) {
      $("span").textContent = "Could not load data: " + e.message;
    } finally {
      state.busy = false;
      if (state.again) { state.again = false; setTimeout(refresh, 250); }
    }
  }

  function render(d) {
    document.body.dataset.loaded = "1";
    if (d.last != null) state.last = d.last;
    const t = d.total;
    if (d.first == null) {
      $("span").textContent = "No aggregates yet.";
    } else {
      $("span").textContent = "Log time " + iso(d.start) + " → " + iso(d.end) + " (UTC)";
    }
    const req = t ? t.requests : null;
    const out = $("kpi-requests");
    out.textContent = fmtInt(req);
    out.dataset.value = req == null ? "" : String(req);
    $("kpi-errors").textContent = t ? pct(t.status_5xx, t.requests) : "–";
    $("kpi-bots").textContent = t ? pct(t.bots, t.requests) : "–";
    $("kpi-sessions").textContent = t ? fmtInt(t.sessions) : "–";
    $("kpi-open").textContent = fmtInt((d.anomalies || []).filter((a) => a.status === "open").length);
    $("step").textContent = d.step ? "(" + (d.step >= 3600 ? d.step / 3600 + " h" : d.step / 60 + " min") + " buckets, log time)" : "";
    chart(d.series || [], d.start, d.end, d.step || 60);
    for (const dim of ["country", "asn", "network", "path_template"]) top(dim, (d.top || {})[dim] || []);
    anomalies(d.anomalies || []);
    $("geo-age").textContent = (d.databases || []).length
      ? "GeoIP: " + d.databases.map((g) => g.role + " " + g.build_date + " (" + g.age_days + " d" + (g.stale ? ", stale" : "") + ")").join(", ")
      : "GeoIP: none";
    $("knote").textContent = "Groups with fewer than " + d.k + " distinct sessions are shown as \u201cother\u201d or not at all.";
  }

  function top(dim, rows) {
    const table = $("top-" + dim);
    table.replaceChildren();
    if (!rows.length) { const tr = el("tr"); tr.append(el("td", { class: "muted" }, "nothing above k")); table.append(tr); return; }
    const max = Math.max(...rows.map((r) => r.requests));
    for (const r of rows) {
      const tr = el("tr");
      const v = r[dim] == null ? "(unknown)" : String(r[dim]);
      tr.append(el("td", { class: "v", "data-value": v }, v));
      const bar = el("td", { class: "b" });
      const b = el("div", { class: "bar" });
      b.style.width = Math.max(1, Math.round(100 * r.requests / max)) + "%";
      bar.append(b);
      tr.append(bar);
      tr.append(el("td", { class: "n", "data-requests": String(r.requests) }, fmtInt(r.requests)));
      table.append(tr);
    }
  }

  function anomalies(list) {
    const ol = $("anomalies");
    ol.replaceChildren();
    if (!list.length) { ol.append(el("li", { class: "muted" }, "none")); return; }
    for (const a of list) {
      const li = el("li", { "data-id": a.id, "data-kind": a.kind });
      li.append(el("span", { class: "sev " + a.severity }, a.severity));
      li.append(el("span", { class: "kind" }, a.kind));
      const dims = Object.entries(a.dimensions || {}).map(([k, v]) => k + "=" + v).join(", ");
      li.append(el("span", { class: "dims" }, dims || "site " + a.site));
      li.append(el("div", { class: "when muted" },
        a.start + " → " + (a.end || "open") + " · " + a.minutes + " min · site " + a.site));
      li.append(el("div", { class: "ev" }, JSON.stringify(a.peak && Object.keys(a.peak).length ? a.peak : a.evidence)));
      ol.append(li);
    }
  }

  function chart(series, start, end, step) {
    const box = $("chart");
    box.replaceChildren();
    const W = 1000, H = 220, L = 48, R = 44, T = 10, B = 24;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("preserveAspectRatio", "none");
    const mk = (tag, attrs) => { const e = document.createElementNS(SVG, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); svg.append(e); return e; };
    if (!series.length || start == null) { box.append(svg); return; }
    const shown = series.filter((s) => !s.suppressed);
    const maxReq = Math.max(1, ...shown.map((s) => s.requests));
    const maxErr = Math.max(0.01, ...shown.map((s) => s.requests ? s.status_5xx / s.requests : 0));
    const x = (t) => L + (W - L - R) * (t - start) / Math.max(1, end - start);
    const y = (v) => H - B - (H - T - B) * v / maxReq;
    const ye = (v) => H - B - (H - T - B) * v / maxErr;
    mk("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B });
    mk("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B });
    mk("text", { x: 2, y: T + 10 }).textContent = fmtInt(maxReq);
    mk("text", { x: W - R + 4, y: T + 10 }).textContent = (100 * maxErr).toFixed(1) + "%";
    mk("text", { x: L, y: H - 6 }).textContent = iso(start).slice(0, 16);
    const endLabel = mk("text", { x: W - R, y: H - 6, "text-anchor": "end" });
    endLabel.textContent = iso(end).slice(0, 16);
    let area = "", line = "";
    for (const s of series) {
      const x0 = x(s.t), x1 = x(s.t + step);
      if (s.suppressed) { mk("rect", { class: "gap", x: x0, y: T, width: Math.max(1, x1 - x0), height: H - T - B }); continue; }
      area += "M" + x0.toFixed(1) + "," + (H - B) + "V" + y(s.requests).toFixed(1) + "H" + x1.toFixed(1) + "V" + (H - B) + "Z";
      const ey = ye(s.requests ? s.status_5xx / s.requests : 0).toFixed(1);
      line += (line ? "L" : "M") + ((x0 + x1) / 2).toFixed(1) + "," + ey;
    }
    if (area) mk("path", { class: "req", d: area });
    if (line) mk("path", { class: "err", d: line });
    box.append(svg);
  }

  function live() {
    if (!window.EventSource) return;
    const es = new EventSource("/dashboard/api/stream");
    let timer = null;
    const soon = () => { if (!timer) timer = setTimeout(() => { timer = null; refresh(); }, 500); };
    es.addEventListener("hello", () => { $("live").textContent = "● live"; $("live").classList.add("on"); });
    es.addEventListener("tick", (e) => { const m = JSON.parse(e.data); if (m.evaluated) soon(); else if (state.preset === "all") soon(); });
    es.addEventListener("anomaly_opened", soon);
    es.addEventListener("anomaly_closed", soon);
    es.onerror = () => { $("live").textContent = "● reconnecting"; $("live").classList.remove("on"); };
  }

  function init() {
    $("preset").addEventListener("change", (e) => {
      state.preset = e.target.value;
      $("custom").hidden = state.preset !== "custom";
      if (state.preset !== "custom") refresh();
    });
    $("range").addEventListener("submit", (e) => {
      e.preventDefault();
      const f = $("from").value, t = $("to").value;
      state.from = f ? new Date(f + ":00Z").getTime() / 1000 : null;
      state.to = t ? new Date(t + ":00Z").getTime() / 1000 : null;
      refresh();
    });
    refresh();
    live();
  }
  document.addEventListener("DOMContentLoaded", init);
})();
