// The fastlane monitor's web UI: pipelines, run history and live run pages, read from the
// same REST API as every other client. No framework and no build step.
"use strict";

const main = document.getElementById("main");
const live = document.getElementById("live");
let timer = null;
let view = 0; // bumped on each navigation, so that late answers of an old page are ignored

// ----- helpers -----

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const int = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const dec = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
function n(v) { return v === null || v === undefined ? "–" : int.format(v); }
function bytes(v) {
  if (v === null || v === undefined) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${int.format(v)} B` : `${dec.format(v)} ${u[i]}`;
}
function mb(v) { return v === null || v === undefined ? "–" : `${dec.format(v)} MB`; }
function secs(v) {
  if (v === null || v === undefined) return "–";
  if (v < 60) return `${dec.format(v)} s`;
  const m = Math.floor(v / 60), s = Math.round(v % 60);
  if (m < 60) return `${m} min ${s} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}
function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}
/** What a checkpointed run resumed, or kept for a resume, as a line under the title. */
function resumeNote(checkpoint, rowsRead) {
  if (!checkpoint) return null;
  const parts = [];
  if (checkpoint.resumed) {
    parts.push(`Resumed run ${checkpoint.staging_run_id}: ${n(checkpoint.rows_already_loaded)} rows already loaded, ${n(rowsRead)} read now.`);
  }
  if (checkpoint.kept) {
    parts.push(`Its staging is kept: the next run of this pipeline resumes run ${checkpoint.staging_run_id}.`);
  }
  return parts.length ? el("p", { class: "sub", "data-field": "checkpoint", text: parts.join(" ") }) : null;
}

/** How the load was verified before publishing, as a line under the title. */
function verificationNote(v) {
  if (!v) return null;
  const label = { passed: "Verified", failed: "Verification failed", skipped: "Not verified" }[v.status] || v.status;
  const sums = v.source_checksum || v.target_checksum
    ? ` Checksums: the source's ${v.source_checksum || "?"}, the staging's ${v.target_checksum || "?"}.`
    : "";
  const text = `${label}: the source counts ${n(v.source_rows)} rows, ${n(v.read_rows)} were read, the staging counts ${n(v.target_rows)}.` +
    sums + (v.note ? ` ${v.note}` : "");
  return el("p", { class: "sub", "data-field": "verification", text });
}

function badge(status) {
  return el("span", { class: `badge s-${status}`, "data-field": "status", "data-value": status, text: status });
}
function field(name, value, text) {
  return el("span", { "data-field": name, "data-value": value === null || value === undefined ? "" : String(value) }, text);
}

async function api(path, opts) {
  opts = { ...(opts || {}) };
  const t = token();
  if (t) opts.headers = { authorization: `Bearer ${t}`, ...(opts.headers || {}) };
  const r = await fetch(path, opts);
  const body = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) {
    const msg = body && body.error ? body.error.message : `HTTP ${r.status}`;
    const e = new Error(msg);
    e.status = r.status;
    throw e;
  }
  return { body, total: Number(r.headers.get("x-total-count") || 0) };
}

function token() { return sessionStorage.getItem("fastlane-token") || ""; }

function setLive(text) { live.textContent = text; }

function schedule(fn, ms) {
  clearTimeout(timer);
  timer = setTimeout(fn, ms);
}

function show(...nodes) {
  main.replaceChildren(...nodes.filter((x) => x !== null && x !== undefined));
}

function failure(e) {
  if (e.status === 401) return signIn();
  return el("p", { class: "error", role: "alert", text: `Cannot load this page: ${e.message}` });
}

/** The sign-in form of a service that needs a token: the token is kept for this browser tab
 * only (sessionStorage) and sent in the Authorization header, never in a URL. */
