import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SingleFlight } from '../src/single-flight.js';

test('single flight - callers share the read in flight; forget() starts afresh, and a late old read clears nothing', async () => {
  const flight = new SingleFlight<number>();
  const releases: Array<(n: number) => void> = [];
  let reads = 0;
  const read = () => {
    reads++;
    return new Promise<number>((resolve) => releases.push(resolve));
  };
  const a = flight.run(read);
  const b = flight.run(read);
  assert.equal(reads, 1, 'one read for both');
  flight.forget();
  const c = flight.run(read);
  assert.equal(reads, 2, 'forgotten: a fresh read');
  releases[0]!(1);
  assert.deepEqual(await Promise.all([a, b]), [1, 1], 'the old read answers its own callers');
  const d = flight.run(read);
  assert.equal(reads, 2, 'the old read ending did not clear the new one');
  releases[1]!(2);
  assert.deepEqual(await Promise.all([c, d]), [2, 2]);
  flight.run(() => Promise.resolve(3));
  assert.equal(await flight.run(read), 3, 'still shared until it settles');
  await new Promise((resolve) => setImmediate(resolve));
  flight.run(read);
  assert.equal(reads, 3, 'a settled read is not reused');
});
