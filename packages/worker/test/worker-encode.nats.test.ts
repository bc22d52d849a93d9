import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Encoder } from '@bertq/model';
import { BadRequestError, HEADERS } from '@bertq/protocol';
import { startNatsServer } from '@bertq/testing';
import type { NatsServer } from '@bertq/testing';
import { startWorker } from '../src/worker.js';
import type { WorkerHandle, WorkerOptions } from '../src/worker.js';
import { TestClient, connectTo, freshService, maxAbsDiff, sentences, slowEngine, tinyEncoder } from './helpers.js';

/** Time budgets of this file, named so a slow machine is one edit away. */
const TEST_TIMEOUT_MS = 60_000;
const TOLERANCE = 1e-6;
const SMALL_MAX_PAYLOAD = 8 * 1024;
const SLOW_BATCH_MS = 150;

let server: NatsServer;
let nc: NatsConnection;
let pooled: Encoder;
let tokenLevel: Encoder;
const workers: WorkerHandle[] = [];

before(async () => {
  server = await startNatsServer();
  nc = await connectTo(server.url);
  pooled = await tinyEncoder();
  tokenLevel = await tinyEncoder({ poolingStrategy: 'NONE', maxSeqLen: null });
});

after(async () => {
  await Promise.all(workers.map((w) => w.stop({ drainTimeoutMs: 2_000 })));
  await nc?.close();
  await pooled?.close();
  await tokenLevel?.close();
  await server?.stop();
});

async function worker(
  options: Partial<WorkerOptions> & Pick<WorkerOptions, 'engine'>,
  conn = nc,
): Promise<WorkerHandle> {
  const w = await startWorker({
    nc: conn,
    service: freshService(),
    pullExpiresMs: 1_000,
    stream: { ackWaitMs: 10_000 },
    ...options,
  });
  workers.push(w);
  return w;
}

test('worker - returns rows equal to Encoder.encode for REDUCE_MEAN', { timeout: TEST_TIMEOUT_MS }, async () => {
  const w = await worker({ engine: pooled });
  const client = new TestClient(nc, w.service);
  const texts = sentences(40);
  const got = await client.encode(texts, { chunk: 16 });
  const want = await pooled.encode(texts);
  assert.deepEqual(got.shape, want.shape);
  assert.ok(maxAbsDiff(got.data, want.data) <= TOLERANCE, `max diff ${maxAbsDiff(got.data, want.data)}`);

  const frame = client.frames.find((f) => f.frame.kind === 'result')!;
  assert.equal(frame.headers[HEADERS.worker], w.id);
  for (const name of [HEADERS.tokenizationTime, HEADERS.queueTime, HEADERS.inferenceTime, HEADERS.totalTime]) {
    assert.match(frame.headers[name] ?? '', /^\d+(\.\d+)?$/, `${name} is a decimal number of ms`);
  }
  assert.ok(Number(frame.headers[HEADERS.totalTime]) >= Number(frame.headers[HEADERS.inferenceTime]));
  assert.equal(w.stats().jobsDone, 3);
  assert.equal(w.stats().rows, 40);
  client.close();
});

test('worker - returns token-level rows equal to Encoder.encode for NONE with max_seq_len NONE', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const w = await worker({ engine: tokenLevel, maxBatchTokens: 64 }); // small budget: rows land in batches of different lengths
  const client = new TestClient(nc, w.service);
  const texts = sentences(24, 7);
  const got = await client.encode(texts, { chunk: 8 });
  const want = await tokenLevel.encode(texts);
  assert.deepEqual(got.shape, want.shape);
  assert.ok(maxAbsDiff(got.data, want.data) <= TOLERANCE, `max diff ${maxAbsDiff(got.data, want.data)}`);
  // Its rows ran in batches of different lengths, yet every frame of one job has the job's own row
  // length (its longest row), so a request never mixes row shapes.
  const byJob = new Map<number, Set<string>>();
  for (const f of client.frames) {
    const job = Math.floor(Number(f.headers[HEADERS.offset]) / 8);
    byJob.set(job, (byJob.get(job) ?? new Set()).add(f.headers[HEADERS.shape]!));
  }
  assert.equal(byJob.size, 3);
  for (const [job, shapes] of byJob) assert.equal(shapes.size, 1, `job ${job} frames have shapes ${[...shapes]}`);
  client.close();
});

