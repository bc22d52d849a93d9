import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NoWorkersError } from '@bertq/protocol';
import { CachedReading } from '../src/fleet-cache.js';

test('fleet cache - a reading is shared, reused while fresh, and served stale while it refreshes', async () => {
  let now = 0;
  let reads = 0;
  let fail = false;
  const cache = new CachedReading(
    async () => {
      reads++;
      if (fail) throw new NoWorkersError('gone');
      return reads;
    },
    1_000,
    { now: () => now },
  );
  const [a, b] = await Promise.all([cache.value(), cache.value()]);
  assert.deepEqual([a, b, reads], [1, 1, 1], 'concurrent callers share one read');
  now = 500;
  assert.equal(await cache.value(), 1, 'fresh: no new read');
  now = 1_500;
  assert.equal(await cache.latest(), 1, 'stale: answered at once…');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(reads, 2, '…and refreshed in the background');
  assert.equal(await cache.latest(), 2);
  fail = true;
  now = 3_000;
  const reading = await cache.get();
  assert.ok(!reading.ok && reading.error instanceof NoWorkersError, 'a failed read is a reading, typed, not a throw');
  await assert.rejects(cache.latest(), NoWorkersError);
});

test('fleet cache - a read begun before a reconnect is neither waited for nor kept: the next caller reads afresh', async () => {
  let reads = 0;
  let epoch = 0;
  let release: (() => void) | undefined;
  const cache = new CachedReading(
    async () => {
      const n = ++reads;
      // The first read hangs (a request sent while the broker was down) until released.
      if (n === 1) await new Promise<void>((resolve) => (release = resolve));
      return n;
    },
    60_000,
    { epoch: () => epoch },
  );
  const hanging = cache.value();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(reads, 1);
  epoch = 1; // the connection came back
  assert.equal(await cache.value(), 2, 'a fresh read, not a wait behind the hanging one');
  release!();
  assert.equal(await hanging, 1, 'the old read still answers its own callers');
  assert.equal(await cache.value(), 2, 'but its late result is not kept over the fresh one');
  assert.equal(reads, 2);
});