function signIn() {
  const refused = token() !== "";
  const input = el("input", { id: "token", name: "token", type: "password", autocomplete: "current-password", required: true });
  const form = el("form", {
    class: "signin",
    "aria-labelledby": "signin-title",
    onsubmit: (ev) => {
      ev.preventDefault();
      sessionStorage.setItem("fastlane-token", input.value.trim());
      view++;
      route();
    },
  },
  el("h2", { id: "signin-title", text: "Sign in" }),
  el("p", { role: refused ? "alert" : null, class: refused ? "error" : null,
    text: refused ? "The token was refused; give a token of this service." : "This service needs a token to show its pipelines and runs." }),
  el("label", { for: "token", text: "Token" }),
  input,
  el("button", { type: "submit", text: "Sign in" }));
  setTimeout(() => input.focus(), 0);
  return form;
}

function signOut() {
  sessionStorage.removeItem("fastlane-token");
  view++;
  route();
}

function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) u.set(k, v);
  const s = u.toString();
  return s ? `?${s}` : "";
}

function hashParams() {
  const h = location.hash.slice(1);
  const i = h.indexOf("?");
  return [i < 0 ? h : h.slice(0, i), new URLSearchParams(i < 0 ? "" : h.slice(i + 1))];
}

function go(path, params) {
  location.hash = `#${path}${qs(params || {})}`;
}

// ----- charts -----

// A line chart of several series over time, as SVG, with a table of the same numbers for
// screen readers.
function chart(title, unit, series) {
  const W = 600, H = 180, L = 52, R = 10, T = 10, B = 22;
  const pts = series.flatMap((s) => s.points);
  const box = el("figure", { class: "chart", "data-chart": title });
  box.append(el("h3", { text: title }));
  if (pts.length === 0) {
    box.append(el("p", { class: "empty", text: "No samples yet." }));
    return box;
  }
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  const y1 = Math.max(...ys, 1) * 1.1;
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => T + (1 - y / y1) * (H - T - B);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${title}: ${series.map((s) => s.name).join(", ")}`);
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
  };
  add("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" });
  add("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" });
  for (const f of [0, 0.5, 1]) {
    const v = y1 * f;
    add("text", { x: L - 4, y: sy(v) + 4, "text-anchor": "end" }, `${compact(v)}${unit}`);
  }
  add("text", { x: L, y: H - 6 }, "0 s");
  add("text", { x: W - R, y: H - 6, "text-anchor": "end" }, secs((x1 - x0)));
  series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const d = s.points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    add("polyline", { points: d, fill: "none", class: `c${i}`, "stroke-width": 2, "vector-effect": "non-scaling-stroke" });
  });
  box.append(svg);
  box.append(el("div", { class: "legend" }, series.map((s, i) => el("span", {}, el("i", { class: `c${i}` }), s.name))));
  const table = el("table", {},
    el("thead", {}, el("tr", {}, el("th", { text: "seconds" }), series.map((s) => el("th", { class: "num", text: s.name })))),
    el("tbody", {}, series[0].points.slice(-20).map((p, k, arr) => {
      const idx = series[0].points.length - arr.length + k;
      return el("tr", {}, el("td", { text: dec.format(p[0]) }),
        series.map((s) => el("td", { class: "num", text: s.points[idx] ? compact(s.points[idx][1]) : "–" })));
    })));
  box.append(el("details", {}, el("summary", { text: "Numbers (last 20 samples)" }), table));
  return box;
}

function compact(v) {
  if (v >= 1e9) return `${dec.format(v / 1e9)}G`;
  if (v >= 1e6) return `${dec.format(v / 1e6)}M`;
  if (v >= 1e3) return `${dec.format(v / 1e3)}k`;
  return dec.format(v);
}

// ----- pages -----

async function pipelinesPage(params) {
  const me = view;
  const status = params.get("status") || "", type = params.get("type") || "", q = params.get("q") || "";
  const filters = el("form", { class: "filters", role: "search", onsubmit: (e) => {
      e.preventDefault();
      const f = new FormData(e.target);
      go("/", { status: f.get("status"), type: f.get("type"), q: f.get("q") });
    } },
    el("label", {}, "Search", el("input", { name: "q", value: q, type: "search", placeholder: "pipeline id" })),
    el("label", {}, "Last run", select("status", status, ["", "running", "completed", "failed", "stopped", "exited"])),
    el("label", {}, "Type", select("type", type, ["", "FULL_TABLE", "INCREMENTAL"])),
    el("button", { type: "submit", text: "Filter" }));
  let data;
  try {
    data = await api(`/api/pipelines${qs({ pipeline_status: status, pipeline_type: type, q, limit: 200 })}`);
  } catch (e) {
    if (me === view) show(el("h1", { text: "Pipelines" }), e.status === 401 ? null : filters, failure(e));
    return;
  }
  if (me !== view) return;
  const rows = data.body.map((p) => {
    const r = p.last_run;
    return el("tr", { "data-pipeline": p.id },
      el("td", {}, el("a", { href: `#/pipeline/${encodeURIComponent(p.id)}`, text: p.id })),
      el("td", { text: `${p.source_type} → ${p.target_type}` }),
      el("td", { text: p.pipeline_type }),
      el("td", {}, r ? badge(r.status) : el("span", { class: "muted", text: "no runs" })),
      el("td", {}, r ? el("a", { href: `#/run/${r.id}`, text: when(r.started) }) : "–"),
      el("td", { class: "num" }, r ? field("rows_loaded", r.rows_loaded, n(r.rows_loaded)) : "–"),
      el("td", { class: "num", text: r ? secs(r.duration_secs) : "–" }));
  });
  show(el("h1", { text: "Pipelines" }), filters,
    rows.length === 0 ? el("p", { class: "empty", text: "No pipelines yet. Run one with fastlane and it appears here." }) :
      el("table", { "aria-label": "Pipelines" },
        el("thead", {}, el("tr", {}, ["Pipeline", "Source → target", "Type", "Last run", "Started", "Rows loaded", "Duration"]
          .map((h, i) => el("th", { scope: "col", class: i >= 5 ? "num" : null, text: h })))),
        el("tbody", {}, rows)),
    el("p", { class: "muted", text: `${data.total} pipeline(s)` }));
  const anyRunning = data.body.some((p) => p.last_run && p.last_run.status === "running");
  setLive(anyRunning ? "live: refreshing every 2 s" : "");
  schedule(() => route(), anyRunning ? 2000 : 10000);
}

