// The monitor's web UI in real headless Chromium (Debian's `chromium`, driven by playwright-core).
//
// Real pipelines run with the built `fastlane` binary and report into a fresh store;
// `fastlane serve` serves that store; every number the pages show is compared with the store
// itself (read with SQLite, not through the API). One run is still going while the browser
// watches it: its page must refresh by itself, and its "Stop this run" button must stop it.
// Screenshots of every page are saved under target/browser/ (target/browser/STORE/ for a server).
//
// FASTLANE_BROWSER_STORE picks the store: `sqlite` (the default, a file), or `postgres` or
// `mariadb` (a fresh database on the local server, as tests/services.sh starts it, read through
// a SQLite copy that `fastlane store migrate` makes at each look).
//
// Run from the repository root after `cargo build --workspace`:
//   (cd tests/browser && npm ci && npm test)
//   (cd tests/browser && FASTLANE_BROWSER_STORE=mariadb npm test)

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createInterface } from "node:readline";
import { mkdtempSync, mkdirSync, copyFileSync, writeFileSync, rmSync, existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const bin = resolve(root, process.env.FASTLANE_BIN || "target/debug/fastlane");
const storeKind = process.env.FASTLANE_BROWSER_STORE || "sqlite";
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const shots = resolve(root, "target/browser", storeKind === "sqlite" ? "" : storeKind);
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

const work = mkdtempSync(join(tmpdir(), "fastlane-ui-"));
const database = `fastlane_ui_${process.pid}`;
const servers = {
  postgres: {
    url: `postgres://postgres@127.0.0.1:5432/${database}`,
    admin: (statement) => ["psql", ["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", statement]],
  },
  mariadb: {
    url: `mysql://root@127.0.0.1:3306/${database}`,
    admin: (statement) => ["mariadb", ["-uroot", "-h127.0.0.1", "-e", statement]],
  },
};
assert.ok(storeKind === "sqlite" || servers[storeKind], `FASTLANE_BROWSER_STORE=${storeKind}: sqlite, postgres or mariadb`);
const store = storeKind === "sqlite" ? join(work, "monitor.db") : servers[storeKind].url;
let copies = 0;
const plugins = join(work, "plugins");
let serve, base, browser, slow;
const UI_TOKEN = "ui-suite-t0ken";

// ----- helpers -----

/** Runs `statement` as the database server's administrator. */
function admin(statement) {
  const [cmd, args] = servers[storeKind].admin(statement);
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  assert.equal(r.status, 0, `${cmd}: ${statement}: ${r.stderr}`);
}

/** The store as a SQLite file: the store itself, or a copy of the server's store made now. */
function storeFile() {
  if (storeKind === "sqlite") return store;
  const copy = join(work, `copy-${++copies}.db`);
  const r = spawnSync(bin, ["store", "migrate", "--from", store, "--to", copy], { env: runEnv(), encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return copy;
}

/** Rows of a query on the store, read with Python's sqlite3 (the store as it is on disk). */
function sql(query, ...params) {
  const py = `import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.row_factory = sqlite3.Row
print(json.dumps([dict(r) for r in c.execute(sys.argv[2], json.loads(sys.argv[3]))]))`;
  const r = spawnSync("python3", ["-c", py, storeFile(), query, JSON.stringify(params)], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

function writeJson(path, value) {
  writeFileSync(path, JSON.stringify(value, null, 2));
}

function runEnv() {
  const env = { ...process.env, NO_COLOR: "1", FASTLANE_STORE: store, XDG_DATA_HOME: join(work, "data") };
  delete env.FASTLANE_MONITOR_URL;
  delete env.FASTLANE_MONITOR;
  delete env.pipeline_api_host;
  return env;
}

/** Runs a pipeline to its end; returns its exit code and stderr. */
function runPipeline(config) {
  const path = join(work, `${config.name}.json`);
  writeJson(path, config);
  const r = spawnSync(bin, ["--plugin-dir", plugins, `--config=${path}`, "--progress", "off"],
    { cwd: work, env: runEnv(), encoding: "utf8", timeout: 120_000 });
  return { code: r.status, stderr: r.stderr };
}

async function until(what, fn, ms = 30_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A page of the UI, failing the test on any script error or failed request. */
async function open(hash) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.problems = problems;
  // Signed in, as after the sign-in form (its own test below): the token in this tab's session.
  await page.addInitScript((t) => sessionStorage.setItem("fastlane-token", t), UI_TOKEN);
  await page.goto(`${base}/${hash}`);
  await page.waitForSelector("#main > h1");
  return page;
}

async function finish(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  assert.deepEqual(page.problems, [], "no script errors or failed requests");
  await page.close();
}

/** `data-value` of each `[data-field=name]` inside `scope`, in page order. */
async function values(page, scope, name) {
  return page.$$eval(`${scope} [data-field="${name}"]`, (els) => els.map((e) => e.dataset.value));
}

/** Axe's serious and critical accessibility violations on the page. */
async function accessibility(page) {
  // Evaluated through the DevTools protocol, which the page's Content-Security-Policy (no
  // inline scripts) does not block.
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ["violations"] }));
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`);
}

function lastRun(pipelineId) {
  return sql("SELECT * FROM pipeline_run WHERE pipeline_id = ? ORDER BY id DESC LIMIT 1", pipelineId)[0];
}

// ----- the runs the pages show -----

before(async () => {
  assert.ok(existsSync(bin), `${bin} is missing: run cargo build --workspace first`);
  assert.ok(existsSync(chromiumPath), `${chromiumPath} is missing: apt-get install chromium`);
  mkdirSync(shots, { recursive: true });
  mkdirSync(plugins);
  if (storeKind !== "sqlite") {
    admin(`DROP DATABASE IF EXISTS ${database}`);
    admin(`CREATE DATABASE ${database}`);
  }
  copyFileSync(resolve(dirname(bin), "libfastlane_testplugin_misbehave.so"), join(plugins, "libfastlane_plugin_misbehave.so"));
  copyFileSync(resolve(root, "examples/data/shop.db"), join(work, "shop.db"));

  // The README's job (SQLite → Parquet, incremental), twice: all rows, then none new.
  const shop = {
    name: "shop-orders", replication_mode: "INCREMENTAL", verify: "checksum",
    source: { sqlite: { path: "shop.db", table: "orders", replication_key: "id", batch_size: 2048 } },
    transform: { add_op_fields: true },
    target: { file: { path: "out/orders", format: "parquet", key: "id" } },
    monitoring: { interval_secs: 0.1, token: "hunter2" },
  };
  for (let i = 0; i < 2; i++) {
    const r = runPipeline(shop);
    assert.equal(r.code, 0, r.stderr);
  }
  // A run paced by its target, long enough for a dozen samples.
  const paced = runPipeline({
    name: "paced-feed", replication_mode: "FULL_TABLE",
    source: { generate: { rows: 60_000, batch_size: 500 } },
    target: { discard: { delay_ms: 10 } },
    monitoring: { interval_secs: 0.1 },
  });
  assert.equal(paced.code, 0, paced.stderr);
  // A run that fails when its target opens.
  const broken = runPipeline({
    name: "broken-target", replication_mode: "FULL_TABLE",
    source: { sqlite: { path: "shop.db", table: "orders" } },
    target: { fail_open: {} },
  });
  assert.notEqual(broken.code, 0, "the broken pipeline fails");

  // The service asks for a token, as one exposed would; the pages are opened signed in.
  const s = spawn(bin, ["serve", "-q", "--bind", "127.0.0.1:0", "--store", store],
    { env: { ...runEnv(), FASTLANE_API_TOKEN: UI_TOKEN }, stdio: ["ignore", "pipe", "inherit"] });
  serve = s;
  const first = await new Promise((res, rej) => {
    s.on("exit", (code) => rej(new Error(`fastlane serve exited with ${code}`)));
    createInterface({ input: s.stdout }).once("line", res);
  });
  assert.match(first, /^listening on http:\/\/127\.0\.0\.1:\d+$/);
  base = first.replace("listening on ", "");

  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
  });
});

after(async () => {
  if (browser) await browser.close();
  if (slow && slow.exitCode === null) slow.kill("SIGKILL");
  if (serve) {
    const exited = new Promise((res) => serve.once("exit", res));
    serve.kill("SIGTERM");
    if (serve.exitCode === null) await exited;
  }
  if (storeKind !== "sqlite") admin(`DROP DATABASE IF EXISTS ${database}`);
  rmSync(work, { recursive: true, force: true });
});

// ----- the pages -----

test("the pipelines page lists every pipeline with its last run, as stored", async () => {
  const page = await open("#/");
  const stored = sql("SELECT id FROM pipeline ORDER BY id");
  const shown = await page.$$eval("tr[data-pipeline]", (rows) => rows.map((r) => r.dataset.pipeline));
  assert.deepEqual([...shown].sort(), stored.map((p) => p.id));
  for (const { id } of stored) {
    const run = lastRun(id);
    const scope = `tr[data-pipeline="${id}"]`;
    assert.deepEqual(await values(page, scope, "status"), [run.status], `${id} status`);
    assert.deepEqual(await values(page, scope, "rows_loaded"), [String(run.rows_loaded)], `${id} rows`);
  }
  assert.equal(lastRun("shop-orders").status, "completed");
  assert.equal(lastRun("broken-target").status, "failed");
  assert.match(await page.textContent("#main"), /3 pipeline\(s\)/);
  assert.deepEqual(await accessibility(page), []);
  await finish(page, "pipelines");
});

test("the search and last-run filters narrow the pipelines list", async () => {
  const page = await open("#/");
  await page.selectOption("select[name=status]", "failed");
  await page.click("form.filters button[type=submit]");
  await page.waitForFunction(() => location.hash.includes("status=failed"));
  await page.waitForFunction(() => document.querySelectorAll("tr[data-pipeline]").length === 1);
  assert.deepEqual(await page.$$eval("tr[data-pipeline]", (r) => r.map((x) => x.dataset.pipeline)), ["broken-target"]);
  await page.fill("input[name=q]", "no-such-pipeline");
  await page.click("form.filters button[type=submit]");
  await page.waitForSelector("p.empty");
  await finish(page, "pipelines-filtered");
});

test("the pipeline page shows its run history and its configuration with secrets redacted", async () => {
  const page = await open("#/pipeline/shop-orders");
  const stored = sql("SELECT id, status, rows_loaded FROM pipeline_run WHERE pipeline_id = ? ORDER BY id DESC", "shop-orders");
  assert.equal(stored.length, 2);
  const shown = await page.$$eval("tr[data-run]", (rows) => rows.map((r) => Number(r.dataset.run)));
  assert.deepEqual(shown, stored.map((r) => r.id), "newest first");
  for (const r of stored) {
    assert.deepEqual(await values(page, `tr[data-run="${r.id}"]`, "rows_loaded"), [String(r.rows_loaded)]);
    assert.deepEqual(await values(page, `tr[data-run="${r.id}"]`, "status"), [r.status]);
  }
  // The second incremental run found nothing new.
  assert.equal(stored[0].rows_loaded, 0);
  assert.equal(stored[1].rows_loaded, 20000);
  await page.click("details summary");
  const config = await page.textContent("pre.config");
  assert.ok(!config.includes("hunter2"), "the token is not shown");
  assert.match(config, /"token": "\*\*\*"/);
  assert.deepEqual(await accessibility(page), []);
  await finish(page, "pipeline");
});

test("a finished run's page shows the stored totals, stages, samples and logs", async () => {
  const run = lastRun("paced-feed");
  const page = await open(`#/run/${run.id}`);
  const card = async (name) => (await values(page, ".cards", name))[0];
  assert.equal(await card("rows_loaded"), String(run.rows_loaded));
  assert.equal(await card("rows_extracted"), String(run.rows_extracted));
  assert.equal(await card("bytes_loaded"), String(run.bytes_loaded));
  assert.equal(Number(await card("peak_memory_usage")), run.peak_memory_bytes / 1e6);
  const duration = (run.finished - run.started) / 1000;
  assert.equal(Number(await card("duration_secs")), duration);
  assert.equal(Number(await card("average_rps")), Math.round(run.rows_loaded / duration));
  assert.deepEqual(await values(page, "h1", "status"), ["completed"]);

  // Per-stage totals as stored in the run's `stages` document.
  const stages = JSON.parse(run.stages).stages;
  assert.deepEqual(await page.$$eval("tr[data-stage]", (r) => r.map((x) => x.dataset.stage)), stages.map((s) => s.stage));
  for (const s of stages) {
    assert.deepEqual(await values(page, `tr[data-stage="${s.stage}"]`, `${s.stage}_rows`), [String(s.rows)]);
  }

  // Three charts drawn from the stored samples; their number tables hold the last 20.
  const samples = sql("SELECT * FROM pipeline_run_sample WHERE pipeline_run_id = ? ORDER BY created_at, id", run.id);
  assert.ok(samples.length >= 5, `samples: ${samples.length}`);
  assert.equal(await page.locator("figure.chart").count(), 3);
  assert.ok(await page.locator("figure.chart svg polyline").count() >= 3, "lines drawn");
  const rpsRows = await page.$$eval('figure[data-chart="Records per second"] tbody tr', (r) => r.length);
  assert.equal(rpsRows, Math.min(20, samples.filter((s) => s.source_rps !== null).length));

  // Every stored log line, in order.
  const logs = sql("SELECT level, message FROM pipeline_run_log WHERE pipeline_run_id = ? ORDER BY id", run.id);
  assert.ok(logs.length > 0);
  const lines = await page.$$eval(".logs > div", (d) => d.map((x) => x.textContent));
  assert.equal(lines.length, logs.length);
  logs.forEach((l, i) => assert.ok(lines[i].includes(l.message), `log line ${i}: ${lines[i]}`));
  // The level filter keeps only the chosen level and above.
  const warn = logs.filter((l) => l.level === "ERROR" || l.level === "WARN").length;
  assert.ok(warn < logs.length, "some lines are below WARN");
  await page.selectOption("h2 select", "WARN");
  await page.waitForFunction((n) => document.querySelectorAll(".logs > div:not(.muted)").length === n, warn);

  assert.equal(await page.textContent("#live"), "", "a finished run is not refreshed");
  assert.deepEqual(await accessibility(page), []);
  await finish(page, "run-completed");
});

test("a failed run's page shows the stored error", async () => {
  const run = lastRun("broken-target");
  const page = await open(`#/run/${run.id}`);
  assert.deepEqual(await values(page, "h1", "status"), ["failed"]);
  const error = await page.textContent('[data-field="error"][role="alert"]');
  assert.equal(error, run.error);
  assert.match(error, /fail/i);
  await finish(page, "run-failed");
});

test("the runs page filters the history by status", async () => {
  const page = await open("#/runs");
  const all = sql("SELECT id, status FROM pipeline_run ORDER BY id DESC");
  assert.deepEqual(await page.$$eval("tr[data-run]", (r) => r.map((x) => Number(x.dataset.run))), all.map((r) => r.id));
  await page.selectOption("select[name=status]", "completed");
  await page.click("form.filters button[type=submit]");
  const completed = all.filter((r) => r.status === "completed").map((r) => r.id);
  await page.waitForFunction((n) => document.querySelectorAll("tr[data-run]").length === n, completed.length);
  assert.deepEqual(await page.$$eval("tr[data-run]", (r) => r.map((x) => Number(x.dataset.run))), completed);
  assert.match(await page.textContent(".pager"), new RegExp(`${completed.length} run\\(s\\)`));
  assert.deepEqual(await accessibility(page), []);
  await finish(page, "runs-completed");
});

test("a running run's page refreshes by itself and its stop button stops the run", async () => {
  const config = join(work, "slow.json");
  writeJson(config, {
    name: "slow-feed", replication_mode: "FULL_TABLE",
    source: { generate: { rows: 2_000_000, batch_size: 64 } },
    target: { discard: { delay_ms: 20 } },
    monitoring: { interval_secs: 0.25 },
  });
  slow = spawn(bin, ["--plugin-dir", plugins, `--config=${config}`, "--progress", "off"],
    { cwd: work, env: runEnv(), stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  slow.stderr.on("data", (d) => { stderr += d; });
  const exited = new Promise((res) => slow.on("exit", (code) => res(code)));

  const run = await until("the slow run to report rows", () => {
    const r = sql("SELECT * FROM pipeline_run WHERE pipeline_id = 'slow-feed'")[0];
    return r && r.rows_loaded > 0 ? r : null;
  });
  const page = await open(`#/run/${run.id}`);
  assert.deepEqual(await values(page, "h1", "status"), ["running"]);
  assert.match(await page.textContent("#live"), /refreshing/);
  const first = Number((await values(page, ".cards", "rows_loaded"))[0]);
  // Without any action of ours the page shows more rows loaded as the run goes on.
  await page.waitForFunction((n) => Number(document.querySelector('.cards [data-field="rows_loaded"]').dataset.value) > n,
    first, { timeout: 20_000 });
  await page.screenshot({ path: join(shots, "run-live.png"), fullPage: true });

  page.once("dialog", (d) => d.accept());
  await page.click("button.danger");
  await page.waitForFunction(() => document.querySelector('h1 [data-field="status"]')?.dataset.value === "stopped",
    null, { timeout: 30_000 });
  assert.equal(await exited, 4, `fastlane exits with 4 when stopped: ${stderr}`);

  // The page's last refresh happened after the stop; it shows what the store holds.
  await page.reload();
  await page.waitForSelector('h1 [data-field="status"]');
  const stored = sql("SELECT * FROM pipeline_run WHERE id = ?", run.id)[0];
  assert.equal(stored.status, "stopped");
  assert.equal(stored.stop_requested, 1);
  assert.deepEqual(await values(page, "h1", "status"), ["stopped"]);
  assert.equal((await values(page, ".cards", "rows_loaded"))[0], String(stored.rows_loaded));
  assert.ok(stored.rows_loaded > first && stored.rows_loaded < 2_000_000, `${stored.rows_loaded}`);
  assert.equal(await page.locator("button.danger").count(), 0, "no stop button once stopped");
  assert.equal(await page.textContent("#live"), "");
  await finish(page, "run-stopped");
});

test("a verified run's page says what the source, the read and the staging counted and summed", async () => {
  const run = sql("SELECT * FROM pipeline_run WHERE pipeline_id = ? ORDER BY id LIMIT 1", "shop-orders")[0];
  const stored = JSON.parse(run.stages).verification;
  assert.equal(stored.status, "passed");
  assert.equal(stored.source_rows, run.rows_loaded);
  const page = await open(`#/run/${run.id}`);
  const text = await page.textContent('[data-field="verification"]');
  const counts = text.match(/^Verified: the source counts ([\d,.\s\u202f]+) rows, ([\d,.\s\u202f]+) were read, the staging counts ([\d,.\s\u202f]+)\./);
  assert.ok(counts, text);
  assert.deepEqual(counts.slice(1).map((c) => Number(c.replace(/\D/g, ""))), [run.rows_loaded, run.rows_loaded, run.rows_loaded]);
  // Verified by checksum: both sides' checksums are shown as stored.
  assert.equal(stored.mode, "checksum");
  const sums = text.match(/Checksums: the source's ([0-9a-f]{16}), the staging's ([0-9a-f]{16})\./);
  assert.ok(sums, text);
  assert.deepEqual(sums.slice(1), [stored.source_checksum, stored.target_checksum]);
  // A run that did not resume says nothing of a resume.
  assert.equal(await page.locator('[data-field="checkpoint"]').count(), 0);
  assert.deepEqual(await accessibility(page), []);
  await finish(page, "run-verified");
});

test("a service with a token asks for it once, keeps it for the tab only and never puts it in a URL", async () => {
  const s = spawn(bin, ["serve", "-q", "--bind", "127.0.0.1:0", "--store", store, "--read-token", "r3ader-t0ken"],
    { env: { ...runEnv(), FASTLANE_API_TOKEN: "wr1ter-t0ken" }, stdio: ["ignore", "pipe", "inherit"] });
  try {
    const first = await new Promise((res, rej) => {
      s.on("exit", (code) => rej(new Error(`fastlane serve exited with ${code}`)));
      createInterface({ input: s.stdout }).once("line", res);
    });
    const locked = first.replace("listening on ", "");
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems = [];
    const urls = [];
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    // The browser logs each 401 answer as a console error: those are expected here.
    page.on("console", (m) => { if (m.type() === "error" && !/status of 401/.test(m.text())) problems.push(`console error: ${m.text()}`); });
    page.on("request", (r) => urls.push(r.url()));
    await page.goto(`${locked}/#/`);
    // No data without the token: the sign-in form instead.
    await page.waitForSelector("form.signin");
    assert.equal(await page.locator("tr[data-pipeline]").count(), 0);
    assert.equal(await page.isHidden("#signout"), true);
    assert.deepEqual(await accessibility(page), []);
    await page.screenshot({ path: join(shots, "signin.png"), fullPage: true });
    // A wrong token is refused, and said so.
    await page.fill("#token", "not-the-token");
    await page.click("form.signin button[type=submit]");
    await page.waitForSelector("form.signin [role=alert]");
    assert.match(await page.textContent("form.signin"), /The token was refused/);
    // The read token shows every pipeline, as the open service does.
    await page.fill("#token", "r3ader-t0ken");
    await page.click("form.signin button[type=submit]");
    await page.waitForSelector("tr[data-pipeline]");
    const stored = sql("SELECT id FROM pipeline ORDER BY id");
    const shown = await page.$$eval("tr[data-pipeline]", (rows) => rows.map((r) => r.dataset.pipeline));
    assert.deepEqual([...shown].sort(), stored.map((p) => p.id));
    // Another page of the same tab needs no second sign-in.
    await page.goto(`${locked}/#/runs`);
    await page.waitForSelector("tr[data-run]");
    assert.equal(await page.isHidden("#signout"), false);
    // The token travels in a header only, and lives in this tab's session storage.
    assert.ok(urls.every((u) => !u.includes("t0ken")), urls.join("\n"));
    assert.equal(await page.evaluate(() => localStorage.length), 0);
    const other = await browser.newPage();
    await other.goto(`${locked}/#/`);
    await other.waitForSelector("form.signin");
    await other.close();
    // The footer's metrics link carries the token too.
    await page.click("footer a[href='/metrics']");
    await page.waitForFunction(() => location.protocol === "blob:");
    assert.match(await page.textContent("body"), /fastlane_/);
    await page.goto(`${locked}/#/`);
    await page.waitForSelector("tr[data-pipeline]");
    // Signing out forgets it.
    await page.click("#signout");
    await page.waitForSelector("form.signin");
    assert.equal(await page.evaluate(() => sessionStorage.getItem("fastlane-token")), null);
    assert.deepEqual(problems, []);
    await page.close();
  } finally {
    s.kill("SIGTERM");
  }
});
