// lethelog security dashboard: plain JS, no dependencies, hand-drawn SVG.
// Data: GET /dashboard/api/summary (same-origin cookie); live: EventSource /dashboard/api/stream.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  let state = { preset: "all", from: null, to: null, last: null, busy: false, again: false,
    focus: null, band: null };

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

  // One sentence with the numbers that tripped the rule (evidence of the strongest minute).
  const P = (x) => (x == null ? "–" : (100 * x).toFixed(x >= 0.995 || x === 0 ? 0 : 1) + " %");
  const N = (x) => fmtInt(Math.round(Number(x) || 0));
  const nets = (rows) => (rows || []).map((r) => r.value + " (" + N(r.count) + ")").join(", ");
  function describe(a) {
    const e = (a.peak && Object.keys(a.peak).length ? a.peak : a.evidence) || {};
    const dims = a.dimensions || {};
    const who = dims.network || (dims.asn != null ? "AS" + dims.asn : null) ||
      dims.country || dims.path_template || dims.anonymizer || null;
    switch (a.kind) {
      case "scan": {
        const extra = e.status_404 === e.status_4xx ? "" : " (" + P(e.share_4xx) + " 4xx)";
        return N(e.requests) + " requests from " + who + " in " + N(e.window_minutes) +
          " min, " + P(e.requests ? e.status_404 / e.requests : 0) + " 404" + extra + ", " +
          N(e.distinct_4xx_targets) + " distinct targets (" + N(e.distinct_4xx_paths) +
          " path templates)";
      }
      case "error_rate":
        return N(e.status_5xx) + " of " + N(e.requests) + " requests answered 5xx (" +
          P(e.rate) + ", usually " + P(e.baseline_rate) + ")" +
          (dims.path_template ? " on " + dims.path_template + " in " + N(e.window_minutes) + " min"
            : (e.window_minutes ? " in " + N(e.window_minutes) + " min" : " in one minute") + (e.top_paths && e.top_paths.length ? "; most on " + nets(e.top_paths) : ""));
      case "traffic_spike":
      case "traffic_drop":
        if (e.minutes) {
          return N(e.requests_in_run != null ? e.requests_in_run : e.requests) + " requests in " + N(e.minutes) + " min" +
            (e.expected_in_run != null ? " where " + N(e.expected_in_run) + " were expected" : "") +
            " (last minute " + N(e.requests) + ", forecast " + N(e.forecast) + ")";
        }
        return N(e.requests) + " requests in one minute where " + N(e.forecast) +
          " were expected (" + Number(e.z || 0).toFixed(1) + " σ)";
      case "auth_failures":
        return N(e.failures) + " failed logins (401/403) in one minute" +
          (dims.path_template ? " on " + dims.path_template : " on the site") +
          ", usually " + (e.baseline_per_minute != null ? N(e.baseline_per_minute) + " a minute" : P(e.baseline_rate)) +
          (e.top_networks && e.top_networks.length ? "; from " + nets(e.top_networks) : "");
      case "bot_surge":
        return N(e.bots) + " bot requests in one minute (" + P(e.bot_share) +
          " of traffic) where " + N(e.forecast) + " were expected";
      case "source_surge":
        return N(e.requests) + " requests in one minute from " + who + " where " +
          N(e.forecast) + " were usual (" + P(e.share) + " of the site's traffic)";
      case "anonymizer":
        return N(e.anonymized) + " of " + N(e.requests) + " requests in one minute via " +
          dims.anonymizer + " (" + P(e.share) + ")" + (e.top_networks && e.top_networks.length ? "; from " + nets(e.top_networks) : "");
      case "new_source":
        return N(e.requests) + " requests (" + P(e.share) + " of the minute) from " + who +
          ", which held " + P(e.baseline_share) + " of the usual traffic" +
          (e.last_hour_share != null ? " and " + P(e.last_hour_share) + " of the last hour" : "");
      default:
        return Object.entries(e).map(([k, v]) => k + " " + (typeof v === "object" ? JSON.stringify(v) : v)).join(", ");
    }
  }

  function focus(a) {
    // narrow the charts and top lists to the anomaly's minutes (with 5 minutes either side)
    const end = a.end_epoch != null ? a.end_epoch : a.start_epoch + 60 * a.minutes;
    state.preset = "custom";
    state.focus = a.id;
    state.from = a.start_epoch - 300;
    state.to = end + 300;
    state.band = [a.start_epoch, end];
    $("preset").value = "custom";
    $("custom").hidden = false;
    $("from").value = iso(state.from).slice(0, 16);
    $("to").value = iso(state.to).slice(0, 16);
    refresh();
  }

  function anomalies(list) {
    const ol = $("anomalies");
    ol.replaceChildren();
    if (!list.length) { ol.append(el("li", { class: "muted" }, "none")); return; }
    for (const a of list) {
      const li = el("li", { "data-id": a.id, "data-kind": a.kind, tabindex: "0",
        title: "show these minutes", class: state.focus === a.id ? "focused" : "" });
      li.append(el("span", { class: "sev " + a.severity }, a.severity));
      li.append(el("span", { class: "kind" }, a.kind));
      const dims = Object.entries(a.dimensions || {}).map(([k, v]) => k + "=" + v).join(", ");
      li.append(el("span", { class: "dims" }, dims || "site " + a.site));
      li.append(el("div", { class: "ev" }, describe(a)));
      li.append(el("div", { class: "when muted" },
        a.start + " → " + (a.end || "open") + " · " + a.minutes + " min · site " + a.site));
      li.addEventListener("click", () => focus(a));
      li.addEventListener("keydown", (ev) => { if (ev.key === "Enter") focus(a); });
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
    if (state.band && state.preset === "custom") {
      const b0 = Math.max(start, state.band[0]), b1 = Math.min(end, state.band[1]);
      if (b1 > b0) mk("rect", { class: "band", x: x(b0), y: T, width: Math.max(1, x(b1) - x(b0)), height: H - T - B });
    }
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
      state.focus = null;
      state.band = null;
      $("custom").hidden = state.preset !== "custom";
      if (state.preset !== "custom") refresh();
    });
    $("range").addEventListener("submit", (e) => {
      e.preventDefault();
      const f = $("from").value, t = $("to").value;
      state.focus = null;
      state.band = null;
      state.from = f ? new Date(f + ":00Z").getTime() / 1000 : null;
      state.to = t ? new Date(t + ":00Z").getTime() / 1000 : null;
      refresh();
    });
    refresh();
    live();
  }
  document.addEventListener("DOMContentLoaded", init);
})();
