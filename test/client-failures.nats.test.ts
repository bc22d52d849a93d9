/**
 * Nothing waits forever: with no worker the client fails with NO_WORKERS at once; when the fleet stops
 * in the middle of a request, the request fails with TIMEOUT at its deadline, naming the rows that
 * never came; and once the fleet is gone, the next request is NO_WORKERS again.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  BertClient,
  CONFIG_MAX_AGE_MS,
  LIVENESS_INTERVAL_MS,
  LIVENESS_MISSES,
  admissionError,
  batchRowsOf,
  readingFromStatus,
} from '@bertq/client';
import type { Encoder } from '@bertq/model';
import { jetstreamManager } from '@nats-io/jetstream';
import { NoWorkersError, OverloadedError, TimeoutError, serviceNames } from '@bertq/protocol';
import { slowModel, startNatsServer, waitFor, type NatsServer } from '@bertq/testing';
import { startWorker } from '@bertq/worker';
import { freshService, loadEncoder, manySentences } from './client-fixtures.js';

/** "At once": well under a second, on a shared 2-core machine. */
const FAIL_FAST_MS = 1_000;
const TEST_TIMEOUT_MS = 60_000;
/** Deadline of the request the fleet abandons. */
const ABANDONED_TIMEOUT_MS = 4_000;
/** How late a TIMEOUT may fire after its deadline. */
const DEADLINE_SLACK_MS = 750;
/** Each model batch of the slowed worker takes this long, so the request is surely mid-way when it stops. */
const SLOW_BATCH_MS = 150;

let server: NatsServer;
let nc: NatsConnection;
let encoder: Encoder;

before(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
  encoder = await loadEncoder();
});

after(async () => {
  await encoder?.close();
  await nc?.close();
  await server?.stop();
});

type Engine = Parameters<typeof startWorker>[0]['engine'];

/** The real encoder, with every batch held back SLOW_BATCH_MS (a busy GPU, say). */
function slowed(inner: Encoder): Engine {
  const slow = slowModel((rows: Parameters<Engine['run']>[0]) => inner.run(rows), SLOW_BATCH_MS);
  return {
    get info() {
      return inner.info;
    },
    tokenize: (texts, options) => inner.tokenize(texts, options),
    run: (rows) => slow.run(rows),
    tokenLevelLength: (longest) => inner.tokenLevelLength(longest),
    close: async () => {},
  };
}

