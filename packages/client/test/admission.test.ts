import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OverloadedError } from '@bertq/protocol';
import {
  AdmissionGate,
  READING_STALE_MS,
  admissionError,
  depthMatters,
  estimateWait,
  ownRate,
  readingFromStatus,
} from '../src/admission.js';
import type { LoadReading } from '../src/admission.js';
import type { FleetStatus } from '../src/control.js';

const reading: LoadReading = {
  at: 0,
  capacity: 100,
  rowsPerJob: 10,
  pending: { high: 2, bulk: 30 },
  heldRows: 20,
  capacityByBatch: {},
};

test('admission - a bulk request waits for both lanes, a high one only for its own; no backlog, no estimate', () => {
  // bulk: (2 + 30) jobs × 10 rows + 20 held + its own 50 = 390 rows at 100 rows/s
  assert.deepEqual(estimateWait(reading, 'bulk', 50), { rowsAhead: 340, waitMs: 3900 });
  // high: 2 jobs × 10 + 20 held + 1 = 41 rows
  assert.deepEqual(estimateWait(reading, 'high', 1), { rowsAhead: 40, waitMs: 410 });
  assert.equal(estimateWait({ ...reading, pending: { high: 0, bulk: 0 } }, 'bulk', 5000), undefined);
  assert.equal(estimateWait({ ...reading, capacity: 0 }, 'bulk', 1), undefined, 'no batch measured yet');
});

test('admission - refused with OVERLOADED only when the estimate passes the deadline, and the error says by how much', () => {
  const request = { lane: 'bulk' as const, rows: 50, service: 'svc' };
  assert.equal(admissionError(reading, { ...request, deadline: 5000 }, 0), undefined, '3.9 s fits in 80% of 5 s');
  assert.ok(admissionError(reading, { ...request, deadline: 4500 }, 0), '3.9 s is past 80% of 4.5 s: too close');
  const err = admissionError(reading, { ...request, deadline: 2000 }, 0);
  assert.ok(err instanceof OverloadedError);
  assert.match(
    err.message,
    /about 340 rows are queued ahead of this request, ~3\.9 s at the fleet's 100 rows\/s \(100 rows\/s for this request's batches\), too close to its deadline in 2\.0 s; nothing was sent/,
  );
  assert.deepEqual(err.details, {
    rowsAhead: 340,
    estimatedWaitMs: 3900,
    deadlineInMs: 2000,
    capacity: 100,
    batchRate: 100,
    lane: 'bulk',
  });
  // The same queue does not refuse an interactive request.
  assert.equal(admissionError(reading, { ...request, lane: 'high', rows: 1, deadline: 2000 }, 0), undefined);
  // A stale reading (the queue may have drained) or none refuses nothing.
  assert.equal(
    admissionError(reading, { ...request, deadline: READING_STALE_MS + 10 }, READING_STALE_MS + 1),
    undefined,
  );
  assert.equal(admissionError(undefined, { ...request, deadline: 1 }, 0), undefined);
});

test('admission - a request is judged at the rate of the batches it gets, not at the backlog of small jobs', () => {
  // A backlog of 1-row queries drains at 100 rows/s; the same workers ran 256-row batches at 900 rows/s.
  const mixed: LoadReading = {
    ...reading,
    rowsPerJob: 1,
    pending: { high: 2, bulk: 0 },
    heldRows: 8,
    capacityByBatch: { '1': 100, '8': 300, '256': 900 },
  };
  // 4096 rows batched 256 at a time: 10 rows ahead at 100/s + 4096 at 900/s = 4.65 s, not 41 s.
  const big = estimateWait(mixed, 'bulk', 4096, 256)!;
  assert.equal(Math.round(big.waitMs), Math.round((10 / 100 + 4096 / 900) * 1000));
  assert.equal(
    admissionError(mixed, { lane: 'bulk', rows: 4096, batchRows: 256, deadline: 10_000, service: 's' }, 0),
    undefined,
  );
  // Batches of 100 rows: the rate of the largest size run that is not bigger (8 → 300 rows/s).
  assert.equal(ownRate(mixed, 100), 300);
  // Never slower than the measured drain; nothing measured by size: the drain rate.
  assert.equal(ownRate({ ...mixed, capacityByBatch: { '1': 50 } }, 256), 100);
  assert.equal(ownRate({ ...mixed, capacityByBatch: {} }, 256), 100);
  // Judged at the backlog rate, the same request would have been refused.
  assert.ok(
    admissionError(
      { ...mixed, capacityByBatch: {} },
      { lane: 'bulk', rows: 4096, batchRows: 256, deadline: 10_000, service: 's' },
      0,
    ),
  );
});

