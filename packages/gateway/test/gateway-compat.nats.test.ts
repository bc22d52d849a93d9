/**
 * Other clients' conventions against a real fleet: Text Embeddings Inference's `POST /embed` and
 * `GET /info` with the request and response shapes of TEI's README, and OpenAI's model list through
 * the official SDK. Vectors are compared with the same model encoding in-process.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import type { Encoder } from '@bertq/model';
import { maxAbsDiff } from '@bertq/testing';
import type { WorkerHandle } from '@bertq/worker';
import type { GatewayHandle } from '../src/index.js';
import { SENTENCES, TOLERANCE, TestFleet, getJson, postJson, tinyEncoder } from './fleet.js';

const TEST_TIMEOUT_MS = 60_000;

let fleet: TestFleet;
let encoder: Encoder;
let worker: WorkerHandle;
let gateway: GatewayHandle;

before(async () => {
  fleet = await TestFleet.start();
  encoder = await tinyEncoder();
  worker = await fleet.worker({ engine: encoder });
  gateway = await fleet.gateway(worker.service);
});

after(async () => {
  await fleet?.stop();
  await encoder?.close();
});

function unit(row: Float32Array): Float32Array {
  const norm = Math.hypot(...row);
  return row.map((v) => v / norm);
}

test("tei /embed - TEI's README request: one string or a list, unit-length vectors by default", {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const want = await encoder.encode(SENTENCES);
  const dims = want.shape[1]!;
  const one = await postJson(`${gateway.url}embed`, { inputs: 'What is Deep Learning?' });
  assert.equal(one.status, 200);
  assert.ok(Array.isArray(one.body) && one.body.length === 1 && one.body[0].length === dims, 'a bare [[…]]');

  const many = await postJson(`${gateway.url}embed`, { inputs: SENTENCES });
  assert.equal(many.status, 200);
  assert.equal(many.body.length, SENTENCES.length);
  for (let r = 0; r < SENTENCES.length; r++) {
    const expected = unit(want.data.subarray(r * dims, (r + 1) * dims));
    const got = Float32Array.from(many.body[r]);
    assert.ok(maxAbsDiff(got, expected) <= 1e-5, `row ${r}: ${maxAbsDiff(got, expected)}`);
  }
  const raw = await postJson(`${gateway.url}embed`, { inputs: SENTENCES, normalize: false });
  assert.ok(maxAbsDiff(Float32Array.from(raw.body.flat()), want.data) <= TOLERANCE, 'normalize: false is the model');
});

test('tei /embed - truncate: false refuses an input max_seq_len would cut; the default cuts it, as auto_truncate says', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const long = Array.from({ length: 60 }, (_, i) => `word${i % 7}`).join(' ');
  const cut = await postJson(`${gateway.url}embed`, { inputs: [long] });
  assert.equal(cut.status, 200);
  const refused = await postJson(`${gateway.url}embed`, { inputs: [long], truncate: false });
  assert.ok(refused.status >= 400 && refused.status < 500, String(refused.status));
  assert.equal(refused.body.error_type, 'Validation');
  assert.match(refused.body.error, /^TOO_LONG: /);
  const bad = await postJson(`${gateway.url}embed`, { inputs: [] });
  assert.equal(bad.status, 400);
  assert.deepEqual(Object.keys(bad.body).sort(), ['error', 'error_type']);
});

test("tei /info - says what runs, in TEI's fields", { timeout: TEST_TIMEOUT_MS }, async () => {
  const info = await getJson(`${gateway.url}info`);
  assert.equal(info.status, 200);
  assert.equal(info.body.model_id, worker.config().model_dir);
  assert.doesNotMatch(info.body.model_id, /\//, 'a model name, not a path on the server');
  assert.equal(info.body.max_input_length, 25);
  assert.equal(info.body.auto_truncate, true);
  assert.equal(info.body.model_type.embedding.pooling, 'mean');
  assert.equal(typeof info.body.max_client_batch_size, 'number');
});

test('openai /v1/models - the official SDK lists the model the answers name, and retrieves it', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const openai = new OpenAI({ baseURL: `${gateway.url}v1`, apiKey: 'unused' });
  const models = [];
  for await (const m of openai.models.list()) models.push(m);
  assert.equal(models.length, 1);
  const id = models[0]!.id;
  const embedded = await openai.embeddings.create({ model: id, input: 'hello' });
  assert.equal(embedded.model, id, 'the model listed is the model that answers');
  assert.equal((await openai.models.retrieve(id)).id, id);
  await assert.rejects(openai.models.retrieve('gpt-4'), (err: { status?: number }) => err.status === 404);
});
