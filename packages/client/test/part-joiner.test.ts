import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AssembledResult, ResultFrame } from '@bertq/protocol';
import { PartJoiner } from '../src/part-joiner.js';
import { resultFrames, rowValues } from './frames.js';

const parts = (id: string, offset: number, dim: number) =>
  resultFrames(id, offset, 1, { dim, maxPayload: 600, tokens: [['[CLS]', `row${offset}`, '[SEP]']] }) as ResultFrame[];

test('part joiner - yields a split row once all its parts are in, with its tokens', () => {
  const joiner = new PartJoiner();
  const frames = parts('A', 7, 200);
  assert.ok(frames.length > 1 && frames.every((f) => f.part !== undefined));
  const shuffled = [frames[frames.length - 1]!, ...frames.slice(0, -1)];
  let row: AssembledResult | undefined;
  for (const [i, f] of shuffled.entries()) {
    row = joiner.add(f);
    if (i < shuffled.length - 1) assert.equal(row, undefined);
  }
  assert.ok(row !== undefined);
  assert.deepEqual(row.shape, [1, 200]);
  assert.deepEqual(Array.from(row.data), Array.from(Float32Array.from(rowValues(7, 200))));
  assert.deepEqual(row.tokens, [['[CLS]', 'row7', '[SEP]']]);
  assert.equal(joiner.openRows, 0);
});

test('part joiner - keeps rows of different requests apart and bounds what it holds', () => {
  const joiner = new PartJoiner(2);
  const a = parts('A', 0, 200);
  const b = parts('B', 0, 200);
  joiner.add(a[0]!);
  joiner.add(b[0]!);
  joiner.add(parts('C', 0, 200)[0]!); // drops A, the oldest
  assert.equal(joiner.openRows, 2);
  let rowB;
  for (const f of b.slice(1)) rowB = joiner.add(f);
  assert.ok(rowB);
  for (const f of a.slice(1)) assert.equal(joiner.add(f), undefined, 'A lost its first part');
});
