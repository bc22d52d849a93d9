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
    () => now,
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
