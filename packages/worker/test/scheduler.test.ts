import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Batch, BatcherInput } from '../src/core/batcher.js';
import { Scheduler, type SchedulerOptions } from '../src/core/scheduler.js';

/** `n` rows of `tokens` tokens each, of job `job`. */
function rows(job: string, n: number, tokens = 10): BatcherInput<string>[] {
  return Array.from({ length: n }, (_, row) => ({ job, row, tokens, priority: 'bulk', deadline: Infinity }));
}

interface Handed {
  batch: Batch<string>;
  /** The model returned the batch's output. */
  modelDone: () => void;
  /** `run` finished writing the output out. */
  finish: () => void;
}

/**
 * A scheduler whose model is a list of batches handed over: the test says by hand when the model is
 * done with one and when its output is written out, so what the scheduler does in between is exact.
 */
function make(opts: Partial<SchedulerOptions<string>> = {}) {
  const handed: Handed[] = [];
  const scheduler = new Scheduler<string>({
    maxBatchTokens: 10_000,
    maxBatchSize: 4,
    maxWaitMs: 1_000,
    maxQueuedRows: 1_000,
    isFinished: () => false,
    onExpired: () => undefined,
    onRunError: (err) => assert.fail(String(err)),
    run: (batch, modelDone) => new Promise<void>((finish) => handed.push({ batch, modelDone, finish })),
    ...opts,
  });
  return { scheduler, handed };
}

const settle = () => new Promise((r) => setImmediate(r));

test('scheduler - one batch at a time: rows that arrive while the model computes wait and batch together', async () => {
  const { scheduler, handed } = make();
  scheduler.push(rows('a', 1));
  assert.equal(handed.length, 1, 'an idle model takes whatever is there');
  for (const job of ['b', 'c', 'd']) scheduler.push(rows(job, 1));
  assert.equal(handed.length, 1, 'nothing more goes to a busy model');
  assert.equal(scheduler.size, 3);
  handed[0]!.finish();
  await settle();
  assert.equal(handed.length, 2);
  assert.equal(handed[1]!.batch.entries.length, 3, 'the rows that waited run as one batch');
});

test('scheduler - the next batch goes to the model as soon as it returns one, before that one is written out', async () => {
  const { scheduler, handed } = make();
  scheduler.push(rows('a', 8));
  assert.equal(handed.length, 1);
  assert.equal(scheduler.unencodedRows, 8, 'four rows wait, four are with the model');
  handed[0]!.modelDone();
  assert.equal(handed.length, 2, 'handed over while the first batch is still being written out');
  assert.equal(scheduler.unencodedRows, 4, 'the first batch is encoded');
  handed[0]!.modelDone(); // a second call, and the settling, change nothing
  handed[0]!.finish();
  await settle();
  assert.equal(handed.length, 2);
  assert.ok(scheduler.computing);
  handed[1]!.finish();
  await settle();
  assert.equal(scheduler.computing, false);
  assert.equal(scheduler.unencodedRows, 0);
});

test('scheduler - a run that fails frees the model for the next batch', async () => {
  const failures: unknown[] = [];
  let calls = 0;
  const scheduler = new Scheduler<string>({
    maxBatchTokens: 10_000,
    maxBatchSize: 2,
    maxWaitMs: 1_000,
    maxQueuedRows: 1_000,
    isFinished: () => false,
    onExpired: () => undefined,
    onRunError: (err) => failures.push(err),
    run: async () => {
      calls++;
      if (calls === 1) throw new Error('bookkeeping failed');
    },
  });
  scheduler.push(rows('a', 4));
  await settle();
  await settle();
  assert.equal(calls, 2);
  assert.equal(failures.length, 1);
  assert.equal(scheduler.unencodedRows, 0);
});
