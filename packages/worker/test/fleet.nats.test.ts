import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import {
  BadRequestError,
  HEADERS,
  ModelError,
  controlSubject,
  serviceNames,
  validateServerStatus,
} from '@bertq/protocol';
import { processAlive, startNatsServer, tinyModel } from '@bertq/testing';
import type { NatsServer, TinyModelFixture } from '@bertq/testing';
import { FleetError, startFleet } from '../src/fleet/fleet.js';
import type { FleetHandle, FleetOptions } from '../src/fleet/fleet.js';
import { TestClient, connectTo, freshService, maxAbsDiff, sentences, tinyEncoder, waitFor } from './helpers.js';

/** Time budgets: worker processes load a tiny model; the machine is shared, so be generous but bounded. */
const TEST_TIMEOUT_MS = 90_000;
const READY_TIMEOUT_MS = 60_000;
/** Short ack_wait: a killed worker's jobs come back this fast. */
const ACK_WAIT_MS = 2_000;
const BATCH_DELAY_MS = 300;
const FIXTURE_WORKER = fileURLToPath(new URL('./fixtures/worker-main.js', import.meta.url));

let server: NatsServer;
let nc: NatsConnection;
let tiny: TinyModelFixture;
let fleet: FleetHandle | undefined;
const fleets: FleetHandle[] = [];

before(async () => {
  server = await startNatsServer();
  nc = await connectTo(server.url);
  tiny = await tinyModel();
});

after(async () => {
  await Promise.all(fleets.map((f) => f.stop()));
  await nc?.close();
  await server?.stop();
});

function options(overrides: Partial<FleetOptions> = {}): FleetOptions {
  return {
    servers: server.url,
    service: freshService('fleet'),
    numWorker: 2,
    threadsPerWorker: 1,
    encoder: { model: tiny.huggingFaceDir, graphTmpDir: tiny.graphDir },
    prefetch: 2,
    pullExpiresMs: 1_000,
    drainTimeoutMs: 5_000,
    stream: { ackWaitMs: ACK_WAIT_MS },
    logLevel: 'silent',
    readyTimeoutMs: READY_TIMEOUT_MS,
    restart: { backoffMs: [100] },
    workerScript: FIXTURE_WORKER,
    env: { ...process.env, BERTQ_TEST_WORKER_MODE: 'slow', BERTQ_TEST_BATCH_DELAY_MS: String(BATCH_DELAY_MS) },
    ...overrides,
  };
}

async function start(overrides: Partial<FleetOptions> = {}): Promise<FleetHandle> {
  const f = await startFleet(options(overrides));
  fleets.push(f);
  return f;
}

test('fleet - starts two worker processes that share the requests', { timeout: TEST_TIMEOUT_MS }, async () => {
  fleet = await start({ prefetch: 3 }); // the bulk consumer may hold two jobs per worker
  assert.equal(fleet.workers.length, 2);
  const pids = fleet.workers.map((w) => w.pid);
  assert.equal(new Set(pids).size, 2);
  assert.ok(!pids.includes(process.pid));
  assert.deepEqual(fleet.ready.devices, ['cpu', 'cpu']);
  assert.equal(fleet.ready.dims, 32);

  const client = new TestClient(nc, fleet.service);
  const requests = [];
  for (let i = 0; i < 10; i++) requests.push(await client.submit(sentences(3, i)));
  await Promise.all(requests.map((r) => r.result));
  const servedBy = new Set(client.frames.map((f) => f.headers[HEADERS.worker]));
  assert.deepEqual([...servedBy].sort(), fleet.workers.map((w) => w.id).sort(), 'both workers served');
  client.close();
});

test("fleet - nullModel: the workers tokenize for real and answer zero vectors of the model's shape, saying so", {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const f = await start({ numWorker: 1, nullModel: true, workerScript: undefined, env: process.env });
  const client = new TestClient(nc, f.service);
  const texts = sentences(5, 3);
  const request = await client.submit(texts);
  const got = await request.result;
  assert.deepEqual(got.shape, [5, 32]);
  assert.ok(
    got.data.every((v) => v === 0),
    'every vector is zero: nothing was computed',
  );
  const status = (await nc.request(controlSubject(f.service, 'config'), undefined, { timeout: 5_000 })).json<{
    versions: Record<string, string>;
  }>();
  assert.match(status.versions.model ?? '', /^null/);
  client.close();
});

