import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  HEADERS,
  BadRequestError,
  TooLargeError,
  TimeoutError,
  BertqError,
  encodeJob,
  parseJob,
  peekJobContext,
  validateJobBody,
  validateTexts,
  deadlineError,
  newRequestKey,
  sealOf,
  type HeaderMap,
} from '../src/index.js';

const LIMITS = { service: 'svc', maxRows: 8, maxBytes: 4096 };
const REPLY = 'bertq.v1.svc.results.me';
const encoder = new TextEncoder();

function goodHeaders(extra: HeaderMap = {}): HeaderMap {
  return { [HEADERS.id]: 'req1', [HEADERS.offset]: '0', [HEADERS.reply]: REPLY, ...extra };
}

function bytesOf(value: unknown): Uint8Array {
  return encoder.encode(typeof value === 'string' ? value : JSON.stringify(value));
}

test('job - a string job round-trips through encodeJob and parseJob', () => {
  const { headers, body } = encodeJob({
    id: 'abcDEF_1',
    offset: 256,
    reply: REPLY,
    deadline: 1_900_000_000_000,
    texts: ['hello world', 'A ||| B'],
  });
  assert.equal(headers[HEADERS.msgId], 'abcDEF_1:256');
  assert.equal(headers[HEADERS.deadline], '1900000000000');
  const job = parseJob(headers, body, LIMITS);
  assert.deepEqual(job, {
    id: 'abcDEF_1',
    offset: 256,
    reply: REPLY,
    deadline: 1_900_000_000_000,
    showTokens: false,
    checkLength: false,
    output: 'f32',
    isTokenized: false,
    texts: ['hello world', 'A ||| B'],
  });
});

test('job - a tokenized job with options round-trips', () => {
  const { headers, body } = encodeJob({
    id: 'r2',
    offset: 0,
    reply: REPLY,
    texts: [
      ['hello', 'world'],
      ['good', 'day'],
    ],
    isTokenized: true,
    showTokens: true,
    checkLength: true,
    output: 'json',
  });
  assert.equal(headers[HEADERS.deadline], undefined);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(body)), {
    texts: [
      ['hello', 'world'],
      ['good', 'day'],
    ],
    is_tokenized: true,
    show_tokens: true,
    check_length: true,
    output: 'json',
  });
  const job = parseJob(headers, body, LIMITS);
  assert.equal(job.isTokenized, true);
  assert.equal(job.checkLength, true);
  assert.deepEqual(job.texts, [
    ['hello', 'world'],
    ['good', 'day'],
  ]);
  assert.equal(job.showTokens, true);
  assert.equal(job.output, 'json');
  assert.equal(job.deadline, undefined);
});

test('job - hand-written headers in another case are accepted (nats pub -H bertq-id:...)', () => {
  const job = parseJob(
    { 'bertq-id': 'x1', 'bertq-offset': '4', 'bertq-reply': REPLY },
    bytesOf({ texts: ['a'] }),
    LIMITS,
  );
  assert.equal(job.id, 'x1');
  assert.equal(job.offset, 4);
});

interface BadCase {
  name: string;
  headers?: HeaderMap;
  body: Uint8Array;
  code: 'BAD_REQUEST' | 'TOO_LARGE';
  message: RegExp;
  row?: number;
}

const invalidUtf8 = new Uint8Array([...bytesOf('{"texts":["ab'), 0xff, ...bytesOf('"]}')]);
const overlong = new Uint8Array([...bytesOf('{"texts":["'), 0xc0, 0xaf, ...bytesOf('"]}')]);
const surrogate = new Uint8Array([...bytesOf('{"texts":["x'), 0xed, 0xa0, 0x80, ...bytesOf('"]}')]);
const truncated = new Uint8Array([...bytesOf('{"texts":["\u00e9'), 0xe2, 0x82]);

