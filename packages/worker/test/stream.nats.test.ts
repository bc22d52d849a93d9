import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DiscardPolicy, RetentionPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { BadRequestError, NoWorkersError, serviceNames } from '@bertq/protocol';
import { startNatsServer } from '@bertq/testing';
import type { NatsServer } from '@bertq/testing';
import { JetStreamNotEnabledError, STREAM_DEFAULTS, ensureStream } from '../src/nats/stream.js';
import { NatsConnectError, connectNats } from '@bertq/nats';
import { connectTo, freePort, freshService } from './helpers.js';

const TEST_TIMEOUT_MS = 30_000;
const NANOS_PER_MS = 1_000_000;

let server: NatsServer;
let nc: NatsConnection;

before(async () => {
  server = await startNatsServer();
  nc = await connectTo(server.url);
});

after(async () => {
  await nc?.close();
  await server?.stop();
});

test('ensureStream - creates a work-queue stream and two durable pull consumers as the protocol says', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const service = freshService('Stream_Test'); // any spelling: the canonical name is used
  const ensured = await ensureStream(nc, { service, maxQueuedJobs: 3, ackWaitMs: 4_000, maxDeliver: 3 });
  const names = serviceNames(service);
  assert.equal(ensured.created, true);
  assert.equal(ensured.stream, names.stream);
  assert.match(ensured.stream, /^BERTQ_STREAM_TEST_/);

  const jsm = await jetstreamManager(nc);
  const stream = (await jsm.streams.info(names.stream)).config;
  assert.deepEqual(stream.subjects, [names.jobs.high, names.jobs.bulk]);
  assert.equal(stream.retention, RetentionPolicy.Workqueue);
  assert.equal(stream.discard, DiscardPolicy.New);
  assert.equal(stream.max_msgs, 6, 'both lanes');
  assert.equal(stream.max_msgs_per_subject, 3, 'each lane');
  assert.equal(stream.discard_new_per_subject, true);
  assert.equal(stream.max_bytes, STREAM_DEFAULTS.maxQueuedBytes);
  assert.equal(stream.duplicate_window, STREAM_DEFAULTS.duplicateWindowMs * NANOS_PER_MS);
  // A job nobody takes is cleared by the stream itself: max_age bounds every job's life.
  assert.equal(stream.max_age, STREAM_DEFAULTS.maxJobAgeMs * NANOS_PER_MS);
  for (const priority of ['high', 'bulk'] as const) {
    const consumer = (await jsm.consumers.info(names.stream, priority)).config;
    assert.equal(consumer.durable_name, priority);
    assert.equal(consumer.filter_subject, names.jobs[priority]);
    assert.equal(consumer.ack_policy, AckPolicy.Explicit);
    assert.equal(consumer.ack_wait, 4_000 * NANOS_PER_MS);
    assert.equal(consumer.max_deliver, 3);
  }

  // A full queue refuses the publish (the client's OVERLOADED), and a repeated Nats-Msg-Id is dropped.
  const js = jetstream(nc);
  assert.equal((await js.publish(names.jobs.bulk, '{}', { msgID: 'a:0' })).duplicate, false);
  assert.equal((await js.publish(names.jobs.bulk, '{}', { msgID: 'a:0' })).duplicate, true);
  await js.publish(names.jobs.bulk, '{}', { msgID: 'b:0' });
  await js.publish(names.jobs.bulk, '{}', { msgID: 'c:0' });
  await assert.rejects(js.publish(names.jobs.bulk, '{}', { msgID: 'd:0' }), /maximum messages per subject exceeded/);
  // The bulk lane is full; the high lane has its own bound, so an interactive request still gets in.
  assert.equal((await js.publish(names.jobs.high, '{}', { msgID: 'e:0' })).duplicate, false);
});

test('ensureStream - is idempotent, also when two workers run it at once', { timeout: TEST_TIMEOUT_MS }, async () => {
  const service = freshService();
  const [a, b] = await Promise.all([ensureStream(nc, { service }), ensureStream(nc, { service })]);
  // JetStream answers an identical create with success, so both may say they created it; neither fails.
  assert.ok(a.created || b.created);
  assert.deepEqual([a.stream, a.updated, b.updated], [b.stream, [], []]);
  const again = await ensureStream(nc, { service });
  assert.equal(again.created, false);
  assert.deepEqual(again.updated, []);
});