/** The weight file's regions mapped by a process and the KiB of them it shares with other processes. */
function weightsMappedBy(pid: number): { regions: number; sharedKiB: number } {
  let regions = 0;
  let sharedKiB = 0;
  let inWeights = false;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) {
      inWeights = line.endsWith('.onnx.data');
      if (inWeights) regions++;
    } else if (inWeights && /^Shared_(Clean|Dirty):/.test(line)) {
      // Dirty too: pages of a graph file written moments ago may not have reached the disk yet.
      sharedKiB += Number(line.split(/\s+/)[1]);
    }
  }
  return { regions, sharedKiB };
}

test('fleet - with sharedWeights, the workers compute from one copy of the weights, mapped from the graph cache', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  fleet = await start({ sharedWeights: true });
  const client = new TestClient(nc, fleet.service);
  const requests = [];
  for (let i = 0; i < 6; i++) requests.push(await client.submit(sentences(3, i)));
  await Promise.all(requests.map((r) => r.result));
  client.close();
  const layers = 4; // the tiny model's
  for (const { pid } of fleet.workers) {
    const mapped = weightsMappedBy(pid);
    // Each layer's weight matrices come from the file; a worker with its own copy maps only the lookups.
    assert.ok(mapped.regions >= 3 * layers, `worker ${pid} maps ${mapped.regions} regions of the weight file`);
    assert.ok(mapped.sharedKiB > 0, `worker ${pid} shares none of the weight file's pages`);
  }
});

test('fleet - a worker killed with SIGKILL loses no job and is restarted', { timeout: TEST_TIMEOUT_MS }, async () => {
  assert.ok(fleet, 'the previous test started the fleet');
  const client = new TestClient(nc, fleet.service);
  const requests = [];
  for (let i = 0; i < 20; i++) requests.push(await client.submit(sentences(2, 50 + i), { timeoutMs: 60_000 }));
  await waitFor('a first result frame', () => client.frames.length > 0);
  const victim = fleet.workers.find((w) => w.id === client.frames[0]!.headers[HEADERS.worker])!;
  // Kill it while it holds jobs (its own status says so), so some must come back through redelivery.
  await waitFor(
    'the victim to hold jobs',
    async () => {
      const msg = await nc.request(controlSubject(fleet!.service, 'status', victim.id), '', { timeout: 2_000 });
      return (validateServerStatus(msg.json()).queue.held_jobs as number) > 0;
    },
    10_000,
    0,
  );
  process.kill(victim.pid, 'SIGKILL');

  const results = await Promise.all(requests.map((r) => r.result));
  assert.equal(results.length, 20);
  // every request completes correctly: the same vectors the model computes in-process
  const encoder = await tinyEncoder();
  try {
    for (const [i, r] of results.entries()) {
      const want = await encoder.encode(sentences(2, 50 + i));
      assert.deepEqual(r.shape, want.shape);
      assert.ok(maxAbsDiff(r.data, want.data) <= 1e-6, `request ${i}: max diff ${maxAbsDiff(r.data, want.data)}`);
    }
  } finally {
    await encoder.close();
  }

  await waitFor(
    'the killed worker to be replaced',
    () => fleet!.workers.length === 2 && !fleet!.workers.some((w) => w.pid === victim.pid),
    30_000,
  );
  const replaced = fleet.workers.find((w) => w.index === victim.index)!;
  assert.equal(replaced.restarts, 1);
  assert.notEqual(replaced.id, victim.id);
  assert.ok(!processAlive(victim.pid));

  // The jobs the victim held went back to the queue after ack_wait: a live worker got them again.
  let redelivered = 0;
  for (const w of fleet.workers) {
    const msg = await nc.request(controlSubject(fleet.service, 'status', w.id), '', { timeout: 2_000 });
    redelivered += validateServerStatus(msg.json()).statistic.num_redelivered ?? 0;
  }
  assert.ok(redelivered >= 1, `redelivered jobs seen by the live workers: ${redelivered}`);
  const jsm = await jetstreamManager(nc);
  const info = await jsm.consumers.info(serviceNames(fleet.service).stream, 'bulk');
  assert.equal(info.num_ack_pending, 0);
  assert.equal(info.num_pending, 0);
  client.close();
});

