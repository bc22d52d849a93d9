import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import type { Encoder } from '@bertq/model';
import { BadRequestError, HEADERS, TooLargeError, TooLongError, newRequestId, serviceNames } from '@bertq/protocol';
import type { ErrorCode, HeaderMap } from '@bertq/protocol';
import { startNatsServer } from '@bertq/testing';
import type { NatsServer } from '@bertq/testing';
import { startWorker } from '../src/worker.js';
import type { WorkerHandle } from '../src/worker.js';
import { TestClient, connectTo, freshService, tinyEncoder, waitFor } from './helpers.js';

const TEST_TIMEOUT_MS = 60_000;
const MAX_BATCH_SIZE = 8;

let server: NatsServer;
let nc: NatsConnection;
let encoder: Encoder;
let worker: WorkerHandle;
let client: TestClient;

before(async () => {
  server = await startNatsServer();
  nc = await connectTo(server.url);
  // max_seq_len NONE: a sentence longer than the model's 64 positions is an error, not cut.
  encoder = await tinyEncoder({ maxSeqLen: null });
  worker = await startWorker({
    nc,
    service: freshService('bad'),
    engine: encoder,
    maxBatchSize: MAX_BATCH_SIZE,
    pullExpiresMs: 1_000,
  });
  client = new TestClient(nc, worker.service);
});

after(async () => {
  client?.close();
  await worker?.stop({ drainTimeoutMs: 2_000 });
  await nc?.close();
  await encoder?.close();
  await server?.stop();
});

/** Headers of a job addressed to the test client. */
function addressed(id: string, offset = 0): HeaderMap {
  return { [HEADERS.id]: id, [HEADERS.offset]: String(offset), [HEADERS.reply]: client.resultsSubject };
}

/** Publishes a hand-made job and returns the error frame it gets back. */
async function refusal(body: string | Uint8Array, offset = 0, priority: 'high' | 'bulk' = 'high', rows?: number) {
  const id = newRequestId();
  await client.publishRaw(priority, body, addressed(id, offset));
  const { error, headers } = await client.errorFor(id);
  assert.equal(headers[HEADERS.id], id);
  assert.equal(headers[HEADERS.offset], String(offset));
  assert.equal(headers[HEADERS.serviceErrorCode], String(error.status));
  assert.equal(headers[HEADERS.errorCode], error.code);
  assert.equal(headers[HEADERS.worker], worker.id);
  if (rows !== undefined) assert.equal(headers[HEADERS.rows], String(rows), 'the frame says which rows failed');
  return error;
}

function expectError(error: Error, cls: new (...args: never[]) => Error, code: ErrorCode, message: RegExp): void {
  assert.ok(error instanceof cls, `${error.name} is a ${cls.name}`);
  assert.equal((error as { code?: string }).code, code);
  assert.match(error.message, message);
}

test('bad jobs - a body that is not JSON gets BAD_REQUEST', { timeout: TEST_TIMEOUT_MS }, async () => {
  expectError(await refusal('hello, not json'), BadRequestError, 'BAD_REQUEST', /not valid JSON/);
});

test('bad jobs - a body of the wrong schema gets BAD_REQUEST naming the field or row', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  expectError(await refusal('{"text": ["a"]}'), BadRequestError, 'BAD_REQUEST', /"text"|"texts"/);
  expectError(
    await refusal('{"texts": ["a", 3]}', 10),
    BadRequestError,
    'BAD_REQUEST',
    /texts\[11\] must be a string, got number/,
  );
  expectError(
    await refusal('{"texts": ["a"], "show_token": true}'),
    BadRequestError,
    'BAD_REQUEST',
    /unknown field "show_token"/,
  );
});

test('bad jobs - an empty or blank string gets BAD_REQUEST naming its request row', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  expectError(
    await refusal('{"texts": ["ok", ""]}', 16, 'high', 2),
    BadRequestError,
    'BAD_REQUEST',
    /texts\[17\] is an empty string/,
  );
  // Blank text passes the schema and is caught by the tokenizer, whose row numbers are shifted too.
  expectError(
    await refusal('{"texts": ["ok", "fine", "   "]}', 24),
    BadRequestError,
    'BAD_REQUEST',
    /texts\[26\] is only whitespace/,
  );
});