test('ensureStream - updates the limits it can update and reports them', { timeout: TEST_TIMEOUT_MS }, async () => {
  const service = freshService();
  await ensureStream(nc, { service });
  const changed = await ensureStream(nc, { service, maxQueuedJobs: 50, ackWaitMs: 2_000, maxDeliver: 7 });
  assert.equal(changed.created, false);
  assert.deepEqual([...changed.updated].sort(), [
    'consumer.bulk.ack_wait',
    'consumer.bulk.max_deliver',
    'consumer.high.ack_wait',
    'consumer.high.max_deliver',
    'stream.max_msgs',
    'stream.max_msgs_per_subject',
  ]);
  const jsm = await jetstreamManager(nc);
  const names = serviceNames(service);
  assert.equal((await jsm.streams.info(names.stream)).config.max_msgs_per_subject, 50);
  assert.equal((await jsm.consumers.info(names.stream, 'bulk')).config.max_deliver, 7);
});

test('ensureStream - refuses a stream of the same name with another retention and says how to fix it', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const service = freshService();
  const names = serviceNames(service);
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: names.stream, subjects: [names.jobs.all], retention: RetentionPolicy.Limits });
  await assert.rejects(
    ensureStream(nc, { service }),
    (err: Error) =>
      err instanceof BadRequestError && /retention "limits".*"workqueue".*nats stream rm/.test(err.message),
  );
});

test('ensureStream - 3 replicas on a single server is a BAD_REQUEST that says a cluster is needed', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await assert.rejects(
    ensureStream(nc, { service: freshService(), replicas: 3 }),
    (err: Error) =>
      err instanceof BadRequestError &&
      /3 replicas need a NATS cluster of at least 3 JetStream servers.*--stream-replicas 1/.test(err.message),
  );
});

test('ensureStream - refuses invalid options with a message naming the option', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await assert.rejects(
    ensureStream(nc, { service: freshService(), maxQueuedJobs: 0 }),
    /maxQueuedJobs must be a positive integer, got 0/,
  );
  await assert.rejects(ensureStream(nc, { service: 'no spaces allowed' }), BadRequestError);
});

test('ensureStream - a server without JetStream gives a clear error saying how to enable it', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const plain = await startNatsServer({ jetstream: false });
  const conn = await connectTo(plain.url);
  try {
    await assert.rejects(ensureStream(conn, { service: freshService() }), (err: Error) => {
      assert.ok(err instanceof JetStreamNotEnabledError);
      assert.ok(err instanceof NoWorkersError);
      assert.match(err.message, new RegExp(`server at nats://127\\.0\\.0\\.1:${plain.port} has no JetStream`));
      assert.match(err.message, /nats-server -js/);
      assert.match(err.message, /jetstream \{\}/);
      return true;
    });
  } finally {
    await conn.close();
    await plain.stop();
  }
});

test('connectNats - says there is no NATS server at an address where none answers', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const port = await freePort();
  await assert.rejects(connectNats({ servers: `nats://127.0.0.1:${port}`, connectTimeoutMs: 2_000 }), (err: Error) => {
    // One failure, one code: an unreachable broker means nothing can serve, wherever it is seen.
    assert.ok(err instanceof NatsConnectError);
    assert.equal((err as NatsConnectError).code, 'NO_WORKERS');
    assert.match(err.message, new RegExp(`^no NATS server at nats://127\\.0\\.0\\.1:${port}`));
    return true;
  });
});

test('connectNats - connects with a token the server requires, and names a refused one', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const guarded = await startNatsServer({ jetstream: false, config: { authorization: { token: 's3cret' } } });
  try {
    const ok = await connectNats({ servers: guarded.url, token: 's3cret' });
    await ok.close();
    await assert.rejects(connectNats({ servers: guarded.url, token: 'wrong' }), /refused the connection/);
  } finally {
    await guarded.stop();
  }
});
