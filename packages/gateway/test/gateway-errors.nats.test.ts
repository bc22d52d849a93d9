/**
 * Every error code through the gateway against a real fleet, with its HTTP status and JSON shape:
 * BAD_REQUEST 400, TOO_LARGE 413, TOO_LONG 422, OVERLOADED 429, NO_WORKERS 503, TIMEOUT 504.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Encoder } from '@bertq/model';
import { freshService } from '@bertq/testing';
import type { WorkerHandle } from '@bertq/worker';
import type { GatewayHandle } from '../src/index.js';
import { TestFleet, getJson, postJson, slowEngine, tinyEncoder } from './fleet.js';

const TEST_TIMEOUT_MS = 60_000;
/** A batch of the slow engine takes this long: far past the short request deadline below. */
const SLOW_BATCH_MS = 1_500;
const SHORT_TIMEOUT_MS = 300;

let fleet: TestFleet;
let encoder: Encoder;
let unbounded: Encoder;
let worker: WorkerHandle;
let gateway: GatewayHandle;

before(async () => {
  fleet = await TestFleet.start();
  encoder = await tinyEncoder();
  unbounded = await tinyEncoder({ maxSeqLen: null });
  worker = await fleet.worker({ engine: encoder });
  gateway = await fleet.gateway(worker.service, { bodyLimit: 4_096 });
});

after(async () => {
  await fleet?.stop();
  await encoder?.close();
  await unbounded?.close();
});

test('gateway errors - BAD_REQUEST (400): bad JSON, an empty string, a wrong field, in bertq and OpenAI shapes', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const badJson = await postJson(`${gateway.url}encode`, '{"texts": ["a", }');
  assert.equal(badJson.status, 400);
  assert.equal(badJson.body.error.code, 'BAD_REQUEST');
  assert.match(badJson.body.error.message, /not valid JSON/);

  const empty = await postJson(`${gateway.url}encode`, { texts: ['fine', ''] });
  assert.equal(empty.status, 400);
  assert.equal(empty.body.error.code, 'BAD_REQUEST');
  assert.match(empty.body.error.message, /texts\[1\] is an empty string/);

  const typo = await postJson(`${gateway.url}encode`, { texts: ['a'], show_token: true });
  assert.equal(typo.status, 400);
  assert.match(typo.body.error.message, /unknown field "show_token"/);

  const v1Empty = await postJson(`${gateway.url}v1/embeddings`, { model: 'x', input: ['fine', ''] });
  assert.equal(v1Empty.status, 400);
  assert.deepEqual(v1Empty.body, {
    error: {
      message: "'input[1]' is an empty string; every input must contain text",
      type: 'invalid_request_error',
      param: 'input',
      code: 'BAD_REQUEST',
    },
  });
  const v1Ids = await postJson(`${gateway.url}v1/embeddings`, { model: 'x', input: [101, 7592, 102] });
  assert.equal(v1Ids.status, 400);
  assert.match(v1Ids.body.error.message, /token ids is not supported/);
  const v1Format = await postJson(`${gateway.url}v1/embeddings`, { model: 'x', input: 'a', encoding_format: 'int8' });
  assert.equal(v1Format.body.error.param, 'encoding_format');
});

test('gateway errors - TOO_LARGE (413): a body over the limit is refused before it is read', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const texts = Array.from({ length: 200 }, (_, i) => `sentence number ${i} with some words`);
  const reply = await postJson(`${gateway.url}encode`, { texts });
  assert.equal(reply.status, 413);
  assert.equal(reply.body.error.code, 'TOO_LARGE');
  assert.match(reply.body.error.message, /limit of 4096 bytes/);
  const v1 = await postJson(`${gateway.url}v1/embeddings`, { model: 'x', input: texts });
  assert.equal(v1.status, 413);
  assert.equal(v1.body.error.type, 'invalid_request_error');
  assert.equal(v1.body.error.code, 'TOO_LARGE');
});

