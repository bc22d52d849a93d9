import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BadRequestError,
  HEADERS,
  TooLargeError,
  messageWireSize,
  newRequestId,
  parseJob,
  type BertqError,
} from '@bertq/protocol';
import { validateTexts } from '@bertq/protocol';
import { PUBLISH_HEADER_SLACK, planChunks, prepareJobs, type PrepareInput } from '../src/chunks.js';

const BIG_PAYLOAD = 1024 * 1024;

function input(texts: PrepareInput['texts'], overrides: Partial<PrepareInput> = {}): PrepareInput {
  return {
    id: 'req1',
    reply: 'bertq.v1.default.results.me',
    deadline: 1_900_000_000_000,
    texts,
    isTokenized: false,
    showTokens: false,
    output: 'f32',
    maxChunkRows: 256,
    maxPayload: BIG_PAYLOAD,
    ...overrides,
  };
}

const sentences = (n: number): string[] => Array.from({ length: n }, (_, i) => `sentence number ${i}`);

test('chunks - splits a request into chunks of at most maxChunkRows rows', () => {
  assert.deepEqual(planChunks(5, 2), [
    { offset: 0, rows: 2 },
    { offset: 2, rows: 2 },
    { offset: 4, rows: 1 },
  ]);
  assert.deepEqual(planChunks(4, 4), [{ offset: 0, rows: 4 }]);
  assert.deepEqual(planChunks(1, 256), [{ offset: 0, rows: 1 }]);
  const big = planChunks(10_000, 256);
  assert.equal(big.length, Math.ceil(10_000 / 256));
  assert.equal(
    big.reduce((n, c) => n + c.rows, 0),
    10_000,
  );
  assert.throws(() => planChunks(3, 0), BadRequestError);
});

test('chunks - every job carries the request id, its offset, the reply subject, a deadline and Nats-Msg-Id <id>:<offset>', () => {
  const jobs = prepareJobs(input(sentences(600), { maxChunkRows: 256 }));
  assert.deepEqual(
    jobs.map((j) => [j.offset, j.rows]),
    [
      [0, 256],
      [256, 256],
      [512, 88],
    ],
  );
  for (const job of jobs) {
    assert.equal(job.headers[HEADERS.id], 'req1');
    assert.equal(job.headers[HEADERS.offset], String(job.offset));
    assert.equal(job.headers[HEADERS.reply], 'bertq.v1.default.results.me');
    assert.equal(job.headers[HEADERS.deadline], '1900000000000');
    assert.equal(job.headers[HEADERS.msgId], `req1:${job.offset}`);
    // What the worker's gate makes of it: the same rows, in order.
    const parsed = parseJob(job.headers, job.body, { service: 'default', maxRows: 256, maxBytes: BIG_PAYLOAD });
    assert.deepEqual(parsed.texts, sentences(600).slice(job.offset, job.offset + job.rows));
  }
});

test('chunks - passes the per-request options into every job', () => {
  const [job] = prepareJobs(input([['hello', 'world']], { isTokenized: true, showTokens: true, output: 'f16' }));
  const parsed = parseJob(job!.headers, job!.body, { service: 'default', maxRows: 256, maxBytes: BIG_PAYLOAD });
  assert.equal(parsed.isTokenized, true);
  assert.equal(parsed.showTokens, true);
  assert.equal(parsed.output, 'f16');
  assert.deepEqual(parsed.texts, [['hello', 'world']]);
});

test('chunks - halves a chunk until it fits max_payload, keeping offsets contiguous', () => {
  const texts = Array.from({ length: 40 }, (_, i) => `${i} ${'x'.repeat(200)}`);
  const maxPayload = 2000;
  const jobs = prepareJobs(input(texts, { maxChunkRows: 40, maxPayload }));
  assert.ok(jobs.length > 1, 'split by bytes');
  let next = 0;
  for (const job of jobs) {
    assert.equal(job.offset, next);
    next += job.rows;
    assert.ok(messageWireSize(job.headers, job.body) <= maxPayload - PUBLISH_HEADER_SLACK);
  }
  assert.equal(next, 40);
});

test('chunks - a single row larger than max_payload is TOO_LARGE naming the row', () => {
  const texts = ['short', 'y'.repeat(5000)];
  assert.throws(
    () => prepareJobs(input(texts, { maxPayload: 2000 })),
    (e: unknown) =>
      e instanceof TooLargeError &&
      /texts\[1\] makes a job of \d+ bytes, over the server's max_payload of 2000 bytes/.test(e.message),
  );
});

test('chunks - rows are validated once, before anything is sent, naming the row from the start of the request', () => {
  // What client.encode runs on the whole request before prepareJobs cuts it into jobs.
  const texts = sentences(700);
  texts[613] = '';
  assert.throws(
    () => validateTexts(texts),
    (e: unknown) =>
      e instanceof BadRequestError &&
      e.message === 'texts[613] is an empty string' &&
      (e as BertqError).details?.row === 613,
  );
  const mixed = sentences(3) as unknown[];
  mixed[2] = 42;
  assert.throws(() => validateTexts(mixed), /texts\[2\] must be a string, got a number/);
  assert.throws(() => validateTexts([['a', '']], { isTokenized: true }), /texts\[0\]\[1\] is an empty string/);
});

test('chunks - catches the usual input mistakes with a sentence that says how to fix them', () => {
  assert.throws(() => validateTexts([], { flag: 'isTokenized' }), /texts is empty: send at least one text/);
  assert.throws(
    () => validateTexts('hello', { flag: 'isTokenized' }),
    /got a string \(wrap a single sentence in a list/,
  );
  assert.throws(() => validateTexts(null, { flag: 'isTokenized' }), /got null/);
  assert.throws(
    () => validateTexts(['a', ['b']], { flag: 'isTokenized' }),
    /texts\[1\] is a list of tokens; pass \{ isTokenized: true \}/,
  );
});

test('chunks - request ids are unique, so the Nats-Msg-Ids of two requests never collide', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const id = newRequestId();
    for (const job of prepareJobs(input(sentences(3), { id, maxChunkRows: 1 }))) {
      const msgId = job.headers[HEADERS.msgId]!;
      assert.ok(!seen.has(msgId), `duplicate ${msgId}`);
      seen.add(msgId);
    }
  }
  assert.equal(seen.size, 6000);
});
