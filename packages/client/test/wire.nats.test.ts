import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { HEADERS, TooLongError, newRequestId, serviceNames, type Frame } from '@bertq/protocol';
import { startNatsServer, type NatsServer } from '@bertq/testing';
import { BertClient } from '../src/client.js';
import { prepareJobs } from '../src/chunks.js';
import { publishJob } from '../src/publish.js';
import type { Delivery, ListVectors, NdArray } from '../src/types.js';
import { answerConfig, createJobStream, startPeer, type Peer, type PeerOptions } from './peer.js';
import { rowValues } from './frames.js';

/** Bound of every request in this file: the peer answers in milliseconds. */
const REQUEST_TIMEOUT_MS = 10_000;
const DIM = 4;

let server: NatsServer;
let nc: NatsConnection;
const cleanups: Array<() => Promise<void> | void> = [];

before(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
});

after(async () => {
  for (const c of cleanups.reverse()) await c();
  await nc.close();
  await server.stop();
});

const freshService = () => `svc-${newRequestId().slice(0, 10).toLowerCase()}`;

/** A service with a stream, a config responder and (unless `peer: false`) a protocol peer answering jobs. */
async function serve(
  config: { max_batch_size?: number; priority_batch_size?: number } = {},
  peerOptions: PeerOptions | false = {},
) {
  const service = freshService();
  await createJobStream(nc, service);
  const responder: Subscription = answerConfig(nc, service, { max_batch_size: 4, priority_batch_size: 2, ...config });
  cleanups.push(() => responder.unsubscribe());
  let peer: Peer | undefined;
  if (peerOptions !== false) {
    peer = await startPeer(nc, service, { dim: DIM, ...peerOptions });
    cleanups.push(() => peer!.stop());
  }
  return { service, peer };
}

async function client<F extends 'ndarray' | 'list' = 'ndarray'>(
  service: string,
  options: Parameters<typeof BertClient.connect<F>>[0] = {},
) {
  const c = await BertClient.connect<F>({ servers: server.url, service, timeout: REQUEST_TIMEOUT_MS, ...options });
  cleanups.push(() => c.close());
  return c;
}

/** The rows the peer computes for rows [from, from + n). */
function expectedRows(from: number, n: number): Float32Array {
  const out = new Float32Array(n * DIM);
  for (let i = 0; i < n; i++) out.set(rowValues(from + i, DIM), i * DIM);
  return out;
}

function shuffle<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

test('client - publishes chunks of max_batch_size rows with the protocol headers, on the priority subject the rule picks', async () => {
  const { service, peer } = await serve({ max_batch_size: 4, priority_batch_size: 2 });
  const bc = await client(service);
  const names = serviceNames(service);

  await bc.encode(['one', 'two']);
  assert.deepEqual(peer!.subjects, [names.jobs.high], 'a request of ≤ priority_batch_size rows is urgent');

  const texts = Array.from({ length: 10 }, (_, i) => `sentence ${i}`);
  const before = Date.now();
  const v = await bc.encode(texts);
  assert.deepEqual(v.shape, [10, DIM]);
  const jobs = peer!.jobs.slice(1);
  assert.deepEqual(peer!.subjects.slice(1), [names.jobs.bulk, names.jobs.bulk, names.jobs.bulk]);
  assert.deepEqual(
    jobs.map((j) => [j.offset, j.texts.length]).sort((a, b) => a[0]! - b[0]!),
    [
      [0, 4],
      [4, 4],
      [8, 2],
    ],
  );
  assert.equal(new Set(jobs.map((j) => j.id)).size, 1, 'one request id for all chunks');
  for (const job of jobs) {
    assert.equal(job.reply, bc.resultsSubject);
    assert.equal(job.reply, `bertq.v1.${service}.results.${bc.identity}`);
    assert.ok(
      job.deadline !== undefined &&
        job.deadline >= before + REQUEST_TIMEOUT_MS &&
        job.deadline <= Date.now() + REQUEST_TIMEOUT_MS,
    );
    assert.deepEqual(job.texts, texts.slice(job.offset, job.offset + job.texts.length));
  }
  assert.equal(bc.status.numChunks, 4);
  assert.equal(bc.status.maxChunkRows, 4);
});

