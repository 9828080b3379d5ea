// The web UI in headless Chromium, against `synqx run --ui` (no cluster): the pipelines page
// lists the pipeline and its run; the run page draws the DAG with the asset names on its
// edges, shows a step turning Running -> Succeeded live (the step reads a REST API this test
// holds closed until the page shows it running), the step's log lines and the final rows.
// With --screenshots, saves the pipelines page and the run page into docs/.
//
// SYNQX_BIN: the `synqx` binary; CHROMIUM: the browser (default /usr/bin/chromium).
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WAIT, cell, fail, open, waitForCell } from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const screenshots = process.argv.includes('--screenshots');
const synqx = path.resolve(process.env.SYNQX_BIN || path.join(repo, 'target', 'debug', 'synqx'));

/** A REST API whose `/records` answers only once `open()` was called. */
function gate() {
  let opened = false;
  const held = [];
  let requests = 0;
  const body = JSON.stringify([{ id: 1, name: 'a' }, { id: 2, name: 'b' }, { id: 3, name: 'c' }]);
  const answer = (res) => {
    res.writeHead(200, { 'Content-Type': 'application/json', Connection: 'close' });
    res.end(body);
  };
  const server = http.createServer((req, res) => {
    if (!req.url.startsWith('/records')) {
      res.writeHead(404).end();
      return;
    }
    requests += 1;
    if (opened) answer(res);
    else held.push(res);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({
      port: server.address().port,
      requests: () => requests,
      open() {
        opened = true;
        for (const res of held.splice(0)) answer(res);
      },
      close: () => server.close(),
    }));
  });
}

function pipelineYaml(port) {
  return `apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: api}
spec:
  rest: {baseUrl: "http://127.0.0.1:${port}/", timeout: 5m, cursorParam: since}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: db}
spec:
  sqlite: {path: ./warehouse.db}
---
apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {name: records}
spec:
  schedule: {cron: "*/15 * * * *", timeZone: Europe/Berlin}
  steps:
    - name: extract
      sync:
        source: {connection: api, asset: {name: API records, fqn: records}, incremental: {cursor: id}}
        destination: {connection: db, asset: {name: Staged records, fqn: staged}, mode: overwrite}
    - name: publish
      sync:
        source: {connection: db, asset: {fqn: staged}}
        destination: {connection: db, asset: {name: Published records, fqn: published}, mode: overwrite}
    - name: summarise
      dependsOn: [publish]
      sql:
        connection: db
        statements: ["CREATE TABLE IF NOT EXISTS totals AS SELECT count(*) AS n FROM published"]
`;
}

/** Starts `synqx run --ui 127.0.0.1:0` and resolves with the UI's address once it listens. */
function startRun(dir, file) {
  const child = spawn(synqx, ['run', file, '--ui', '127.0.0.1:0', '--state', path.join(dir, 'state')], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const address = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`synqx run printed no web UI address:\n${output}`)), WAIT);
    const read = (chunk) => {
      output += chunk;
      // The whole line: a chunk may end in the middle of the address.
      const found = /web UI: (http:\/\/\S+)\n/.exec(output);
      if (found) {
        clearTimeout(timer);
        resolve(found[1]);
      }
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    child.on('exit', (code) => reject(new Error(`synqx run exited (${code}) before serving:\n${output}`)));
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, address, exited, output: () => output };
}

