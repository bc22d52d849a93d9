/**
 * The client against a fleet of real workers: a 10,000-row request spread over two workers comes back
 * complete and in order; clients sharing an identity all hear every result (multicast) while each
 * takes only its own rows; serverConfig / serverStatus documents are valid and cover the fleet.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { BertClient, type Delivery, type NdArray } from '@bertq/client';
import type { Encoder } from '@bertq/model';
import { validateServerConfig, validateServerStatus } from '@bertq/protocol';
import { startNatsServer, tinyModel, waitFor, type NatsServer } from '@bertq/testing';
import { startFleet, startWorker, type WorkerHandle } from '@bertq/worker';
import { SENTENCES, TOLERANCE, freshService, loadEncoder, manySentences, maxAbsDiff } from './client-fixtures.js';

const BIG_REQUEST_ROWS = 10_000;
/** 10,000 rows through a 4-layer tiny model on two in-process workers sharing 2 cores. */
const BIG_REQUEST_TIMEOUT_MS = 120_000;
const TEST_TIMEOUT_MS = 60_000;
const REQUEST_TIMEOUT_MS = 20_000;
/** Rows per job for the big request: enough jobs that both workers must take some. */
const BIG_CHUNK_ROWS = 128;
/** Forking 2 worker processes that each load the tiny model, then the big request. */
const FLEET_TEST_TIMEOUT_MS = 180_000;

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

/** `count` workers of one fresh service, each with its own connection (as separate processes would have). */
async function startWorkers(
  count: number,
): Promise<{ service: string; workers: WorkerHandle[]; stop: () => Promise<void> }> {
  const service = freshService('fleet');
  const workers: WorkerHandle[] = [];
  for (let i = 0; i < count; i++)
    workers.push(await startWorker({ servers: server.url, service, engine: encoder, stream: { storage: 'memory' } }));
  return { service, workers, stop: async () => void (await Promise.all(workers.map((w) => w.stop()))) };
}

test('client fleet - a 10,000-row request spread over 2 workers comes back complete and in order', {
  timeout: BIG_REQUEST_TIMEOUT_MS + 30_000,
}, async () => {
  const texts = manySentences(BIG_REQUEST_ROWS);
  const local = await encoder.encode(texts);
  const fleet = await startWorkers(2);
  const bc = await BertClient.connect({
    servers: server.url,
    service: fleet.service,
    timeout: BIG_REQUEST_TIMEOUT_MS,
    maxChunkRows: BIG_CHUNK_ROWS,
  });
  try {
    const remote = await bc.encode(texts);
    assert.deepEqual(remote.shape, local.shape);
    const diff = maxAbsDiff(remote.data, local.data);
    assert.ok(diff <= TOLERANCE, `max |fleet - in-process| = ${diff}`);
    const done = fleet.workers.map((w) => w.stats().jobsDone);
    assert.equal(done[0]! + done[1]!, Math.ceil(BIG_REQUEST_ROWS / BIG_CHUNK_ROWS));
    assert.ok(
      done.every((n) => n > 0),
      `both workers took jobs: ${done.join(' + ')}`,
    );
  } finally {
    await bc.close();
    await fleet.stop();
  }
});

test('client fleet - a 10,000-row request through startFleet with numWorker 2 comes back complete and in order', {
  timeout: FLEET_TEST_TIMEOUT_MS,
}, async () => {
  const texts = manySentences(BIG_REQUEST_ROWS);
  const local = await encoder.encode(texts);
  const tiny = await tinyModel();
  const service = freshService('procs');
  const fleet = await startFleet({
    servers: server.url,
    service,
    numWorker: 2,
    threadsPerWorker: 1,
    encoder: { model: tiny.huggingFaceDir, graphTmpDir: tiny.graphDir },
    stream: { storage: 'memory' },
    logLevel: 'silent',
  });
  const bc = await BertClient.connect({
    servers: server.url,
    service,
    timeout: BIG_REQUEST_TIMEOUT_MS,
    maxChunkRows: BIG_CHUNK_ROWS,
  });
  try {
    const remote = await bc.encode(texts);
    assert.deepEqual(remote.shape, local.shape);
    const diff = maxAbsDiff(remote.data, local.data);
    assert.ok(diff <= TOLERANCE, `max |fleet - in-process| = ${diff}`);
    const status = await bc.serverStatus();
    assert.equal(status.num_workers, 2);
    assert.deepEqual(status.workers.map((w) => w.worker_id).sort(), fleet.workers.map((w) => w.id).sort());
    assert.equal(status.statistic.num_total_seq, BIG_REQUEST_ROWS);
    assert.ok(
      status.workers.every((w) => w.statistic.num_total_seq > 0),
      'both worker processes encoded rows',
    );
  } finally {
    await bc.close();
    await fleet.stop();
  }
});