function select(name, value, options) {
  return el("select", { name }, options.map((o) => el("option", { value: o, selected: o === value, text: o || "any" })));
}

async function runsTable(params, pipelineId) {
  const status = params.get("status") || "", from = params.get("from") || "", to = params.get("to") || "";
  const page = Math.max(0, Number(params.get("page") || 0));
  const limit = 50;
  const data = await api(`/api/pipeline/runs${qs({ pipeline_id: pipelineId, status, start_date: from, end_date: to, limit, offset: page * limit })}`);
  const base = pipelineId ? `/pipeline/${encodeURIComponent(pipelineId)}` : "/runs";
  const filters = el("form", { class: "filters", onsubmit: (e) => {
      e.preventDefault();
      const f = new FormData(e.target);
      go(base, { status: f.get("status"), from: f.get("from"), to: f.get("to") });
    } },
    el("label", {}, "Status", select("status", status, ["", "running", "completed", "failed", "stopped", "exited"])),
    el("label", {}, "Started from", el("input", { type: "date", name: "from", value: from })),
    el("label", {}, "Started before", el("input", { type: "date", name: "to", value: to })),
    el("button", { type: "submit", text: "Filter" }));
  const rows = data.body.map((r) => el("tr", { "data-run": r.id },
    el("td", {}, el("a", { href: `#/run/${r.id}`, text: `#${r.id}` })),
    pipelineId ? null : el("td", {}, el("a", { href: `#/pipeline/${encodeURIComponent(r.pipeline_id)}`, text: r.pipeline_id })),
    el("td", {}, badge(r.status)),
    el("td", { text: when(r.started) }),
    el("td", { class: "num", text: secs(r.duration_secs) }),
    el("td", { class: "num" }, field("rows_loaded", r.rows_loaded, n(r.rows_loaded))),
    el("td", { class: "num", text: mb(r.peak_memory_usage) })));
  const heads = ["Run", pipelineId ? null : "Pipeline", "Status", "Started", "Duration", "Rows loaded", "Peak memory"].filter(Boolean);
  const pages = Math.max(1, Math.ceil(data.total / limit));
  const nav = (p) => () => go(base, { status, from, to, page: p });
  return {
    running: data.body.some((r) => r.status === "running"),
    node: el("section", { "aria-label": "Runs" }, filters,
      rows.length === 0 ? el("p", { class: "empty", text: "No runs match." }) :
        el("table", { "aria-label": "Runs" },
          el("thead", {}, el("tr", {}, heads.map((h, i) => el("th", { scope: "col", class: i >= heads.length - 3 ? "num" : null, text: h })))),
          el("tbody", {}, rows)),
      el("div", { class: "pager" },
        el("button", { type: "button", disabled: page === 0, onclick: nav(page - 1), text: "Newer" }),
        el("span", { class: "muted", text: `page ${page + 1} of ${pages} · ${data.total} run(s)` }),
        el("button", { type: "button", disabled: page + 1 >= pages, onclick: nav(page + 1), text: "Older" }))),
  };
}

