/**
 * Every endpoint's happy path against a real fleet: nats-server, a worker running the tiny model,
 * and the gateway in front; vectors are compared with the same model encoding in-process.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import type { Encoder } from '@bertq/model';
import { maxAbsDiff } from '@bertq/testing';
import type { WorkerHandle } from '@bertq/worker';
import type { GatewayHandle } from '../src/index.js';
import { SENTENCES, TOLERANCE, TestFleet, decodeBase64Floats, getJson, postJson, tinyEncoder } from './fleet.js';

const TEST_TIMEOUT_MS = 60_000;

let fleet: TestFleet;
let encoder: Encoder;
let worker: WorkerHandle;
let gateway: GatewayHandle;

before(async () => {
  fleet = await TestFleet.start();
  encoder = await tinyEncoder();
  worker = await fleet.worker({ engine: encoder, showTokensToClient: true });
  gateway = await fleet.gateway(worker.service);
});

after(async () => {
  await fleet?.stop();
  await encoder?.close();
});

/** Tokens per row as the worker's own tokenizer counts them. */
async function tokenCounts(texts: string[]): Promise<number[]> {
  return (await encoder.tokenizer.tokenize(texts)).map((r) => r.length);
}

function rowsOf(data: Float32Array, dims: number): number[][] {
  return Array.from({ length: data.length / dims }, (_, r) => Array.from(data.subarray(r * dims, (r + 1) * dims)));
}

test("gateway /encode - answers bert-as-service's shape with the vectors the model computes", {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const want = await encoder.encode(SENTENCES);
  const reply = await postJson(`${gateway.url}encode`, { id: 123, texts: SENTENCES, is_tokenized: false });
  assert.equal(reply.status, 200);
  assert.equal(reply.body.id, 123);
  assert.equal(reply.body.status, 200);
  assert.equal(reply.body.result.length, SENTENCES.length);
  assert.deepEqual(
    reply.body.results,
    reply.body.result,
    'results (as the README documented) carries the same vectors',
  );
  const got = Float32Array.from(reply.body.result.flat());
  assert.ok(maxAbsDiff(got, want.data) <= TOLERANCE, `max diff ${maxAbsDiff(got, want.data)}`);
  assert.match(reply.headers.get('x-request-id') ?? '', /^[A-Za-z0-9_-]+$/);
});

test('gateway /encode - returns tokens with show_tokens and encodes pre-tokenized rows', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const want = await encoder.encode(['hello world', 'good day'], { showTokens: true });
  const shown = await postJson(`${gateway.url}encode`, {
    id: 'a',
    texts: ['hello world', 'good day'],
    show_tokens: true,
  });
  assert.equal(shown.status, 200);
  assert.deepEqual(shown.body.tokens, want.tokens);
  assert.deepEqual(shown.body.tokens[0], ['[CLS]', 'hello', 'world', '[SEP]']);

  const tokenized = await postJson(`${gateway.url}encode`, {
    texts: [
      ['hello', 'world'],
      ['good', 'day'],
    ],
    is_tokenized: true,
  });
  assert.equal(tokenized.status, 200);
  assert.equal(tokenized.body.id, null, 'no id sent, null echoed');
  const again = await encoder.encode(
    [
      ['hello', 'world'],
      ['good', 'day'],
    ],
    { isTokenized: true },
  );
  assert.ok(maxAbsDiff(Float32Array.from(tokenized.body.result.flat()), again.data) <= TOLERANCE);
});

test("gateway /v1/embeddings - answers OpenAI's shape with float vectors and usage counted by the workers' tokenizer", {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const want = await encoder.encode(SENTENCES);
  const reply = await postJson(`${gateway.url}v1/embeddings`, { model: 'bertq-tiny', input: SENTENCES });
  assert.equal(reply.status, 200);
  assert.equal(reply.body.object, 'list');
  assert.equal(reply.body.data.length, SENTENCES.length);
  reply.body.data.forEach((d: { object: string; index: number; embedding: number[] }, i: number) => {
    assert.equal(d.object, 'embedding');
    assert.equal(d.index, i);
    assert.equal(d.embedding.length, 32);
  });
  const got = Float32Array.from(reply.body.data.flatMap((d: { embedding: number[] }) => d.embedding));
  assert.ok(maxAbsDiff(got, want.data) <= TOLERANCE, `max diff ${maxAbsDiff(got, want.data)}`);
  const tokens = (await tokenCounts(SENTENCES)).reduce((a, b) => a + b, 0);
  assert.deepEqual(reply.body.usage, { prompt_tokens: tokens, total_tokens: tokens });
  assert.equal(reply.body.model, worker.config().model_dir, 'the answer names the model the fleet runs');
});

