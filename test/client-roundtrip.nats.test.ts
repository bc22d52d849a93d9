/**
 * `bertq encode` round trip: vectors that go client → JetStream → worker → client equal what the same
 * Encoder computes in-process, for every pooling strategy and every client option that changes what
 * comes back (tokens, pre-tokenized input, list output, f16 and json on the wire).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { BertClient, type NdArray } from '@bertq/client';
import { POOLING_STRATEGIES, type Encoder } from '@bertq/model';
import { TooLongError } from '@bertq/protocol';
import { startNatsServer, type NatsServer } from '@bertq/testing';
import { startWorker, type WorkerHandle } from '@bertq/worker';
import { SENTENCES, TOLERANCE, freshService, loadEncoder, maxAbsDiff } from './client-fixtures.js';

/** Loading a graph, starting a worker and encoding a few rows, per pooling strategy, on a shared 2-core box. */
const STRATEGY_TEST_TIMEOUT_MS = 60_000;
const REQUEST_TIMEOUT_MS = 20_000;
/** float16 keeps 11 significant bits: relative error ≤ 2^-11, plus a floor for values near 0. */
const F16_RELATIVE = 2 ** -11;
const F16_ABSOLUTE = 1e-4;

let server: NatsServer;
let nc: NatsConnection;

before(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
});

after(async () => {
  await nc?.close();
  await server?.stop();
});

/** One worker on its own service, serving `encoder`, and a client for it; all closed after `fn`. */
async function withService(
  encoder: Encoder,
  fn: (bc: BertClient, service: string) => Promise<void>,
  clientOptions: { outputFmt?: 'list' } = {},
): Promise<void> {
  const service = freshService('rt');
  const worker: WorkerHandle = await startWorker({
    nc,
    service,
    engine: encoder,
    stream: { storage: 'memory' },
    showTokensToClient: true,
  });
  const bc = await BertClient.connect({ servers: server.url, service, timeout: REQUEST_TIMEOUT_MS, ...clientOptions });
  try {
    await fn(bc as unknown as BertClient, service);
  } finally {
    await bc.close();
    await worker.stop();
  }
}

for (const strategy of POOLING_STRATEGIES) {
  test(`client round trip - ${strategy} vectors through the fleet equal Encoder.encode in-process`, {
    timeout: STRATEGY_TEST_TIMEOUT_MS,
  }, async () => {
    const encoder = await loadEncoder({ poolingStrategy: strategy });
    try {
      const local = await encoder.encode(SENTENCES);
      await withService(encoder, async (bc) => {
        const remote = await bc.encode(SENTENCES);
        assert.deepEqual(remote.shape, local.shape);
        const diff = maxAbsDiff(remote.data, local.data);
        assert.ok(diff <= TOLERANCE, `${strategy}: max |fleet - in-process| = ${diff}`);
      });
    } finally {
      await encoder.close();
    }
  });
}

test('client round trip - requests split into many small chunks come back whole and in order', {
  timeout: STRATEGY_TEST_TIMEOUT_MS,
}, async () => {
  const encoder = await loadEncoder();
  try {
    const local = await encoder.encode(SENTENCES);
    const service = freshService('rt');
    const worker = await startWorker({ nc, service, engine: encoder, stream: { storage: 'memory' } });
    const bc = await BertClient.connect({ servers: server.url, service, timeout: REQUEST_TIMEOUT_MS, maxChunkRows: 3 });
    try {
      const remote = await bc.encode(SENTENCES);
      assert.ok(maxAbsDiff(remote.data, local.data) <= TOLERANCE);
      assert.equal(bc.status.numChunks, Math.ceil(SENTENCES.length / 3));
    } finally {
      await bc.close();
      await worker.stop();
    }
  } finally {
    await encoder.close();
  }
});

test('client round trip - a 1 MB line is cut to what max_seq_len uses and encodes as it would whole (truncate, not fail)', {
  timeout: STRATEGY_TEST_TIMEOUT_MS,
}, async () => {
  const encoder = await loadEncoder();
  try {
    const line = `the quick brown fox, ${'jumps over the lazy dog near the river bank '.repeat(24_000)}`;
    const pair = `${'first half of a pair '.repeat(50_000)} ||| ${'second half of it '.repeat(50_000)}`;
    assert.ok(line.length > 1_000_000 && pair.length > 1_000_000);
    const local = await encoder.encode([line, pair, 'hello world']);
    await withService(encoder, async (bc) => {
      const remote = await bc.encode([line, pair, 'hello world']);
      const diff = maxAbsDiff(remote.data, local.data);
      assert.ok(diff <= TOLERANCE, `the vectors of the whole lines (max diff ${diff})`);
      assert.equal(bc.status.numChunks, 1, 'one small job, not a TOO_LARGE one');
    });
  } finally {
    await encoder.close();
  }
});

