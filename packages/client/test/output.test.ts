import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InternalError } from '@bertq/protocol';
import { formatVectors, toNestedList } from '../src/output.js';

test('list output - pooled rows become number[][] in row-major order', () => {
  const data = Float32Array.from([1, 2, 3, 4, 5, 6]);
  assert.deepEqual(toNestedList(data, [2, 3]), [
    [1, 2, 3],
    [4, 5, 6],
  ]);
});

test('list output - token-level rows become number[][][]', () => {
  const data = Float32Array.from({ length: 12 }, (_, i) => i);
  assert.deepEqual(toNestedList(data, [2, 3, 2]), [
    [
      [0, 1],
      [2, 3],
      [4, 5],
    ],
    [
      [6, 7],
      [8, 9],
      [10, 11],
    ],
  ]);
});

test('list output - keeps float32 values exactly', () => {
  const data = Float32Array.from([0.1, -1e-8, 3.4e38]);
  const list = toNestedList(data, [1, 3]) as number[][];
  assert.deepEqual(list[0], [data[0], data[1], data[2]]);
  assert.notEqual(list[0]![0], 0.1); // the float32 nearest to 0.1, not the double
});

test('list output - refuses a shape that does not match the data', () => {
  assert.throws(() => toNestedList(new Float32Array(5), [2, 3]), InternalError);
  assert.throws(() => toNestedList(new Float32Array(3), [3]), /needs a shape with a row axis/);
});

test('list output - ndarray format keeps the same Float32Array', () => {
  const data = new Float32Array(4);
  const v = formatVectors('ndarray', { data, shape: [2, 2] });
  assert.equal(v.data, data);
  assert.deepEqual(v.shape, [2, 2]);
});