const BAD_JOBS: BadCase[] = [
  {
    name: 'missing Bertq-Id',
    headers: { [HEADERS.offset]: '0', [HEADERS.reply]: REPLY },
    body: bytesOf({ texts: ['a'] }),
    code: 'BAD_REQUEST',
    message: /missing header Bertq-Id/,
  },
  {
    name: 'missing Bertq-Offset',
    headers: { [HEADERS.id]: 'r', [HEADERS.reply]: REPLY },
    body: bytesOf({ texts: ['a'] }),
    code: 'BAD_REQUEST',
    message: /missing header Bertq-Offset/,
  },
  {
    name: 'missing Bertq-Reply',
    headers: { [HEADERS.id]: 'r', [HEADERS.offset]: '0' },
    body: bytesOf({ texts: ['a'] }),
    code: 'BAD_REQUEST',
    message: /missing header Bertq-Reply/,
  },
  {
    name: 'id with a dot',
    headers: goodHeaders({ [HEADERS.id]: 'a.b' }),
    body: bytesOf({ texts: ['a'] }),
    code: 'BAD_REQUEST',
    message: /header Bertq-Id must be .*"a\.b"/,
  },
  {
    name: 'negative offset',
    headers: goodHeaders({ [HEADERS.offset]: '-1' }),
    body: bytesOf({ texts: ['a'] }),
    code: 'BAD_REQUEST',
    message: /Bertq-Offset must be a non-negative integer, got "-1"/,
  },
  {
    name: 'wildcard reply',
    headers: goodHeaders({ [HEADERS.reply]: 'bertq.v1.svc.results.*' }),
    body: bytesOf({ texts: ['a'] }),
    code: 'BAD_REQUEST',
    message: /Bertq-Reply must be a subject without wildcards/,
  },
  {
    name: 'deadline not a number',
    headers: goodHeaders({ [HEADERS.deadline]: 'soon' }),
    body: bytesOf({ texts: ['a'] }),
    code: 'BAD_REQUEST',
    message: /Bertq-Deadline must be epoch milliseconds.*"soon"/,
  },
  {
    name: 'body over maxBytes',
    body: bytesOf({ texts: ['x'.repeat(5000)] }),
    code: 'TOO_LARGE',
    message: /job body is 50\d\d bytes, over the limit of 4096 bytes/,
  },
  { name: 'invalid UTF-8 byte', body: invalidUtf8, code: 'BAD_REQUEST', message: /not valid UTF-8 at byte 13$/ },
  { name: 'overlong UTF-8', body: overlong, code: 'BAD_REQUEST', message: /not valid UTF-8 at byte 11$/ },
  { name: 'UTF-8 encoded surrogate', body: surrogate, code: 'BAD_REQUEST', message: /not valid UTF-8 at byte 12$/ },
  { name: 'truncated UTF-8 sequence', body: truncated, code: 'BAD_REQUEST', message: /not valid UTF-8 at byte 13$/ },
  { name: 'empty body', body: new Uint8Array(0), code: 'BAD_REQUEST', message: /job body is empty/ },
  {
    name: 'not JSON',
    body: bytesOf('{"texts": [hello]}'),
    code: 'BAD_REQUEST',
    message: /job body is not valid JSON: /,
  },
  {
    name: 'a JSON array',
    body: bytesOf(['a']),
    code: 'BAD_REQUEST',
    message: /job body must be a JSON object, got array/,
  },
  {
    name: 'no texts',
    body: bytesOf({ text: ['a'] }),
    code: 'BAD_REQUEST',
    message: /unknown field "text"|no "texts" field/,
  },
  { name: 'texts missing entirely', body: bytesOf({}), code: 'BAD_REQUEST', message: /job body has no "texts" field/ },
  {
    name: 'texts a string',
    body: bytesOf({ texts: 'hello' }),
    code: 'BAD_REQUEST',
    message: /texts must be array, got string/,
  },
  {
    name: 'texts empty',
    body: bytesOf({ texts: [] }),
    code: 'BAD_REQUEST',
    message: /texts is empty: send at least one text/,
  },
  {
    name: 'an empty string',
    body: bytesOf({ texts: ['a', 'b', 'c', ''] }),
    code: 'BAD_REQUEST',
    message: /^texts\[3\] is an empty string$/,
    row: 3,
  },
  {
    name: 'an empty string, request-relative',
    headers: goodHeaders({ [HEADERS.offset]: '256' }),
    body: bytesOf({ texts: ['a', ''] }),
    code: 'BAD_REQUEST',
    message: /^texts\[257\] is an empty string$/,
    row: 257,
  },
  {
    name: 'a number',
    body: bytesOf({ texts: ['a', 42] }),
    code: 'BAD_REQUEST',
    message: /^texts\[1\] must be a string, got number$/,
    row: 1,
  },
  {
    name: 'null row',
    body: bytesOf({ texts: [null] }),
    code: 'BAD_REQUEST',
    message: /^texts\[0\] must be a string, got null$/,
    row: 0,
  },
  {
    name: 'token list without is_tokenized',
    body: bytesOf({ texts: [['a', 'b']] }),
    code: 'BAD_REQUEST',
    message: /texts\[0\] must be a string, got array \(set "is_tokenized": true/,
    row: 0,
  },
  {
    name: 'string with is_tokenized',
    body: bytesOf({ texts: [['a'], 'b c'], is_tokenized: true }),
    code: 'BAD_REQUEST',
    message: /^texts\[1\] must be a list of tokens, got string \(is_tokenized is true\)$/,
    row: 1,
  },
  {
    name: 'empty token list',
    body: bytesOf({ texts: [['a'], []], is_tokenized: true }),
    code: 'BAD_REQUEST',
    message: /^texts\[1\] is an empty token list$/,
    row: 1,
  },
  {
    name: 'empty token',
    body: bytesOf({ texts: [['a', '']], is_tokenized: true }),
    code: 'BAD_REQUEST',
    message: /^texts\[0\]\[1\] is an empty token$/,
    row: 0,
  },
  {
    name: 'number token',
    body: bytesOf({ texts: [['a', 7]], is_tokenized: true }),
    code: 'BAD_REQUEST',
    message: /^texts\[0\]\[1\] must be a string token, got number$/,
    row: 0,
  },
  {
    name: 'is_tokenized not boolean',
    body: bytesOf({ texts: ['a'], is_tokenized: 'yes' }),
    code: 'BAD_REQUEST',
    message: /is_tokenized must be boolean, got string/,
  },
  {
    name: 'show_tokens not boolean',
    body: bytesOf({ texts: ['a'], show_tokens: 1 }),
    code: 'BAD_REQUEST',
    message: /show_tokens must be boolean, got number/,
  },
  {
    name: 'unknown output',
    body: bytesOf({ texts: ['a'], output: 'f64' }),
    code: 'BAD_REQUEST',
    message: /output must be one of "f32", "f16", "json", got "f64"/,
  },
  {
    name: 'unknown field',
    body: bytesOf({ texts: ['a'], pooling: 'CLS' }),
    code: 'BAD_REQUEST',
    message: /unknown field "pooling" \(allowed: texts, is_tokenized, show_tokens, check_length, output\)/,
  },
  {
    name: 'too many rows',
    body: bytesOf({ texts: Array.from({ length: 9 }, () => 'a') }),
    code: 'TOO_LARGE',
    message: /job has 9 rows, over the limit of 8 rows per job/,
  },
];

for (const c of BAD_JOBS) {
  test(`job - refuses a job with ${c.name}`, () => {
    const headers = c.headers ?? goodHeaders();
    assert.throws(
      () => parseJob(headers, c.body, LIMITS),
      (err: unknown) => {
        assert.ok(err instanceof BertqError, 'a typed error');
        assert.equal(err.code, c.code);
        assert.ok(c.code === 'TOO_LARGE' ? err instanceof TooLargeError : err instanceof BadRequestError);
        assert.match(err.message, c.message);
        if (c.row !== undefined) assert.equal(err.details?.row, c.row);
        // Whatever addressing was readable survives, so the worker can still send an error frame.
        const context = peekJobContext(headers, 'svc');
        for (const [key, value] of Object.entries(context)) assert.equal(err.details?.[key], value, `details.${key}`);
        return true;
      },
    );
  });
}

test('job - the limit is named in a TOO_LARGE error', () => {
  try {
    parseJob(goodHeaders(), bytesOf({ texts: ['a', 'b', 'c'] }), { service: 'svc', maxRows: 2, maxBytes: 100 });
    assert.fail('should throw');
  } catch (err) {
    assert.ok(err instanceof TooLargeError);
    assert.equal(err.details?.limit, 2);
    assert.equal(err.details?.rows, 3);
    assert.equal(err.details?.id, 'req1');
    assert.equal(err.details?.reply, REPLY);
  }
});

test('job - peekJobContext reads what it can and never throws', () => {
  assert.deepEqual(peekJobContext({}, 'svc'), {});
  assert.deepEqual(peekJobContext({ [HEADERS.id]: 'a b', [HEADERS.offset]: 'x', [HEADERS.reply]: 'r.>' }, 'svc'), {});
  assert.deepEqual(peekJobContext(goodHeaders({ [HEADERS.deadline]: '17' }), 'svc'), {
    id: 'req1',
    offset: 0,
    reply: REPLY,
    deadline: 17,
  });
});

test('job - a bad row is refused (validateTexts before publishing, parseJob on arrival), counting rows from the request start', () => {
  assert.throws(() => validateTexts(['ok', ''], { offset: 512 }), /^BadRequestError: texts\[513\] is an empty string$/);
  const { headers, body } = encodeJob({ id: 'r', offset: 512, reply: REPLY, texts: ['ok', ' '] });
  assert.throws(() => parseJob(headers, body, LIMITS), /^BadRequestError: texts\[513\] is only whitespace$/);
  assert.throws(() => encodeJob({ id: 'r', offset: 0, reply: 'a.*', texts: ['ok'] }), /reply subject "a\.\*"/);
  assert.throws(() => encodeJob({ id: 'r:1', offset: 0, reply: REPLY, texts: ['ok'] }), /request id must be/);
  assert.throws(
    () => encodeJob({ id: 'r', offset: -1, reply: REPLY, texts: ['ok'] }),
    /offset must be a non-negative integer/,
  );
  assert.throws(
    () => encodeJob({ id: 'r', offset: 0, reply: REPLY, deadline: 1.5, texts: ['ok'] }),
    /deadline must be epoch milliseconds/,
  );
});

test('job - validateJobBody accepts the documented shapes', () => {
  validateJobBody({ texts: ['a'] });
  validateJobBody({ texts: [['a', 'b']], is_tokenized: true, show_tokens: false, output: 'f16' });
  validateJobBody({ texts: ['a'], is_tokenized: false });
  assert.throws(
    () => validateJobBody({ texts: [['a']], is_tokenized: false }),
    /texts\[0\] must be a string, got array/,
  );
});

test('job - a job past its deadline gets a TIMEOUT error that says by how much', () => {
  const job = { id: 'r', offset: 16, deadline: 1_000 };
  assert.equal(deadlineError(job, 1_000), undefined);
  assert.equal(deadlineError({ ...job, deadline: undefined }, 9_999_999), undefined);
  const err = deadlineError(job, 1_250);
  assert.ok(err instanceof TimeoutError);
  assert.match(err.message, /job r at offset 16 passed its deadline .* by 250 ms/);
});

test('job - a request key becomes its seal: the parsed job carries the seal, never the key; a malformed key is refused unechoed', () => {
  const key = newRequestKey();
  const { headers, body } = encodeJob({ id: 'req1', offset: 0, reply: REPLY, key, texts: ['hello'] });
  assert.equal(headers[HEADERS.key], key);
  const job = parseJob(headers, body, LIMITS);
  assert.equal(job.seal, sealOf(key));
  assert.ok(!JSON.stringify(job).includes(key), 'the key is not kept in the job');
  assert.equal(peekJobContext(headers, 'svc').seal, sealOf(key));
  const bad = 'not a key!';
  assert.throws(
    () => parseJob(goodHeaders({ [HEADERS.key]: bad }), bytesOf({ texts: ['x'] }), LIMITS),
    (err: BertqError) =>
      err instanceof BadRequestError && !err.message.includes(bad) && !JSON.stringify(err.details).includes(bad),
  );
  // A refusal's details never carry the key either (they travel in a frame other clients may read).
  assert.throws(
    () => parseJob(headers, bytesOf({ texts: [''] }), LIMITS),
    (err: BertqError) => !JSON.stringify(err.details).includes(key),
  );
});