test('client - a maxChunkRows below the server limit is used, one above it is lowered to it', async () => {
  const { service, peer } = await serve({ max_batch_size: 4, priority_batch_size: 1 });
  const small = await client(service, { maxChunkRows: 3 });
  await small.encode(['a', 'b', 'c', 'd', 'e']);
  assert.deepEqual(peer!.jobs.map((j) => j.texts.length).sort(), [2, 3]);
  const big = await client(service, { maxChunkRows: 100 });
  await big.encode(['a', 'b', 'c', 'd', 'e']);
  assert.deepEqual(
    peer!.jobs
      .slice(2)
      .map((j) => j.texts.length)
      .sort(),
    [1, 4],
  );
});

test('client - re-publishing a job after a lost ack is de-duplicated by its Nats-Msg-Id', async () => {
  const { service } = await serve({}, false);
  const names = serviceNames(service);
  const [job] = prepareJobs({
    id: newRequestId(),
    reply: 'bertq.v1.x.results.y',
    deadline: Date.now() + REQUEST_TIMEOUT_MS,
    texts: ['hello'],
    isTokenized: false,
    showTokens: false,
    output: 'f32',
    maxChunkRows: 4,
    maxPayload: 1024 * 1024,
  });
  const ctx = {
    js: jetstream(nc),
    subject: names.jobs.high,
    service,
    stream: names.stream,
    requestId: 'r',
    deadline: Date.now() + REQUEST_TIMEOUT_MS,
  };
  const first = await publishJob(ctx, job!);
  const second = await publishJob(ctx, job!);
  assert.equal(first.duplicate, false);
  assert.equal(second.duplicate, true);
  assert.equal(second.seq, first.seq);
  const jsm = await jetstreamManager(nc);
  assert.equal((await jsm.streams.info(names.stream)).state.messages, 1);
});

test('client - reassembles rows whatever order frames arrive in, ignoring repeated frames', async () => {
  let seed = 7;
  const answer = (_job: unknown, frames: Frame[]) => shuffle([...frames, ...frames.slice(0, 2)], seed++);
  const { service } = await serve({ max_batch_size: 5, priority_batch_size: 1 }, { maxPayload: 600, answer });
  const bc = await client(service);
  const rows = 203;
  const v = await bc.encode(Array.from({ length: rows }, (_, i) => `s${i}`));
  assert.deepEqual(v.shape, [rows, DIM]);
  assert.deepEqual(Array.from(v.data), Array.from(expectedRows(0, rows)));
  assert.ok(bc.status.duplicateFrames > 0, 'the repeated frames were seen and dropped');
});

test('client - joins rows split into byte parts, with their tokens', async () => {
  const { service } = await serve({ max_batch_size: 8, priority_batch_size: 1 }, { dim: 200, maxPayload: 500 });
  const bc = await client(service);
  const { vectors, tokens } = await bc.encode(['hello world', 'good day'], { showTokens: true });
  assert.deepEqual(vectors.shape, [2, 200]);
  assert.deepEqual(Array.from(vectors.data.subarray(200)), Array.from(Float32Array.from(rowValues(1, 200))));
  assert.deepEqual(tokens, [
    ['[CLS]', 'hello', 'world', '[SEP]'],
    ['[CLS]', 'good', 'day', '[SEP]'],
  ]);
});

test('client - f16 and json wire formats give the same rows (f16 within half precision)', async () => {
  const { service } = await serve();
  const bc = await client(service);
  const texts = ['a', 'b', 'c', 'd', 'e', 'f'];
  const exact = expectedRows(0, texts.length);
  const json = await bc.encode(texts, { output: 'json' });
  assert.deepEqual(Array.from(json.data), Array.from(exact));
  const half = await bc.encode(texts, { output: 'f16' });
  for (let i = 0; i < exact.length; i++)
    assert.ok(Math.abs(half.data[i]! - exact[i]!) <= Math.abs(exact[i]!) * 2 ** -11 + 1e-7, `value ${i}`);
});

