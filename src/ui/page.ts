/**
 * The live page: one self-contained HTML document (inline CSS and script, no
 * external asset, no framework). It opens /ui/events and redraws from the
 * rollouts it receives: a table of every rollout (phase, step, weights, the
 * last analysis against its bounds, why it is where it is), and per rollout
 * the weight and metric history as inline SVG charts and the Event timeline.
 * All text is set with textContent, never parsed as HTML.
 */
const STYLE = `
:root { --fg:#1d2330; --muted:#667085; --line:#d0d5dd; --bg:#fff; --ok:#12805c; --bad:#c4320a; --warn:#b54708; --accent:#2e5aac; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: #f6f7f9; margin: 0; }
header { display:flex; align-items:center; gap:12px; padding: 12px 20px; background: #101828; color: #fff; }
header h1 { font-size: 16px; margin: 0; font-weight: 600; }
#conn { font-size: 12px; padding: 2px 8px; border-radius: 10px; background: #475467; }
#conn.live { background: var(--ok); }
main { padding: 16px 20px; }
table { border-collapse: collapse; width: 100%; background: var(--bg); border: 1px solid var(--line); }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; background: #f9fafb; }
.phase { font-weight: 600; padding: 1px 8px; border-radius: 10px; font-size: 12px; white-space: nowrap; }
.Steady { background:#eaecf0; } .Progressing { background:#d1e0ff; color:#1d3f8f; } .Paused { background:#fef0c7; color: var(--warn); }
.Promoted { background:#d1fadf; color: var(--ok); } .RolledBack, .Aborted { background:#fee4e2; color: var(--bad); }
.bar { display:inline-block; width: 120px; height: 10px; background: #98a2b3; border-radius: 3px; overflow: hidden; vertical-align: middle; margin-right: 6px; }
.bar i { display:block; height: 100%; background: var(--accent); }
.check { white-space: nowrap; } .pass { color: var(--ok); } .fail { color: var(--bad); } .other { color: var(--warn); }
.why { color: var(--muted); max-width: 420px; } .problem { color: var(--warn); }
section.detail { background: var(--bg); border: 1px solid var(--line); margin-top: 16px; padding: 10px 14px; }
section.detail h2 { font-size: 15px; margin: 0 0 8px; }
.charts { display:flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; } figcaption { font-size: 12px; color: var(--muted); }
svg text { font-size: 10px; fill: var(--muted); }
ol.timeline { list-style: none; padding: 0; margin: 8px 0 0; max-height: 220px; overflow: auto; }
ol.timeline li { padding: 3px 0; border-top: 1px dashed #eaecf0; }
ol.timeline time { color: var(--muted); font-variant-numeric: tabular-nums; margin-right: 8px; }
ol.timeline .Warning b { color: var(--bad); }
.empty { color: var(--muted); padding: 20px; }
`;