test('gateway /v1/embeddings - takes one string, base64 output and a dimensions cut', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const want = await encoder.encode(['hello world']);
  const single = await postJson(`${gateway.url}v1/embeddings`, {
    model: 'x',
    input: 'hello world',
    encoding_format: 'base64',
  });
  assert.equal(single.status, 200);
  assert.equal(single.body.data.length, 1);
  const floats = decodeBase64Floats(single.body.data[0].embedding);
  assert.deepEqual(Array.from(floats), Array.from(want.data), 'base64 carries the exact float32 values');
  assert.equal(single.body.usage.prompt_tokens, 4);

  const cut = await postJson(`${gateway.url}v1/embeddings`, { model: 'x', input: ['hello world'], dimensions: 8 });
  assert.equal(cut.status, 200);
  // The tiny service does not normalise, so a cut is the first values as they are.
  assert.ok(maxAbsDiff(Float32Array.from(cut.body.data[0].embedding), want.data.subarray(0, 8)) <= TOLERANCE);

  const tooMany = await postJson(`${gateway.url}v1/embeddings`, { model: 'x', input: ['hello world'], dimensions: 33 });
  assert.equal(tooMany.status, 400);
  assert.equal(tooMany.body.error.param, 'dimensions');
  assert.match(tooMany.body.error.message, /32-dimensional/);
});

test('gateway /v1/embeddings - the openai npm client gets vectors it parses, in base64 (its default) and float', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const openai = new OpenAI({
    baseURL: `${gateway.url}v1`,
    apiKey: 'unused-without-http-token',
    maxRetries: 0,
    timeout: 30_000,
  });
  const want = await encoder.encode(SENTENCES);
  const viaDefault = await openai.embeddings.create({ model: 'bertq', input: SENTENCES });
  assert.equal(viaDefault.data.length, SENTENCES.length);
  assert.ok(maxAbsDiff(Float32Array.from(viaDefault.data.flatMap((d) => d.embedding)), want.data) <= TOLERANCE);
  assert.equal(
    viaDefault.usage.prompt_tokens,
    (await tokenCounts(SENTENCES)).reduce((a, b) => a + b, 0),
  );
  const viaFloat = await openai.embeddings.create({ model: 'bertq', input: 'hello world', encoding_format: 'float' });
  assert.deepEqual(rowsOf(Float32Array.from(viaFloat.data[0]!.embedding), 32), rowsOf(want.data.subarray(0, 32), 32));

  await assert.rejects(openai.embeddings.create({ model: 'bertq', input: '' }), (err: unknown) => {
    assert.ok(err instanceof OpenAI.BadRequestError, `a 400 is the SDK's BadRequestError, got ${String(err)}`);
    assert.equal(err.status, 400);
    assert.equal(err.code, 'BAD_REQUEST');
    assert.equal(err.param, 'input');
    return true;
  });
});

test('gateway status routes - /status/server, /status/client, /health and /ready describe the fleet and the gateway', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const server = await getJson(`${gateway.url}status/server`);
  assert.equal(server.status, 200);
  assert.equal(server.body.num_workers, 1);
  assert.equal(server.body.workers[0].worker_id, worker.id);
  assert.equal(server.body.service, worker.service);

  const client = await getJson(`${gateway.url}status/client`);
  assert.equal(client.status, 200);
  assert.equal(client.body.service, worker.service);
  assert.ok(client.body.numRequest >= 1, "the gateway's client has sent requests");
  assert.equal(typeof client.body.gateway.version, 'string');

  const health = await getJson(`${gateway.url}health`);
  assert.equal(health.status, 200);
  assert.equal(health.body.status, 'ok');

  const ready = await getJson(`${gateway.url}ready`);
  assert.equal(ready.status, 200);
  assert.equal(ready.body.ready, true);
  assert.equal(ready.body.worker_id, worker.id);
});

