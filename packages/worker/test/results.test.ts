import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InternalError } from '@bertq/protocol';
import { mergeRuns, splitBatchOutput } from '../src/core/results.js';

/** Output whose every value tells where it came from: batch position × 100 + index within the row. */
function positional(shape: number[]): { data: Float32Array; shape: number[] } {
  const width = shape.slice(1).reduce((a, b) => a * b, 1);
  const data = new Float32Array(shape[0]! * width);
  for (let p = 0; p < shape[0]!; p++) for (let i = 0; i < width; i++) data[p * width + i] = p * 100 + i;
  return { data, shape };
}

test('results - splits a batch into runs of consecutive rows per job, in row order', () => {
  const rows = [
    { job: 'a', row: 2 },
    { job: 'b', row: 0 },
    { job: 'a', row: 0 },
    { job: 'a', row: 1 },
    { job: 'a', row: 4 },
  ];
  const runs = splitBatchOutput(rows, positional([5, 2]));
  const summary = runs.map((r) => ({
    job: r.job,
    firstRow: r.firstRow,
    rows: r.rows,
    shape: r.rowShape,
    data: [...r.data],
  }));
  assert.deepEqual(summary, [
    // rows 0, 1, 2 of job a sat at batch positions 2, 3, 0
    { job: 'a', firstRow: 0, rows: 3, shape: [2], data: [200, 201, 300, 301, 0, 1] },
    { job: 'a', firstRow: 4, rows: 1, shape: [2], data: [400, 401] },
    { job: 'b', firstRow: 0, rows: 1, shape: [2], data: [100, 101] },
  ]);
});

test('results - pads token-level rows with zeros, or cuts them, to the requested length', () => {
  const rows = [{ job: 'a', row: 0 }];
  const padded = splitBatchOutput(rows, positional([1, 2, 2]), 3);
  assert.deepEqual(padded[0]!.rowShape, [3, 2]);
  assert.deepEqual([...padded[0]!.data], [0, 1, 2, 3, 0, 0]);
  const cut = splitBatchOutput(rows, positional([1, 2, 2]), 1);
  assert.deepEqual(cut[0]!.rowShape, [1, 2]);
  assert.deepEqual([...cut[0]!.data], [0, 1]);
  const asIs = splitBatchOutput(rows, positional([1, 2, 2]));
  assert.deepEqual(asIs[0]!.rowShape, [2, 2]);
});

test('results - refuses output whose rows do not match the batch', () => {
  assert.throws(
    () => splitBatchOutput([{ job: 'a', row: 0 }], positional([2, 4])),
    (err: Error) => err instanceof InternalError && /2 rows for a batch of 1/.test(err.message),
  );
  assert.throws(() => splitBatchOutput([{ job: 'a', row: 0 }], positional([1])), /expected 2 or 3 axes/);
});

test('results - runs that continue each other merge into one, in row order; a gap or another shape keeps them apart', () => {
  const run = (firstRow: number, rows: number, rowShape: number[] = [2]) => ({
    job: 'j',
    firstRow,
    rows,
    rowShape,
    data: Float32Array.from({ length: rows * rowShape.reduce((a, b) => a * b, 1) }, (_, i) => firstRow * 100 + i),
  });
  const merged = mergeRuns([run(3, 2), run(0, 3), run(5, 1), run(8, 1), run(9, 1, [3, 2])]);
  assert.deepEqual(
    merged.map((r) => [r.firstRow, r.rows, r.rowShape.join('x')]),
    [
      [0, 6, '2'],
      [8, 1, '2'],
      [9, 1, '3x2'],
    ],
  );
  // rows 0-2 then 3-4 then 5: the data follows row order
  assert.deepEqual([...merged[0]!.data.subarray(0, 2)], [0, 1]);
  assert.deepEqual([...merged[0]!.data.subarray(6, 8)], [300, 301]);
  assert.deepEqual([...merged[0]!.data.subarray(10, 12)], [500, 501]);
});
