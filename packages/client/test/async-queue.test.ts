import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OverloadedError } from '@bertq/protocol';
import { AsyncQueue } from '../src/async-queue.js';

const overflow = (n: number) => new OverloadedError(`more than ${n} waiting`);

test('async queue - hands pushed items to a waiting reader and buffers the rest in order', async () => {
  const q = new AsyncQueue<number>(10, overflow);
  const first = q.next();
  q.push(1);
  q.push(2);
  q.push(3);
  assert.deepEqual(await first, { value: 1, done: false });
  q.end();
  const rest: number[] = [];
  for await (const v of q) rest.push(v);
  assert.deepEqual(rest, [2, 3]);
});

test('async queue - fails with the overflow error once the reader falls capacity behind', async () => {
  let stops = 0;
  const q = new AsyncQueue<number>(2, overflow, () => stops++);
  q.push(1);
  q.push(2);
  q.push(3);
  assert.equal(stops, 1);
  assert.deepEqual(await q.next(), { value: 1, done: false });
  assert.deepEqual(await q.next(), { value: 2, done: false });
  await assert.rejects(q.next(), (e: unknown) => e instanceof OverloadedError && e.message === 'more than 2 waiting');
  assert.deepEqual(await q.next(), { value: undefined, done: true });
});

test('async queue - a reader that breaks out stops the queue and runs the stop hook once', async () => {
  let stops = 0;
  const q = new AsyncQueue<number>(5, overflow, () => stops++);
  q.push(1);
  q.push(2);
  for await (const v of q) {
    assert.equal(v, 1);
    break;
  }
  q.push(3);
  assert.equal(q.size, 0);
  assert.equal(stops, 1);
  assert.deepEqual(await q.next(), { value: undefined, done: true });
});