test('bad jobs - more rows than max_batch_size gets TOO_LARGE naming the limit', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const texts = Array.from({ length: MAX_BATCH_SIZE + 1 }, (_, i) => `row ${i}`);
  expectError(
    await refusal(JSON.stringify({ texts }), 0, 'bulk', MAX_BATCH_SIZE + 1),
    TooLargeError,
    'TOO_LARGE',
    new RegExp(`over the limit of ${MAX_BATCH_SIZE} rows`),
  );
});

test('bad jobs - a text longer than the model allows under max_seq_len NONE gets TOO_LONG', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const long = Array.from({ length: 80 }, () => 'word').join(' ');
  const error = await refusal(JSON.stringify({ texts: ['short', long] }), 8);
  expectError(error, TooLongError, 'TOO_LONG', /texts\[9\] is 82 tokens long.*max_position_embeddings of 64/);
  assert.equal((error as TooLongError).details?.row, 9);
});

test('bad jobs - invalid UTF-8 gets BAD_REQUEST naming the byte', { timeout: TEST_TIMEOUT_MS }, async () => {
  const body = new Uint8Array([
    ...new TextEncoder().encode('{"texts": ["ab'),
    0xff,
    0xfe,
    ...new TextEncoder().encode('"]}'),
  ]);
  expectError(await refusal(body), BadRequestError, 'BAD_REQUEST', /not valid UTF-8 at byte 14/);
});

test('bad jobs - a job missing a header gets BAD_REQUEST naming it when it can be answered', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const id = newRequestId();
  await client.publishRaw('high', '{"texts": ["fine"]}', { [HEADERS.id]: id, [HEADERS.reply]: client.resultsSubject });
  const { error } = await client.errorFor(id);
  expectError(error, BadRequestError, 'BAD_REQUEST', /missing header Bertq-Offset/);

  // Without a reply subject nothing can be answered: the worker logs it once, counts it and moves on.
  const before = worker.stats().jobsUnanswerable;
  await client.publishRaw('high', '{"texts": ["fine"]}', { [HEADERS.id]: newRequestId(), [HEADERS.offset]: '0' });
  await waitFor('the unanswerable job to be counted', () => worker.stats().jobsUnanswerable === before + 1);
});

test('attack - a job whose Bertq-Reply names the terminate endpoint or another subject is never answered there', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const names = serviceNames(worker.service);
  // The subjects an attacker who may only publish jobs would aim the worker's error frame at.
  const targets = [
    names.control.terminate,
    'bertq.v1.other-service.results.victim',
    `${names.results('x', 'tenant')}.deeper`,
    '$JS.API.STREAM.DELETE.X',
  ];
  const seen: string[] = [];
  const subs = targets.map((t) => nc.subscribe(t, { callback: (_err, msg) => void seen.push(msg.subject) }));
  await nc.flush();
  const before = worker.stats().jobsUnanswerable;
  for (const target of targets) {
    // A bad body makes the worker answer with an error frame: where it would send it is the attack.
    await client.publishRaw('high', 'not json at all', {
      [HEADERS.id]: newRequestId(),
      [HEADERS.offset]: '0',
      [HEADERS.reply]: target,
    });
  }
  await waitFor(
    'every forged job to be refused and counted',
    () => worker.stats().jobsUnanswerable === before + targets.length,
  );
  await nc.flush();
  for (const sub of subs) sub.unsubscribe();
  assert.deepEqual(seen, [], 'nothing was published on a subject the job named');
  assert.equal(worker.state, 'ready', 'the worker was not terminated');
});

test('bad jobs - the worker keeps serving and no refused job is redelivered', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const result = await client.encode(['still serving', 'after all that'], { priority: 'high' });
  assert.deepEqual(result.shape, [2, encoder.info.dims]);
  const stats = worker.stats();
  assert.equal(stats.jobsRedelivered, 0);
  assert.ok((stats.errors.BAD_REQUEST ?? 0) >= 8, JSON.stringify(stats.errors));
  assert.equal(stats.errors.TOO_LARGE, 1);
  assert.equal(stats.errors.TOO_LONG, 1);
  // Refused jobs were terminated and answered ones acked: nothing is left pending or in flight.
  const jsm = await jetstreamManager(nc);
  const names = serviceNames(worker.service);
  for (const consumer of ['high', 'bulk']) {
    const info = await jsm.consumers.info(names.stream, consumer);
    assert.equal(info.num_pending, 0, `${consumer} pending`);
    assert.equal(info.num_ack_pending, 0, `${consumer} ack pending`);
  }
  const stream = await jsm.streams.info(names.stream);
  assert.equal(stream.state.messages, 0, 'work-queue stream is empty');
});
