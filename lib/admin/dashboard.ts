/**
 * The cluster dashboard page served at `<admin>/cluster/ui`: one self-contained HTML document kept as
 * a module string, so it ships with the library and works on every runtime without a file system.
 * Over 400 lines on purpose: it is one HTML page (markup, style and script) with no seam worth a module.
 */

/** The dashboard HTML. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Cluster dashboard · session-replication</title>
<!--
  The cluster dashboard of the admin routes (GET <admin>/cluster/ui): one self-contained page.
  Every request is same-origin and relative to where the admin routes are mounted: this node's
  /cluster, and the other members through this node (/cluster/members/<node>, which the node
  fetches from the member's advertised URL), plus /cluster/sessions for the session table (key
  prefixes only: keys are credentials). The browser sends the admin credentials it was asked for.
-->
<style>
  :root {
    --bg: #f4f6f9; --card: #fff; --ink: #1c2430; --muted: #6b7686; --line: #e3e8ef;
    --alive: #1f9d55; --suspected: #d88a00; --draining: #2f6fdb; --joining: #8a94a3; --down: #d64545;
    --primary: #2f6fdb; --backup: #8fb3f0; --proxy: #d5deeb; --sessions: #2f6fdb;
    --in: #1f9d55; --out: #2f6fdb;
    font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
    color: var(--ink); background: var(--bg);
  }
  * { box-sizing: border-box; }
  body { margin: 0; padding: 20px 24px 32px; }
  header { display: flex; align-items: baseline; gap: 14px; flex-wrap: wrap; margin-bottom: 16px; }
  h1 { font-size: 20px; margin: 0; font-weight: 650; }
  h2 { font-size: 13px; margin: 0 0 12px; font-weight: 650; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
  .meta { color: var(--muted); }
  .meta b { color: var(--ink); font-weight: 600; }
  .live { margin-left: auto; color: var(--muted); font-size: 13px; display: flex; align-items: center; gap: 6px; }
  .dot { width: 9px; height: 9px; border-radius: 50%; display: inline-block; background: var(--joining); flex: none; }
  .dot.ok { background: var(--alive); } .dot.bad { background: var(--down); }
  .cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: 12px; margin-bottom: 14px; }
  .card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; }
  .stat .label { color: var(--muted); font-size: 12px; }
  .stat .value { font-size: 22px; font-weight: 650; margin-top: 2px; font-variant-numeric: tabular-nums; white-space: nowrap; }
  .stat .value small { font-size: 14px; font-weight: 600; color: var(--muted); margin-left: 2px; }
  .stat .sub { color: var(--muted); font-size: 12px; }
  .grid { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 14px; margin-bottom: 14px; }
  @media (max-width: 980px) { .grid { grid-template-columns: minmax(0, 1fr); } }
  .wide { margin-bottom: 14px; }
  table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
  th { text-align: left; font-weight: 600; color: var(--muted); font-size: 12px; padding: 6px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
  td { padding: 7px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
  tr:last-child td { border-bottom: none; }
  td.num, th.num { text-align: right; }
  .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
  .pill { display: inline-flex; align-items: center; gap: 6px; padding: 1px 9px 1px 7px; border-radius: 999px; font-size: 12px; font-weight: 600; background: #eef1f5; }
  .pill .dot { width: 7px; height: 7px; }
  .s-alive { color: var(--alive); } .s-alive .dot { background: var(--alive); }
  .s-suspected { color: var(--suspected); } .s-suspected .dot { background: var(--suspected); }
  .s-draining { color: var(--draining); } .s-draining .dot { background: var(--draining); }
  .s-joining { color: var(--joining); } .s-joining .dot { background: var(--joining); }
  .s-unreachable, .s-dead { color: var(--down); } .s-unreachable .dot, .s-dead .dot { background: var(--down); }
  tr.down td { color: var(--muted); }
  .you { color: var(--muted); font-size: 12px; margin-left: 4px; }
  .bars { display: grid; gap: 10px; }
  .bar-row { display: grid; grid-template-columns: 92px minmax(0, 1fr) 64px; align-items: center; gap: 10px; }
  .bar-name { font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; display: flex; align-items: center; gap: 6px; }
  .track { height: 22px; background: #eef1f5; border-radius: 5px; overflow: hidden; display: flex; }
  .seg { height: 100%; min-width: 0; transition: width .4s ease; }
  .seg[data-role="primary"] { background: var(--primary); } .seg[data-role="backup"] { background: var(--backup); }
  .seg[data-role="proxy"] { background: var(--proxy); } .seg[data-role="total"] { background: var(--sessions); }
  .bar-value { text-align: right; font-variant-numeric: tabular-nums; font-weight: 600; }
  .bar-row.down .bar-name, .bar-row.down .bar-value { color: var(--muted); }
  .bar-row.down .track { background: repeating-linear-gradient(45deg, #f3f5f8, #f3f5f8 6px, #e9edf2 6px, #e9edf2 12px); }
  .legend { display: flex; gap: 14px; margin-top: 12px; color: var(--muted); font-size: 12px; flex-wrap: wrap; }
  .legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px; vertical-align: -1px; }
  .chart { width: 100%; height: 150px; display: block; }
  .chart .grid-line { stroke: var(--line); stroke-width: 1; }
  .chart text { fill: var(--muted); font-size: 11px; }
  .rates-now { display: flex; gap: 18px; margin-bottom: 8px; font-variant-numeric: tabular-nums; }
  .rates-now b { font-size: 18px; }
  .empty { color: var(--muted); padding: 14px 0 4px; text-align: center; }
  .scroll { max-height: 560px; overflow: auto; }
  a { color: var(--primary); text-decoration: none; } a:hover { text-decoration: underline; }
  .scroll thead th { position: sticky; top: 0; background: var(--card); }
  .note { color: var(--muted); font-size: 12px; margin-left: 6px; text-transform: none; letter-spacing: 0; font-weight: 400; }
  .error { color: var(--down); }
</style>
</head>
<body>
<header>
  <h1>Cluster <span id="cluster">…</span></h1>
  <span class="meta">served by <b id="self">…</b> · <b id="manager">…</b> manager · send <b id="send">…</b></span>
  <span class="live"><span id="live-dot" class="dot"></span><span id="live-text">connecting…</span></span>
</header>

<section class="cards" id="cards">
  <div class="card stat"><div class="label">Members</div><div class="value" id="c-members">–</div><div class="sub" id="c-members-sub">&nbsp;</div></div>
  <div class="card stat"><div class="label">Sessions</div><div class="value" id="c-sessions">–</div><div class="sub" id="c-sessions-sub">&nbsp;</div></div>
  <div class="card stat"><div class="label">Messages / s</div><div class="value" id="c-rate">–</div><div class="sub" id="c-rate-sub">&nbsp;</div></div>
  <div class="card stat"><div class="label">Replication lag p50 / p99</div><div class="value" id="c-lag">–</div><div class="sub" id="c-lag-sub">last minute, worst node</div></div>
  <div class="card stat"><div class="label">Acks timed out</div><div class="value" id="c-acks">–</div><div class="sub">all nodes, since start</div></div>
  <div class="card stat"><div class="label">Dropped messages</div><div class="value" id="c-dropped">–</div><div class="sub" id="c-dropped-sub">&nbsp;</div></div>
</section>

<section class="card wide">
  <h2>Members</h2>
  <table id="members">
    <thead><tr>
      <th>Node</th><th>State</th><th class="num" id="members-sessions">Sessions</th><th class="num">Msg/s in</th><th class="num">Msg/s out</th>
      <th class="num">KB/s in</th><th class="num">KB/s out</th><th class="num">Lag p50</th><th class="num">Lag p99</th>
      <th class="num">Acks t/o</th><th class="num">Dropped</th><th>State transfer</th><th class="num">Up</th><th>URL</th>
    </tr></thead>
    <tbody></tbody>
  </table>
</section>

<section class="grid">
  <div class="card">
    <h2>Sessions per node</h2>
    <div class="bars" id="bars"></div>
    <div class="legend" id="legend"></div>
  </div>
  <div class="card">
    <h2>Message rates <span class="note">cluster total, per second</span></h2>
    <div class="rates-now">
      <span><i class="dot" style="background:var(--out)"></i> out <b id="r-out">0</b>/s</span>
      <span><i class="dot" style="background:var(--in)"></i> in <b id="r-in">0</b>/s</span>
      <span class="meta" id="r-bytes"></span>
    </div>
    <svg class="chart" id="chart" viewBox="0 0 600 150" preserveAspectRatio="none" role="img" aria-label="messages per second"></svg>
  </div>
</section>

<section class="card wide">
  <h2>Sessions <span class="note" id="sessions-note"></span></h2>
  <div class="scroll">
    <table id="sessions">
      <thead><tr></tr></thead>
      <tbody></tbody>
    </table>
  </div>
</section>

<script>
"use strict";
const POLL_MS = 1000, SESSIONS_MS = 3000, FETCH_TIMEOUT_MS = 1500, HISTORY = 120;
/** Every member ever seen on this page: node -> { url, status (its own /cluster), view (as this node sees it), state, lastOk }. */
const nodes = new Map();
const history = [];
let self = null, sessionsTimer = 0, lastShape = "";

