import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import {
  BadRequestError,
  NoWorkersError,
  OverloadedError,
  TimeoutError,
  newRequestId,
  serviceNames,
} from '@bertq/protocol';
import { startNatsServer, type NatsServer } from '@bertq/testing';
import { BertClient } from '../src/client.js';
import { ClientClosedError } from '../src/errors.js';
import { answerConfig, createJobStream } from './peer.js';

/** "Fails fast" means well under a second, on a loaded 2-core test machine too. */
const FAIL_FAST_MS = 1_000;
/** Deadline of requests that are meant to time out. */
const SHORT_TIMEOUT_MS = 400;
/** How late a TIMEOUT may come after its deadline (timer + scheduling slack). */
const TIMEOUT_SLACK_MS = 500;

let server: NatsServer;
let nc: NatsConnection;
const clients: BertClient<'ndarray' | 'list'>[] = [];

before(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await nc.close();
  await server.stop();
});

/** A fresh service per test, so no test sees another's stream or responders. */
const freshService = () => `svc-${newRequestId().slice(0, 10).toLowerCase()}`;

async function client(service: string, options: Parameters<typeof BertClient.connect>[0] = {}) {
  const c = await BertClient.connect({ servers: server.url, service, ...options });
  clients.push(c);
  return c;
}

test('client - with no worker at all, encode fails with NO_WORKERS in well under a second', async () => {
  const service = freshService();
  const bc = await client(service);
  const started = performance.now();
  await assert.rejects(
    bc.encode(['hello world']),
    (e: unknown) => e instanceof NoWorkersError && e.message.includes(`no worker serves service "${service}"`),
  );
  assert.ok(performance.now() - started < FAIL_FAST_MS, `took ${performance.now() - started} ms`);
  await assert.rejects(bc.serverConfig(), NoWorkersError);
  const statusStarted = performance.now();
  await assert.rejects(bc.serverStatus(), NoWorkersError);
  assert.ok(performance.now() - statusStarted < FAIL_FAST_MS + 500, 'discovery gives up after its window');
});

test('client - when workers answered once but the stream is gone, the publish fails with NO_WORKERS at once', async () => {
  const service = freshService();
  const responder = answerConfig(nc, service);
  try {
    const bc = await client(service);
    const started = performance.now();
    await assert.rejects(
      bc.encode(['hello']),
      (e: unknown) => e instanceof NoWorkersError && e.message.includes(serviceNames(service).stream),
    );
    assert.ok(performance.now() - started < FAIL_FAST_MS);
    assert.equal(bc.status.pending, 0);
  } finally {
    responder.unsubscribe();
  }
});

test('client - a queued request nobody works on fails with TIMEOUT at its deadline, naming the missing rows', async () => {
  const service = freshService();
  await createJobStream(nc, service);
  const responder = answerConfig(nc, service, { max_batch_size: 2 });
  try {
    const bc = await client(service, { timeout: SHORT_TIMEOUT_MS });
    const started = performance.now();
    await assert.rejects(
      bc.encode(['a', 'b', 'c']),
      (e: unknown) =>
        e instanceof TimeoutError &&
        /timed out after 400 ms with 0 of 3 rows received \(missing rows 0-2\)/.test(e.message),
    );
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= SHORT_TIMEOUT_MS - 5 && elapsed < SHORT_TIMEOUT_MS + TIMEOUT_SLACK_MS, `took ${elapsed} ms`);
    assert.equal(bc.status.numTimeout, 1);
    assert.equal(bc.status.pending, 0);
    // The per-call timeout wins over the client's.
    const perCall = performance.now();
    await assert.rejects(bc.encode(['a'], { timeout: 100 }), TimeoutError);
    assert.ok(performance.now() - perCall < 100 + TIMEOUT_SLACK_MS);
  } finally {
    responder.unsubscribe();
  }
});

test('client - a full stream refuses the publish and the request fails with OVERLOADED', async () => {
  const service = freshService();
  await createJobStream(nc, service, { maxMsgs: 2 });
  const responder = answerConfig(nc, service, { max_batch_size: 1, priority_batch_size: 1 });
  try {
    const bc = await client(service, { timeout: 5_000 });
    const started = performance.now();
    await assert.rejects(
      bc.encode(['a', 'b', 'c', 'd', 'e']),
      (e: unknown) =>
        e instanceof OverloadedError &&
        /is overloaded: stream BERTQ_SVC_\w+ refused the job at offset \d \(maximum messages exceeded\)/.test(
          e.message,
        ),
    );
    assert.ok(performance.now() - started < FAIL_FAST_MS, 'refused at once, not at the deadline');
    await assert.rejects(bc.encode(['f']), OverloadedError);
    assert.equal(bc.status.pending, 0);
  } finally {
    responder.unsubscribe();
  }
});

