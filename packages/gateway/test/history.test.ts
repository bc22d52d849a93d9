import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { FleetStatus } from '@bertq/client';
import { History, LATENCY_WINDOW_MS, quantile } from '../src/history.js';

test('history - quantiles are nearest-rank over sorted values', () => {
  const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(quantile(sorted, 0.5), 50);
  assert.equal(quantile(sorted, 0.99), 99);
  assert.equal(quantile([7], 0.99), 7);
  assert.equal(quantile([], 0.5), null);
});

test('history - each second becomes one point; counters restart, latency keeps a sliding window', () => {
  const h = new History(3);
  const t0 = 1_000_000;
  h.recordRequest(t0, 10, 4);
  h.recordRequest(t0, 30, 6, 'TIMEOUT');
  h.recordError('UNAUTHORIZED');
  h.recordFrame({ id: 'r', offset: 0, rows: 4, timings: { tokenization: 1, queue: 2, inference: 6 } });
  h.recordFrame({ id: 'r', offset: 4, rows: 6, timings: { tokenization: 3, queue: 4, inference: 8 } });
  const fleet = {
    ok: true as const,
    at: t0,
    value: {
      statistic: { seq_per_second: 12.5 },
      queue: { high: { pending: 1 }, bulk: { pending: 2 } },
    } as unknown as FleetStatus,
  };
  const p = h.sample(t0 + 1000, fleet, 2);
  assert.deepEqual(p, {
    t: t0 + 1000,
    requests: 2,
    rows: 10,
    errors: { TIMEOUT: 1, UNAUTHORIZED: 1 },
    p50: 10,
    p95: 30,
    p99: 30,
    stages: { tokenization: 2, queue: 3, inference: 7 },
    fleetRows: 12.5,
    queue: 3,
    inFlight: 2,
  });
  const quiet = h.sample(t0 + 2000, undefined, 0);
  assert.equal(quiet.requests, 0);
  assert.equal(quiet.p50, 10, 'latency percentiles cover the last seconds, not just this one');
  assert.equal(quiet.fleetRows, null);
  assert.equal(
    h.sample(t0 + LATENCY_WINDOW_MS + 1000, fleet, 0).p50,
    null,
    'old requests leave the window; a stale fleet reading is not shown',
  );
  h.sample(t0 + 20_000, undefined, 0);
  assert.equal(h.all().length, 3, 'the ring keeps its capacity');
});
