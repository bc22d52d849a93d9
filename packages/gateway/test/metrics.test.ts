import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WorkerMetrics } from '@bertq/worker';
import { GatewayMetrics } from '../src/metrics.js';

/** The value of one sample line (`name{labels} value`), labels in any order. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-z_:]+)(?:\{(.*)\})? (.+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (
      Object.entries(labels).every(([k, v]) => got[k] === v) &&
      Object.keys(got).length === Object.keys(labels).length
    )
      return Number(m[3]);
  }
  return undefined;
}

test('metrics - the gateway without a fleet reading reports bertq_fleet_up 0, its own stage timings, and no fleet series', async () => {
  const m = new GatewayMetrics();
  m.observeFrame({ id: 'r', offset: 0, rows: 2, timings: { tokenization: 2, queue: 1, inference: 30, total: 40 } });
  // A later byte part repeats its job's timings: not counted again.
  m.observeFrame({ id: 'r', offset: 2, rows: 1, timings: { inference: 30 }, part: { index: 2, count: 3 } });
  m.httpRequest('/encode', 'POST', 200, 0.02);
  m.error('TIMEOUT');
  const text = await m.render(undefined);
  assert.equal(sample(text, 'bertq_fleet_up'), 0);
  assert.equal(sample(text, 'bertq_stage_duration_seconds_count', { stage: 'inference' }), 1);
  assert.equal(sample(text, 'bertq_stage_duration_seconds_bucket', { stage: 'inference', le: '0.05' }), 1);
  assert.equal(sample(text, 'bertq_stage_duration_seconds_bucket', { stage: 'inference', le: '0.025' }), 0);
  assert.equal(
    sample(text, 'bertq_gateway_http_requests_total', { route: '/encode', method: 'POST', status: '200' }),
    1,
  );
  assert.equal(sample(text, 'bertq_gateway_errors_total', { code: 'TIMEOUT' }), 1);
  assert.equal(m.requestsTotal, 1);
  assert.doesNotMatch(text, /^bertq_queue_pending_jobs\{/m);
});

test('metrics - the gateway sums the registries of every worker, each series keeping its worker label', async () => {
  const a = new WorkerMetrics({ service: 's', worker: 'A' });
  const b = new WorkerMetrics({ service: 's', worker: 'B' });
  a.jobReceived(false);
  a.jobDone(3, { tokenization: 1, queue: 2, total: 10 });
  b.jobReceived(true);
  b.jobRefused('BAD_REQUEST', true);
  b.batchDone(4, 40, 48, 12);
  b.batchFailed();
  const workers = [await a.registry.getMetricsAsJSON(), await b.registry.getMetricsAsJSON()];
  const text = await new GatewayMetrics().render(undefined, workers);
  assert.equal(sample(text, 'bertq_worker_jobs_total', { service: 's', worker: 'A', outcome: 'done' }), 1);
  assert.equal(sample(text, 'bertq_worker_rows_total', { service: 's', worker: 'A' }), 3);
  assert.equal(sample(text, 'bertq_worker_redelivered_jobs_total', { service: 's', worker: 'B' }), 1);
  assert.equal(sample(text, 'bertq_worker_errors_total', { service: 's', worker: 'B', code: 'BAD_REQUEST' }), 1);
  assert.equal(sample(text, 'bertq_worker_batch_tokens_total', { service: 's', worker: 'B', kind: 'padded' }), 48);
  assert.equal(
    sample(text, 'bertq_worker_stage_duration_seconds_count', { service: 's', worker: 'A', stage: 'total' }),
    1,
  );
  assert.equal(
    sample(text, 'bertq_worker_stage_duration_seconds_count', { service: 's', worker: 'B', stage: 'inference' }),
    1,
  );
  assert.equal(sample(text, 'bertq_worker_model_failures_total', { service: 's', worker: 'B' }), 1);
  assert.equal(sample(text, 'bertq_fleet_up'), 0, 'and the gateway’s own metrics are still there');
});