const $ = (id) => document.getElementById(id);
/** Builds an element; text goes in through textContent only, so nothing from the wire is parsed as HTML. */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v; else if (k === "style") e.style.cssText = v; else e.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}
function svg(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}
const fmt = (n, d = 0) => (n === null || n === undefined || Number.isNaN(n) ? "–" : Number(n).toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d }));
const fmtRate = (n) => fmt(n, n < 10 ? 1 : 0);
const fmtMs = (ms) => (ms === null || ms === undefined ? "–" : ms < 10 ? \`\${fmt(ms, 1)} ms\` : ms < 10000 ? \`\${fmt(ms)} ms\` : \`\${fmt(ms / 1000, 1)} s\`);
function fmtAge(ms) {
  if (ms === undefined || ms === null || ms < 0) return "–";
  const s = Math.floor(ms / 1000);
  if (s < 60) return \`\${s}s\`;
  if (s < 3600) return \`\${Math.floor(s / 60)}m \${s % 60}s\`;
  if (s < 86400) return \`\${Math.floor(s / 3600)}h \${Math.floor((s % 3600) / 60)}m\`;
  return \`\${Math.floor(s / 86400)}d \${Math.floor((s % 86400) / 3600)}h\`;
}
const sum = (xs) => xs.reduce((a, b) => a + (Number(b) || 0), 0);
const pill = (state) => el("span", { class: \`pill s-\${state}\`, "data-state": state }, el("span", { class: "dot" }), state);

async function getJson(url) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
  try {
    const res = await fetch(url, { signal: ctl.signal, cache: "no-store" });
    if (!res.ok) throw new Error(\`HTTP \${res.status}\`);
    return await res.json();
  } finally {
    clearTimeout(timer);
  }
}
const base = (url) => (url || "").replace(/\\/+$/, "");
/** Where the admin routes are mounted: this page is <admin>/cluster/ui. */
const ADMIN = location.pathname.replace(/\\/cluster\\/ui\\/?$/, "");
const member = (node, path = "") => \`\${ADMIN}/cluster/members/\${encodeURIComponent(node)}\${path}\`;

async function poll() {
  try {
    self = await getJson(\`\${ADMIN}/cluster\`);
    $("live-dot").className = "dot ok";
    $("live-text").textContent = \`live · \${new Date().toLocaleTimeString()}\`;
  } catch (error) {
    $("live-dot").className = "dot bad";
    $("live-text").textContent = \`this node does not answer (\${error.message})\`;
    for (const n of nodes.values()) if (n.self) n.state = "unreachable";
    render();
    return;
  }
  const listed = new Set();
  await Promise.all(self.members.map(async (view) => {
    listed.add(view.node);
    const n = nodes.get(view.node) || { node: view.node };
    nodes.set(view.node, n);
    Object.assign(n, { view, self: view.self, url: view.url, gone: false });
    if (view.self) { n.status = self; n.lastOk = Date.now(); n.state = view.state; return; }
    if (!/^https?:\\/\\//.test(view.url || "")) { n.status = null; n.state = view.state; n.noUrl = true; return; }
    try {
      n.status = await getJson(member(view.node));
      n.lastOk = Date.now();
      n.state = view.state;
    } catch {
      n.status = null;
      n.state = "unreachable";
    }
  }));
  // A member that left this node's list was declared dead (or left): keep showing it, marked dead.
  for (const n of nodes.values()) if (!listed.has(n.node)) { n.gone = true; n.status = null; n.state = "dead"; }
  const up = [...nodes.values()].filter((n) => n.status);
  history.push({
    t: Date.now(),
    in: sum(up.map((n) => n.status.rates.messagesIn)),
    out: sum(up.map((n) => n.status.rates.messagesOut)),
    bin: sum(up.map((n) => n.status.rates.bytesIn)),
    bout: sum(up.map((n) => n.status.rates.bytesOut)),
  });
  while (history.length > HISTORY) history.shift();
  render();
  // Membership changed (a node joined, died or came back): refresh the session table now, not in 3 s.
  const shape = order().map((n) => \`\${n.node}:\${n.state}\`).join(",");
  if (lastShape && shape !== lastShape && sessionsTimer) {
    clearTimeout(sessionsTimer);
    sessionsTimer = setTimeout(sessionsLoop, 0);
  }
  lastShape = shape;
}

function order() {
  return [...nodes.values()].sort((a, b) => (a.gone - b.gone) || a.node.localeCompare(b.node, "en", { numeric: true }));
}

function render() {
  if (!self) return;
  $("cluster").textContent = self.cluster;
  $("self").textContent = self.node;
  $("manager").textContent = self.manager;
  $("send").textContent = self.sendMode;
  document.title = \`\${self.cluster} · cluster dashboard\`;
  const all = order();
  const up = all.filter((n) => n.status);
  const healthy = all.filter((n) => n.state === "alive").length;
  $("c-members").textContent = \`\${healthy} / \${all.length}\`;
  const down = all.filter((n) => n.state === "unreachable" || n.state === "dead").length;
  $("c-members-sub").textContent = down ? \`\${down} unreachable or dead\` : "all alive";
  $("c-members-sub").className = down ? "sub error" : "sub";
  const totals = self.sessions;
  $("c-sessions").textContent = fmt(self.manager === "backup" ? (totals.primary || 0) + (totals.backup || 0) + (totals.proxy || 0) : totals.total);
  $("c-sessions-sub").textContent = self.manager === "backup" ? "known to this node (entries)" : "replicated on every node";
  const last = history[history.length - 1] || { in: 0, out: 0, bin: 0, bout: 0 };
  $("c-rate").replaceChildren(fmtRate(last.out), el("small", {}, "out"));
  $("c-rate-sub").textContent = \`\${fmtRate(last.in)} in · \${fmt((last.bout + last.bin) / 1024, 1)} KB/s\`;
  const lags = up.map((n) => n.status.replicationLag).filter((l) => l && l.samples > 0);
  const worst = (key) => (lags.length ? Math.max(...lags.map((l) => l[key])) : null);
  if (lags.length) {
    const [p50, p99] = [worst("p50Ms"), worst("p99Ms")];
    const unit = p99 >= 10000 ? "s" : "ms";
    const f = (ms) => (unit === "s" ? fmt(ms / 1000, 1) : fmt(ms, ms < 10 ? 1 : 0));
    $("c-lag").replaceChildren(\`\${f(p50)} / \${f(p99)}\`, el("small", {}, unit));
  } else $("c-lag").textContent = "–";
  $("c-lag-sub").textContent = lags.length ? \`last minute, \${fmt(sum(lags.map((l) => l.samples)))} samples, worst node\` : "no replication in the last minute";
  $("c-acks").textContent = fmt(sum(up.map((n) => n.status.stats.acksTimedOut)));
  const dropped = {};
  for (const n of up) for (const [reason, count] of Object.entries(n.status.stats.dropped || {})) dropped[reason] = (dropped[reason] || 0) + count;
  $("c-dropped").textContent = fmt(sum(Object.values(dropped)));
  $("c-dropped-sub").textContent = Object.keys(dropped).length ? Object.entries(dropped).map(([r, c]) => \`\${r} \${c}\`).join(" · ") : "none";
  renderMembers(all);
  renderBars(all);
  renderChart(last);
}

function renderMembers(all) {
  $("members-sessions").textContent = self.manager === "backup" ? "Primaries" : "Sessions";
  const body = $("members").tBodies[0];
  body.replaceChildren(...all.map((n) => {
    const s = n.status;
    const r = s ? s.rates : null;
    const lag = s ? s.replicationLag : null;
    const st = s ? s.stateTransfer : null;
    const count = s ? (s.manager === "backup" ? s.sessions.primary : s.sessions.total) : null;
    const startedAt = n.view ? n.view.startedAt : null;
    const now = s ? s.time : self.time;
    const row = el("tr", { "data-node": n.node, "data-state": n.state, class: n.status ? "" : "down" },
      el("td", { class: "mono" }, n.node, n.self ? el("span", { class: "you" }, "(this node)") : null),
      el("td", {}, pill(n.state)),
      el("td", { class: "num", title: s && s.manager === "backup" ? "primaries" : "sessions" }, fmt(count)),
      el("td", { class: "num" }, r ? fmtRate(r.messagesIn) : "–"),
      el("td", { class: "num" }, r ? fmtRate(r.messagesOut) : "–"),
      el("td", { class: "num" }, r ? fmt(r.bytesIn / 1024, 1) : "–"),
      el("td", { class: "num" }, r ? fmt(r.bytesOut / 1024, 1) : "–"),
      el("td", { class: "num" }, lag ? fmtMs(lag.p50Ms) : "–"),
      el("td", { class: "num" }, lag ? fmtMs(lag.p99Ms) : "–"),
      el("td", { class: "num" }, s ? fmt(s.stats.acksTimedOut) : "–"),
      el("td", { class: "num" }, s ? fmt(sum(Object.values(s.stats.dropped || {}))) : "–"),
      el("td", {}, st ? \`\${st.state}\${st.sessionsReceived ? \` · \${fmt(st.sessionsReceived)} recv\` : ""}\${st.donor ? \` from \${st.donor}\` : ""}\` : "–"),
      el("td", { class: "num" }, startedAt && !n.gone ? fmtAge(now - startedAt) : "–"),
      el("td", { class: "mono" }, n.url ? el("a", { href: base(n.url) + ADMIN + "/cluster/ui", rel: "noopener" }, n.url) : n.noUrl ? "not advertised" : "–"));
    return row;
  }));
}

function renderBars(all) {
  const backup = self.manager === "backup";
  const roles = backup ? ["primary", "backup", "proxy"] : ["total"];
  const counts = (n) => (n.status ? roles.map((role) => n.status.sessions[role] || 0) : null);
  const max = Math.max(1, ...all.map((n) => sum(counts(n) || [])));
  $("bars").replaceChildren(...all.map((n) => {
    const c = counts(n);
    const total = c ? sum(c) : null;
    const track = el("div", { class: "track" });
    if (c) roles.forEach((role, i) => {
      if (c[i] > 0) track.append(el("div", { class: "seg", "data-role": role, "data-count": c[i], title: \`\${role}: \${c[i]}\`, style: \`width:\${(100 * c[i]) / max}%\` }));
    });
    return el("div", { class: \`bar-row\${c ? "" : " down"}\`, "data-node": n.node, "data-state": n.state, "data-total": total === null ? "" : total },
      el("div", { class: "bar-name mono", title: n.node }, el("span", { class: \`dot s-\${n.state}\`, style: \`background:var(--\${n.state === "unreachable" || n.state === "dead" ? "down" : n.state})\` }), n.node),
      track,
      el("div", { class: "bar-value" }, c ? fmt(total) : n.state));
  }));
  const items = backup ? [["primary", "primary"], ["backup", "backup copy"], ["proxy", "proxy entry"]] : [["sessions", "sessions held"]];
  $("legend").replaceChildren(...items.map(([v, label]) => el("span", {}, el("i", { style: \`background:var(--\${v})\` }), label)));
}

function renderChart(last) {
  $("r-out").textContent = fmtRate(last.out);
  $("r-in").textContent = fmtRate(last.in);
  $("r-bytes").textContent = \`\${fmt(last.bout / 1024, 1)} KB/s out · \${fmt(last.bin / 1024, 1)} KB/s in\`;
  const W = 600, H = 150, top = 10, bottom = 18, left = 34;
  const chart = $("chart");
  const peak = Math.max(1, ...history.map((p) => Math.max(p.in, p.out)));
  const nice = (v) => { const m = 10 ** Math.floor(Math.log10(v)); return Math.ceil(v / m) * m; };
  const ymax = nice(peak);
  // The x axis spans the history collected so far (at least 10 s, at most two minutes), ending now.
  const t1 = history.length ? history[history.length - 1].t : Date.now();
  const span = Math.max(10000, history.length ? t1 - history[0].t : 0);
  const x = (i) => left + ((W - left - 4) * (span - (t1 - history[i].t))) / span;
  const y = (v) => top + (H - top - bottom) * (1 - v / ymax);
  const parts = [];
  for (const f of [0, 0.5, 1]) {
    parts.push(svg("line", { class: "grid-line", x1: left, x2: W, y1: y(ymax * f), y2: y(ymax * f) }));
    const t = svg("text", { x: left - 6, y: y(ymax * f) + 4, "text-anchor": "end" });
    t.textContent = fmt(ymax * f, ymax < 10 ? 1 : 0);
    parts.push(t);
  }
  const label = svg("text", { x: W - 4, y: H - 4, "text-anchor": "end" });
  label.textContent = "now";
  const label2 = svg("text", { x: left, y: H - 4 });
  label2.textContent = span >= 90000 ? \`−\${Math.round(span / 60000)} min\` : \`−\${Math.round(span / 1000)} s\`;
  parts.push(label, label2);
  for (const [key, color] of [["in", "var(--in)"], ["out", "var(--out)"]]) {
    if (history.length < 2) break;
    const pts = history.map((p, i) => \`\${x(i).toFixed(1)},\${y(p[key]).toFixed(1)}\`).join(" ");
    parts.push(svg("polyline", { points: pts, fill: "none", stroke: color, "stroke-width": 2, "vector-effect": "non-scaling-stroke", "stroke-linejoin": "round" }));
  }
  chart.replaceChildren(...parts);
  chart.dataset.points = String(history.length);
}

async function pollSessions() {
  if (!self) return;
  const sources = order().filter((n) => n.status && (n.self || self.manager === "backup"));
  const lists = await Promise.all(sources.map((n) => getJson(n.self ? \`\${ADMIN}/cluster/sessions?limit=200\` : member(n.node, "/sessions?limit=200")).catch(() => null)));
  const mine = lists[0];
  if (!mine) return;
  // Rows come from this node; the backup manager's age and idle time come from whichever node holds the data.
  const merged = new Map(mine.sessions.map((s) => [s.key, { ...s, time: mine.time }]));
  for (const list of lists.slice(1)) {
    if (!list) continue;
    for (const s of list.sessions) {
      const row = merged.get(s.key);
      if (row && row.createdAt === undefined && s.createdAt !== undefined) Object.assign(row, { createdAt: s.createdAt, lastAccessedAt: s.lastAccessedAt, lastAccessedBy: s.lastAccessedBy, time: list.time });
    }
  }
  const rows = [...merged.values()].sort((a, b) => (b.createdAt || 0) - (a.createdAt || 0));
  $("sessions-note").textContent = \`\${fmt(rows.length)} shown of \${fmt(mine.total)} · key prefixes only\`;
  // The delta manager keeps every session on every node: no primary or backup to show.
  const backup = mine.manager === "backup";
  const heads = backup ? ["Key prefix", "Primary", "Backup", "Age", "Idle", "Last used on"] : ["Key prefix", "Held on", "Age", "Idle", "Last used on"];
  $("sessions").tHead.rows[0].replaceChildren(...heads.map((h) => el("th", { class: h === "Age" || h === "Idle" ? "num" : "" }, h)));
  const body = $("sessions").tBodies[0];
  if (rows.length === 0) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: heads.length, class: "empty" }, "No sessions yet.")));
    return;
  }
  body.replaceChildren(...rows.map((s) => el("tr", { "data-key": s.key },
    el("td", { class: "mono" }, \`\${s.key}…\`),
    ...(backup ? [el("td", { class: "mono" }, s.primary || "–"), el("td", { class: "mono" }, s.backup || "none")] : [el("td", {}, "every node")]),
    el("td", { class: "num" }, s.createdAt !== undefined ? fmtAge(s.time - s.createdAt) : "–"),
    el("td", { class: "num" }, s.lastAccessedAt !== undefined ? fmtAge(s.time - s.lastAccessedAt) : "–"),
    el("td", { class: "mono" }, s.lastAccessedBy || "–"))));
}

async function loop() {
  await poll().catch((error) => console.error(error));
  setTimeout(loop, POLL_MS);
}
async function sessionsLoop() {
  await pollSessions().catch((error) => console.error(error));
  sessionsTimer = setTimeout(sessionsLoop, SESSIONS_MS);
}
loop().then(() => sessionsLoop());
</script>
</body>
</html>
`;