async function runsPage(params) {
  const me = view;
  try {
    const t = await runsTable(params, null);
    if (me !== view) return;
    show(el("h1", { text: "Runs" }), t.node);
    setLive(t.running ? "live: refreshing every 2 s" : "");
    schedule(() => route(), t.running ? 2000 : 10000);
  } catch (e) {
    if (me === view) show(el("h1", { text: "Runs" }), failure(e));
  }
}

async function pipelinePage(id, params) {
  const me = view;
  try {
    const [{ body: p }, t] = await Promise.all([
      api(`/api/pipeline${qs({ pipeline_id: id })}`),
      runsTable(params, id),
    ]);
    if (me !== view) return;
    show(el("h1", { text: p.id }),
      el("p", { class: "sub", text: `${p.source_type} → ${p.target_type} · ${p.pipeline_type} · registered ${when(p.created_at)}` }),
      el("h2", { text: "Runs" }), t.node,
      el("details", {}, el("summary", { text: "Configuration (secrets redacted)" }),
        el("pre", { class: "config", text: JSON.stringify(p.config, null, 2) })));
    setLive(t.running ? "live: refreshing every 2 s" : "");
    schedule(() => route(), t.running ? 2000 : 10000);
  } catch (e) {
    if (me === view) show(el("h1", { text: id }), failure(e));
  }
}

const runState = { id: null, logs: [], after: 0, level: "", source: null, note: null };