test('client - bad input is refused before anything is published', async () => {
  const service = freshService();
  await createJobStream(nc, service);
  const responder = answerConfig(nc, service, { max_batch_size: 2 });
  try {
    const bc = await client(service);
    await assert.rejects(
      bc.encode([]),
      (e: unknown) => e instanceof BadRequestError && e.message === 'texts is empty: send at least one text',
    );
    await assert.rejects(
      bc.encode(['ok', 'fine', 'good', '']),
      (e: unknown) => e instanceof BadRequestError && e.message === 'texts[3] is an empty string',
    );
    await assert.rejects(bc.encode(['ok', 7 as unknown as string]), /texts\[1\] must be a string, got a number/);
    const jsm = await jetstreamManager(nc);
    assert.equal(
      (await jsm.streams.info(serviceNames(service).stream)).state.messages,
      0,
      'the valid first chunks were not sent either',
    );
  } finally {
    responder.unsubscribe();
  }
});

test('client - close() rejects waiting requests with ClientClosedError and refuses new ones', async () => {
  const service = freshService();
  await createJobStream(nc, service);
  const responder = answerConfig(nc, service);
  try {
    const bc = await BertClient.connect({ servers: server.url, service, timeout: 30_000 });
    const waiting = bc.encode(['never answered']);
    const listener = bc.listen();
    // Let the publish go out, then close while the request waits for rows.
    while (bc.status.numChunks === 0) await new Promise((r) => setTimeout(r, 5));
    const rejected = assert.rejects(
      waiting,
      (e: unknown) =>
        e instanceof ClientClosedError &&
        /BertClient was closed while request \w+ was waiting \(0 of 1 rows received\)/.test(e.message),
    );
    const started = performance.now();
    await bc.close();
    await rejected;
    assert.ok(performance.now() - started < FAIL_FAST_MS);
    assert.deepEqual(await listener.next(), { value: undefined, done: true });
    await assert.rejects(bc.encode(['again']), ClientClosedError);
    assert.equal(bc.status.closed, true);
    await bc.close(); // idempotent
  } finally {
    responder.unsubscribe();
  }
});

test('client - refuses bad options before connecting', async () => {
  await assert.rejects(BertClient.connect({ servers: server.url, service: 'no.dots' }), BadRequestError);
  await assert.rejects(
    BertClient.connect({ servers: server.url, timeout: -2 }),
    /timeout must be .* or -1 for as long as it takes/,
  );
});

test('client - an unreachable NATS server is NO_WORKERS, within the timeout', async () => {
  const started = performance.now();
  await assert.rejects(
    BertClient.connect({ servers: 'nats://127.0.0.1:1', timeout: 2_000 }),
    (e: unknown) => e instanceof NoWorkersError && /no NATS server at nats:\/\/127.0.0.1:1/.test(e.message),
  );
  assert.ok(performance.now() - started < 2_000 + TIMEOUT_SLACK_MS);
});

test('client - a timeout too short to connect is TIMEOUT, not "no NATS server", when the server is up', async () => {
  // A connect can, rarely, beat a 1 ms timer: try a few times; every failure must be TIMEOUT.
  let failures = 0;
  for (let attempt = 0; attempt < 5; attempt++) {
    const outcome = await BertClient.connect({ servers: server.url, timeout: 1 }).then(
      async (c) => {
        await c.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    if (outcome === undefined) continue;
    failures++;
    assert.ok(outcome instanceof TimeoutError && !(outcome instanceof NoWorkersError), String(outcome));
    assert.match(outcome.message, /within the client's timeout of 1 ms; the server may well be up/);
  }
  assert.ok(failures > 0, 'a 1 ms timeout is too short to connect');
});

test('client - new BertClient(…) says to use BertClient.connect', () => {
  assert.throws(
    () => new (BertClient as unknown as new (o: unknown) => unknown)({ ip: 'localhost' }),
    (e: unknown) => e instanceof BadRequestError && /await BertClient\.connect\(options\)/.test(e.message),
  );
});

test('client - check_version: workers of another major version fail the request at once, naming both; checkVersion false tries anyway', async () => {
  const service = freshService();
  await createJobStream(nc, service);
  const responder = answerConfig(nc, service, { server_version: '7.0.0' });
  try {
    const strict = await client(service);
    await assert.rejects(
      strict.encode(['hello']),
      (e: unknown) =>
        e instanceof BadRequestError &&
        /major versions differ \(client [\d.]+, server 7\.0\.0\).*checkVersion: false/.test(e.message),
    );
    const lenient = await client(service, { checkVersion: false, timeout: 300 });
    // Past the check, the request goes out (and times out: nobody works on this stream).
    await assert.rejects(lenient.encode(['hello']), TimeoutError);
  } finally {
    responder.unsubscribe();
  }
});

test('client - timeout -1 waits as long as it takes, yet NO_WORKERS ends it when nobody serves the service', async () => {
  const service = freshService();
  await createJobStream(nc, service);
  const responder = answerConfig(nc, service);
  const bc = await client(service, { timeout: -1 });
  const request = bc.encode(['hello']);
  const outcome = assert.rejects(request, NoWorkersError);
  await new Promise((resolve) => setTimeout(resolve, 500));
  responder.unsubscribe(); // the "fleet" goes away; the liveness check notices within seconds
  const started = performance.now();
  await outcome;
  assert.ok(performance.now() - started < 10_000);
});