async function main() {
  if (!existsSync(synqx)) fail(`${synqx} is missing: build it (cargo build --bin synqx) or set SYNQX_BIN`);
  const dir = mkdtempSync(path.join(tmpdir(), 'synqx-ui-'));
  const api = await gate();
  const file = path.join(dir, 'pipeline.yaml');
  writeFileSync(file, pipelineYaml(api.port));
  const { browser, page, errors } = await open();
  const run = startRun(dir, file);
  try {
    const url = await run.address;
    // Every WebSocket the page opens, so the test can drop one as a network would.
    await page.addInitScript(() => {
      const Native = window.WebSocket;
      window.synqxSockets = [];
      window.WebSocket = class extends Native {
        constructor(...args) {
          super(...args);
          window.synqxSockets.push(this);
        }
      };
    });

    // The pipelines page: the pipeline, its schedule, and its last run (this one).
    await page.goto(url);
    const row = page.locator('tr', { has: page.locator('a', { hasText: /^records$/ }) }).first();
    await row.waitFor({ timeout: WAIT }).catch(async (error) => {
      // What the page shows instead says why (an API error, a script error).
      fail(`${error.message}\npage: ${await page.locator('main').textContent()}\n${errors.join('\n')}`);
    });
    const rowText = await row.textContent();
    if (!rowText.includes('*/15 * * * * (Europe/Berlin)')) fail(`the pipeline's row shows no schedule: ${rowText}`);
    if (await page.locator('#token-dialog[open]').count()) fail('a local run asked for a token');

    // Its last run's page, reached by its link.
    await page.locator('tr', { has: page.locator('a', { hasText: /^records$/ }) }).first()
      .locator('a[href*="/runs/"]').first().click();
    await page.locator('.dag svg').waitFor({ timeout: WAIT });
    const assets = await page.locator('.dag text.asset').allTextContents();
    if (!assets.includes('Staged records')) fail(`the DAG's edges name no asset "Staged records": ${JSON.stringify(assets)}`);
    const dependsOn = await page.locator('.dag path.edge.dependsOn[data-from="publish"][data-to="summarise"]').count();
    if (dependsOn !== 1) fail('the DAG has no dependsOn edge publish -> summarise');
    const layers = await page.locator('.dag text.layer').allTextContents();
    if (layers.join(',') !== 'Layer 1,Layer 2,Layer 3') fail(`the DAG's layers: ${layers}`);

    // The REST source holds `extract` in Running; the page shows it without a reload.
    await waitForCell(page, 'extract', 'Phase', 'Running');
    if (api.requests() < 1) fail('extract shows Running before it asked the API for records');
    await page.locator('.dag g.node.Running[data-step="extract"]').waitFor({ timeout: WAIT });
    await page.evaluate(() => { window.synqxSamePage = true; });
    await page.locator('tr[data-step="extract"] a').first().click();
    const started = page.locator('ol.log li', { hasText: 'attempt 1 started: reading api:records into db:staged (overwrite)' });
    await started.waitFor({ timeout: WAIT });

    // A dropped connection: the page reconnects with since= the last message it got, and
    // nothing is shown twice.
    await page.evaluate(() => window.synqxSockets.at(-1).close());
    await page.waitForFunction(() => window.synqxSockets.length === 2
      && /[?&]since=\d+/.test(window.synqxSockets[1].url) && window.synqxSockets[1].readyState === WebSocket.OPEN,
    null, { timeout: WAIT });
    await page.locator('.live.on').waitFor({ timeout: WAIT });
    if (screenshots) {
      await page.screenshot({ path: path.join(repo, 'docs', 'ui-run-live.png'), fullPage: true });
    }
    api.open();
    await waitForCell(page, 'extract', 'Phase', 'Succeeded');
    await page.locator('h1 .phase[data-phase="Succeeded"]').waitFor({ timeout: WAIT });
    if (!(await page.evaluate(() => window.synqxSamePage === true))) fail('the page reloaded instead of updating live');

    // The final rows, by value, and the step's last log lines.
    for (const [step, column, wanted] of [
      ['extract', 'Rows read', '3'], ['extract', 'Rows written', '3'],
      ['publish', 'Rows read', '3'], ['publish', 'Rows written', '3'],
      ['extract', 'Watermark', '(start) → 3'], ['summarise', 'Phase', 'Succeeded'],
    ]) {
      const value = await cell(page, step, column);
      if (value !== wanted) fail(`${step} ${column}: ${value}, expected ${wanted}`);
    }
    await page.locator('ol.log li', { hasText: /succeeded in .*: 3 rows read, 3 rows written/ }).waitFor({ timeout: WAIT });
    if ((await started.count()) !== 1) fail('the first log line shows twice after the reconnect');
    const progress = await page.locator('.facts div', { hasText: 'Progress' }).locator('dd').textContent();
    if (progress !== '3/3') fail(`the run's progress: ${progress}`);
    if (screenshots) {
      await page.screenshot({ path: path.join(repo, 'docs', 'ui-run.png'), fullPage: true });
    }

    // Back to the pipelines page by the header's link: the run is its last run, Succeeded.
    await page.locator('nav.crumbs a', { hasText: 'Pipelines' }).click();
    const pipelineRow = page.locator('tr', { has: page.locator('a', { hasText: /^records$/ }) }).first();
    await pipelineRow.locator('.phase[data-phase="Succeeded"]').waitFor({ timeout: WAIT });
    const committed = await pipelineRow.locator('td').nth(5).textContent();
    if (committed !== 'extract: 3') fail(`the pipeline's watermarks: ${committed}`);
    if (screenshots) {
      await page.setViewportSize({ width: 1360, height: 420 });
      await page.screenshot({ path: path.join(repo, 'docs', 'ui-pipelines.png'), fullPage: true });
    }
    if (errors.length) fail(errors.join('\n'));

    run.child.kill('SIGINT');
    const { code } = await run.exited;
    if (code !== 0) fail(`synqx run exited ${code} after a successful run:\n${run.output()}`);
    console.log('ok: the web UI of synqx run --ui followed a run live in Chromium');
  } finally {
    await browser.close();
    api.close();
    run.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(`FAILED: ${error.message}`);
  process.exit(1);
});
