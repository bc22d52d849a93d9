import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { basename } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Encoder } from '@bertq/model';
import {
  BadRequestError,
  PROTOCOL_ID,
  controlSubject,
  decodeControlReply,
  validateServerStatus,
} from '@bertq/protocol';
import { startNatsServer } from '@bertq/testing';
import type { NatsServer } from '@bertq/testing';
import { startWorker } from '../src/worker.js';
import type { WorkerHandle } from '../src/worker.js';
import { fromNatsHeaders } from '@bertq/nats';
import { INFO_RESPONSE_TYPE, PING_RESPONSE_TYPE, STATS_RESPONSE_TYPE } from '@bertq/nats';
import type { InfoResponse, PingResponse, StatsResponse } from '@bertq/nats';
import { WORKER_VERSION } from '../src/version.js';
import { TestClient, connectTo, freshService, sentences, slowEngine, tinyEncoder, waitFor } from './helpers.js';

const TEST_TIMEOUT_MS = 60_000;
const REQUEST_TIMEOUT_MS = 3_000;
const SLOW_BATCH_MS = 400;

let server: NatsServer;
let nc: NatsConnection;
let encoder: Encoder;
let worker: WorkerHandle;
let service: string;

before(async () => {
  server = await startNatsServer();
  nc = await connectTo(server.url);
  encoder = await tinyEncoder();
  service = freshService('ctl');
  // Room for 3 × 2 rows: the high consumer's open pull reserves one job's worth, so the bulk consumer
  // may hold two 2-row jobs.
  worker = await startWorker({
    nc,
    service,
    engine: slowEngine(encoder, SLOW_BATCH_MS),
    prefetch: 3,
    maxBatchSize: 2,
    pullExpiresMs: 1_000,
  });
});

after(async () => {
  await worker?.stop({ drainTimeoutMs: 2_000 });
  await nc?.close();
  await encoder?.close();
  await server?.stop();
});

async function requestJson<T>(subject: string, body = ''): Promise<T> {
  const msg = await nc.request(subject, body, { timeout: REQUEST_TIMEOUT_MS });
  return msg.json<T>();
}

async function control(op: 'config' | 'status' | 'terminate', body = '', workerId?: string) {
  const msg = await nc.request(controlSubject(service, op, workerId), body, { timeout: REQUEST_TIMEOUT_MS });
  return { headers: fromNatsHeaders(msg.headers), data: msg.data };
}

const SEMVER = /^\d+\.\d+\.\d+/;

test('services - $SRV.PING answers with the bertq identity and metadata', { timeout: TEST_TIMEOUT_MS }, async () => {
  for (const subject of ['$SRV.PING', '$SRV.PING.bertq', `$SRV.PING.bertq.${worker.id}`]) {
    const ping = await requestJson<PingResponse>(subject);
    assert.equal(ping.type, PING_RESPONSE_TYPE, subject);
    assert.equal(ping.name, 'bertq');
    assert.equal(ping.id, worker.id);
    assert.equal(ping.version, WORKER_VERSION);
    assert.match(ping.version, SEMVER);
    assert.deepEqual(ping.metadata, {
      protocol: PROTOCOL_ID,
      service,
      model: basename(encoder.info.model), // a name, never a path on the worker's host
      device: 'cpu',
      pooling: 'REDUCE_MEAN',
      max_seq_len: '25',
      fingerprint: encoder.info.fingerprint,
      dims: String(encoder.info.dims),
    });
  }
});