async function runPage(id) {
  const me = view;
  if (runState.id !== id) Object.assign(runState, { id, logs: [], after: 0, source: null, note: null });
  let run, samples, logs;
  try {
    [{ body: run }, { body: samples }, { body: logs }] = await Promise.all([
      api(`/api/pipeline/run${qs({ pipeline_run_id: id })}`),
      api(`/api/pipeline/run/metrics${qs({ pipeline_run_id: id, start_date: "1970-01-01", limit: 100000 })}`),
      api(`/api/pipeline/run/logs${qs({ pipeline_run_id: id, after: runState.after, limit: 10000 })}`),
    ]);
  } catch (e) {
    if (me === view) show(el("h1", { text: `Run #${id}` }), failure(e));
    return;
  }
  if (me !== view) return;
  if (runState.source !== null && logs.source !== runState.source) {
    // The lines now come from elsewhere (CloudWatch, or the store instead), numbered anew.
    Object.assign(runState, { logs: [], after: 0, source: null });
    return runPage(id);
  }
  runState.source = logs.source || "store";
  runState.note = logs.note || null;
  runState.logs.push(...logs.entries);
  runState.after = logs.next_after || runState.after;
  const totals = run.stages || {};
  const avg = run.duration_secs ? run.rows_loaded / run.duration_secs : null;
  const cards = el("div", { class: "cards" },
    card("Rows loaded", "rows_loaded", run.rows_loaded, n(run.rows_loaded)),
    card("Rows read", "rows_extracted", run.rows_extracted, n(run.rows_extracted)),
    card("Bytes loaded", "bytes_loaded", run.bytes_loaded, bytes(run.bytes_loaded)),
    card("Records/s (average)", "average_rps", avg === null ? "" : Math.round(avg), avg === null ? "–" : n(avg)),
    card("Peak memory", "peak_memory_usage", run.peak_memory_usage, mb(run.peak_memory_usage)),
    card("Duration", "duration_secs", run.duration_secs, secs(run.duration_secs)));
  const series = (key) => samples.filter((s) => s[key] !== null && s[key] !== undefined).map((s) => [s.elapsed_secs || 0, s[key]]);
  const queueNames = [...new Set(samples.flatMap((s) => (s.queues || []).map((q) => q.name)))];
  const charts = el("div", { class: "charts" },
    chart("Records per second", "", [
      { name: "source", points: series("source_rps") },
      { name: "transform", points: series("transform_rps") },
      { name: "target", points: series("rps") }]),
    chart("Memory (RSS)", " MB", [{ name: "memory", points: series("memory_usage") }]),
    chart("Queue depth (batches)", "", queueNames.map((q) => ({
      name: q,
      points: samples.filter((s) => s.queues).map((s) => [s.elapsed_secs || 0, (s.queues.find((x) => x.name === q) || { batches: 0 }).batches]),
    }))));
  const stages = (totals.stages || []).map((s) => el("tr", { "data-stage": s.stage },
    el("td", { text: s.stage }), el("td", { text: s.component }), el("td", { class: "num", text: n(s.workers) }),
    el("td", { class: "num", text: n(s.batches) }), el("td", { class: "num" }, field(`${s.stage}_rows`, s.rows, n(s.rows))),
    el("td", { class: "num", text: bytes(s.bytes) }), el("td", { class: "num", text: secs(s.busy_secs) }),
    el("td", { class: "num", text: n(s.rows_per_sec) })));
  const stageTable = stages.length === 0 ? el("p", { class: "empty", text: run.status === "running" ? "Per-stage figures appear when the run ends; the charts above are live." : "No per-stage figures were reported." }) :
    el("table", { "aria-label": "Stages" },
      el("thead", {}, el("tr", {}, ["Stage", "Component", "Workers", "Batches", "Rows", "Bytes", "Busy", "Rows/s"]
        .map((h, i) => el("th", { scope: "col", class: i >= 2 ? "num" : null, text: h })))),
      el("tbody", {}, stages));
  const level = runState.level;
  const order = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];
  const shown = runState.logs.filter((l) => !level || order.indexOf(l.level) <= order.indexOf(level));
  const logBox = el("div", { class: "logs", role: "log", "aria-label": "Log lines", tabindex: "0" },
    shown.length === 0 ? el("div", { class: "muted", text: "No log lines." }) :
      shown.map((l) => el("div", { class: `l-${l.level}` }, `${when(l.created_at)}  ${l.level.padEnd(5)}  ${l.target ? l.target + ": " : ""}${l.message}`)));
  const stop = run.status === "running" ? el("button", { type: "button", class: "danger", onclick: () => stopRun(run.id), text: "Stop this run" }) : null;
  show(
    el("h1", {}, `Run #${run.id} `, badge(run.status)),
    el("p", { class: "sub" }, el("a", { href: `#/pipeline/${encodeURIComponent(run.pipeline_id)}`, text: run.pipeline_id }),
      ` · started ${when(run.started)}`, run.finished ? ` · finished ${when(run.finished)}` : "",
      run.start_offset ? ` · after offset ${run.start_offset}` : "", run.run_key ? ` · ${run.run_key}` : ""),
    stop,
    resumeNote(totals.checkpoint, run.rows_extracted),
    verificationNote(totals.verification),
    run.error ? el("pre", { class: "error", role: "alert", "data-field": "error", text: run.error }) : null,
    cards,
    el("h2", { text: "Progress" }), charts,
    el("h2", { text: "Stages" }), stageTable,
    el("h2", {}, "Logs ", el("label", { class: "muted" }, "level ",
      el("select", { onchange: (e) => { runState.level = e.target.value; route(); } },
        ["", ...order].map((o) => el("option", { value: o, selected: o === level, text: o || "all" }))))),
    runState.source === "cloudwatch"
      ? el("p", { class: "sub", "data-field": "logs-source", "data-value": "cloudwatch", text: `Read from CloudWatch Logs, stream ${run.cloudwatch_log_stream}.` })
      : runState.note ? el("p", { class: "sub", "data-field": "logs-source", "data-value": "store", text: runState.note }) : null,
    logBox);
  logBox.scrollTop = logBox.scrollHeight;
  const running = run.status === "running";
  setLive(running ? "live: refreshing every 2 s" : "");
  if (running) schedule(() => route(), 2000);
}

