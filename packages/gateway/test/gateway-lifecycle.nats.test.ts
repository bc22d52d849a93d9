/**
 * The gateway's life around requests: the dashboard's event stream, a client that leaves early, and
 * shutdown, which lets requests in flight finish before the port closes.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Encoder } from '@bertq/model';
import { sleep, waitFor } from '@bertq/testing';
import type { WorkerHandle } from '@bertq/worker';
import { TestFleet, getJson, postJson, slowEngine, tinyEncoder } from './fleet.js';

const TEST_TIMEOUT_MS = 60_000;
const SLOW_BATCH_MS = 800;

let fleet: TestFleet;
let encoder: Encoder;
let slow: WorkerHandle;

before(async () => {
  fleet = await TestFleet.start();
  encoder = await tinyEncoder();
  slow = await fleet.worker({ engine: slowEngine(encoder, SLOW_BATCH_MS) });
});

after(async () => {
  await fleet?.stop();
  await encoder?.close();
});

test('gateway /events - a snapshot, then one tick per second, as server-sent events', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const gateway = await fleet.gateway(slow.service);
  const res = await fetch(`${gateway.url}events`, { signal: AbortSignal.timeout(20_000) });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const events: Array<{ name: string; data: any }> = [];
  let buffer = '';
  while (events.length < 3) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const name = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (name && data) events.push({ name, data: JSON.parse(data) });
    }
  }
  await reader.cancel();
  assert.deepEqual(
    events.map((e) => e.name),
    ['snapshot', 'tick', 'tick'],
  );
  const snapshot = events[0]!.data;
  assert.equal(snapshot.service, slow.service);
  assert.equal(snapshot.fleet.ok, true);
  assert.deepEqual(
    snapshot.fleet.workers.map((w: { id: string }) => w.id),
    [slow.id],
  );
  assert.equal(snapshot.fleet.model.pooling, 'REDUCE_MEAN');
  assert.ok(events[2]!.data.point.t > events[1]!.data.point.t, 'ticks move forward in time');
  await waitFor('the stream to be counted as closed', async () =>
    /bertq_gateway_dashboard_clients 0/.test(await (await fetch(`${gateway.url}metrics`)).text()),
  );
});

test('gateway /events - the cap on open streams holds under 500 parallel opens', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const cap = 8;
  const gateway = await fleet.gateway(slow.service, { maxEventStreams: cap });
  const controller = new AbortController();
  // The accepted streams are held until the end: a Response nobody references is collected, and
  // undici then cancels its body, which closes the stream and frees its slot (seen under load).
  const open: Response[] = [];
  try {
    // 500 opens at once, on 127.0.0.1, each with a deadline; the accepted ones stay open.
    const statuses = await Promise.all(
      Array.from({ length: 500 }, () =>
        fetch(`${gateway.url}events`, {
          signal: AbortSignal.any([controller.signal, AbortSignal.timeout(20_000)]),
        }).then(
          (res) => {
            if (res.status === 200) open.push(res);
            else void res.body?.cancel();
            return res.status;
          },
          () => 0,
        ),
      ),
    );
    const accepted = statuses.filter((s) => s === 200).length;
    assert.equal(accepted, cap, `accepted ${accepted} of 500 with a cap of ${cap}`);
    assert.equal(statuses.filter((s) => s === 429).length, 500 - cap, 'the others are refused as OVERLOADED (429)');
  } finally {
    controller.abort();
    await Promise.all(open.map((res) => res.body?.cancel().catch(() => undefined)));
  }
});

test('gateway shutdown - a request in flight finishes, then the port is closed', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const gateway = await fleet.gateway(slow.service);
  const inFlight = postJson(`${gateway.url}encode`, { id: 'last', texts: ['finish me'] });
  await sleep(SLOW_BATCH_MS / 4);
  const closed = gateway.close();
  const reply = await inFlight;
  assert.equal(reply.status, 200);
  assert.equal(reply.body.id, 'last');
  await closed;
  await assert.rejects(getJson(`${gateway.url}health`), 'nothing listens after close()');
  assert.equal(gateway.client.status.closed, true, 'the gateway closed its client of the fleet');
});

test('gateway - a client that leaves before its answer does not break the gateway', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const gateway = await fleet.gateway(slow.service);
  await assert.rejects(
    fetch(`${gateway.url}v1/embeddings`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ input: 'leaving early' }),
      signal: AbortSignal.timeout(SLOW_BATCH_MS / 4),
    }),
  );
  // The scrape counts itself: 1 in flight means only the scrape.
  await waitFor('the abandoned request to be released', async () =>
    /^bertq_gateway_in_flight_requests 1$/m.test(await (await fetch(`${gateway.url}metrics`)).text()),
  );
  const reply = await postJson(`${gateway.url}v1/embeddings`, { input: 'still served' });
  assert.equal(reply.status, 200);
  assert.equal(reply.body.data.length, 1);
});

test('gateway - through a broker outage /health says so, then /health, /ready and /encode come back by themselves', {
  timeout: TEST_TIMEOUT_MS * 2,
}, async () => {
  const own = await TestFleet.start(); // its own broker: this test kills it
  try {
    const worker = await own.worker({ engine: encoder });
    const gateway = await own.gateway(worker.service);
    const want = await encoder.encode(['after the outage']);
    assert.equal((await getJson(`${gateway.url}health`)).status, 200);

    own.server.kill('SIGKILL');
    await waitFor(
      '/health to report the lost broker',
      async () => (await getJson(`${gateway.url}health`)).status === 503,
      10_000,
    );
    const down = await getJson(`${gateway.url}health`);
    assert.match(down.body.error.message, /reconnecting to NATS/);
    // /ready tells the same truth at once, rather than waiting out a config request that cannot go out.
    const asked = Date.now();
    const notReady = await getJson(`${gateway.url}ready`);
    assert.equal(notReady.status, 503);
    assert.match(notReady.body.error.message, /reconnecting to NATS/);
    assert.ok(Date.now() - asked < 2_000, `/ready answered in ${Date.now() - asked} ms`);
    await sleep(3_000);
    await own.server.restart();

    await waitFor('/health back', async () => (await getJson(`${gateway.url}health`)).status === 200, 20_000);
    await waitFor('/ready back', async () => (await getJson(`${gateway.url}ready`)).status === 200, 20_000);
    const reply = await postJson(`${gateway.url}encode`, { texts: ['after the outage'] });
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    const got = Float32Array.from(reply.body.result[0] as number[]);
    assert.ok(Math.max(...got.map((v, i) => Math.abs(v - want.data[i]!))) <= 1e-6);
  } finally {
    await own.stop();
  }
});

test('gateway - an HTTP request aborted by its caller cancels its queued jobs: the workers skip them', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const worker = await fleet.worker({
    engine: slowEngine(encoder, SLOW_BATCH_MS),
    maxBatchSize: 10,
    prefetch: 2,
    stream: { storage: 'memory' },
  });
  const gateway = await fleet.gateway(worker.service);
  const texts = Array.from({ length: 200 }, (_, i) => `row ${i} of a request nobody will wait for`);
  await assert.rejects(
    fetch(`${gateway.url}encode`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ texts }),
      signal: AbortSignal.timeout(SLOW_BATCH_MS / 2),
    }),
  );
  // 20 jobs of 10 rows at SLOW_BATCH_MS each would take 16 s; skipped, all 20 are settled in a moment.
  await waitFor(
    'every job computed or skipped',
    () => worker.stats().jobsCancelled + worker.stats().jobsDone === 20,
    10_000,
    100,
  );
  const stats = worker.stats();
  assert.ok(stats.jobsCancelled >= 10, `cancelled ${stats.jobsCancelled} of 20 jobs`);
  assert.ok(stats.jobsDone <= 5, `computed ${stats.jobsDone} of 20 jobs after the caller left`);
});