test('services - $SRV.INFO lists the control endpoints with their subjects and queue groups', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const info = await requestJson<InfoResponse>(`$SRV.INFO.bertq.${worker.id}`);
  assert.equal(info.type, INFO_RESPONSE_TYPE);
  assert.equal(info.id, worker.id);
  assert.match(info.description, new RegExp(service));
  const byName = Object.fromEntries(info.endpoints.map((e) => [e.name, e]));
  assert.deepEqual(Object.keys(byName).sort(), [
    'config',
    'status',
    'terminate',
    'worker-config',
    'worker-metrics',
    'worker-status',
    'worker-terminate',
  ]);
  assert.equal(byName.config!.subject, `bertq.v1.${service}.config`);
  assert.equal(byName.config!.queue_group, 'q');
  assert.equal(byName['worker-status']!.subject, `bertq.v1.${service}.status.${worker.id}`);
  assert.equal(byName['worker-status']!.queue_group, '');
  assert.equal(byName['worker-metrics']!.subject, `bertq.v1.${service}.metrics.${worker.id}`);
});

test('services - config answers a valid server config document', { timeout: TEST_TIMEOUT_MS }, async () => {
  for (const id of [undefined, worker.id]) {
    const { headers, data } = await control('config', '', id);
    const config = decodeControlReply('config', headers, data);
    assert.equal(config.worker_id, worker.id);
    assert.equal(config.service, service);
    assert.equal(config.max_batch_size, 2);
    assert.equal(config.priority_batch_size, 2, 'the default 16, cut to max_batch_size');
    assert.equal(config.max_seq_len, 25);
    assert.equal(config.pooling_strategy, 'REDUCE_MEAN');
    assert.deepEqual(config.pooling_layer, [-2]);
    assert.equal(config.model_format, 'huggingface');
    assert.equal(config.max_payload, nc.info!.max_payload);
    assert.deepEqual(config.output_shape, [encoder.info.dims]);
    assert.equal(config.versions?.bertq, WORKER_VERSION);
    // Where the worker keeps its files is the host's business: names only, never a path.
    assert.ok(encoder.info.model.includes('/'), `the encoder was loaded from a path (${encoder.info.model})`);
    for (const value of [config.model_dir, config.graph_tmp_dir, config.model?.graph])
      assert.ok(value === null || value === undefined || !/[\\/]/.test(String(value)), `no host path: ${value}`);
  }
});

test('services - status shows queue depth from JetStream while jobs wait, then timings', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const client = new TestClient(nc, service);
  const requests = [];
  for (let i = 0; i < 6; i++) requests.push(await client.submit(sentences(2, i)));
  await waitFor('the worker to hold its two jobs', () => worker.stats().heldJobs === 2);
  const { headers, data } = await control('status');
  const waiting = decodeControlReply('status', headers, data);
  assert.equal(waiting.state, 'ready');
  assert.equal(waiting.worker_id, worker.id);
  // Six jobs: two held by the worker (ack pending), the rest still in the stream.
  assert.equal(waiting.queue.bulk.ack_pending, 2);
  assert.equal(waiting.queue.bulk.pending, 4);
  assert.equal(waiting.queue.high.pending, 0);
  assert.ok(waiting.queue.local_rows >= 1 && waiting.queue.local_rows <= 4);

  await Promise.all(requests.map((r) => r.result));
  const done = validateServerStatus(await requestJson(controlSubject(service, 'status', worker.id)));
  assert.equal(done.statistic.num_data_request, 6);
  assert.equal(done.statistic.num_total_seq, 12);
  assert.equal(done.statistic.num_active_client, 1);
  assert.ok(done.statistic.num_sys_request >= 2);
  assert.equal(done.queue.bulk.pending, 0);
  assert.equal(done.queue.bulk.ack_pending, 0);
  for (const stage of ['tokenization', 'queue', 'inference', 'total'] as const) {
    const t = done.timings[stage] as unknown as {
      count: number;
      p50_ms: number;
      p95_ms: number;
      p99_ms: number;
      max_ms: number;
    };
    assert.equal(t.count, stage === 'inference' ? done.batches!.num_batch : 6, stage);
    assert.ok(t.p50_ms <= t.p95_ms && t.p95_ms <= t.p99_ms && t.p99_ms <= t.max_ms, stage);
  }
  assert.ok(done.timings.inference.p50_ms! >= SLOW_BATCH_MS);
  assert.ok((done.statistic.seq_per_second ?? 0) > 0);
  client.close();
});