test('fleet - stop() drains the workers and ends their processes', { timeout: TEST_TIMEOUT_MS }, async () => {
  assert.ok(fleet, 'the first test started the fleet');
  const pids = fleet.workers.map((w) => w.pid);
  const client = new TestClient(nc, fleet.service);
  const inFlight = await client.submit(sentences(4, 99));
  // In hand, not only in the stream: a job still queued when stop() begins stays queued (by design).
  const jsm = await jetstreamManager(nc);
  const stream = serviceNames(fleet.service).stream;
  await waitFor(
    'a worker to hold the job',
    async () => (await jsm.consumers.info(stream, 'bulk')).num_ack_pending > 0,
    10_000,
  );
  await fleet.stop();
  await inFlight.result; // drained: finished and published before the worker exited
  assert.equal(await fleet.closed, undefined);
  assert.deepEqual(fleet.workers, []);
  for (const pid of pids) assert.ok(!processAlive(pid), `worker ${pid} exited`);
  client.close();
});

test('fleet - a model that cannot be loaded fails the start with MODEL_ERROR before any worker is forked', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await assert.rejects(
    startFleet(options({ encoder: { model: '/nonexistent/model-folder' } })),
    (err: Error) => err instanceof ModelError && /\/nonexistent\/model-folder does not exist/.test(err.message),
  );
});

test('fleet - stream options that can never work fail the start before the model is even looked at', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  // The model folder does not exist either: the stream's error coming first shows the order.
  await assert.rejects(
    startFleet(options({ encoder: { model: '/nonexistent/model-folder' }, stream: { replicas: 2 } })),
    (err: Error) => err instanceof BadRequestError && /replicas must be 1, 3 or 5, got 2/.test(err.message),
  );
});

test('fleet - a start whose workers fail leaves no stream behind; removeStreamOnStop takes it along on stop', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const jsm = await jetstreamManager(nc);
  const streams = async () => {
    const names: string[] = [];
    for await (const name of jsm.streams.names()) names.push(name);
    return names;
  };
  const dir = await mkdtemp(join(tmpdir(), 'bertq-fleet-'));
  try {
    const dying = join(dir, 'dies-at-once.mjs');
    await writeFile(dying, 'process.exit(4);\n');
    const failed = options({ numWorker: 1, workerScript: dying });
    await assert.rejects(startFleet(failed), /worker 0 .*exited|code 4/);
    assert.ok(!(await streams()).includes(serviceNames(failed.service).stream), 'the failed start removed its stream');

    const once = await startFleet(options({ numWorker: 1, removeStreamOnStop: true }));
    const stream = serviceNames(once.service).stream;
    assert.ok((await streams()).includes(stream));
    await once.stop();
    assert.ok(!(await streams()).includes(stream), 'stop() removed the stream');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('fleet - gives up with a clear error when a worker keeps crashing', { timeout: TEST_TIMEOUT_MS }, async () => {
  const crashing = await start({
    numWorker: 1,
    restart: { maxFastCrashes: 2, backoffMs: [50] },
    stream: { ackWaitMs: 1_000, maxDeliver: 10 },
    env: { ...process.env, BERTQ_TEST_WORKER_MODE: 'crash-on-job' },
  });
  const client = new TestClient(nc, crashing.service);
  await client.submit(['every worker that takes this job dies'], { timeoutMs: 60_000 });
  const reason = await crashing.closed;
  assert.ok(reason instanceof FleetError, String(reason));
  assert.match(reason.message, /worker 0 \(cpu\) crashed 3 times in a row.*code 3.*giving up/);
  assert.deepEqual(crashing.workers, []);
  client.close();
});

test('fleet - terminate stops the fleet even while a crashed worker is being restarted', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  // A slow restart, so the terminate surely lands while worker 0 is down.
  const f = await start({ restart: { backoffMs: [1_500] } });
  const [victim, survivor] = f.workers;
  process.kill(victim!.pid, 'SIGKILL');
  const reply = await nc.request(controlSubject(f.service, 'terminate', survivor!.id), '{}', { timeout: 5_000 });
  assert.doesNotMatch(new TextDecoder().decode(reply.data), /error/i);
  const outcome = await Promise.race([
    f.closed,
    new Promise((resolve) => setTimeout(() => resolve('still running'), 20_000)),
  ]);
  assert.equal(outcome, undefined, 'the fleet ended cleanly');
  await new Promise((resolve) => setTimeout(resolve, 2_000)); // past the restart backoff
  assert.deepEqual(f.workers, [], 'and nothing came back up');
  assert.ok(!processAlive(survivor!.pid));
});