test('client - outputFmt list returns nested arrays', async () => {
  const { service } = await serve();
  const bc = await client<'list'>(service, { outputFmt: 'list' });
  const v: ListVectors = await bc.encode(['x', 'y', 'z', 'w', 'v']);
  assert.equal(v.length, 5);
  assert.deepEqual(v[3], Array.from(Float32Array.from(rowValues(3, DIM))));
});

test('client - token lists go as is_tokenized jobs', async () => {
  const { service, peer } = await serve();
  const bc = await client(service);
  const { tokens } = await bc.encode(
    [
      ['hello', 'world!'],
      ['thisis', 'it'],
    ],
    { isTokenized: true, showTokens: true },
  );
  assert.equal(peer!.jobs[0]!.isTokenized, true);
  assert.deepEqual(tokens[1], ['[CLS]', 'thisis', 'it', '[SEP]']);
});

test('client - an error frame fails its request with the typed error; other requests are not affected', async () => {
  const { service } = await serve(
    {},
    {
      fail: (job) =>
        (job.texts as unknown[]).includes('too long')
          ? new TooLongError(`texts[${job.offset}] has 600 tokens, over 512`)
          : undefined,
    },
  );
  const bc = await client(service);
  const [bad, good] = await Promise.allSettled([bc.encode(['too long']), bc.encode(['fine'])]);
  assert.equal(bad.status, 'rejected');
  assert.ok(bad.reason instanceof TooLongError && bad.reason.message === 'texts[0] has 600 tokens, over 512');
  assert.equal(good.status, 'fulfilled');
  assert.equal(bc.status.numFailed, 1);
  assert.equal(bc.status.numCompleted, 1);
});

test('client - one client serves many concurrent encode calls', async () => {
  const { service } = await serve({ max_batch_size: 3, priority_batch_size: 1 });
  const bc = await client(service);
  const results = await Promise.all(
    Array.from({ length: 40 }, (_, n) => bc.encode(Array.from({ length: 1 + (n % 7) }, (_, i) => `r${n}-${i}`))),
  );
  results.forEach((v, n) => {
    assert.deepEqual(v.shape, [1 + (n % 7), DIM]);
    assert.deepEqual(Array.from(v.data), Array.from(expectedRows(0, 1 + (n % 7))));
  });
  assert.equal(bc.status.pending, 0);
  assert.equal(bc.status.numRequest, 40);
});

test('client - clones sharing an identity all hear every result through listen(), and take only their own rows', async () => {
  const { service } = await serve({ max_batch_size: 2, priority_batch_size: 1 });
  const bc = await client(service);
  const clones = [await client(service, { identity: bc.identity }), await client(service, { identity: bc.identity })];
  const listeners = [bc, ...clones].map((c) => c.listen());
  // Two clones send at the same time; each gets exactly its own rows back.
  const [mine, theirs] = await Promise.all([bc.encode(['a', 'b', 'c']), clones[0]!.encode(['d', 'e', 'f', 'g', 'h'])]);
  assert.deepEqual(mine.shape, [3, DIM]);
  assert.deepEqual(theirs.shape, [5, DIM]);
  for (const [i, listener] of listeners.entries()) {
    const seen: Delivery<'ndarray'>[] = [];
    while (seen.length < 5) seen.push((await listener.next()).value as Delivery<'ndarray'>);
    const rows = seen.reduce((n, d) => n + (d.kind === 'result' ? d.rows : 0), 0);
    assert.equal(rows, 8, `listener ${i} heard all 8 rows of both requests`);
    const own = seen.filter((d) => d.own).length;
    assert.equal(own, i === 0 ? 2 : i === 1 ? 3 : 0, `listener ${i} knows which frames its client sent`);
    const first = seen.find((d) => d.kind === 'result' && d.offset === 2 && d.rows === 1 && d.own === (i === 0));
    assert.ok(first !== undefined && first.kind === 'result');
    assert.deepEqual(Array.from((first.vectors as NdArray).data), Array.from(Float32Array.from(rowValues(2, DIM))));
    await listener.return!();
  }
  // Counted once each listener has heard everything (frames reach each client on its own schedule).
  assert.equal(bc.status.foreignFrames, 3, "the clone's 3 frames were seen and ignored by encode");
  assert.equal(clones[1]!.status.foreignFrames, 5);
});

