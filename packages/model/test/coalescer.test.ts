import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Coalescer } from '../src/coalescer.js';

test('coalescer - the first call runs at once; calls made meanwhile ride together in the next, each getting its own slice', async () => {
  const runs: Array<readonly number[]> = [];
  let release!: () => void;
  const coalescer = new Coalescer<number, string>(
    async (items) => {
      runs.push(items);
      if (runs.length === 1) await new Promise<void>((r) => (release = r));
      return items.map((i) => `#${i}`);
    },
    { maxInFlight: 1 },
  );
  const first = coalescer.call([1]);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(runs, [[1]], 'no waiting for company while idle');
  const second = coalescer.call([2, 3]);
  const third = coalescer.call([4]);
  const empty = coalescer.call([]);
  release();
  assert.deepEqual(await first, ['#1']);
  assert.deepEqual(await second, ['#2', '#3']);
  assert.deepEqual(await third, ['#4']);
  assert.deepEqual(await empty, []);
  assert.deepEqual(runs, [[1], [2, 3, 4]], 'one run for everything that waited');
});

test('coalescer - a failed run fails every call in it, and the next calls run again', async () => {
  let fail = true;
  const coalescer = new Coalescer<number, number>(
    async (items) => {
      if (fail) throw new Error('native failure');
      return items;
    },
    { maxInFlight: 1 },
  );
  const [a, b] = [coalescer.call([1]), coalescer.call([2])];
  await assert.rejects(a, /native failure/);
  await assert.rejects(b, /native failure/);
  fail = false;
  assert.deepEqual(await coalescer.call([5, 6]), [5, 6]);
});

test('coalescer - a run that answers the wrong number of outputs is an error, not a misaligned slice', async () => {
  const coalescer = new Coalescer<number, number>(async (items) => items.slice(1));
  await assert.rejects(coalescer.call([1, 2]), /1 answers for 2 inputs/);
});

test('coalescer - several calls run side by side; merged calls stop at maxItems, a bigger one goes whole', async () => {
  const runs: Array<readonly number[]> = [];
  const releases: Array<() => void> = [];
  const coalescer = new Coalescer<number, number>(
    async (items) => {
      runs.push(items);
      await new Promise<void>((r) => releases.push(r));
      return items;
    },
    { maxInFlight: 2, maxItems: 3, minParallelItems: 1 },
  );
  const calls = [[1], [2], [3], [4], [5], [6], [7, 8, 9, 10], [11]].map((c) => coalescer.call(c));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(runs, [[1], [2]], 'two slots, each taken at once');
  releases.shift()!();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(runs.at(-1), [3, 4, 5], 'the waiting calls merged up to maxItems');
  while (runs.length < 5) {
    releases.shift()?.();
    await new Promise((r) => setImmediate(r));
  }
  assert.deepEqual(runs.slice(3), [[6], [7, 8, 9, 10]], 'a call bigger than maxItems goes whole, alone');
  while (releases.length > 0 || runs.length < 6) {
    releases.shift()?.();
    await new Promise((r) => setImmediate(r));
  }
  assert.deepEqual(await Promise.all(calls), [[1], [2], [3], [4], [5], [6], [7, 8, 9, 10], [11]]);
});

test('coalescer - small calls wait for the running one and merge; a call big enough runs beside it', async () => {
  const runs: Array<readonly number[]> = [];
  const releases: Array<() => void> = [];
  const coalescer = new Coalescer<number, number>(
    async (items) => {
      runs.push(items);
      await new Promise<void>((r) => releases.push(r));
      return items;
    },
    { maxInFlight: 4, minParallelItems: 3 },
  );
  const calls = [[1], [2], [3]].map((c) => coalescer.call(c));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(runs, [[1]], 'the first goes at once; two small ones (2 inputs < 3) wait');
  const big = coalescer.call([4, 5, 6]);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(runs, [[1], [2, 3, 4, 5, 6]], 'with 5 inputs waiting, they go beside the running call');
  while (releases.length > 0) {
    releases.shift()!();
    await new Promise((r) => setImmediate(r));
  }
  assert.deepEqual(await Promise.all([...calls, big]), [[1], [2], [3], [4, 5, 6]]);
});
