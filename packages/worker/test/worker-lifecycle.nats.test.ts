import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import type { Encoder } from '@bertq/model';
import { BadRequestError, HEADERS, InternalError, ModelError, TimeoutError, serviceNames } from '@bertq/protocol';
import { startNatsServer } from '@bertq/testing';
import type { NatsServer } from '@bertq/testing';
import { startWorker } from '../src/worker.js';
import type { WorkerHandle, WorkerOptions } from '../src/worker.js';
import type { EmbeddingEngine } from '../src/core/engine.js';
import { TestClient, connectTo, freshService, sentences, slowEngine, tinyEncoder, waitFor } from './helpers.js';

const TEST_TIMEOUT_MS = 60_000;
/** Short ack_wait so a missing in-progress ack would show as a redelivery within the test. */
const SHORT_ACK_WAIT_MS = 1_000;
/** A batch three times longer than ack_wait. */
const SLOW_BATCH_MS = 3 * SHORT_ACK_WAIT_MS;

let server: NatsServer;
let nc: NatsConnection;
let encoder: Encoder;
const workers: WorkerHandle[] = [];

before(async () => {
  server = await startNatsServer();
  nc = await connectTo(server.url);
  encoder = await tinyEncoder();
});

after(async () => {
  await Promise.all(workers.map((w) => w.stop({ drainTimeoutMs: 2_000 })));
  await nc?.close();
  await encoder?.close();
  await server?.stop();
});

async function worker(options: Partial<WorkerOptions> & Pick<WorkerOptions, 'engine'>): Promise<WorkerHandle> {
  const w = await startWorker({ nc, service: freshService(), pullExpiresMs: 1_000, ...options });
  workers.push(w);
  return w;
}

/** The real engine, except that every batch after the first `healthy` ones fails. */
function failingEngine(engine: EmbeddingEngine, healthy: number): EmbeddingEngine {
  let runs = 0;
  return {
    get info() {
      return engine.info;
    },
    tokenize: engine.tokenize.bind(engine),
    tokenLevelLength: engine.tokenLevelLength.bind(engine),
    close: () => Promise.resolve(),
    run: async (rows) => {
      if (++runs > healthy) throw new ModelError(`injected failure of batch ${runs}`);
      return engine.run(rows);
    },
  };
}

test('worker - answers a job whose deadline has passed with TIMEOUT', { timeout: TEST_TIMEOUT_MS }, async () => {
  const w = await worker({ engine: encoder });
  const client = new TestClient(nc, w.service);
  const { id, result } = await client.submit(['too late'], { deadline: Date.now() - 1_000 });
  await assert.rejects(result, (err: Error) => err instanceof TimeoutError && /passed its deadline/.test(err.message));
  const { headers } = await client.errorFor(id);
  assert.equal(headers[HEADERS.errorCode], 'TIMEOUT');
  assert.equal(headers[HEADERS.serviceErrorCode], '504');
  assert.equal(w.stats().jobsTimedOut, 1);
  client.close();
});

test('worker - drops a queued job whose deadline passes before its batch runs', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const slow = slowEngine(encoder, 600);
  const w = await worker({ engine: slow });
  const client = new TestClient(nc, w.service);
  const first = await client.submit(sentences(4), { timeoutMs: 10_000 });
  // the second job must arrive while the first one's batch is inside the model, not join that batch
  await waitFor("the first job's batch to be running", () => slow.running === 1 && w.stats().heldJobs === 1);
  const second = await client.submit(['waits behind the first'], { deadline: Date.now() + 200 });
  await assert.rejects(second.result, TimeoutError);
  await first.result;
  assert.equal(w.stats().jobsTimedOut, 1);
  client.close();
});

test('worker - in-progress acks keep a slow job from being redelivered', { timeout: TEST_TIMEOUT_MS }, async () => {
  const slow = slowEngine(encoder, SLOW_BATCH_MS);
  const w = await worker({ engine: slow, stream: { ackWaitMs: SHORT_ACK_WAIT_MS } });
  const client = new TestClient(nc, w.service);
  const { id, result } = await client.submit(['a slow sentence'], { timeoutMs: 20_000 });
  await result;
  const frames = client.frames.filter((f) => f.frame.id === id);
  assert.equal(frames.length, 1, 'one frame: the job ran once');
  assert.equal(w.stats().jobsRedelivered, 0);
  const jsm = await jetstreamManager(nc);
  const info = await jsm.consumers.info(serviceNames(w.service).stream, 'bulk');
  assert.equal(info.num_redelivered, 0);
  assert.equal(info.num_ack_pending, 0);
  client.close();
});