test('client - non-blocking encode, then fetch() in completion order and fetchAll() in send order', async () => {
  const { service } = await serve({ max_batch_size: 4, priority_batch_size: 1 });
  const bc = await client(service);
  const ids = [
    await bc.encode(['a'], { blocking: false }),
    await bc.encode(['b', 'c'], { blocking: false }),
    await bc.encode(['d', 'e', 'f'], { blocking: false }),
  ];
  assert.equal(bc.status.unfetched, 3);
  const fetched = [];
  for await (const r of bc.fetch()) fetched.push(r);
  assert.deepEqual(fetched.map((r) => r.id).sort(), [...ids].sort());
  assert.equal(bc.status.unfetched, 0);

  const more = [
    await bc.encode(['x', 'y', 'z'], { blocking: false }),
    await bc.encode(['w'], { blocking: false, showTokens: true }),
  ];
  const all = await bc.fetchAll();
  assert.deepEqual(
    all.map((r) => r.id),
    more,
  );
  assert.deepEqual((all[0]!.vectors as NdArray).shape, [3, DIM]);
  assert.deepEqual(all[1]!.tokens, [['[CLS]', 'w', '[SEP]']]);
  assert.deepEqual(await bc.fetchAll(), []);
});

test('client - encodeAsync yields results in input order with a bounded number in flight', async () => {
  const { service } = await serve({ max_batch_size: 4, priority_batch_size: 1 });
  const bc = await client(service);
  let maxPending = 0;
  async function* batches() {
    for (let n = 0; n < 30; n++) {
      maxPending = Math.max(maxPending, bc.status.pending);
      yield Array.from({ length: 1 + (n % 5) }, (_, i) => `b${n}-${i}`);
    }
  }
  let n = 0;
  for await (const v of bc.encodeAsync(batches(), { maxInFlight: 3 })) {
    assert.deepEqual(v.shape, [1 + (n % 5), DIM], `batch ${n} in order`);
    n++;
  }
  assert.equal(n, 30);
  assert.ok(maxPending <= 3, `at most 3 requests in flight, saw ${maxPending}`);
  // Leaving early abandons what is still in flight.
  for await (const v of bc.encodeAsync([['a'], ['b'], ['c']], { maxInFlight: 2 })) {
    assert.deepEqual(v.shape, [1, DIM]);
    break;
  }
  assert.equal(bc.status.pending, 0);
});

test('client - serverConfig() returns the validated config and status reports client-side counters', async () => {
  const { service } = await serve({ max_batch_size: 4, priority_batch_size: 2 });
  const bc = await client(service);
  const config = await bc.serverConfig();
  assert.equal(config.max_batch_size, 4);
  assert.equal(config.service, service);
  await bc.encode(['a', 'b', 'c']);
  const s = bc.status;
  assert.equal(s.identity, bc.identity);
  assert.equal(s.service, service);
  assert.equal(s.numRequest, 1);
  assert.equal(s.numTotalSeq, 3);
  assert.equal(s.serverVersion, config.server_version);
  assert.match(s.server, /127\.0\.0\.1:\d+/);
  assert.match(s.clientVersion, /^\d+\.\d+\.\d+/);
});

test('client - uses a connection it is given and leaves it open on close()', async () => {
  const { service } = await serve();
  const own = await connect({ servers: server.url });
  const bc = await BertClient.connect({ nc: own, service, timeout: REQUEST_TIMEOUT_MS });
  assert.deepEqual((await bc.encode(['a'])).shape, [1, DIM]);
  await bc.close();
  assert.equal(own.isClosed(), false);
  await own.close();
});

test('client - job headers name the request and its offset exactly as the protocol spells them', () => {
  const [job] = prepareJobs({
    id: 'ABC',
    reply: 'bertq.v1.d.results.i',
    deadline: 5,
    texts: ['a'],
    isTokenized: false,
    showTokens: false,
    output: 'f32',
    maxChunkRows: 1,
    maxPayload: 1024,
  });
  assert.deepEqual(
    Object.keys(job!.headers).sort(),
    [HEADERS.deadline, HEADERS.id, HEADERS.msgId, HEADERS.offset, HEADERS.reply].sort(),
  );
});