// ASCII only (non-ASCII as \u escapes the browser resolves): esbuild cannot escape characters in a raw template,
// and one character above U+007F makes V8 hold the whole bundle's source, which it keeps for lazy compilation,
// at two bytes per character (6.4 MB instead of 3.2 MB of the daemon's heap).
const SCRIPT = String.raw`
"use strict";
const cards = new Map();
const received = {};
// When each state arrived, for tests and for anyone asking the console how live the page is.
const arrivals = [];
window.__rolloutd = { updates: 0, received, arrivals, connected: false };
const arrived = (c) => {
  received[c.policy] = { at: Date.now(), updatedAt: c.updatedAt, phase: c.phase };
  arrivals.push({ policy: c.policy, ...received[c.policy] });
  if (arrivals.length > 1000) arrivals.splice(0, arrivals.length - 1000);
};
const $ = (tag, attrs, ...kids) => {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") el.className = v; else el.setAttribute(k, String(v));
  }
  for (const k of kids) if (k !== undefined && k !== null) el.append(k);
  return el;
};
const SVG = "http://www.w3.org/2000/svg";
const s = (tag, attrs) => {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
};
const fmt = (v) => v === null || v === undefined ? "\u2014" : Math.abs(v) >= 100 ? v.toFixed(0) : String(Math.round(v * 10000) / 10000);
const clock = (t) => new Date(t).toLocaleTimeString([], { hour12: false });
const ago = (t) => { const s = Math.max(0, Math.round((Date.now() - t) / 1000)); return s < 90 ? s + " s ago" : s < 5400 ? Math.round(s / 60) + " min ago" : Math.round(s / 3600) + " h ago"; };

function checkText(c) {
  const b = [c.min !== undefined ? "\u2265 " + c.min : "", c.max !== undefined ? "\u2264 " + c.max : ""].filter(Boolean).join(", ");
  const v = c.outcome === "value" ? fmt(c.value) : c.outcome;
  const mark = c.verdict === "pass" ? "\u2713" : c.verdict === "fail" ? "\u2717" : "?";
  return $("span", { class: "check " + (c.verdict === "pass" ? "pass" : c.verdict === "fail" ? "fail" : "other") }, c.name + " = " + v + " (" + b + ") " + mark);
}

// [t0, v0, t1, v1, ...] (null: no value) -> [[t0, v0], ...]
const points = (flat) => { const out = []; for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i], flat[i + 1]]); return out; };

function chart(title, flat, opts) {
  const series = points(flat);
  const W = 420, H = 120, L = 34, R = 8, T = 8, B = 18;
  const svg = s("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": title });
  const pts = series.filter((p) => p[1] !== null);
  const t0 = opts.since !== undefined ? opts.since : series.length ? series[0][0] : Date.now();
  const t1 = Math.max(Date.now(), t0 + 1000);
  let lo = opts.min !== undefined ? opts.min : Infinity, hi = opts.max !== undefined ? opts.max : -Infinity;
  for (const p of pts) { lo = Math.min(lo, p[1]); hi = Math.max(hi, p[1]); }
  for (const b of opts.bounds || []) { lo = Math.min(lo, b); hi = Math.max(hi, b); }
  if (!isFinite(lo)) { lo = 0; hi = 1; }
  if (hi === lo) { hi = lo + 1; }
  const pad = opts.fixed ? 0 : (hi - lo) * 0.1; lo -= pad; hi += pad;
  const x = (t) => L + (W - L - R) * (t - t0) / (t1 - t0);
  const y = (v) => T + (H - T - B) * (1 - (v - lo) / (hi - lo));
  svg.append(s("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "#fcfcfd", stroke: "#eaecf0" }));
  for (const v of [lo, (lo + hi) / 2, hi]) {
    const t = s("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" }); t.textContent = fmt(v); svg.append(t);
  }
  const tl = s("text", { x: L, y: H - 4 }); tl.textContent = clock(t0); svg.append(tl);
  const tr = s("text", { x: W - R, y: H - 4, "text-anchor": "end" }); tr.textContent = "now"; svg.append(tr);
  for (const b of opts.bounds || []) svg.append(s("line", { x1: L, x2: W - R, y1: y(b), y2: y(b), stroke: "#c4320a", "stroke-dasharray": "4 3", "data-bound": b }));
  if (pts.length) {
    let d = "";
    pts.forEach((p, i) => {
      if (opts.step && i > 0) d += " L" + x(p[0]).toFixed(1) + " " + y(pts[i - 1][1]).toFixed(1);
      d += (i ? " L" : "M") + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1);
    });
    if (opts.step) d += " L" + x(t1).toFixed(1) + " " + y(pts[pts.length - 1][1]).toFixed(1);
    svg.append(s("path", { d, fill: "none", stroke: "#2e5aac", "stroke-width": 2 }));
    for (const p of pts) svg.append(s("circle", { cx: x(p[0]), cy: y(p[1]), r: 2.5, fill: "#2e5aac" }));
  }
  return $("figure", {}, svg, $("figcaption", {}, title));
}

function row(c) {
  const checks = $("td", { "data-field": "checks" });
  for (const ch of (c.lastAnalysis && c.lastAnalysis.checks) || []) { checks.append(checkText(ch)); checks.append($("br")); }
  if (!checks.childNodes.length) checks.append("\u2014");
  const why = $("td", { class: "why", "data-field": "why" }, c.message);
  if (c.problem) why.append($("div", { class: "problem" }, "\u26a0 " + c.problem.message));
  return $("tr", { "data-policy": c.policy },
    $("td", {}, $("a", { href: "#" + encodeURIComponent(c.policy) }, c.policy)),
    $("td", {}, c.route.kind + " " + c.route.namespace + "/" + c.route.name),
    $("td", { "data-field": "phase" }, $("span", { class: "phase " + c.phase }, c.phase)),
    $("td", { "data-field": "step" }, c.step ? c.step + "/" + c.steps.length : "\u2014"),
    $("td", { "data-field": "weights" }, $("span", { class: "bar" }, $("i", { style: "width:" + c.canaryWeight + "%" })),
      c.stable + " " + (100 - c.canaryWeight) + " / " + c.canary + " " + c.canaryWeight),
    checks, why,
    $("td", { "data-field": "updated", title: new Date(c.updatedAt).toISOString() }, ago(c.updatedAt)));
}

function detail(c) {
  // One time axis for every chart of a rollout: from its first recorded weight.
  const since = c.weights.length ? c.weights[0] : undefined;
  const charts = $("div", { class: "charts" }, chart("canary weight %", c.weights, { min: 0, max: 100, fixed: true, step: true, since }));
  for (const [name, series] of Object.entries(c.values)) {
    const b = c.bounds[name] || {};
    charts.append(chart(name + (b.min !== undefined ? " \u2265 " + b.min : "") + (b.max !== undefined ? " \u2264 " + b.max : ""), series, { since, bounds: [b.min, b.max].filter((v) => v !== undefined) }));
  }
  const tl = $("ol", { class: "timeline", "data-field": "timeline" });
  for (const e of [...c.events].reverse()) tl.append($("li", { class: e.type }, $("time", {}, clock(e.at)), $("b", {}, e.reason), " " + e.message));
  if (!c.events.length) tl.append($("li", {}, "no Events since the daemon started"));
  return $("section", { class: "detail", id: c.policy, "data-policy": c.policy },
    $("h2", {}, c.policy + " \u2014 " + c.phase + (c.revision ? " (revision " + c.revision + ")" : "")), charts, tl);
}

let pending = false;
function render() {
  pending = false;
  const list = [...cards.values()].sort((a, b) => a.policy.localeCompare(b.policy));
  const body = document.getElementById("rows");
  body.replaceChildren(...list.map(row));
  // Charts for what is moving or moved lately (at most 50), and for the rollout picked in the table.
  const picked = decodeURIComponent(location.hash.slice(1));
  const recent = (c) => c.phase === "Progressing" || c.phase === "Paused" || Date.now() - c.updatedAt < 3600000;
  const shown = list
    .filter((c) => c.policy === picked || recent(c))
    .sort((a, b) => (b.policy === picked) - (a.policy === picked) || b.updatedAt - a.updatedAt)
    .slice(0, 50);
  const hidden = list.length - shown.length;
  const note = hidden > 0 ? [$("p", { class: "empty" }, hidden + " more at rest for over an hour: pick one in the table to see its history")] : [];
  document.getElementById("details").replaceChildren(...shown.map(detail), ...note);
  document.getElementById("empty").hidden = list.length > 0;
}
const schedule = () => { if (!pending) { pending = true; requestAnimationFrame(render); } };

function connect() {
  const src = new EventSource(location.pathname.replace(/\/?$/, "/") + "events");
  const conn = document.getElementById("conn");
  src.onopen = () => { conn.textContent = "live"; conn.className = "live"; window.__rolloutd.connected = true; };
  src.onerror = () => { conn.textContent = "reconnecting\u2026"; conn.className = ""; window.__rolloutd.connected = false; };
  src.addEventListener("snapshot", (e) => {
    cards.clear();
    for (const c of JSON.parse(e.data)) { cards.set(c.policy, c); arrived(c); }
    schedule();
  });
  src.addEventListener("rollout", (e) => {
    const c = JSON.parse(e.data);
    cards.set(c.policy, c);
    window.__rolloutd.updates++;
    const prev = received[c.policy];
    if (!prev || prev.updatedAt !== c.updatedAt) arrived(c);
    schedule();
  });
  src.addEventListener("removed", (e) => { cards.delete(JSON.parse(e.data).policy); schedule(); });
}
connect();
setInterval(schedule, 5000);
window.addEventListener("hashchange", schedule);
`;

export const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rolloutd — rollouts</title>
<style>${STYLE}</style>
</head>
<body>
<header><h1>rolloutd — rollouts</h1><span id="conn">connecting…</span></header>
<main>
<table>
<thead><tr><th>Policy</th><th>Route</th><th>Phase</th><th>Step</th><th>Weights (stable / canary %)</th><th>Last analysis</th><th>Why</th><th>Updated</th></tr></thead>
<tbody id="rows"></tbody>
</table>
<p id="empty" class="empty">No rollouts yet: policies appear here once the daemon has read their routes.</p>
<div id="details"></div>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
