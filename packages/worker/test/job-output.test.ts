import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InternalError } from '@bertq/protocol';
import { JobOutput } from '../src/core/job-output.js';

/** Output whose every value tells where it came from: batch position × 100 + index within the row. */
function positional(shape: number[]): { data: Float32Array; shape: number[] } {
  const width = shape.slice(1).reduce((a, b) => a * b, 1);
  const data = new Float32Array(shape[0]! * width);
  for (let p = 0; p < shape[0]!; p++) for (let i = 0; i < width; i++) data[p * width + i] = p * 100 + i;
  return { data, shape };
}

const BIG = 1 << 20;
const SMALL = 1; // forces run mode: no job fits in one byte

for (const [mode, bufferBytes] of [
  ['one buffer', BIG],
  ['runs', SMALL],
] as const) {
  test(`job output (${mode}) - takes a job's rows out of mixed batches and hands them out as runs in row order`, () => {
    const out = new JobOutput(5, [2], bufferBytes);
    // batch 1: positions 0..4 hold job rows 2, (other job), 0, 1, 4
    out.write(positional([5, 2]), 5, [
      { row: 2, at: 0 },
      { row: 0, at: 2 },
      { row: 1, at: 3 },
      { row: 4, at: 4 },
    ]);
    assert.equal(out.rowsDone, 4);
    assert.equal(out.complete, false);
    assert.equal(out.pendingBytes, 4 * 2 * 4);
    const first = out.take();
    assert.deepEqual(
      first.map((r) => [r.firstRow, r.rows, [...r.data]]),
      [
        [0, 3, [200, 201, 300, 301, 0, 1]],
        [4, 1, [400, 401]],
      ],
    );
    assert.equal(out.pendingBytes, 0);
    out.write(positional([2, 2]), 2, [{ row: 3, at: 1 }]);
    assert.equal(out.complete, true);
    assert.deepEqual(
      out.take().map((r) => [r.firstRow, r.rows, [...r.data]]),
      [[3, 1, [100, 101]]],
    );
    assert.deepEqual(out.take(), [], 'nothing is handed out twice');
  });

  test(`job output (${mode}) - pads token-level rows with zeros, or cuts them, to the job's row length`, () => {
    const padded = new JobOutput(1, [3, 2], bufferBytes);
    padded.write(positional([1, 2, 2]), 1, [{ row: 0, at: 0 }]);
    assert.deepEqual([...padded.take()[0]!.data], [0, 1, 2, 3, 0, 0]);
    const cut = new JobOutput(1, [1, 2], bufferBytes);
    cut.write(positional([1, 2, 2]), 1, [{ row: 0, at: 0 }]);
    assert.deepEqual([...cut.take()[0]!.data], [0, 1]);
  });
}

test('job output - one buffer: rows are copied once into it, and every run is a view of it', () => {
  const out = new JobOutput(4, [2], BIG);
  const batch1 = positional([2, 2]);
  out.write(batch1, 2, [
    { row: 0, at: 0 },
    { row: 1, at: 1 },
  ]);
  const [first] = out.take();
  out.write(positional([2, 2]), 2, [
    { row: 2, at: 0 },
    { row: 3, at: 1 },
  ]);
  const [second] = out.take();
  assert.ok(first!.data.buffer === second!.data.buffer, 'both runs are views of the one job buffer');
  assert.ok(first!.data.buffer !== batch1.data.buffer, 'the rows were copied out of the model output');
  assert.equal(first!.data.buffer.byteLength, 4 * 2 * 4, 'the buffer holds the whole job');
  // Run mode (a job over the limit) makes separate arrays: the check above can tell them apart.
  const runs = new JobOutput(4, [2], SMALL);
  runs.write(positional([2, 2]), 2, [
    { row: 0, at: 0 },
    { row: 1, at: 1 },
  ]);
  const [a] = runs.take();
  runs.write(positional([2, 2]), 2, [
    { row: 2, at: 0 },
    { row: 3, at: 1 },
  ]);
  const [b] = runs.take();
  assert.ok(a!.data.buffer !== b!.data.buffer);
});

test('job output - runs of several batches that continue each other travel as one', () => {
  const out = new JobOutput(4, [1], SMALL);
  out.write(positional([2, 1]), 2, [
    { row: 2, at: 0 },
    { row: 3, at: 1 },
  ]);
  out.write(positional([2, 1]), 2, [
    { row: 0, at: 0 },
    { row: 1, at: 1 },
  ]);
  assert.deepEqual(
    out.take().map((r) => [r.firstRow, r.rows, [...r.data]]),
    [[0, 4, [0, 100, 0, 100]]],
  );
});

test('job output - refuses output whose rows or shape do not match the batch', () => {
  const out = new JobOutput(1, [4], BIG);
  assert.throws(
    () => out.write(positional([2, 4]), 1, [{ row: 0, at: 0 }]),
    (err: Error) => err instanceof InternalError && /2 rows for a batch of 1/.test(err.message),
  );
  assert.throws(() => out.write(positional([1]), 1, [{ row: 0, at: 0 }]), /expected 2 or 3 axes/);
  assert.throws(() => out.write(positional([1, 3]), 1, [{ row: 0, at: 0 }]), /rows of 3 values; the job expects \[4\]/);
});
