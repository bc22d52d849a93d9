import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Credits } from '../src/core/credits.js';

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

test('credits - a waiter for several credits is served only when all of them are free', async () => {
  const credits = new Credits(10);
  credits.tryTake(8);
  let got = false;
  const bulk = credits.acquire('bulk', 1_000, 6).then((ok) => (got = ok));
  credits.release(3); // 5 free: not enough
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(got, false);
  credits.release(1); // 6 free
  assert.equal(await bulk, true);
  assert.equal(credits.free, 0);
});

test('credits - asking for more than the total waits for the total, never forever', async () => {
  const credits = new Credits(4);
  assert.equal(await credits.acquire('high', 10, 100), true);
  assert.equal(credits.free, 0);
});