test('gateway errors - TOO_LONG (422): a text longer than the model allows under max_seq_len NONE', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const w = await fleet.worker({ engine: unbounded });
  const g = await fleet.gateway(w.service);
  const long = Array.from({ length: 80 }, () => 'word').join(' '); // 82 tokens with [CLS]/[SEP]; the tiny model has 64 positions
  const reply = await postJson(`${g.url}encode`, { texts: ['short one', long] });
  assert.equal(reply.status, 422);
  assert.equal(reply.body.error.code, 'TOO_LONG');
  assert.match(
    reply.body.error.message,
    /texts\[1\] is 82 tokens long, more than the model's max_position_embeddings of 64/,
  );
  const v1 = await postJson(`${g.url}v1/embeddings`, { model: 'x', input: long });
  assert.equal(v1.status, 422);
  assert.equal(v1.body.error.code, 'TOO_LONG');
});

test('gateway errors - OVERLOADED (429 with Retry-After): the service queue is over its bound', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  // One queued job is the bound; a slow model holds the first job (still in the stream until acked).
  const w = await fleet.worker({ engine: slowEngine(encoder, SLOW_BATCH_MS), stream: { maxQueuedJobs: 1 } });
  const g = await fleet.gateway(w.service);
  const first = postJson(`${g.url}encode`, { texts: ['the first request fills the queue'] });
  await new Promise((resolve) => setTimeout(resolve, 200));
  const second = await postJson(`${g.url}encode`, { texts: ['the second finds it full'] });
  assert.equal(second.status, 429);
  assert.equal(second.body.error.code, 'OVERLOADED');
  assert.equal(second.headers.get('retry-after'), '1');
  const v1 = await postJson(`${g.url}v1/embeddings`, { model: 'x', input: 'a third one' });
  assert.equal(v1.status, 429);
  assert.equal(v1.body.error.type, 'rate_limit_error');
  assert.equal((await first).status, 200, 'the request that was queued still completes');
});

test('gateway errors - NO_WORKERS (503): nothing serves the service', { timeout: TEST_TIMEOUT_MS }, async () => {
  const g = await fleet.gateway(freshService('nobody'));
  const reply = await postJson(`${g.url}encode`, { texts: ['hello'] });
  assert.equal(reply.status, 503);
  assert.equal(reply.body.error.code, 'NO_WORKERS');
  const v1 = await postJson(`${g.url}v1/embeddings`, { model: 'x', input: 'hello' });
  assert.equal(v1.status, 503);
  assert.equal(v1.body.error.type, 'service_unavailable_error');
  const ready = await getJson(`${g.url}ready`);
  assert.equal(ready.status, 503);
  assert.equal(ready.body.error.code, 'NO_WORKERS');
  assert.equal((await getJson(`${g.url}health`)).status, 200, 'the gateway itself is alive');
  const status = await getJson(`${g.url}status/server`);
  assert.equal(status.status, 503);
});

test('gateway errors - TIMEOUT (504): the workers are too slow for the request deadline', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const w = await fleet.worker({ engine: slowEngine(encoder, SLOW_BATCH_MS) });
  const g = await fleet.gateway(w.service, { requestTimeoutMs: SHORT_TIMEOUT_MS });
  const started = Date.now();
  const reply = await postJson(`${g.url}encode`, { texts: ['too slow'] });
  assert.equal(reply.status, 504);
  assert.equal(reply.body.error.code, 'TIMEOUT');
  assert.match(reply.body.error.message, /timed out after 300 ms/);
  assert.ok(Date.now() - started < SLOW_BATCH_MS, 'answered at the deadline, not when the worker finished');
  const v1 = await postJson(`${g.url}v1/embeddings`, { model: 'x', input: 'too slow' });
  assert.equal(v1.status, 504);
  assert.equal(v1.body.error.type, 'server_error');

  const metrics = await (await fetch(`${g.url}metrics`)).text();
  assert.match(metrics, /bertq_gateway_errors_total\{code="TIMEOUT"\} 2/);
});