test('worker - hands a failed batch back and answers INTERNAL on the last allowed delivery', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const MAX_DELIVER = 2;
  const w = await worker({ engine: failingEngine(encoder, 1), stream: { maxDeliver: MAX_DELIVER } });
  const client = new TestClient(nc, w.service);
  const { id, result } = await client.submit(['never encodes'], { timeoutMs: 15_000 });
  await assert.rejects(
    result,
    (err: Error) =>
      err instanceof InternalError && /last allowed delivery \(2 of 2\).*injected failure/.test(err.message),
  );
  assert.equal(client.frames.filter((f) => f.frame.id === id).length, 1, 'exactly one error frame');
  assert.equal(w.stats().jobsRedelivered, 1);
  assert.equal(w.stats().jobsReturned, 1);
  client.close();
});

test('worker - stop() finishes and publishes the jobs it holds, then closes', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const w = await startWorker({ nc, service: freshService(), engine: slowEngine(encoder, 300), pullExpiresMs: 1_000 });
  const client = new TestClient(nc, w.service);
  const requests = [];
  for (let i = 0; i < 3; i++) requests.push(await client.submit(sentences(3, i)));
  await waitFor('the worker to hold all three jobs', () => w.stats().heldJobs === 3);
  const stopped = w.stop();
  assert.equal(w.state, 'draining');
  await Promise.all(requests.map((r) => r.result));
  await stopped;
  assert.equal(w.state, 'closed');
  assert.equal(await w.closed, undefined);
  assert.equal(w.stats().jobsDone, 3);
  assert.equal(w.stats().jobsReturned, 0);
  client.close();
});

test('one configuration - a worker computing something else refuses to join a running service, naming both', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const service = freshService('one-config');
  const first = await startWorker({ nc, service, engine: encoder, pullExpiresMs: 1_000 });
  const twoLayers = await tinyEncoder({ poolingLayer: [-1, -2] });
  try {
    // Same model and options: joins (what a fleet's second worker, or a restart, does).
    const sibling = await startWorker({ nc, service, engine: encoder, pullExpiresMs: 1_000 });
    await sibling.stop({ drainTimeoutMs: 2_000 });
    // Other pooling layers, so other vectors: refused before it pulls a single job.
    await assert.rejects(startWorker({ nc, service, engine: twoLayers, pullExpiresMs: 1_000 }), (err: unknown) => {
      assert.ok(err instanceof BadRequestError, String(err));
      assert.match(
        err.message,
        new RegExp(`service "${service}" is already served by worker ${first.id} with another configuration`),
      );
      assert.match(err.message, /32-dim vectors\); this one would serve .*64-dim vectors/);
      assert.match(err.message, /another --service/);
      return true;
    });
    // The running service is untouched and still answers with its own shape.
    const client = new TestClient(nc, service);
    const got = await client.encode(['still one shape']);
    assert.deepEqual(got.shape, [1, encoder.info.dims]);
    client.close();
  } finally {
    await first.stop({ drainTimeoutMs: 2_000 });
    await twoLayers.close();
  }
});

test('worker - the stream heals itself: a deleted consumer and a max_msgs set to 1 from outside are restored', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const w = await worker({ engine: encoder, streamCheckMs: 500 });
  const names = serviceNames(w.service);
  const jsm = await jetstreamManager(nc);
  const client = new TestClient(nc, w.service);
  try {
    // The attack of issue 9: every small request would time out from then on.
    await jsm.consumers.delete(names.stream, names.consumers.high);
    const served = await client.submit(sentences(1, 7), { timeoutMs: 20_000, priority: 'high' });
    const result = await served.result;
    assert.deepEqual(result.shape, [1, 32]);
    await jsm.consumers.info(names.stream, names.consumers.high); // there again (throws if not)

    const { config } = await jsm.streams.info(names.stream);
    await jsm.streams.update(names.stream, { ...config, max_msgs: 1 });
    await waitFor(
      'max_msgs restored',
      async () => (await jsm.streams.info(names.stream)).config.max_msgs === config.max_msgs,
      10_000,
      100,
    );
  } finally {
    client.close();
  }
});
