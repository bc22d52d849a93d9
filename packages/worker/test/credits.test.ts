import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Credits } from '../src/credits.js';

test('credits - never hands out more than the total', async () => {
  const credits = new Credits(3);
  assert.equal(await credits.acquire('bulk', 10), true);
  assert.equal(credits.tryTake(5), 2);
  assert.equal(credits.free, 0);
  assert.equal(credits.taken, 3);
  assert.equal(await credits.acquire('bulk', 20), false, 'times out when none is released');
  credits.release(10);
  assert.equal(credits.free, 3, 'releasing more than taken does not create credits');
});

test('credits - a released credit goes to a waiting high-priority loop first', async () => {
  const credits = new Credits(1);
  credits.tryTake(1);
  const order: string[] = [];
  const bulk = credits.acquire('bulk', 1_000).then((got) => got && order.push('bulk'));
  const high = credits.acquire('high', 1_000).then((got) => got && order.push('high'));
  credits.release(1);
  await high;
  assert.deepEqual(order, ['high']);
  credits.release(1);
  await bulk;
  assert.deepEqual(order, ['high', 'bulk']);
});

test('credits - cancelling wakes every waiter with false', async () => {
  const credits = new Credits(1);
  credits.tryTake(1);
  const waiting = [credits.acquire('high', 60_000), credits.acquire('bulk', 60_000)];
  credits.cancelWaiters();
  assert.deepEqual(await Promise.all(waiting), [false, false]);
});
