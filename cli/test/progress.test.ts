import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  RateMeter,
  createProgress,
  fitLine,
  formatAmount,
  formatBar,
  formatBytes,
  formatCount,
  formatDoneLine,
  formatDuration,
  formatEta,
  formatFailLine,
  formatLogLine,
  formatPercent,
  formatRate,
  formatTtyLine,
  type ProgressStream,
} from '../src/progress.js';

/** A stream that records what is written, and a clock the test moves by hand. */
function fakeStream(isTTY: boolean, columns?: number): ProgressStream & { writes: string[] } {
  const writes: string[] = [];
  return { writes, isTTY, ...(columns === undefined ? {} : { columns }), write: (s: string) => writes.push(s) };
}
function fakeClock(start = 1_000_000): { now: () => number; advance(ms: number): void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

test('progress - formats bytes in decimal units with three significant digits', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(999), '999 B');
  assert.equal(formatBytes(1000), '1.00 kB');
  assert.equal(formatBytes(1536), '1.54 kB');
  assert.equal(formatBytes(45_071_600), '45.1 MB');
  assert.equal(formatBytes(166_673_648), '167 MB');
  assert.equal(formatBytes(999_960), '1.00 MB', 'rounding up to 1000 moves to the next unit');
  assert.equal(formatBytes(4e9), '4.00 GB');
  assert.equal(formatBytes(Number.NaN), '? B');
});

test('progress - formats counts, rates and amounts in their unit', () => {
  assert.equal(formatCount(7), '7');
  assert.equal(formatCount(0.5), '0.5');
  assert.equal(formatCount(12_345), '12.3k');
  assert.equal(formatCount(4_560_000), '4.56M');
  assert.equal(formatAmount(1200, 'rows'), '1.20k rows');
  assert.equal(formatAmount(2048, 'bytes'), '2.05 kB');
  assert.equal(formatRate(12_300_000, 'bytes'), '12.3 MB/s');
  assert.equal(formatRate(850, 'rows'), '850 rows/s');
  assert.equal(formatRate(0.5, 'rows'), '0.5 rows/s');
  assert.equal(formatRate(undefined, 'bytes'), '-- B/s');
  assert.equal(formatRate(undefined, 'rows'), '-- rows/s');
});

test('progress - formats durations and the ETA', () => {
  assert.equal(formatDuration(0), '0:00');
  assert.equal(formatDuration(31), '0:31');
  assert.equal(formatDuration(61.9), '1:01');
  assert.equal(formatDuration(3723), '1:02:03');
  assert.equal(formatDuration(Number.POSITIVE_INFINITY), '--:--');
  assert.equal(formatEta(100, 10), '0:10');
  assert.equal(formatEta(1, 3), '0:01', 'a third of a second left still shows one second');
  assert.equal(formatEta(100, 0), '--:--');
  assert.equal(formatEta(undefined, 5), '--:--');
  assert.equal(formatEta(100, undefined), '--:--');
});

test('progress - draws the bar and the percentage rounded down', () => {
  assert.equal(formatBar(0.42, 10), '####------');
  assert.equal(formatBar(0, 10), '----------');
  assert.equal(formatBar(0.999, 10), '#########-');
  assert.equal(formatBar(1, 10), '##########');
  assert.equal(formatBar(7, 4), '####');
  assert.equal(formatBar(-1, 4), '----');
  assert.equal(formatPercent(0.42), '42%');
  assert.equal(formatPercent(0.999), '99%');
  assert.equal(formatPercent(1), '100%');
});

test('progress - composes the terminal line, the log line and the closing lines', () => {
  const s = { label: 'org/model', current: 420_000_000, total: 1_000_000_000, rate: 20_000_000, unit: 'bytes' };
  // 580 MB left at 20 MB/s is 29 s.
  assert.equal(formatTtyLine(s, 10), 'org/model [####------] 42% 20.0 MB/s ETA 0:29');
  assert.equal(formatLogLine(s), 'org/model 42% 420 MB of 1.00 GB, 20.0 MB/s, ETA 0:29');
  assert.equal(formatTtyLine({ label: 'encode', current: 1500, unit: 'rows' }, 10), 'encode 1.50k rows -- rows/s');
  assert.equal(
    formatLogLine({ label: 'encode', current: 1500, rate: 300, unit: 'rows' }),
    'encode 1.50k rows, 300 rows/s',
  );
  assert.equal(formatDoneLine('org/model', 12_200_000, 4000, 'bytes'), 'org/model done: 12.2 MB in 0:04 (3.05 MB/s)');
  assert.equal(
    formatFailLine('org/model', 5000, 10_000, 'bytes', 'boom'),
    'org/model failed after 5.00 kB of 10.0 kB: boom',
  );
  assert.equal(fitLine('0123456789', 8), '0123456');
  assert.equal(fitLine('0123', 8), '0123');
});

