import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Gauge, Histogram, renderMetrics, escapeLabelValue, formatValue } from '../src/prometheus.js';
import { GatewayMetrics } from '../src/metrics.js';

test('prometheus - a counter writes HELP, TYPE and one line per label set, labels sorted by name', () => {
  const c = new Counter('x_requests_total', 'Requests.', ['route', 'code']);
  c.inc({ route: '/a', code: '200' });
  c.inc({ code: '200', route: '/a' }, 2);
  c.inc({ route: '/b', code: '500' });
  assert.equal(
    c.render(),
    [
      '# HELP x_requests_total Requests.',
      '# TYPE x_requests_total counter',
      'x_requests_total{code="200",route="/a"} 3',
      'x_requests_total{code="500",route="/b"} 1',
    ].join('\n'),
  );
  assert.equal(c.total(), 4);
  assert.throws(() => c.inc({ route: '/a' }), /takes labels \{route, code\}/);
  assert.throws(() => c.inc({ route: '/a', code: '1' }, -1), /only go up/);
});

test('prometheus - a histogram writes cumulative buckets up to +Inf, then _sum and _count', () => {
  const h = new Histogram('x_seconds', 'Latency.', [0.1, 1], ['stage']);
  for (const v of [0.05, 0.1, 0.5, 3]) h.observe({ stage: 'a' }, v);
  h.observe({ stage: 'a' }, NaN); // ignored, not counted
  assert.equal(
    h.render(),
    [
      '# HELP x_seconds Latency.',
      '# TYPE x_seconds histogram',
      'x_seconds_bucket{le="0.1",stage="a"} 2',
      'x_seconds_bucket{le="1",stage="a"} 3',
      'x_seconds_bucket{le="+Inf",stage="a"} 4',
      'x_seconds_sum{stage="a"} 3.65',
      'x_seconds_count{stage="a"} 4',
    ].join('\n'),
  );
  assert.throws(() => new Histogram('bad', 'x', [1, 1]), /increasing/);
  assert.throws(() => new Histogram('bad', 'x', [1], ['le']), /invalid label name le/);
});

test('prometheus - label values and help text are escaped, special values spelled as Prometheus reads them', () => {
  assert.equal(escapeLabelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  assert.deepEqual([Infinity, -Infinity, NaN, 1.5].map(formatValue), ['+Inf', '-Inf', 'NaN', '1.5']);
  const g = new Gauge('x_gauge', 'Line one\nline two \\ end', ['path']);
  g.set({ path: 'C:\\"x"' }, 2);
  assert.equal(
    g.render(),
    '# HELP x_gauge Line one\\nline two \\\\ end\n# TYPE x_gauge gauge\nx_gauge{path="C:\\\\\\"x\\""} 2',
  );
  assert.equal(renderMetrics([g]).endsWith('\n'), true);
  assert.throws(() => new Gauge('1bad', 'x'), /invalid metric name/);
});

test('prometheus - gateway metrics without a fleet reading report bertq_fleet_up 0 and no fleet series', () => {
  const m = new GatewayMetrics();
  m.observeFrame({
    id: 'r',
    offset: 0,
    rows: 2,
    timings: { tokenizationMs: 2, queueMs: 1, inferenceMs: 30, totalMs: 40 },
  });
  // A later byte part repeats its job's timings: not counted again.
  m.observeFrame({ id: 'r', offset: 2, rows: 1, timings: { inferenceMs: 30 }, part: { index: 2, count: 3 } });
  const text = m.render(undefined);
  assert.match(text, /^bertq_fleet_up 0$/m);
  assert.match(text, /^bertq_stage_duration_seconds_count\{stage="inference"\} 1$/m);
  assert.match(text, /^bertq_stage_duration_seconds_bucket\{le="0.05",stage="inference"\} 1$/m);
  assert.match(text, /^bertq_stage_duration_seconds_bucket\{le="0.025",stage="inference"\} 0$/m);
  assert.doesNotMatch(text, /^bertq_queue_pending_jobs\{/m);
});