test('gateway errors - TOO_LARGE (413): more rows than --max-client-batch-size, refused before any job is sent', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const capped = await fleet.gateway(worker.service, { maxClientBatchSize: 8 });
  const before = worker.stats().jobsDone;
  const texts = Array.from({ length: 9 }, (_, i) => `row ${i}`);
  for (const [path, body] of [
    ['encode', { texts }],
    ['v1/embeddings', { input: texts }],
  ] as const) {
    const reply = await postJson(`${capped.url}${path}`, body);
    assert.equal(reply.status, 413, path);
    assert.match(JSON.stringify(reply.body), /9 rows in one request, over this gateway's limit of 8/);
  }
  assert.equal(worker.stats().jobsDone, before, 'no job reached the fleet');
  const atCap = await postJson(`${capped.url}encode`, { texts: texts.slice(0, 8) });
  assert.equal(atCap.status, 200);
  assert.equal(atCap.body.result.length, 8);
});

/** Opens a raw TCP connection, runs `talk` on it, and resolves with what came back and when it closed. */
function rawConnection(
  url: string,
  talk: (socket: Socket) => void,
): Promise<{ answer: string; closedAfterMs: number }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = netConnect({ host: hostname, port: Number(port) }, () => talk(socket));
    let answer = '';
    socket.on('data', (d) => (answer += d));
    socket.on('error', reject);
    socket.on('close', () => resolve({ answer, closedAfterMs: Date.now() - started }));
    setTimeout(() => socket.destroy(new Error('the gateway kept a slow client for 15 s')), 15_000).unref();
  });
}

test('attack - DNS rebinding: without a token, a request naming another host gets 421 and no vectors; --allowed-hosts admits a name', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const body = JSON.stringify({ texts: ['rebound'] });
  // fetch() will not set Host: a raw request, as a browser re-pointed by DNS sends it.
  const ask = async (url: string, host: string, path = '/encode') => {
    const { answer } = await rawConnection(url, (s) =>
      s.write(
        `POST ${path} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
      ),
    );
    return answer;
  };
  const port = new URL(gateway.url).port;
  const rebound = await ask(gateway.url, `attacker.example:${port}`);
  assert.match(rebound, /^HTTP\/1\.1 421/);
  assert.match(rebound, /MISDIRECTED_REQUEST/);
  assert.doesNotMatch(rebound, /"vectors"|\[\[/, 'no vectors went to the page');
  assert.match(await ask(gateway.url, `attacker.example:${port}`, '/v1/embeddings'), /^HTTP\/1\.1 421/);
  for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`])
    assert.match(await ask(gateway.url, host), /^HTTP\/1\.1 200/, host);
  // /health stays open (probes name the pod's address); only what a token would guard is checked.
  const health = await rawConnection(gateway.url, (s) =>
    s.write(`GET /health HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n`),
  );
  assert.match(health.answer, /^HTTP\/1\.1 200/);
  // A name the operator allows is answered; a token replaces the check.
  const named = await fleet.gateway(worker.service, { allowedHosts: 'embeddings.internal' });
  assert.match(await ask(named.url, `embeddings.internal:${new URL(named.url).port}`), /^HTTP\/1\.1 200/);
  const withToken = await fleet.gateway(worker.service, { token: 'secret-token' });
  assert.match(await ask(withToken.url, 'attacker.example'), /^HTTP\/1\.1 401/, 'the token is asked for instead');
});

test('attack - slowloris: headers or a body that dribble in are cut off at their timeouts, not 30 s later', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const slow = await fleet.gateway(worker.service, { headersTimeoutMs: 500, receiveTimeoutMs: 1_000 });
  // Headers that never end.
  const headers = await rawConnection(slow.url, (s) =>
    s.write('POST /encode HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n'),
  );
  assert.ok(headers.closedAfterMs < 3_000, `cut after ${headers.closedAfterMs} ms`);
  assert.match(headers.answer, /^HTTP\/1\.1 408/);
  // A body announced as 1,000 bytes, sent a byte every 200 ms.
  const body = await rawConnection(slow.url, (s) => {
    s.write(
      'POST /encode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{',
    );
    const drip = setInterval(() => (s.destroyed ? clearInterval(drip) : s.write(' ')), 200);
    s.on('close', () => clearInterval(drip));
  });
  assert.ok(body.closedAfterMs < 4_000, `cut after ${body.closedAfterMs} ms`);
  assert.match(body.answer, /^HTTP\/1\.1 408/);
  // The gateway still serves everyone else.
  const ok = await postJson(`${slow.url}encode`, { texts: ['still here'] });
  assert.equal(ok.status, 200);
});