test('client fleet - clients sharing an identity all receive every result, and each takes only its own rows', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const fleet = await startWorkers(1);
  const connectClient = (identity?: string) =>
    BertClient.connect({
      servers: server.url,
      service: fleet.service,
      timeout: REQUEST_TIMEOUT_MS,
      maxChunkRows: 2,
      ...(identity ? { identity } : {}),
    });
  const first = await connectClient();
  const clients = [first, await connectClient(first.identity), await connectClient(first.identity)];
  const listeners = clients.map((c) => c.listen());
  try {
    // Each of the 3 sends its own request, all at once: every listener must hear all 3 requests.
    const requests = [SENTENCES.slice(0, 3), SENTENCES.slice(3, 5), SENTENCES.slice(5)];
    const expected = await Promise.all(requests.map((r) => encoder.encode(r)));
    const results = await Promise.all(clients.map((c, i) => c.encode(requests[i]!)));
    results.forEach((v, i) => {
      assert.deepEqual(v.shape, expected[i]!.shape, `client ${i} got exactly its own rows`);
      assert.ok(maxAbsDiff(v.data, expected[i]!.data) <= TOLERANCE, `client ${i} got its own vectors`);
    });
    const totalRows = requests.reduce((n, r) => n + r.length, 0);
    const dims = expected[0]!.shape[1]!;
    for (const [i, listener] of listeners.entries()) {
      const heard = new Map<string, number>();
      let rows = 0;
      let own = 0;
      while (rows < totalRows) {
        const { value } = (await listener.next()) as { value: Delivery<'ndarray'> };
        assert.equal(value.kind, 'result');
        if (value.kind !== 'result') continue;
        rows += value.rows;
        if (value.own) own += value.rows;
        heard.set(value.id, (heard.get(value.id) ?? 0) + value.rows);
        // Each delivered chunk holds the vectors of rows offset.. of one of the three requests.
        const data = (value.vectors as NdArray).data;
        const matches = expected.some(
          (e, j) =>
            value.offset + value.rows <= requests[j]!.length &&
            maxAbsDiff(data, e.data.subarray(value.offset * dims, (value.offset + value.rows) * dims)) <= TOLERANCE,
        );
        assert.ok(matches, `listener ${i}: rows ${value.offset}.. of ${value.id} are the vectors of those rows`);
      }
      assert.equal(heard.size, 3, `listener ${i} heard all 3 requests`);
      assert.equal(own, requests[i]!.length, `listener ${i} marks only its own client's rows as own`);
      assert.equal(clients[i]!.status.foreignFrames > 0, true, `client ${i} saw its clones' frames and ignored them`);
    }
  } finally {
    for (const l of listeners) await l.return!();
    await Promise.all(clients.map((c) => c.close()));
    await fleet.stop();
  }
});

test("client fleet - two clones sending at the same time never receive each other's rows as their own", {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const fleet = await startWorkers(1);
  const a = await BertClient.connect({
    servers: server.url,
    service: fleet.service,
    timeout: REQUEST_TIMEOUT_MS,
    maxChunkRows: 2,
  });
  const b = await BertClient.connect({
    servers: server.url,
    service: fleet.service,
    timeout: REQUEST_TIMEOUT_MS,
    maxChunkRows: 2,
    identity: a.identity,
  });
  try {
    const textsA = manySentences(40).slice(0, 20);
    const textsB = manySentences(40).slice(20);
    const [expectedA, expectedB] = [await encoder.encode(textsA), await encoder.encode(textsB)];
    const rounds = 5;
    for (let round = 0; round < rounds; round++) {
      const [va, vb] = await Promise.all([a.encode(textsA), b.encode(textsB)]);
      assert.ok(maxAbsDiff(va.data, expectedA.data) <= TOLERANCE, `round ${round}: a has only a's rows`);
      assert.ok(maxAbsDiff(vb.data, expectedB.data) <= TOLERANCE, `round ${round}: b has only b's rows`);
    }
    // a's subscription may still be working through the last of b's frames when b's call returns
    await waitFor(
      "a to see every one of b's frames (at least one per job)",
      () => a.status.foreignFrames >= b.status.numChunks,
    );
  } finally {
    await a.close();
    await b.close();
    await fleet.stop();
  }
});

test('client fleet - serverConfig() and serverStatus() return valid protocol documents covering every worker', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const fleet = await startWorkers(2);
  const bc = await BertClient.connect({ servers: server.url, service: fleet.service, timeout: REQUEST_TIMEOUT_MS });
  try {
    const config = validateServerConfig(await bc.serverConfig());
    assert.equal(config.service, fleet.service);
    assert.ok(fleet.workers.some((w) => w.id === config.worker_id));
    assert.equal(config.max_batch_size, fleet.workers[0]!.config().max_batch_size);

    await bc.encode(SENTENCES);
    const status = await bc.serverStatus();
    assert.equal(status.service, fleet.service);
    assert.equal(status.num_workers, 2);
    assert.deepEqual(status.workers.map((w) => w.worker_id).sort(), fleet.workers.map((w) => w.id).sort());
    for (const w of status.workers) validateServerStatus(w);
    assert.deepEqual(status.unreachable, []);
    assert.equal(status.states.ready, 2);
    assert.equal(
      status.statistic.num_total_seq,
      status.workers.reduce((n, w) => n + w.statistic.num_total_seq, 0),
    );
    assert.ok(status.statistic.num_total_seq >= SENTENCES.length, 'the rows just encoded are counted');
    assert.equal(typeof status.queue.high.pending, 'number');
  } finally {
    await bc.close();
    await fleet.stop();
  }
});
