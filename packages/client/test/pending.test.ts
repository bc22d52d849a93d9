import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TimeoutError, TooLongError, InternalError, decodeFrame, encodeResultFrames } from '@bertq/protocol';
import type { FrameReport } from '../src/types.js';
import { PendingRequest } from '../src/pending.js';
import { errorFrame, resultFrames, rowValues } from './frames.js';

/** Generous: only bounds a test that would otherwise hang. */
const FAR_DEADLINE_MS = 60_000;
const SHORT_TIMEOUT_MS = 50;

function request(rows: number, timeoutMs = FAR_DEADLINE_MS) {
  const settled: Array<{ id: string; error: unknown }> = [];
  const pending = new PendingRequest({
    id: 'R1',
    lane: 'high',
    rows,
    deadline: Date.now() + timeoutMs,
    timeoutMs,
    onSettled: (r, error) => settled.push({ id: r.id, error }),
  });
  return { pending, settled };
}

test('pending - reassembles rows by offset whatever order the frames arrive in', async () => {
  const { pending, settled } = request(10);
  const frames = [...resultFrames('R1', 6, 4), ...resultFrames('R1', 0, 3), ...resultFrames('R1', 3, 3)];
  for (const f of frames) assert.equal(pending.accept(f), 'rows');
  const result = await pending.promise;
  assert.deepEqual(result.shape, [10, 4]);
  for (let r = 0; r < 10; r++)
    assert.deepEqual(
      Array.from(result.data.subarray(r * 4, r * 4 + 4)),
      Array.from(Float32Array.from(rowValues(r, 4))),
    );
  assert.deepEqual(settled, [{ id: 'R1', error: undefined }]);
});

test('pending - ignores duplicate frames from a redelivered job', async () => {
  const { pending } = request(4);
  const [first] = resultFrames('R1', 0, 2);
  assert.equal(pending.accept(first!), 'rows');
  assert.equal(pending.accept(first!), 'duplicate');
  for (const f of resultFrames('R1', 2, 2)) pending.accept(f);
  assert.equal((await pending.promise).shape[0], 4);
  assert.equal(pending.accept(first!), 'ignored');
});

test('pending - an error frame fails the whole request with the same typed error', async () => {
  const { pending, settled } = request(4);
  for (const f of resultFrames('R1', 0, 2)) pending.accept(f);
  assert.equal(pending.accept(errorFrame('R1', 2, 2, new TooLongError('texts[3] has 600 tokens, over 512'))), 'failed');
  await assert.rejects(
    pending.promise,
    (e: unknown) => e instanceof TooLongError && e.message === 'texts[3] has 600 tokens, over 512',
  );
  assert.ok(settled[0]!.error instanceof TooLongError);
});

test('pending - the deadline fails the request with TIMEOUT naming the missing rows', async () => {
  const { pending } = request(10, SHORT_TIMEOUT_MS);
  for (const f of resultFrames('R1', 0, 3)) pending.accept(f);
  for (const f of resultFrames('R1', 7, 1)) pending.accept(f);
  const started = Date.now();
  await assert.rejects(
    pending.promise,
    (e: unknown) => e instanceof TimeoutError && /4 of 10 rows received \(missing rows 3-6, 8-9\)/.test(e.message),
  );
  assert.ok(Date.now() - started < SHORT_TIMEOUT_MS + 1000);
});

test('pending - joins a row split into byte parts', async () => {
  const { pending } = request(2);
  const frames = resultFrames('R1', 0, 2, { dim: 300, maxPayload: 700 });
  assert.ok(
    frames.some((f) => f.kind === 'result' && f.part !== undefined),
    'the fixture really splits rows',
  );
  for (const f of frames.reverse()) pending.accept(f);
  const result = await pending.promise;
  assert.deepEqual(Array.from(result.data.subarray(300, 600)), Array.from(Float32Array.from(rowValues(1, 300))));
});

test('pending - a frame that cannot belong to the request fails it as INTERNAL', async () => {
  const { pending } = request(2);
  assert.equal(pending.accept(resultFrames('R1', 1, 3)[0]!), 'failed');
  await assert.rejects(pending.promise, InternalError);
});

test('pending - settles once: a late failure after success changes nothing', async () => {
  const { pending, settled } = request(1);
  for (const f of resultFrames('R1', 0, 1)) pending.accept(f);
  pending.fail(new Error('late'));
  await pending.promise;
  assert.equal(settled.length, 1);
});

test('pending - reports each frame that brings new rows to onFrame, with its worker and stage timings', async () => {
  const reports: FrameReport[] = [];
  const pending = new PendingRequest({
    id: 'R1',
    lane: 'high',
    rows: 3,
    deadline: Date.now() + FAR_DEADLINE_MS,
    timeoutMs: FAR_DEADLINE_MS,
    onSettled: () => {},
    onFrame: (report) => {
      reports.push(report);
      throw new Error('a failing metrics callback must not fail the request');
    },
  });
  const timings = { tokenization: 0.5, queue: 1.25, inference: 7, total: 9.5 };
  const frame = (offset: number, rows: number) =>
    encodeResultFrames(
      {
        id: 'R1',
        offset,
        rows,
        shape: [2],
        dtype: 'f32',
        data: new Float32Array(rows * 2).fill(offset),
        worker: 'W7',
        timings,
      },
      { maxPayload: 1024 * 1024 },
    ).map((f) => decodeFrame(f.headers, f.body))[0]!;
  assert.equal(pending.accept(frame(0, 2)), 'rows');
  assert.equal(pending.accept(frame(0, 2)), 'duplicate');
  assert.equal(pending.accept(frame(2, 1)), 'rows');
  assert.deepEqual((await pending.promise).shape, [3, 2]);
  assert.deepEqual(reports, [
    { id: 'R1', offset: 0, rows: 2, worker: 'W7', timings },
    { id: 'R1', offset: 2, rows: 1, worker: 'W7', timings },
  ]);
});