test('admission - the queue depth is read only while it could change the answer', () => {
  const idle: LoadReading = { ...reading, pending: { high: 0, bulk: 0 }, heldRows: 0 };
  // 1 row with 10 s to go at 100 rows/s: refused only behind ~800 rows; nothing is queued.
  assert.equal(depthMatters(idle, { lane: 'high', rows: 1, deadline: 10_000 }, 0), false);
  // 340 rows ahead of a 50-row request with 5 s to go (refused behind 400): worth watching.
  assert.equal(depthMatters(reading, { lane: 'bulk', rows: 50, deadline: 5_000 }, 0), true);
  // A request big enough to be refused by itself is watched too; without a capacity nothing can refuse.
  assert.equal(depthMatters(idle, { lane: 'bulk', rows: 500, deadline: 10_000 }, 0), true);
  assert.equal(depthMatters({ ...reading, capacity: 0 }, { lane: 'bulk', rows: 50, deadline: 5_000 }, 0), false);
});

function status(pendingBulk: number): FleetStatus {
  return {
    statistic: { capacity_seq_per_second: 100, num_data_request: 4, num_total_seq: 40 },
    queue: { high: { pending: 0, ack_pending: 0 }, bulk: { pending: pendingBulk, ack_pending: 1 }, local_rows: 20 },
  } as unknown as FleetStatus;
}

test('admission - the gate reads status and queue depth in the background and never makes a request wait for them', async () => {
  assert.deepEqual(readingFromStatus(status(30), 7), { ...reading, at: 7, pending: { high: 0, bulk: 30 } });
  let clock = 0;
  let statusReads = 0;
  let depthReads = 0;
  let release!: () => void;
  let depth = { high: 0, bulk: 30 };
  const gate = new AdmissionGate(
    () => {
      statusReads++;
      return new Promise((resolve) => (release = () => resolve(status(30))));
    },
    async () => {
      depthReads++;
      return depth;
    },
    () => clock,
  );
  const request = { lane: 'bulk' as const, rows: 50, service: 'svc', deadline: 2000 };
  gate.check(request); // no reading yet: admitted, and a status read starts
  gate.check(request); // still none: admitted; the read in flight is shared
  assert.equal(statusReads, 1);
  release();
  await gate.refreshStatus(); // joins the read in flight: no second read
  assert.throws(() => gate.check(request), OverloadedError);
  // The queue drained: a fresh depth (a cheap JetStream read) admits again, before the next status.
  depth = { high: 0, bulk: 0 };
  clock = 300; // older than DEPTH_MAX_AGE_MS
  assert.throws(() => gate.check({ ...request, deadline: 2_300 }), OverloadedError, 'decided on what it had');
  await gate.refreshDepth();
  assert.equal(depthReads, 1);
  assert.doesNotThrow(() => gate.check({ ...request, deadline: 2_300 }));
  assert.equal(statusReads, 1, 'the status is read far less often than the depth');
});

test('admission - after a reconnect a hanging reading is not waited for: the next refresh reads afresh', async () => {
  let reads = 0;
  const gate = new AdmissionGate(
    () => {
      reads++;
      // The first read was sent while the broker was away: it is never answered.
      return reads === 1 ? new Promise(() => {}) : Promise.resolve(status(30));
    },
    async () => undefined,
    () => 0,
  );
  void gate.refreshStatus();
  void gate.refreshStatus();
  assert.equal(reads, 1, 'one read at a time');
  gate.forgetReadsInFlight();
  await gate.refreshStatus();
  assert.equal(reads, 2);
  assert.deepEqual(gate.reading?.pending, { high: 0, bulk: 30 }, 'the fresh read gave the reading');
});