test('progress - the rate is smoothed over a window and falls when the transfer stalls', () => {
  const meter = new RateMeter(1000, 0);
  assert.equal(meter.rate(0), undefined);
  // 100 units every 100 ms = 1000/s; one slow step does not swing it.
  for (let t = 100; t <= 2000; t += 100) meter.record(t, t);
  assert.equal(meter.rate(2000), 1000);
  meter.record(2100, 2030); // a slow chunk: 30 units in 100 ms
  const smoothed = meter.rate(2100)!;
  assert.ok(smoothed > 900 && smoothed < 1000, `smoothed over the window: ${smoothed}`);
  // Nothing for 4 s: the rate falls instead of staying at the last good value.
  assert.ok(meter.rate(6100)! < 300, `stalled rate ${meter.rate(6100)}`);
  // Going back (a restarted download) starts a new measurement, never a negative rate.
  meter.record(6200, 0);
  assert.equal(meter.rate(6200), undefined);
  meter.record(6700, 500);
  assert.equal(meter.rate(6700), 1000);
});

test('progress - on a terminal it redraws one line at most 10 times a second', () => {
  const stream = fakeStream(true, 200);
  const clock = fakeClock();
  const progress = createProgress({
    label: 'model',
    total: 100_000,
    unit: 'bytes',
    stream,
    now: clock.now,
    barWidth: 10,
  });
  for (let i = 0; i < 1000; i++) {
    clock.advance(1);
    progress.tick(100);
  }
  progress.done();

  const redraws = stream.writes.slice(0, -1);
  assert.ok(redraws.length >= 10 && redraws.length <= 11, `${redraws.length} redraws in one second`);
  for (const w of redraws) assert.match(w, /^\rmodel \[[#-]{10}\] \d+% .* ETA \d+:\d\d\x1b\[K$/);
  assert.match(stream.writes.at(-1)!, /^\rmodel done: 100 kB in 0:01 \(100 kB\/s\)\x1b\[K\n$/);
  assert.equal(progress.current, 100_000);
  progress.tick(5);
  assert.equal(stream.writes.length, redraws.length + 1, 'nothing is written after done()');
});

test('progress - a terminal line is cut to the terminal width', () => {
  const stream = fakeStream(true, 30);
  const progress = createProgress({
    label: 'a-rather-long-model-name/with-a-long-name',
    total: 10,
    stream,
    now: fakeClock().now,
  });
  progress.tick(1);
  assert.equal(stream.writes[0], `\r${'a-rather-long-model-name/with-a-long-name'.slice(0, 29)}\x1b[K`);
});

test('progress - off a terminal it prints one line per 10% step, so CI logs stay short', () => {
  const stream = fakeStream(false);
  const clock = fakeClock();
  const progress = createProgress({ label: 'encode', total: 1000, unit: 'rows', stream, now: clock.now });
  for (let i = 0; i < 1000; i++) {
    clock.advance(1);
    progress.tick();
  }
  progress.done();

  assert.equal(stream.writes.length, 11, stream.writes.join(''));
  assert.deepEqual(
    stream.writes.slice(0, 10).map((w) => /^encode (\d+)% /.exec(w)?.[1]),
    ['10', '20', '30', '40', '50', '60', '70', '80', '90', '100'],
  );
  for (const w of stream.writes) {
    assert.ok(w.endsWith('\n') && !w.includes('\r') && !w.includes('\x1b'), JSON.stringify(w));
  }
  assert.equal(stream.writes.at(-1), 'encode done: 1.00k rows in 0:01 (1.00k rows/s)\n');
});

test('progress - off a terminal a long job without a total prints a line every few seconds', () => {
  const stream = fakeStream(false);
  const clock = fakeClock();
  const progress = createProgress({ label: 'encode', unit: 'rows', stream, now: clock.now, logIntervalMs: 5000 });
  // 60 s of work, a tick every 10 ms.
  for (let i = 0; i < 6000; i++) {
    clock.advance(10);
    progress.tick();
  }
  progress.fail('interrupted');
  assert.equal(stream.writes.length, 12 + 1, 'one line per 5 s over 60 s, plus the closing line');
  assert.match(stream.writes[0]!, /^encode 500 rows, 100 rows\/s\n$/);
  assert.equal(stream.writes.at(-1), 'encode failed after 6.00k rows: interrupted\n');
});

test('progress - silent mode writes nothing but still counts', () => {
  const stream = fakeStream(true);
  const progress = createProgress({ label: 'x', total: 10, stream, silent: true, now: fakeClock().now });
  progress.tick(4);
  progress.update(7);
  progress.done();
  assert.equal(progress.current, 7);
  assert.deepEqual(stream.writes, []);
});
