/**
 * The dashboard in a real browser: headless Chromium (Debian's `chromium`, driven by playwright-core)
 * opens `/` while requests run through the gateway, and the page must show the worker and non-zero
 * throughput in its charts, with no script error. A screenshot is saved in the test's temp folder.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import type { Encoder } from '@bertq/model';
import { sleep, waitFor } from '@bertq/testing';
import type { WorkerHandle } from '@bertq/worker';
import type { GatewayHandle } from '../src/index.js';
import { TestFleet, postJson, tinyEncoder } from './fleet.js';

const CHROMIUM = '/usr/bin/chromium';
/** The flags the issue names: no sandbox (root in CI), nothing that reaches the network on its own. */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const TEST_TIMEOUT_MS = 120_000;
/** How long the page may take to show live data (a tick per second, one fleet read behind). */
const LIVE_WITHIN_MS = 20_000;

let fleet: TestFleet;
let encoder: Encoder;
let worker: WorkerHandle;
let gateway: GatewayHandle;
let browser: Browser | undefined;

before(async () => {
  fleet = await TestFleet.start();
  encoder = await tinyEncoder();
  worker = await fleet.worker({ engine: encoder });
  gateway = await fleet.gateway(worker.service);
});

after(async () => {
  await browser?.close();
  await fleet?.stop();
  await encoder?.close();
});

/** Sends requests until stopped: embeddings of a few rows, a bulk /encode now and then, and one bad request. */
function load(url: string): { stop: () => Promise<number> } {
  let running = true;
  let sent = 0;
  const loop = (async () => {
    while (running) {
      const rows = Array.from(
        { length: 8 + (sent % 24) },
        (_, i) => `sentence ${sent} row ${i} about rivers and stones`,
      );
      await postJson(`${url}v1/embeddings`, { model: 'x', input: rows });
      if (sent % 5 === 0) await postJson(`${url}encode`, { id: sent, texts: rows.concat(rows) });
      if (sent === 3) await postJson(`${url}encode`, { texts: [''] });
      sent++;
      await sleep(40);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return sent;
    },
  };
}

test('dashboard - shows the worker and non-zero throughput while requests run, in headless Chromium', {
  timeout: TEST_TIMEOUT_MS,
}, async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`${CHROMIUM} is missing: install Debian's chromium package (.ci/run does) to run the browser test`);
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'bertq-dashboard-'));
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`);
  });
  page.on('requestfailed', (req) => {
    // The event stream is cut when the page closes; anything else failing is a real problem.
    if (!req.url().endsWith('/events')) problems.push(`request failed: ${req.url()}`);
  });

  const traffic = load(gateway.url);
  try {
    await page.goto(gateway.url, { waitUntil: 'load', timeout: 30_000 });
    const peak = async (chart: string): Promise<Record<string, number>> =>
      JSON.parse((await page.getAttribute(`#chart-${chart}`, 'data-peak')) ?? '{}') as Record<string, number>;
    await waitFor(
      'the throughput chart to show rows/s above zero',
      async () => ((await peak('throughput')).rows ?? 0) > 0,
      LIVE_WITHIN_MS,
      250,
    );
    await waitFor(
      "the fleet line (rows/s from the workers' own status) above zero",
      async () => ((await peak('throughput')).fleetRows ?? 0) > 0,
      LIVE_WITHIN_MS,
      250,
    );
    await waitFor(
      'the latency chart to have a p50',
      async () => ((await peak('latency')).p50 ?? 0) > 0,
      LIVE_WITHIN_MS,
      250,
    );
    await waitFor(
      'the errors chart to count the bad request',
      async () => ((await peak('errors')).BAD_REQUEST ?? 0) > 0,
      LIVE_WITHIN_MS,
      250,
    );
    // Let a few more seconds of traffic draw before the picture.
    await sleep(4_000);

    const workers = await page.$$eval('#workers li', (items) =>
      items.map((li) => ({
        id: li.getAttribute('data-worker-id'),
        device: li.getAttribute('data-device'),
        state: li.getAttribute('data-state'),
      })),
    );
    assert.deepEqual(workers, [{ id: worker.id, device: 'cpu', state: 'ready' }]);
    assert.equal(await page.textContent('#fleet-state'), '1/1 ready');
    assert.equal(await page.textContent('#service'), worker.service);
    assert.equal(await page.textContent('#config [data-key="pooling"] .v'), 'REDUCE_MEAN');
    assert.equal(await page.textContent('#config [data-key="dims"] .v'), '32');
    // The throughput chart is drawn: its rows line has points.
    const rowsPath = await page.getAttribute('#chart-throughput path[data-series="rows"]', 'd');
    assert.ok(rowsPath !== null && rowsPath.split('L').length > 3, `the rows/s line has several points: ${rowsPath}`);
    assert.ok(((await peak('stages')).inference ?? 0) > 0, 'the stage chart shows inference time');

    await page.click('[data-window="60"]'); // the 1-minute window: this short run fills more of the width
    const screenshot = join(dir, 'dashboard.png');
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`dashboard screenshot: ${screenshot}`);
    assert.ok(existsSync(screenshot));
  } finally {
    const sent = await traffic.stop();
    t.diagnostic(`requests sent while the page was open: ${sent}`);
  }
  await page.close();
  assert.deepEqual(problems, [], 'the page ran without script errors or failed requests');
});
