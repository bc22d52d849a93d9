import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OverloadedError, InternalError, BadRequestError } from '@bertq/protocol';
import { Batcher, type BatcherInput, type BatcherOptions, type Batch, type Priority } from '../src/core/batcher.js';

/** A clock the test moves by hand. */
function manualClock(start = 1_700_000_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

/** Rows of one job named `job`, one per length, with the given priority and deadline. */
function rows(
  job: string,
  lengths: number[],
  priority: Priority = 'bulk',
  deadline = Infinity,
): BatcherInput<string>[] {
  return lengths.map((tokens, row) => ({ job, row, tokens, priority, deadline }));
}

function make(opts: Partial<BatcherOptions> = {}, clock = manualClock()) {
  const batcher = new Batcher<string>({
    maxBatchTokens: 1000,
    maxBatchSize: 64,
    maxWaitMs: 100,
    maxQueuedRows: 10_000,
    now: clock.now,
    ...opts,
  });
  return { batcher, clock };
}

const ids = (batch: Batch<string> | undefined) => (batch?.entries ?? []).map((e) => `${e.job}/${e.row}`);

test('batcher - closes a batch at the token budget', () => {
  const { batcher } = make({ maxBatchTokens: 100 });
  batcher.push(rows('a', [20, 20, 20, 20, 20, 20]));
  const { batch } = batcher.nextBatch();
  // 5 rows × 20 = 100 fits exactly; a 6th would pad to 120.
  assert.equal(batch?.entries.length, 5);
  assert.equal(batch?.paddedTokens, 100);
  assert.equal(batch?.realTokens, 100);
  assert.equal(batcher.size, 1);
});

test('batcher - counts padding against the budget as longest row × rows', () => {
  const { batcher } = make({ maxBatchTokens: 100 });
  batcher.push(rows('a', [10, 10, 40, 40]));
  const { batch } = batcher.nextBatch();
  // 10,10,40 pads to 3 × 40 = 120 > 100, so only the two short rows go.
  assert.deepEqual(ids(batch), ['a/0', 'a/1']);
  assert.equal(batch?.maxTokens, 10);
  const second = batcher.nextBatch().batch;
  assert.deepEqual(ids(second), ['a/2', 'a/3']);
  assert.equal(second?.paddedTokens, 80);
});

test('batcher - closes a batch at the row cap', () => {
  const { batcher } = make({ maxBatchTokens: 1_000_000, maxBatchSize: 4 });
  batcher.push(rows('a', [5, 5, 5, 5, 5, 5, 5]));
  assert.equal(batcher.nextBatch().batch?.entries.length, 4);
  assert.equal(batcher.nextBatch().batch?.entries.length, 3);
  assert.equal(batcher.nextBatch().batch, undefined);
});

test('batcher - the entry that would overflow stays at the head of the next batch', () => {
  const clock = manualClock();
  // maxWaitMs 0 and a tick of time make every row "aged", i.e. strict FIFO: the order TEI uses.
  const { batcher } = make({ maxBatchTokens: 40, maxWaitMs: 0 }, clock);
  batcher.push(rows('a', [10, 10, 30, 5]));
  clock.advance(1);
  assert.deepEqual(ids(batcher.nextBatch().batch), ['a/0', 'a/1']);
  // a/3 (5 tokens) would have fit beside a/1 but must not jump the overflowing a/2.
  assert.deepEqual(ids(batcher.nextBatch().batch), ['a/2']);
  assert.deepEqual(ids(batcher.nextBatch().batch), ['a/3']);
});

test('batcher - a single entry larger than the budget still forms a batch of one', () => {
  const { batcher } = make({ maxBatchTokens: 64 });
  batcher.push(rows('big', [512]));
  batcher.push(rows('small', [8]));
  // shortest first: the small row goes alone (8 beside 512 would pad to 1024 > 64)
  assert.deepEqual(ids(batcher.nextBatch().batch), ['small/0']);
  const second = batcher.nextBatch().batch;
  assert.deepEqual(ids(second), ['big/0']);
  assert.equal(second?.paddedTokens, 512);
  assert.equal(batcher.size, 0);
});

test('batcher - serves high priority before bulk, strictly, even when bulk has waited longer', () => {
  const clock = manualClock();
  const { batcher } = make({ maxBatchTokens: 60, maxWaitMs: 10 }, clock);
  batcher.push(rows('bulk', [10, 10, 10]));
  clock.advance(1000); // bulk rows are long past maxWaitMs
  batcher.push(rows('high', [20, 20, 20, 20], 'high'));
  const first = batcher.nextBatch().batch;
  assert.deepEqual(ids(first), ['high/0', 'high/1', 'high/2']);
  // the last high row comes before any bulk row; bulk fills the room it leaves in the same batch
  const second = batcher.nextBatch().batch;
  assert.deepEqual(ids(second), ['high/3', 'bulk/0', 'bulk/1']);
  assert.deepEqual(ids(batcher.nextBatch().batch), ['bulk/2']);
});

test('batcher - shortest-first grouping pads less than FIFO on a mixed workload', () => {
  const lengths = Array.from({ length: 200 }, (_, i) => (i % 3 === 0 ? 120 : i % 3 === 1 ? 9 : 33));
  const paddedTotal = (fifo: boolean) => {
    const clock = manualClock();
    // FIFO = the same batcher with every row aged (maxWaitMs 0 and a tick of time).
    const { batcher } = make({ maxBatchTokens: 512, maxBatchSize: 32, maxWaitMs: fifo ? 0 : 60_000 }, clock);
    batcher.push(rows('mix', lengths));
    clock.advance(1);
    let padded = 0;
    let rowsOut = 0;
    for (let b = batcher.nextBatch().batch; b; b = batcher.nextBatch().batch) {
      padded += b.paddedTokens;
      rowsOut += b.entries.length;
    }
    assert.equal(rowsOut, lengths.length);
    return { padded, efficiency: batcher.stats().paddingEfficiency };
  };
  const sorted = paddedTotal(false);
  const fifo = paddedTotal(true);
  const real = lengths.reduce((a, b) => a + b, 0);
  assert.ok(sorted.padded < fifo.padded, `shortest-first padded ${sorted.padded} tokens, FIFO ${fifo.padded}`);
  assert.ok(sorted.efficiency > fifo.efficiency);
  assert.equal(sorted.efficiency, real / sorted.padded);
});

test('batcher - an entry older than maxWaitMs beats length ordering', () => {
  const clock = manualClock();
  const { batcher } = make({ maxBatchTokens: 100, maxWaitMs: 50 }, clock);
  batcher.push(rows('long', [80]));
  clock.advance(10);
  batcher.push(rows('short', [10, 10, 10, 10, 10]));
  // before maxWaitMs the short rows go first
  assert.deepEqual(ids(batcher.nextBatch().batch), ['short/0', 'short/1', 'short/2', 'short/3', 'short/4']);
  batcher.push(rows('short2', [10, 10]));
  assert.deepEqual(ids(batcher.nextBatch().batch), ['short2/0', 'short2/1']);
  batcher.push(rows('short3', [10, 10]));
  clock.advance(41); // 'long' has now waited 51 ms > 50; the short3 rows only 41 ms
  const batch = batcher.nextBatch().batch;
  assert.equal(ids(batch)[0], 'long/0');
  // 80 + one 10 pads to 160 > 100: the long row goes alone, the short ones next
  assert.deepEqual(ids(batch), ['long/0']);
  assert.deepEqual(ids(batcher.nextBatch().batch), ['short3/0', 'short3/1']);
});

test('batcher - aged entries are served oldest first among themselves', () => {
  const clock = manualClock();
  const { batcher } = make({ maxBatchTokens: 1000, maxWaitMs: 5 }, clock);
  batcher.push(rows('first', [90]));
  clock.advance(1);
  batcher.push(rows('second', [30]));
  clock.advance(1);
  batcher.push(rows('third', [60]));
  clock.advance(10);
  assert.deepEqual(ids(batcher.nextBatch().batch), ['first/0', 'second/0', 'third/0']);
});

test('batcher - drops entries whose deadline passed and hands them back', () => {
  const clock = manualClock();
  const { batcher } = make({}, clock);
  const t0 = clock.now();
  batcher.push(rows('soon', [10, 10], 'bulk', t0 + 100));
  batcher.push(rows('later', [10], 'high', t0 + 1000));
  batcher.push(rows('never', [10], 'bulk', Infinity));
  clock.advance(100); // deadline == now: no time left, dropped
  const { batch, expired } = batcher.nextBatch();
  assert.deepEqual(expired.map((e) => `${e.job}/${e.row}`).sort(), ['soon/0', 'soon/1']);
  assert.ok(expired.every((e) => e.enqueuedAt === t0 && e.deadline === t0 + 100));
  assert.deepEqual(ids(batch), ['later/0', 'never/0']);
  assert.equal(batcher.stats().dropped, 2);

  batcher.push(rows('late', [10], 'high', t0 + 150));
  clock.advance(60);
  // expire() alone lets the worker answer TIMEOUT while the model is busy
  assert.deepEqual(
    batcher.expire().map((e) => e.job),
    ['late'],
  );
  assert.equal(batcher.size, 0);
  assert.equal(batcher.stats().dropped, 3);
  assert.deepEqual(batcher.nextBatch(), { batch: undefined, expired: [] });
});

test('batcher - OVERLOADED refuses the whole push and leaves the queue unchanged', () => {
  const { batcher } = make({ maxQueuedRows: 5, maxBatchTokens: 1000 });
  batcher.push(rows('a', [10, 11, 12]));
  const before = batcher.stats();
  assert.throws(
    () => batcher.push(rows('b', [1, 2, 3])),
    (err: unknown) =>
      err instanceof OverloadedError &&
      err.code === 'OVERLOADED' &&
      /3 rows queued \+ 3 pushed > maxQueuedRows 5/.test(err.message),
  );
  assert.deepEqual(batcher.stats(), before);
  assert.equal(batcher.room(), 2);
  assert.deepEqual(ids(batcher.nextBatch().batch), ['a/0', 'a/1', 'a/2']);
  assert.equal(batcher.nextBatch().batch, undefined);
});

test('batcher - OVERLOADED also guards maxQueuedTokens', () => {
  const { batcher } = make({ maxQueuedRows: 100, maxQueuedTokens: 50 });
  batcher.push(rows('a', [20, 20]));
  assert.throws(() => batcher.push(rows('b', [5, 6])), /40 tokens queued \+ 11 pushed > maxQueuedTokens 50/);
  assert.deepEqual(batcher.stats().queued.bulk, { rows: 2, tokens: 40 });
  batcher.push(rows('c', [10]));
  assert.equal(batcher.room(), 0, 'token bound reached: no row can be promised');
});

test('batcher - room() counts rows that can still be accepted', () => {
  const clock = manualClock();
  const { batcher } = make({ maxQueuedRows: 10, maxBatchSize: 3 }, clock);
  assert.equal(batcher.room(), 10);
  batcher.push(rows('a', [5, 5, 5, 5], 'high'));
  batcher.push(rows('b', [5, 5, 5], 'bulk', clock.now() + 10));
  assert.equal(batcher.room(), 3);
  batcher.push(rows('c', [5, 5, 5]));
  assert.equal(batcher.room(), 0);
  assert.throws(() => batcher.push(rows('d', [5])), OverloadedError);
  batcher.nextBatch();
  assert.equal(batcher.room(), 3);
  clock.advance(10);
  assert.equal(batcher.expire().length, 3);
  assert.equal(batcher.room(), 6);
  assert.deepEqual(batcher.stats().queued, { high: { rows: 1, tokens: 5 }, bulk: { rows: 3, tokens: 15 } });
  assert.equal(batcher.clear().length, 4);
  assert.equal(batcher.room(), 10);
});

test('batcher - rejects malformed options and entries with a message naming the problem', () => {
  assert.throws(
    () => make({ maxBatchTokens: 0 }),
    (e: unknown) => e instanceof BadRequestError && /maxBatchTokens.*got 0/.test(e.message),
  );
  assert.throws(() => make({ maxWaitMs: -1 }), /maxWaitMs must be >= 0/);
  const { batcher } = make();
  assert.throws(
    () => batcher.push([...rows('a', [5]), { job: 'a', row: 1, tokens: 0, priority: 'bulk', deadline: Infinity }]),
    (e: unknown) => e instanceof InternalError && /entry 1 \(row 1\) has tokens=0/.test(e.message),
  );
  assert.equal(batcher.size, 0, 'a malformed push queues nothing');
});

/** mulberry32: a tiny seeded PRNG so the random workload is the same on every run. */
function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('batcher - on a seeded random workload every entry comes out exactly once and no batch breaks a limit', () => {
  let totalOverloads = 0;
  let totalExpired = 0;
  for (const seed of [1, 2, 3, 42, 1234]) {
    const rand = prng(seed);
    const clock = manualClock();
    const opts = { maxBatchTokens: 256, maxBatchSize: 16, maxWaitMs: 40, maxQueuedRows: 300 };
    const { batcher } = make(opts, clock);
    const seen = new Map<string, number>();
    const pushed = new Set<string>();
    const check = (out: ReturnType<typeof batcher.nextBatch>) => {
      const now = clock.now();
      totalExpired += out.expired.length;
      for (const e of out.expired) {
        assert.ok(e.deadline <= now, 'only entries past their deadline are dropped');
        seen.set(`${e.job}/${e.row}`, (seen.get(`${e.job}/${e.row}`) ?? 0) + 1);
      }
      const b = out.batch;
      if (!b) return;
      const longest = Math.max(...b.entries.map((e) => e.tokens));
      assert.ok(b.entries.length <= opts.maxBatchSize);
      assert.equal(b.maxTokens, longest);
      assert.equal(b.paddedTokens, longest * b.entries.length);
      assert.equal(
        b.realTokens,
        b.entries.reduce((s, e) => s + e.tokens, 0),
      );
      assert.ok(
        b.entries.length === 1 || b.paddedTokens <= opts.maxBatchTokens,
        `batch over budget: ${b.paddedTokens}`,
      );
      if (b.entries.some((e) => e.priority === 'bulk')) {
        assert.equal(batcher.stats().queued.high.rows, 0, 'bulk was served while high rows were queued');
      }
      for (const e of b.entries) {
        assert.ok(e.deadline > now, 'no expired entry is batched');
        seen.set(`${e.job}/${e.row}`, (seen.get(`${e.job}/${e.row}`) ?? 0) + 1);
      }
    };
    for (let step = 0; step < 400; step++) {
      if (rand() < 0.6) {
        const job = `s${seed}j${step}`;
        const n = 1 + Math.floor(rand() * 12);
        const priority: Priority = rand() < 0.3 ? 'high' : 'bulk';
        const deadline = rand() < 0.3 ? clock.now() + Math.floor(rand() * 200) : Infinity;
        const lengths = Array.from({ length: n }, () => 2 + Math.floor(rand() * (rand() < 0.1 ? 400 : 60)));
        const input = rows(job, lengths, priority, deadline);
        const room = batcher.room();
        try {
          batcher.push(input);
          input.forEach((e) => pushed.add(`${e.job}/${e.row}`));
          assert.ok(n <= room);
        } catch (err) {
          assert.ok(err instanceof OverloadedError);
          assert.ok(n > room);
          totalOverloads++;
        }
      } else {
        check(batcher.nextBatch());
      }
      clock.advance(Math.floor(rand() * 20));
    }
    for (let out = batcher.nextBatch(); out.batch || out.expired.length; out = batcher.nextBatch()) check(out);
    assert.equal(batcher.size, 0);
    assert.equal(seen.size, pushed.size, `seed ${seed}: ${pushed.size} pushed, ${seen.size} came out`);
    for (const [id, count] of seen) {
      assert.ok(pushed.has(id), `${id} came out but was never pushed`);
      assert.equal(count, 1, `${id} came out ${count} times`);
    }
  }
  // the workload must actually exercise the bound and the deadlines, or the test proves little
  assert.ok(totalOverloads > 0, 'no push was ever refused');
  assert.ok(totalExpired > 0, 'no entry ever expired');
});

test('batcher - drains a 20k-row mixed queue completely, every row once', () => {
  const rand = prng(7);
  const clock = manualClock();
  const { batcher } = make({ maxBatchTokens: 2048, maxBatchSize: 32, maxQueuedRows: 20_000 }, clock);
  for (let j = 0; j < 1000; j++) {
    const deadline = rand() < 0.5 ? clock.now() + 1_000_000 : Infinity;
    batcher.push(
      rows(
        `j${j}`,
        Array.from({ length: 20 }, () => 2 + Math.floor(rand() * 126)),
        j % 4 ? 'bulk' : 'high',
        deadline,
      ),
    );
  }
  let out = 0;
  for (let b = batcher.nextBatch().batch; b; b = batcher.nextBatch().batch) out += b.entries.length;
  assert.equal(out, 20_000);
  assert.equal(batcher.size, 0);
});

test('batcher - setMaxWaitMs moves the aging threshold for later batches', () => {
  const clock = manualClock();
  const { batcher } = make({ maxBatchTokens: 1_000, maxBatchSize: 1, maxWaitMs: 10 }, clock);
  batcher.push(rows('long', [50]));
  clock.advance(20);
  batcher.push(rows('short', [5]));
  // the long row has waited past 10 ms: it goes first although it is longer
  assert.equal(batcher.nextBatch().batch!.entries[0]!.job, 'long');
  batcher.push(rows('long2', [50]));
  clock.advance(20);
  batcher.setMaxWaitMs(1_000);
  batcher.push(rows('short2', [5]));
  // with a higher threshold the 20 ms wait is nothing: shortest first again
  assert.equal(batcher.nextBatch().batch!.entries[0]!.job, 'short');
  assert.throws(() => batcher.setMaxWaitMs(-1), /maxWaitMs/);
});

test('batcher - fair share: a client with a few rows queued goes ahead of a client with a backlog', () => {
  const { batcher } = make({ maxBatchSize: 8 });
  // A flood: 40 rows of one client, shorter than the victim's row, queued first.
  batcher.push(
    Array.from({ length: 40 }, (_, row) => ({
      job: 'flood',
      row,
      tokens: 10,
      priority: 'high' as const,
      deadline: Infinity,
      principal: 'flooder',
    })),
  );
  batcher.push([{ job: 'query', row: 0, tokens: 20, priority: 'high', deadline: Infinity, principal: 'victim' }]);
  // Without the fair share the query would wait five batches (shortest first: every flood row is shorter).
  const first = ids(batcher.nextBatch().batch);
  assert.equal(first[0], 'query/0', 'the light client first, in the next batch');
  assert.equal(first.length, 8, 'the busy client fills the rest');
  // A principal at the limit is still light; one over it is not; rows without a principal take no part.
  const { batcher: b2 } = make({ maxBatchSize: 4, fairShareRows: 2 });
  b2.push(rows('anon', [5, 5]));
  b2.push(
    [0, 1, 2].map((row) => ({
      job: 'heavy',
      row,
      tokens: 5,
      priority: 'bulk' as const,
      deadline: Infinity,
      principal: 'h',
    })),
  );
  b2.push(
    [0, 1].map((row) => ({
      job: 'light',
      row,
      tokens: 9,
      priority: 'bulk' as const,
      deadline: Infinity,
      principal: 'l',
    })),
  );
  assert.deepEqual(ids(b2.nextBatch().batch).slice(0, 2), ['light/0', 'light/1']);
  // A batch that serves a light client is short: 4 fair shares (64 rows), not the 256 it could hold.
  const { batcher: big } = make({ maxBatchSize: 256, maxBatchTokens: 100_000 });
  big.push(
    Array.from({ length: 600 }, (_, row) => ({
      job: 'flood',
      row,
      tokens: 10,
      priority: 'high' as const,
      deadline: Infinity,
      principal: 'flooder',
    })),
  );
  big.push([{ job: 'query', row: 0, tokens: 20, priority: 'high', deadline: Infinity, principal: 'victim' }]);
  const short = ids(big.nextBatch().batch);
  assert.equal(short[0], 'query/0');
  assert.equal(short.length, 64);
  assert.equal(ids(big.nextBatch().batch).length, 256, 'without light rows, full batches again');
  // Rows waiting longer than maxWaitMs still join a light batch: a backlog is slowed, never starved.
  const { batcher: aged, clock } = make({ maxBatchSize: 8, maxWaitMs: 100 });
  aged.push(rows('old', [10], 'high'));
  clock.advance(150);
  aged.push([{ job: 'query', row: 0, tokens: 20, priority: 'high', deadline: Infinity, principal: 'victim' }]);
  assert.deepEqual(ids(aged.nextBatch().batch).slice(0, 2), ['query/0', 'old/0']);
  // Off: shortest first, as before.
  const { batcher: off } = make({ maxBatchSize: 8, fairShareRows: 0 });
  off.push(rows('flood', Array(40).fill(10), 'high'));
  off.push([{ job: 'query', row: 0, tokens: 20, priority: 'high', deadline: Infinity, principal: 'victim' }]);
  assert.ok(!ids(off.nextBatch().batch).includes('query/0'));
});

test('batcher - fair share keeps high before bulk: a light client on the bulk lane does not pass high rows', () => {
  const { batcher } = make({ maxBatchSize: 4 });
  batcher.push(
    Array.from({ length: 20 }, (_, row) => ({
      job: 'busy',
      row,
      tokens: 10,
      priority: 'high' as const,
      deadline: Infinity,
      principal: 'h',
    })),
  );
  batcher.push([{ job: 'tail', row: 0, tokens: 10, priority: 'bulk', deadline: Infinity, principal: 'b' }]);
  assert.deepEqual(
    ids(batcher.nextBatch().batch),
    ['busy/0', 'busy/1', 'busy/2', 'busy/3'],
    'the high lane first, as without the fair share',
  );
});