test('client round trip - showTokens, isTokenized, list output, f16 and json against a real worker', {
  timeout: STRATEGY_TEST_TIMEOUT_MS,
}, async () => {
  const encoder = await loadEncoder();
  try {
    const local = await encoder.encode(SENTENCES, { showTokens: true });
    const tokenLists = [
      ['hello', 'world!'],
      ['thisis', 'it'],
    ];
    const localTokenized = await encoder.encode(tokenLists, { isTokenized: true, showTokens: true });

    await withService(encoder, async (bc) => {
      const { vectors, tokens } = await bc.encode(SENTENCES, { showTokens: true });
      assert.ok(maxAbsDiff(vectors.data, local.data) <= TOLERANCE);
      assert.deepEqual(tokens, local.tokens);
      assert.deepEqual(tokens[0], ['[CLS]', 'hello', 'world', '[SEP]']);

      const pre = await bc.encode(tokenLists, { isTokenized: true, showTokens: true });
      assert.deepEqual(pre.tokens, localTokenized.tokens);
      assert.ok(pre.tokens[0]!.includes('[UNK]'), "'world!' is not one word piece: the server marks it [UNK]");
      assert.ok(maxAbsDiff(pre.vectors.data, localTokenized.data) <= TOLERANCE);

      const json = await bc.encode(SENTENCES, { output: 'json' });
      assert.ok(
        maxAbsDiff(json.data, local.data) <= TOLERANCE,
        'json carries float32 exactly (shortest round-trip decimals)',
      );

      const half = await bc.encode(SENTENCES, { output: 'f16' });
      assert.deepEqual(half.shape, local.shape);
      for (let i = 0; i < local.data.length; i++) {
        const want = local.data[i]!;
        assert.ok(
          Math.abs(half.data[i]! - want) <= Math.abs(want) * F16_RELATIVE + F16_ABSOLUTE,
          `value ${i}: ${half.data[i]} vs ${want}`,
        );
      }
    });

    await withService(
      encoder,
      async (bc) => {
        const list = (await bc.encode(SENTENCES)) as unknown as number[][];
        assert.equal(list.length, SENTENCES.length);
        const dims = local.shape[1]!;
        list.forEach((row, i) => {
          assert.equal(row.length, dims);
          assert.ok(maxAbsDiff(row, local.data.subarray(i * dims, (i + 1) * dims)) <= TOLERANCE);
        });
      },
      { outputFmt: 'list' },
    );
  } finally {
    await encoder.close();
  }
});

test('client round trip - encodeAsync, non-blocking encode with fetch() and fetchAll() against a real worker', {
  timeout: STRATEGY_TEST_TIMEOUT_MS,
}, async () => {
  const encoder = await loadEncoder();
  try {
    const batches = [SENTENCES.slice(0, 3), SENTENCES.slice(3, 4), SENTENCES.slice(4)];
    const expected = await Promise.all(batches.map((b) => encoder.encode(b)));
    await withService(encoder, async (bc) => {
      let i = 0;
      for await (const v of bc.encodeAsync(batches, { maxInFlight: 2 })) {
        assert.ok(maxAbsDiff(v.data, expected[i]!.data) <= TOLERANCE, `batch ${i} in input order`);
        i++;
      }
      assert.equal(i, batches.length);

      const ids: string[] = [];
      for (const b of batches) ids.push(await bc.encode(b, { blocking: false }));
      const seen = new Map<string, NdArray>();
      for await (const r of bc.fetch()) seen.set(r.id, r.vectors);
      assert.deepEqual([...seen.keys()].sort(), [...ids].sort());
      ids.forEach((id, k) => assert.ok(maxAbsDiff(seen.get(id)!.data, expected[k]!.data) <= TOLERANCE));

      for (const b of batches) await bc.encode(b, { blocking: false });
      const all = await bc.fetchAll();
      all.forEach((r, k) =>
        assert.ok(maxAbsDiff(r.vectors.data, expected[k]!.data) <= TOLERANCE, `fetchAll keeps send order (${k})`),
      );

      // bert-as-service's fetch_all(concat=True): one array of every row, in send order.
      for (const b of batches) await bc.encode(b, { blocking: false });
      const joined = await bc.fetchAll({ concat: true });
      const whole = await encoder.encode(batches.flat());
      assert.deepEqual(joined.shape, whole.shape);
      assert.ok(maxAbsDiff(joined.data, whole.data) <= TOLERANCE);
    });
  } finally {
    await encoder.close();
  }
});

test('client round trip - check_length: true refuses a row max_seq_len would cut, "warn" (default) warns, false is silent', {
  timeout: STRATEGY_TEST_TIMEOUT_MS,
}, async () => {
  const encoder = await loadEncoder({ maxSeqLen: 8 });
  const long = 'one two three four five six seven eight nine ten eleven twelve';
  const warnings: string[] = [];
  const onWarning = (w: Error) => {
    if (w.name === 'BertqLengthWarning') warnings.push(w.message);
  };
  process.on('warning', onWarning);
  try {
    await withService(encoder, async (bc) => {
      await assert.rejects(
        bc.encode(['short one', long], { checkLength: true }),
        (e: unknown) =>
          e instanceof TooLongError &&
          /texts\[1\] has \d+ tokens with \[CLS\]\/\[SEP\], more than max_seq_len 8/.test(e.message),
      );
      const fine = await bc.encode(['short one', 'and another'], { checkLength: true });
      assert.deepEqual(fine.shape[0], 2, 'rows that fit pass the check');

      await bc.encode(['short one', long]); // default: warn
      await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on the next tick
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!, /1 of 2 rows of request \S+ reached max_seq_len 8 tokens and were probably cut/);

      await bc.encode(['short one', long], { checkLength: false });
      await bc.encode(['short one', 'and another']);
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(warnings.length, 1, 'no warning when silenced, nor for rows that fit');
    });
  } finally {
    process.off('warning', onWarning);
    await encoder.close();
  }
});
