import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cancellations } from '../src/core/cancellations.js';

test('cancellations - id and reply must both match, entries expire, the oldest go first past the bound', () => {
  const c = new Cancellations(1_000, 3);
  c.add('A', 'bertq.v1.s.results.me', 0);
  assert.equal(c.has('A', 'bertq.v1.s.results.me', 10), true);
  assert.equal(c.has('A', 'bertq.v1.s.results.someone-else', 10), false, 'another client cannot cancel it');
  assert.equal(c.has('B', 'bertq.v1.s.results.me', 10), false);
  assert.equal(c.has('A', 'bertq.v1.s.results.me', 1_001), false, 'expired');
  assert.equal(c.size, 0, 'an expired entry is dropped when seen');
  for (const id of ['1', '2', '3', '4']) c.add(id, 'r', 2_000);
  assert.equal(c.size, 3);
  assert.equal(c.has('1', 'r', 2_000), false, 'the oldest went first');
  assert.equal(c.has('4', 'r', 2_000), true);
  c.add('5', 'r', 5_000); // every older entry has expired by now
  assert.equal(c.size, 1);
});
