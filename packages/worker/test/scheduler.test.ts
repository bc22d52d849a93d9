import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Batch, BatcherInput } from '../src/core/batcher.js';
import { Scheduler, type SchedulerOptions } from '../src/core/scheduler.js';

/** `n` rows of `tokens` tokens each, of job `job`. */
function rows(job: string, n: number, tokens = 10): BatcherInput<string>[] {
  return Array.from({ length: n }, (_, row) => ({ job, row, tokens, priority: 'bulk', deadline: Infinity }));
}

/**
 * A scheduler whose model is a list of batches handed over and not yet finished: the test settles them
 * by hand, so what the scheduler hands over while the model is busy is exact.
 */
function make(opts: Partial<SchedulerOptions<string>> = {}) {
  const handed: Array<{ batch: Batch<string>; finish: () => void }> = [];
  const scheduler = new Scheduler<string>({
    maxBatchTokens: 10_000,
    maxBatchSize: 4,
    maxWaitMs: 1_000,
    maxQueuedRows: 1_000,
    isFinished: () => false,
    onExpired: () => undefined,
    onRunError: (err) => assert.fail(String(err)),
    run: (batch) =>
      new Promise<void>((resolve) => {
        handed.push({ batch, finish: resolve });
      }),
    ...opts,
  });
  /** Finishes the oldest batch the model holds and lets the scheduler react. */
  const finishOldest = async () => {
    const first = handed.shift();
    assert.ok(first, 'no batch to finish');
    first.finish();
    await new Promise((r) => setImmediate(r));
  };
  return { scheduler, handed, finishOldest };
}

test('scheduler - one batch at a time by default: rows wait while the model computes', async () => {
  const { scheduler, handed, finishOldest } = make();
  scheduler.push(rows('a', 12));
  assert.equal(handed.length, 1);
  assert.equal(scheduler.inFlight, 1);
  assert.equal(scheduler.size, 8);
  await finishOldest();
  assert.equal(handed.length, 1, 'the next batch starts when the first settles');
  assert.equal(scheduler.size, 4);
});

test('scheduler - with maxInFlight 2, a backlog that fills a batch goes to the model ahead', async () => {
  const { scheduler, handed, finishOldest } = make({ maxInFlight: 2 });
  scheduler.push(rows('a', 12));
  assert.equal(handed.length, 2, 'a full second batch is handed over while the first computes');
  assert.deepEqual(
    handed.map((h) => h.batch.entries.length),
    [4, 4],
  );
  assert.equal(scheduler.inFlight, 2);
  await finishOldest();
  assert.equal(handed.length, 2, 'the third batch follows as soon as one settles');
  assert.equal(scheduler.size, 0);
  await finishOldest();
  await finishOldest();
  assert.equal(scheduler.inFlight, 0);
});

test('scheduler - a batch ahead is formed only from a full backlog, so small arrivals keep batching', async () => {
  const { scheduler, handed, finishOldest } = make({ maxInFlight: 2 });
  scheduler.push(rows('a', 1));
  assert.equal(handed.length, 1, 'an idle model takes whatever is there');
  // One-row jobs arrive while the model computes: none goes ahead until they would fill a batch.
  for (const job of ['b', 'c', 'd']) scheduler.push(rows(job, 1));
  assert.equal(handed.length, 1);
  assert.equal(scheduler.size, 3);
  await finishOldest();
  assert.equal(handed.length, 1);
  assert.equal(handed[0]!.batch.entries.length, 3, 'the rows that waited run as one batch');
  // Enough rows to fill a batch: it goes ahead at once.
  scheduler.push(rows('e', 4));
  assert.equal(handed.length, 2);
  assert.equal(handed[1]!.batch.entries.length, 4);
});

test('scheduler - the token budget counts as a full batch too', () => {
  const { scheduler, handed } = make({ maxInFlight: 2, maxBatchTokens: 100, maxBatchSize: 64 });
  scheduler.push(rows('a', 1, 50));
  scheduler.push(rows('b', 1, 50));
  assert.equal(handed.length, 1, '50 tokens queued do not fill a 100-token batch');
  scheduler.push(rows('c', 1, 50));
  assert.equal(handed.length, 2, '100 tokens queued do');
  assert.equal(handed[1]!.batch.entries.length, 2);
});

test('scheduler - never more than maxInFlight batches, whatever the backlog', () => {
  const { scheduler, handed } = make({ maxInFlight: 2 });
  scheduler.push(rows('a', 40));
  assert.equal(handed.length, 2);
  assert.equal(scheduler.size, 32);
});

test('scheduler - rows in batches the model has not returned still count as not encoded', async () => {
  const { scheduler, finishOldest } = make({ maxInFlight: 2 });
  scheduler.push(rows('a', 10));
  assert.equal(scheduler.size, 2, 'two rows wait for a batch');
  assert.equal(scheduler.unencodedRows, 10, 'and eight are with the model');
  assert.ok(scheduler.backlogged);
  await finishOldest();
  assert.equal(scheduler.unencodedRows, 6);
  await finishOldest();
  assert.equal(scheduler.unencodedRows, 2);
  assert.equal(scheduler.backlogged, false, 'one batch computing and nothing behind it');
  await finishOldest();
  assert.equal(scheduler.unencodedRows, 0);
});
