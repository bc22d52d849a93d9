import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClientTracker, DrainRateMeter, LatencyWindow, RateMeter } from '../src/control/metrics.js';

function manualClock(start = 1_700_000_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

test('metrics - a latency window reports percentiles of its recent samples', () => {
  const clock = manualClock();
  const window = new LatencyWindow(1000, 60_000, clock.now);
  for (let ms = 1; ms <= 100; ms++) window.add(ms);
  assert.deepEqual(window.summary(), { count: 100, avg_ms: 50.5, p50_ms: 50, p95_ms: 95, p99_ms: 99, max_ms: 100 });
  clock.advance(61_000);
  window.add(7);
  assert.deepEqual(window.summary(), { count: 1, avg_ms: 7, p50_ms: 7, p95_ms: 7, p99_ms: 7, max_ms: 7 });
});

test('metrics - a latency window keeps at most its capacity and ignores invalid samples', () => {
  const window = new LatencyWindow(4);
  for (const ms of [100, 100, 1, 2, 3, 4, Number.NaN, -1]) window.add(ms);
  const summary = window.summary();
  assert.equal(summary.count, 4);
  assert.equal(summary.max_ms, 4);
  assert.deepEqual(new LatencyWindow().summary(), { count: 0, avg_ms: 0, p50_ms: 0, p95_ms: 0, p99_ms: 0, max_ms: 0 });
});

test('metrics - a rate meter averages over its window, or over its life when younger', () => {
  const clock = manualClock(1_700_000_000_000);
  const meter = new RateMeter(10, clock.now);
  clock.advance(2_000);
  meter.add(20);
  assert.equal(meter.perSecond(), 10); // 20 events over 2 s of life
  clock.advance(20_000);
  assert.equal(meter.perSecond(), 0); // the bucket aged out of the 10 s window
  meter.add(5);
  assert.equal(meter.perSecond(), 0.5);
});

test('metrics - the client tracker counts distinct reply subjects seen recently, within a bound', () => {
  const clock = manualClock();
  const clients = new ClientTracker(1_000, 3, clock.now);
  clients.see('a');
  clients.see('b');
  clients.see('a');
  assert.equal(clients.active(), 2);
  assert.equal(clients.total, 2);
  clock.advance(1_500);
  clients.see('c');
  assert.equal(clients.active(), 1);
  for (const c of ['d', 'e', 'f', 'g']) clients.see(c);
  assert.equal(clients.active(), 3, 'bounded to the 3 most recent');
  assert.equal(clients.total, 7);
});

test('metrics - the drain rate counts only intervals saturated at both ends, and keeps it through idle time', () => {
  const drain = new DrainRateMeter(4);
  assert.equal(drain.perSecond(), undefined, 'never saturated: no measure');
  drain.sample(0, true, 0);
  drain.sample(100, true, 250); // 100 rows in 250 ms, saturated throughout
  drain.sample(150, false, 500); // the queue ran dry: not counted
  drain.sample(150, false, 60_000); // idle for a minute: not counted, and nothing forgotten
  assert.equal(drain.perSecond(), 400);
  drain.sample(150, true, 60_250);
  drain.sample(350, true, 60_500); // 200 rows in 250 ms
  assert.equal(drain.perSecond(), 600, '300 rows in 500 ms of saturation');
});
