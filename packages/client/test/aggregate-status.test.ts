import { test } from 'node:test';
import assert from 'node:assert/strict';
import { aggregateStatus } from '../src/control.js';
import { sampleStatus } from './documents.js';

test('fleet status - sums counters over workers and keeps each worker', () => {
  const fleet = aggregateStatus('default', [
    sampleStatus('W2', { requests: 3, rows: 30, localRows: 5 }),
    sampleStatus('W1', { requests: 4, rows: 12, localRows: 1, state: 'draining' }),
  ]);
  assert.equal(fleet.num_workers, 2);
  assert.deepEqual(
    fleet.workers.map((w) => w.worker_id),
    ['W1', 'W2'],
  );
  assert.equal(fleet.statistic.num_data_request, 7);
  assert.equal(fleet.statistic.num_total_seq, 42);
  assert.equal(fleet.statistic.num_sys_request, 2);
  assert.equal(fleet.statistic.num_total_request, 9);
  assert.deepEqual(fleet.states, { starting: 0, ready: 1, draining: 1 });
  assert.equal(fleet.queue.local_rows, 6);
});

test('fleet status - takes the shared JetStream queue depth from the latest report, not a sum', () => {
  const fleet = aggregateStatus('default', [
    sampleStatus('W1', { pending: 9, at: '2030-01-01T00:00:00.000Z' }),
    sampleStatus('W2', { pending: 4, at: '2030-01-01T00:00:01.000Z' }),
  ]);
  assert.equal(fleet.queue.high.pending, 4);
  assert.equal(fleet.queue.bulk.pending, 4);
});

test('fleet status - reports unreachable workers and has null depths when no worker answered', () => {
  const fleet = aggregateStatus('default', [], [{ worker_id: 'W9', error: 'no reply within 5000 ms' }]);
  assert.equal(fleet.num_workers, 0);
  assert.deepEqual(fleet.queue.high, { pending: null, ack_pending: null });
  assert.deepEqual(fleet.unreachable, [{ worker_id: 'W9', error: 'no reply within 5000 ms' }]);
});
