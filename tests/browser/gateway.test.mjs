// The web UI on the operator's gateway, driven by tests/tests/gateway.rs on the test control
// plane: the page asks for a token, keeps the pasted one in session storage only, lists the
// namespace's pipelines, and follows a run whose first step the Rust test holds: this script
// prints RUNNING once the page shows that step running, and the test then lets it finish.
//
// GATEWAY (the gateway's URL), NAMESPACE, PIPELINE, RUN, STEP, TOKEN, ROWS (the step's rows).
import { WAIT, cell, fail, open, waitForCell } from './lib.mjs';

const env = (name) => process.env[name] || fail(`${name} is not set`);

async function main() {
  const [gateway, ns, pipeline, run, step, token, rows] = ['GATEWAY', 'NAMESPACE', 'PIPELINE', 'RUN', 'STEP', 'TOKEN', 'ROWS'].map(env);
  const { browser, page, errors } = await open();
  try {
    await page.goto(`${gateway}/#/namespaces/${ns}/pipelines`);
    // No token yet: the gateway answers 401 and the page asks for one.
    await page.locator('#token-dialog[open]').waitFor({ timeout: WAIT });
    await page.locator('#token').fill(token);
    await page.locator('#token-dialog button[type=submit]').click();
    const row = page.locator('tr', { has: page.locator('a', { hasText: new RegExp(`^${pipeline}$`) }) }).first();
    await row.waitFor({ timeout: WAIT });
    // The browser logs the 401 that asked for the token; any later error fails the test.
    const refused = errors.splice(0);
    if (!refused.every((e) => e.includes('401'))) fail(refused.join('\n'));
    const kept = await page.evaluate(() => ({
      local: localStorage.length,
      session: sessionStorage.getItem('synqx.token'),
      cookies: document.cookie,
    }));
    if (kept.local !== 0 || kept.cookies !== '') fail(`the token left session storage: ${JSON.stringify(kept)}`);
    if (kept.session !== token) fail('the pasted token is not in session storage');

    await page.locator(`a[href$="/runs/${run}"]`).first().click();
    if (page.url().includes(token)) fail('the token went into the URL');
    await page.locator('.dag svg').waitFor({ timeout: WAIT });
    await waitForCell(page, step, 'Phase', 'Running');
    await page.evaluate(() => { window.synqxSamePage = true; });
    process.stdout.write('RUNNING\n');
    await waitForCell(page, step, 'Phase', 'Succeeded');
    await page.locator('h1 .phase[data-phase="Succeeded"]').waitFor({ timeout: WAIT });
    if (!(await page.evaluate(() => window.synqxSamePage === true))) fail('the page reloaded instead of updating live');
    const written = await cell(page, step, 'Rows written');
    if (written !== rows) fail(`${step} wrote ${written} rows, expected ${rows}`);
    if (errors.length) fail(errors.join('\n'));
    process.stdout.write('OK\n');
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  console.error(`FAILED: ${error.message}`);
  process.exit(1);
});