test('services - $SRV.STATS counts endpoint requests and errors', { timeout: TEST_TIMEOUT_MS }, async () => {
  await assert.rejects(
    async () => {
      const { headers, data } = await control('terminate', 'not json', worker.id);
      decodeControlReply('terminate', headers, data);
    },
    (err: Error) => err instanceof BadRequestError && /terminate request is not JSON/.test(err.message),
  );
  const stats = await requestJson<StatsResponse>('$SRV.STATS.bertq');
  assert.equal(stats.type, STATS_RESPONSE_TYPE);
  assert.ok(!Number.isNaN(Date.parse(stats.started)));
  const byName = Object.fromEntries(stats.endpoints.map((e) => [e.name, e]));
  assert.ok(byName.config!.num_requests >= 1);
  assert.equal(byName['worker-terminate']!.num_requests, 1);
  assert.equal(byName['worker-terminate']!.num_errors, 1);
  assert.match(byName['worker-terminate']!.last_error, /^400:/);
  assert.ok(byName.status!.processing_time > 0);
  assert.equal(worker.state, 'ready', 'a refused terminate request does not stop the worker');
});

test('attack - an error frame (or any other shape) sent to terminate does not stop the fleet', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  for (const body of [
    '{"code":"BAD_REQUEST","message":"job body is not valid JSON"}',
    '{"reason":"x","extra":1}',
    '[]',
  ]) {
    await assert.rejects(
      async () => {
        const { headers, data } = await control('terminate', body, worker.id);
        decodeControlReply('terminate', headers, data);
      },
      (err: Error) => err instanceof BadRequestError,
      body,
    );
  }
  assert.equal(worker.state, 'ready', 'still serving');
});

test('services - terminate replies, drains and stops the worker', { timeout: TEST_TIMEOUT_MS }, async () => {
  const client = new TestClient(nc, service);
  const inFlight = await client.submit(['finish me before you go']);
  await waitFor('the worker to hold the job', () => worker.stats().heldJobs === 1);
  const { headers, data } = await control('terminate', JSON.stringify({ reason: 'test over' }), worker.id);
  const reply = decodeControlReply('terminate', headers, data);
  assert.equal(reply.state, 'draining');
  assert.equal(reply.worker_id, worker.id);
  assert.equal(reply.in_flight_jobs, 1);
  await inFlight.result;
  assert.equal(await worker.closed, undefined);
  assert.equal(worker.state, 'closed');
  await assert.rejects(nc.request('$SRV.PING.bertq', '', { timeout: REQUEST_TIMEOUT_MS }), /no responders/i);
  client.close();
});

test('services - a reply over the server max_payload is an error that says so, not a silent timeout', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const small = await startNatsServer({ maxPayload: 4096 });
  const conn = await connectTo(small.url);
  const svc = freshService('small');
  const w = await startWorker({ nc: conn, service: svc, engine: slowEngine(encoder, 1) });
  try {
    const msg = await conn.request(`bertq.v1.${svc}.metrics.${w.id}`, '', { timeout: REQUEST_TIMEOUT_MS });
    // A fresh worker's metrics document is ~4.7 KB (with traffic, 18 KB and more): over the server's
    // 4 KB it comes back as TOO_LARGE, naming both sizes.
    assert.throws(
      () => decodeControlReply('metrics', fromNatsHeaders(msg.headers), msg.data),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'TOO_LARGE');
        assert.match(err.message, /over the NATS server's max_payload of 4096/);
        return true;
      },
    );
    // What fits is answered as before.
    const config = await conn.request(controlSubject(svc, 'config'), '', { timeout: REQUEST_TIMEOUT_MS });
    assert.equal(JSON.parse(new TextDecoder().decode(config.data)).max_payload, 4096);
  } finally {
    await w.stop({ drainTimeoutMs: 1_000 });
    await conn.close();
    await small.stop();
  }
});