test('client failures - with no worker for the service, encode fails with NO_WORKERS in under a second', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const bc = await BertClient.connect({ servers: server.url, service: freshService('none') });
  try {
    const started = performance.now();
    await assert.rejects(
      bc.encode(['hello world']),
      (e: unknown) => e instanceof NoWorkersError && /start one with `bertq start --service/.test(e.message),
    );
    const elapsed = performance.now() - started;
    assert.ok(elapsed < FAIL_FAST_MS, `took ${elapsed.toFixed(0)} ms`);
  } finally {
    await bc.close();
  }
});

test('client failures - a worker stopped mid-request fails the request with TIMEOUT at its deadline, then NO_WORKERS', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const service = freshService('stop');
  // Room for two 10-row jobs at a time: most of the request is still queued when the worker stops.
  const worker = await startWorker({
    nc,
    service,
    engine: slowed(encoder),
    stream: { storage: 'memory' },
    prefetch: 2,
    maxBatchSize: 10,
  });
  const bc = await BertClient.connect({
    servers: server.url,
    service,
    timeout: ABANDONED_TIMEOUT_MS,
    maxChunkRows: 10,
  });
  try {
    const listener = bc.listen();
    const started = performance.now();
    const request = bc.encode(manySentences(200));
    const outcome = assert.rejects(
      request,
      (e: unknown) =>
        e instanceof TimeoutError &&
        /timed out after 4000 ms with \d+ of 200 rows received \(missing rows [\d, -]+\)/.test(e.message),
    );
    // The first rows are back: the request is under way. Now the whole fleet stops.
    const first = await listener.next();
    assert.equal(first.done, false);
    await listener.return!();
    await worker.stop({ drainTimeoutMs: 1_000, reason: 'test: fleet stops mid-request' });
    await outcome;
    const elapsed = performance.now() - started;
    assert.ok(
      elapsed >= ABANDONED_TIMEOUT_MS - 5 && elapsed < ABANDONED_TIMEOUT_MS + DEADLINE_SLACK_MS,
      `TIMEOUT after ${elapsed.toFixed(0)} ms`,
    );
    assert.equal(bc.status.numTimeout, 1);
    assert.equal(bc.status.pending, 0);

    // The fleet is gone and the cached config has aged: the next request learns it at once.
    await delay(CONFIG_MAX_AGE_MS);
    const again = performance.now();
    await assert.rejects(bc.encode(['anyone?']), NoWorkersError);
    assert.ok(performance.now() - again < FAIL_FAST_MS);
  } finally {
    await bc.close();
    await worker.stop();
  }
});

test('client failures - a fleet that vanishes mid-request is NO_WORKERS within seconds, not at a 60 s deadline', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const service = freshService('vanish');
  const worker = await startWorker({
    nc,
    service,
    engine: slowed(encoder),
    stream: { storage: 'memory' },
    prefetch: 2,
    maxBatchSize: 10,
  });
  const bc = await BertClient.connect({ servers: server.url, service, timeout: 60_000, maxChunkRows: 10 });
  try {
    const listener = bc.listen();
    const request = bc.encode(manySentences(400));
    const outcome = assert.rejects(
      request,
      (e: unknown) => e instanceof NoWorkersError && /no worker serves service .* any more/.test(e.message),
    );
    assert.equal((await listener.next()).done, false, 'the request is under way');
    await listener.return!();
    const stoppedAt = performance.now();
    await worker.stop({ drainTimeoutMs: 500, reason: 'test: the whole fleet goes away' });
    await outcome;
    const waited = performance.now() - stoppedAt;
    const bound = (LIVENESS_MISSES + 1) * LIVENESS_INTERVAL_MS + FAIL_FAST_MS;
    assert.ok(waited < bound, `NO_WORKERS ${waited.toFixed(0)} ms after the fleet left (bound ${bound} ms)`);
    assert.equal(bc.status.pending, 0);
  } finally {
    await bc.close();
    await worker.stop();
  }
});

test('client failures - work nobody waits for is dropped: a client closing with 2,000 rows queued leaves the workers nothing to compute', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const service = freshService('abandon');
  const worker = await startWorker({
    nc,
    service,
    engine: slowed(encoder),
    stream: { storage: 'memory' },
    prefetch: 2,
    maxBatchSize: 10,
  });
  const jobs = 200;
  const bc = await BertClient.connect({ servers: server.url, service, timeout: 60_000, maxChunkRows: 10 });
  try {
    const listener = bc.listen();
    const request = bc.encode(manySentences(jobs * 10));
    request.catch(() => {});
    assert.equal((await listener.next()).done, false, 'the request is under way');
    await listener.return!();
    // Let every job reach the stream, then leave.
    await waitFor('all jobs published', () => bc.status.numChunks === jobs, 10_000);
    await bc.close();
    const jsm = await jetstreamManager(nc);
    const stream = serviceNames(service).stream;
    // Computing them all would take jobs × SLOW_BATCH_MS = 30 s; skipping them takes well under that.
    await waitFor('the stream to empty', async () => (await jsm.streams.info(stream)).state.messages === 0, 10_000);
    await waitFor('the worker to let go of every job', () => worker.stats().heldJobs === 0, 5_000);
    const stats = worker.stats();
    assert.ok(stats.jobsCancelled >= jobs / 2, `cancelled ${stats.jobsCancelled} of ${jobs} jobs`);
    assert.ok(stats.jobsDone < jobs / 4, `computed ${stats.jobsDone} of ${jobs} jobs after the client left`);
  } finally {
    await bc.close();
    await worker.stop();
  }
});

test('client failures - admission judges a big request at big-batch speed: behind 8 clients of 1-row queries it is admitted and served in time', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const service = freshService('mixed');
  // Every batch costs SLOW_BATCH_MS whatever its rows: 64-row batches drain 64× faster per row than
  // the batches of at most 8 rows that 8 one-at-a-time query clients make.
  const worker = await startWorker({
    nc,
    service,
    engine: slowed(encoder),
    stream: { storage: 'memory' },
    prefetch: 2,
    maxBatchSize: 64,
  });
  const clients = await Promise.all(
    Array.from({ length: 8 }, () => BertClient.connect({ servers: server.url, service, timeout: 30_000 })),
  );
  const bc = await BertClient.connect({ servers: server.url, service, timeout: 30_000 });
  let querying = true;
  const queries = { sent: 0, done: 0, failed: 0 };
  const loops: Promise<void>[] = [];
  try {
    // The workers have run big batches before (an occasional batch job among the queries).
    await bc.encode(manySentences(128));
    for (const c of clients) {
      loops.push(
        (async () => {
          while (querying) {
            queries.sent++;
            await c.encode(['a query'], { timeout: 20_000 }).then(
              () => queries.done++,
              () => queries.failed++,
            );
          }
        })(),
      );
    }
    await waitFor('the worker measured under the queries', () => queries.done >= 80, 20_000);
    // The fleet as admission reads it, with the "2 rows queued" that refused such a request before.
    const now = Date.now();
    const reading = { ...readingFromStatus(await bc.serverStatus(), now), pending: { high: 2, bulk: 0 } };
    const rows = 2_000;
    const timeoutMs = 15_000;
    const batchRows = batchRowsOf(await bc.serverConfig(), rows);
    assert.equal(batchRows, 64);
    const asBefore = ((2 * reading.rowsPerJob + reading.heldRows + rows) / reading.capacity) * 1000;
    assert.ok(
      asBefore > 0.8 * timeoutMs,
      `at the queries' ${reading.capacity.toFixed(0)} rows/s the old estimate refuses it (${asBefore.toFixed(0)} ms)`,
    );
    const request = { lane: 'bulk' as const, rows, batchRows, deadline: now + timeoutMs, service };
    assert.equal(admissionError(reading, request, now), undefined, JSON.stringify(reading));
    // And the fleet does serve it in time, the queries still running.
    const started = Date.now();
    const big = await bc.encode(manySentences(rows), { timeout: timeoutMs });
    assert.equal(big.shape[0], rows);
    assert.ok(Date.now() - started < timeoutMs);
    assert.equal(bc.status.shed, 0, 'nothing was shed');
  } finally {
    querying = false;
    await Promise.all(loops);
    await Promise.all(clients.map((c) => c.close()));
    await bc.close();
    await worker.stop();
  }
  assert.equal(queries.failed, 0, `queries: ${JSON.stringify(queries)}`);
});