function card(label, name, value, text) {
  return el("div", { class: "card" }, el("div", { class: "k", text: label }),
    el("div", { class: "v" }, field(name, value, text)));
}

async function stopRun(id) {
  if (!confirm(`Stop run #${id}? It finishes its in-flight batches and stops cleanly.`)) return;
  const headers = { "content-type": "application/json" };
  let t = token();
  for (let attempt = 0; attempt < 2; attempt++) {
    if (t) headers.authorization = `Bearer ${t}`;
    try {
      await api("/api/pipeline/run/stop", { method: "POST", headers, body: JSON.stringify({ pipeline_run_id: id }) });
      setLive("stop requested");
      route();
      return;
    } catch (e) {
      if (e.status === 401 && attempt === 0) {
        t = prompt("This service needs its token to stop a run:") || "";
        sessionStorage.setItem("fastlane-token", t);
        continue;
      }
      alert(`Cannot stop the run: ${e.message}`);
      return;
    }
  }
}

// ----- routing -----

function route() {
  clearTimeout(timer);
  const out = document.getElementById("signout");
  if (out) out.hidden = !token();
  const [path, params] = hashParams();
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll("[data-nav]")) a.removeAttribute("aria-current");
  const nav = (name) => { const a = document.querySelector(`[data-nav=${name}]`); if (a) a.setAttribute("aria-current", "page"); };
  if (parts[0] === "run" && parts[1]) { document.title = `Run #${parts[1]} · fastlane`; nav("runs"); return runPage(Number(parts[1])); }
  if (parts[0] === "pipeline" && parts[1]) { document.title = `${parts[1]} · fastlane`; nav("pipelines"); return pipelinePage(parts[1], params); }
  if (parts[0] === "runs") { document.title = "Runs · fastlane"; nav("runs"); return runsPage(params); }
  document.title = "Pipelines · fastlane";
  nav("pipelines");
  return pipelinesPage(params);
}

window.addEventListener("hashchange", () => { view++; runState.id = null; main.focus(); route(); });
document.getElementById("signout").addEventListener("click", signOut);
// The footer's API and metrics links need the token on a protected service, which a plain
// link cannot send: signed in, they open what a request with it answers.
for (const a of document.querySelectorAll("footer a[data-with-token]")) {
  a.addEventListener("click", async (ev) => {
    const t = token();
    if (!t) return;
    ev.preventDefault();
    const r = await fetch(a.getAttribute("href"), { headers: { authorization: `Bearer ${t}` } });
    const blob = new Blob([await r.text()], { type: r.headers.get("content-type") || "text/plain" });
    location.assign(URL.createObjectURL(blob));
  });
}
route();