test('gateway /metrics - Prometheus text with requests, rows, tokens, batch sizes, stage histograms and queue depth', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const texts = ['one two three', 'four five'];
  const before = await (await fetch(`${gateway.url}metrics`)).text();
  const rowsBefore = sample(before, 'bertq_gateway_rows_total{endpoint="/v1/embeddings"}') ?? 0;
  const tokensBefore = sample(before, 'bertq_gateway_tokens_total{endpoint="/v1/embeddings"}') ?? 0;
  assert.equal((await postJson(`${gateway.url}v1/embeddings`, { model: 'x', input: texts })).status, 200);

  const res = await fetch(`${gateway.url}metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  assert.equal(sample(text, 'bertq_gateway_rows_total{endpoint="/v1/embeddings"}'), rowsBefore + 2);
  const tokens = (await tokenCounts(texts)).reduce((a, b) => a + b, 0);
  assert.equal(sample(text, 'bertq_gateway_tokens_total{endpoint="/v1/embeddings"}'), tokensBefore + tokens);
  assert.ok(sample(text, 'bertq_gateway_http_requests_total{method="POST",route="/v1/embeddings",status="200"}')! >= 1);
  assert.ok(sample(text, 'bertq_gateway_request_rows_bucket{endpoint="/v1/embeddings",le="2"}')! >= 1);
  for (const stage of ['tokenization', 'queue', 'inference', 'total']) {
    assert.ok(sample(text, `bertq_stage_duration_seconds_count{stage="${stage}"}`)! >= 1, `stage ${stage} observed`);
    assert.equal(
      sample(text, `bertq_stage_duration_seconds_bucket{le="+Inf",stage="${stage}"}`),
      sample(text, `bertq_stage_duration_seconds_count{stage="${stage}"}`),
    );
  }
  assert.ok(sample(text, 'bertq_gateway_request_duration_seconds_count{route="/v1/embeddings"}')! >= 1);
  assert.equal(sample(text, 'bertq_fleet_up'), 1);
  assert.equal(sample(text, 'bertq_fleet_workers{state="ready"}'), 1);
  assert.equal(sample(text, 'bertq_queue_pending_jobs{consumer="bulk"}'), 0);
  assert.equal(sample(text, 'bertq_queue_pending_jobs{consumer="high"}'), 0);
  assert.equal(
    sample(text, `bertq_worker_info{device="cpu",pooling="REDUCE_MEAN",state="ready",worker="${worker.id}"}`),
    1,
  );
  // Every worker's own registry, summed in: its series keep their worker label.
  const labels = `service="${worker.service}",worker="${worker.id}"`;
  assert.ok(sample(text, `bertq_worker_rows_total{${labels}}`)! >= 2, 'the worker counted the rows it encoded');
  assert.ok(sample(text, `bertq_worker_stage_duration_seconds_count{${labels},stage="inference"}`)! >= 1);
  assert.match(text, /# TYPE bertq_stage_duration_seconds histogram/);
});

test('gateway routing - unknown routes are 404, wrong methods 405 with Allow, request ids are echoed', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const missing = await getJson(`${gateway.url}nope`);
  assert.equal(missing.status, 404);
  assert.equal(missing.body.error.code, 'NOT_FOUND');
  const wrong = await getJson(`${gateway.url}encode`, { 'X-Request-Id': 'my-id-42' });
  assert.equal(wrong.status, 405);
  assert.equal(wrong.headers.get('allow'), 'POST');
  assert.equal(wrong.headers.get('x-request-id'), 'my-id-42');
  const v1missing = await getJson(`${gateway.url}v1/files`);
  assert.equal(v1missing.status, 404);
  assert.equal(v1missing.body.error.type, 'invalid_request_error', "/v1 errors come in OpenAI's shape");
});

test('gateway routing - every route docs/http.md documents exists with its method, and no other', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const doc = readFileSync(new URL('../../../../docs/http.md', import.meta.url), 'utf8');
  const documented = new Set([...doc.matchAll(/`(GET|POST) (\/[\w/.*]*)`/g)].map((m) => `${m[1]} ${m[2]}`));
  for (const [, path] of doc.matchAll(/, `(\/[\w.]+)`/g)) documented.add(`GET ${path}`); // "`GET /`, `/dashboard.js`, …"
  // What the gateway routes: a known path answers a wrong method with 405 and Allow.
  const served = new Set<string>();
  for (const route of gateway.routes) for (const method of route.methods) served.add(`${method} ${route.path}`);
  assert.deepEqual([...documented].sort(), [...served].sort());
  for (const entry of documented) {
    const [method, path] = entry.split(' ') as [string, string];
    if (method !== 'GET' || path === '/events' || path.includes('*')) continue;
    const res = await fetch(`${gateway.url}${path.slice(1)}`, { signal: AbortSignal.timeout(30_000) });
    await res.arrayBuffer();
    assert.ok(res.status !== 404 && res.status !== 405, `${entry} answers (${res.status})`);
  }
});

test('gateway CORS and bearer token - preflight, allowed origins, 401 without the token in both error shapes', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const preflight = {
    method: 'OPTIONS',
    headers: {
      Origin: 'https://anywhere.example',
      'Access-Control-Request-Method': 'POST',
      'Access-Control-Request-Headers': 'content-type,authorization',
    },
  };
  // The default: no cross-origin calls, so a page the user opens cannot read a local gateway.
  const closed = await fetch(`${gateway.url}v1/embeddings`, preflight);
  assert.equal(closed.headers.get('access-control-allow-origin'), null, 'no origin is allowed by default');
  assert.equal(closed.headers.get('access-control-allow-methods'), null);
  // bert-as-service's any-origin, when asked for.
  const anyOrigin = await fleet.gateway(worker.service, { cors: '*' });
  const open = await fetch(`${anyOrigin.url}v1/embeddings`, preflight);
  assert.equal(open.status, 204);
  assert.equal(open.headers.get('access-control-allow-origin'), '*', "--cors '*': any origin");
  assert.match(open.headers.get('access-control-allow-methods') ?? '', /POST/);
  assert.match(open.headers.get('access-control-allow-headers') ?? '', /Authorization/);

  const guarded = await fleet.gateway(worker.service, { token: 's3cret-token', cors: 'https://app.example' });
  const noToken = await postJson(`${guarded.url}encode`, { texts: ['hi'] }, { Origin: 'https://app.example' });
  assert.equal(noToken.status, 401);
  assert.equal(noToken.body.error.code, 'UNAUTHORIZED');
  assert.equal(noToken.headers.get('www-authenticate'), 'Bearer realm="bertq"');
  assert.equal(noToken.headers.get('access-control-allow-origin'), 'https://app.example');
  const wrongToken = await postJson(
    `${guarded.url}v1/embeddings`,
    { input: 'hi' },
    { Authorization: 'Bearer s3cret-tokem' },
  );
  assert.equal(wrongToken.status, 401);
  assert.deepEqual(Object.keys(wrongToken.body.error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(wrongToken.body.error.code, 'invalid_api_key');
  const withToken = await postJson(
    `${guarded.url}encode`,
    { texts: ['hi'] },
    { Authorization: 'Bearer s3cret-token', Origin: 'https://evil.example' },
  );
  assert.equal(withToken.status, 200);
  assert.equal(
    withToken.headers.get('access-control-allow-origin'),
    null,
    'an origin not on the list gets no CORS grant',
  );
  // Probes stay open, but without the token they learn ok / not ok only: no address, id or model.
  const probe = await getJson(`${guarded.url}health`);
  assert.equal(probe.status, 200, '/health stays open for probes');
  assert.deepEqual(probe.body, { status: 'ok' });
  const readyProbe = await getJson(`${guarded.url}ready`);
  assert.equal(readyProbe.status, 200);
  assert.deepEqual(readyProbe.body, { ready: true });
  const full = await getJson(`${guarded.url}ready`, { Authorization: 'Bearer s3cret-token' });
  assert.equal(full.body.worker_id, worker.id, 'with the token, the full answer');
  const metrics = await fetch(`${guarded.url}metrics`);
  assert.equal(metrics.status, 401);
  await metrics.arrayBuffer();
});

/** The value of `series` (`name{a="1",b="2"}`) in exposition text, whatever order its labels come in. */
function sample(text: string, series: string): number | undefined {
  const parse = (s: string) => {
    const m = /^([a-zA-Z_:]+)(?:\{(.*)\})?$/.exec(s);
    const labels = [...(m?.[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => `${x[1]}=${x[2]}`).sort();
    return `${m?.[1]}|${labels.join(',')}`;
  };
  const want = parse(series);
  for (const line of text.split('\n')) {
    const at = line.lastIndexOf(' ');
    if (at > 0 && !line.startsWith('#') && parse(line.slice(0, at)) === want) return Number(line.slice(at + 1));
  }
  return undefined;
}

test('attack - a cross-site POST without a preflight (text/plain or a form) is refused with 415, nothing encoded', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  // What any web page can send to a local gateway without a CORS preflight: a "simple" request.
  const before =
    sample(await (await fetch(`${gateway.url}metrics`)).text(), 'bertq_gateway_rows_total{endpoint="/encode"}') ?? 0;
  for (const [type, body] of [
    ['text/plain;charset=UTF-8', JSON.stringify({ texts: ['stolen'] })],
    ['application/x-www-form-urlencoded', '{"texts":["stolen"]}'],
    [
      'multipart/form-data; boundary=x',
      '--x\r\nContent-Disposition: form-data; name="texts"\r\n\r\nstolen\r\n--x--\r\n',
    ],
  ] as const) {
    const res = await fetch(`${gateway.url}encode`, {
      method: 'POST',
      headers: { 'Content-Type': type, Origin: 'https://evil.example' },
      body,
    });
    assert.equal(res.status, 415, type);
    const answer = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(answer.error.code, 'UNSUPPORTED_MEDIA_TYPE');
    assert.match(answer.error.message, /must be application\/json/);
  }
  const after =
    sample(await (await fetch(`${gateway.url}metrics`)).text(), 'bertq_gateway_rows_total{endpoint="/encode"}') ?? 0;
  assert.equal(after, before, 'no row was encoded');
});

test('gateway - invalid UTF-8 and prototype-poisoning JSON are refused with 400, as on NATS', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const bytes = Buffer.concat([Buffer.from('{"texts": ["ok", "'), Buffer.from([0xff, 0xfe]), Buffer.from('"]}')]);
  const bad = await fetch(`${gateway.url}encode`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: bytes,
  });
  assert.equal(bad.status, 400);
  const answer = (await bad.json()) as { error: { code: string; message: string } };
  assert.equal(answer.error.code, 'BAD_REQUEST');
  assert.match(answer.error.message, /not valid UTF-8 at byte 18/);
  const poisoned = await postJson(`${gateway.url}encode`, '{"texts": ["a"], "__proto__": {"polluted": true}}');
  assert.equal(poisoned.status, 400);
  assert.equal(({} as { polluted?: boolean }).polluted, undefined);
});

test('gateway - HTTPS with --http-tls-cert/--http-tls-key', { timeout: TEST_TIMEOUT_MS }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bertq-tls-'));
  try {
    const [cert, key] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        key,
        '-out',
        cert,
      ],
      { stdio: 'ignore' },
    );
    const secure = await fleet.gateway(worker.service, { tls: { certFile: cert, keyFile: key } });
    assert.match(secure.url, /^https:\/\/127\.0\.0\.1:\d+\/$/);
    const body = await new Promise<string>((resolve, reject) => {
      const req = httpsRequest(`${secure.url}health`, { ca: readFileSync(cert), timeout: 10_000 }, (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve(text));
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal((JSON.parse(body) as { status: string }).status, 'ok');
    // Plain HTTP to the TLS port gets no answer it could read.
    await assert.rejects(
      fetch(`${secure.url.replace('https:', 'http:')}health`, { signal: AbortSignal.timeout(5_000) }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