test('client failures - shed early: a bulk request the queue cannot serve by its deadline is OVERLOADED at once, a small one still goes first', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const service = freshService('shed');
  const worker = await startWorker({
    nc,
    service,
    engine: slowed(encoder),
    stream: { storage: 'memory' },
    prefetch: 2,
    maxBatchSize: 10,
  });
  const busy = await BertClient.connect({ servers: server.url, service, timeout: 60_000, maxChunkRows: 10 });
  const bc = await BertClient.connect({ servers: server.url, service, timeout: 60_000, maxChunkRows: 10 });
  try {
    // A backlog of 40 jobs × 10 rows, drained at about 10 rows per SLOW_BATCH_MS: several seconds.
    const backlog = busy.encode(manySentences(400));
    backlog.catch(() => {});
    await waitFor('the backlog to be queued and the worker measured', () => worker.stats().jobsDone >= 2, 10_000);
    // bc's first request is admitted on no reading, and starts one: it is small, so it goes first.
    await bc.encode(['a probe'], { timeout: 10_000 });
    await waitFor('a load reading', () => (bc.status.load?.pending.bulk ?? 0) > 0, 5_000);
    const chunksBefore = bc.status.numChunks;

    const started = Date.now();
    const refused = await bc.encode(manySentences(50), { timeout: 2_000 }).then(
      () => undefined,
      (err: unknown) => err,
    );
    const tookMs = Date.now() - started;
    assert.ok(refused instanceof OverloadedError, `OVERLOADED, got ${String(refused)}`);
    assert.ok(tookMs < FAIL_FAST_MS, `refused at once (${tookMs} ms), not at the 2 s deadline`);
    assert.match(refused.message, /rows are queued ahead of this request.*nothing was sent/);
    assert.ok((refused.details?.estimatedWaitMs as number) > 2_000, JSON.stringify(refused.details));
    assert.equal(bc.status.numChunks, chunksBefore, 'no job of the refused request was published');
    assert.equal(bc.status.shed, 1);

    // The same backlog does not refuse an interactive request: the high lane is served first.
    const quick = await bc.encode(['still served'], { timeout: 2_000 });
    assert.equal(quick.shape[0], 1);
    // With a deadline the backlog fits in, a bulk request is admitted and served.
    const patient = await bc.encode(manySentences(20), { timeout: 45_000 });
    assert.equal(patient.shape[0], 20);
    assert.equal((await backlog).shape[0], 400);
  } finally {
    await bc.close();
    await busy.close();
    await worker.stop();
  }
});
