// What the browser tests share: Chromium started as the tests need it, and reading the steps
// table of a run page.
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';

/** Every wait is on a condition; this only bounds how long a broken build takes to fail. */
export const WAIT = 120_000;

export function fail(message) {
  throw new Error(message);
}

/** Debian's headless Chromium and a page whose errors and console errors are collected. */
export async function open() {
  const browserPath = process.env.CHROMIUM || '/usr/bin/chromium';
  if (!existsSync(browserPath)) fail(`${browserPath} is missing: install Debian's chromium (apt-get install chromium)`);
  const browser = await chromium.launch({ executablePath: browserPath, args: ['--no-sandbox'] });
  const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  const errors = [];
  page.on('pageerror', (error) => errors.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  return { browser, page, errors };
}

const cellScript = ([name, header, wanted]) => {
  const row = document.querySelector(`tr[data-step="${name}"]`);
  const table = row?.closest('table');
  if (!table) return wanted === undefined ? null : false;
  const index = [...table.querySelectorAll('thead th')].findIndex((th) => th.textContent === header);
  const text = index < 0 ? null : row.children[index].textContent;
  return wanted === undefined ? text : text === wanted;
};

/** The text of a step's cell in the steps table (`column` as its header says). */
export async function cell(page, step, column) {
  return page.evaluate(cellScript, [step, column, undefined]);
}

/** Waits until a step's cell reads `value`. */
export async function waitForCell(page, step, column, value) {
  await page.waitForFunction(cellScript, [step, column, value], { timeout: WAIT });
}