test('worker - returns tokens and f16 or JSON bodies when a job asks for them', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const w = await worker({ engine: pooled, showTokensToClient: true });
  const client = new TestClient(nc, w.service);
  const texts = ['hello world', 'good day ||| nice weather', 'caf\u00e9 au lait'];
  const want = await pooled.encode(texts, { showTokens: true });
  const json = await client.encode(texts, { output: 'json', showTokens: true });
  assert.ok(maxAbsDiff(json.data, want.data) <= TOLERANCE);
  assert.deepEqual(json.tokens, want.tokens);
  const half = await client.encode(texts, { output: 'f16' });
  for (let i = 0; i < want.data.length; i++) {
    assert.ok(Math.abs(half.data[i]! - want.data[i]!) <= 1e-3 * Math.max(1, Math.abs(want.data[i]!)), `f16 value ${i}`);
  }
  client.close();
});

test('worker - answers a 1,000-row request split in jobs of 256 completely', { timeout: TEST_TIMEOUT_MS }, async () => {
  const w = await worker({ engine: pooled });
  const client = new TestClient(nc, w.service);
  const texts = sentences(1_000, 3);
  const got = await client.encode(texts, { chunk: 256 });
  const want = await pooled.encode(texts);
  assert.deepEqual(got.shape, [1_000, pooled.info.dims]);
  assert.ok(maxAbsDiff(got.data, want.data) <= TOLERANCE);
  assert.equal(w.stats().jobsDone, 4);
  client.close();
});

test('worker - serves a high-priority job before bulk jobs queued ahead of it', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const slow = slowEngine(pooled, SLOW_BATCH_MS);
  const w = await worker({ engine: slow, prefetch: 2 });
  const client = new TestClient(nc, w.service);
  const bulk = [];
  for (let i = 0; i < 8; i++) bulk.push(await client.submit(sentences(4, 100 + i), { priority: 'bulk' }));
  const high = await client.submit(['urgent sentence'], { priority: 'high' });
  await Promise.all([high.result, ...bulk.map((b) => b.result)]);
  const position = client.completed.indexOf(high.id);
  // At most the bulk job being encoded and one more held can finish first; five or more stay behind it.
  assert.ok(position <= 3, `high job finished ${position + 1}th of 9: ${client.completed.join(' ')}`);
  client.close();
});

test('worker - splits a NONE result larger than max_payload into frames that arrive whole', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const small = await startNatsServer({ maxPayload: SMALL_MAX_PAYLOAD });
  const conn = await connectTo(small.url);
  try {
    const w = await worker({ engine: tokenLevel, showTokensToClient: true }, conn);
    const client = new TestClient(conn, w.service);
    // 60 tokens × 32 dims × 4 bytes = 7,680 bytes per row: two rows never share a frame, and with
    // JSON output one row is far over the limit, so it travels in byte parts.
    const long = Array.from({ length: 58 }, (_, i) => ['alpha', 'beta', 'gamma', 'delta'][i % 4]).join(' ');
    const texts = [long, 'short one', long];
    const want = await tokenLevel.encode(texts);
    const binary = await client.encode(texts);
    assert.ok(maxAbsDiff(binary.data, want.data) <= TOLERANCE);
    const json = await client.encode(texts, { output: 'json', showTokens: true });
    assert.ok(maxAbsDiff(json.data, want.data) <= TOLERANCE);
    assert.equal(json.tokens?.[0]?.length, 60);
    const parts = client.frames.filter((f) => f.headers[HEADERS.part] !== undefined);
    assert.ok(parts.length >= 2, 'some rows came in byte parts');
    for (const f of client.frames) {
      assert.equal(f.frame.kind, 'result');
    }
    client.close();
    await w.stop({ drainTimeoutMs: 2_000 });
  } finally {
    await conn.close();
    await small.stop();
  }
});

test('worker - refuses show_tokens with BAD_REQUEST unless started with showTokensToClient', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const w = await worker({ engine: pooled });
  assert.equal(w.config().show_tokens_to_client, false);
  const client = new TestClient(nc, w.service);
  await assert.rejects(
    client.encode(['hello world'], { showTokens: true }),
    (err: Error) => err instanceof BadRequestError && /--show-tokens-to-client/.test(err.message),
  );
  const plain = await client.encode(['hello world']);
  assert.equal(plain.shape[0], 1, 'the worker keeps serving');
  client.close();
});
