/**
 * What the gateway measures, as Prometheus metrics. Two sources:
 *   - the gateway itself: HTTP requests by route and status, errors by code, rows, tokens, request
 *     sizes, end-to-end latency, and the workers' stage timings (tokenize, queue, inference, total)
 *     read off the result frames of the requests it sent;
 *   - the fleet's status (cached): workers, queue depth, fleet-wide rates and latency percentiles.
 */
import type { FrameReport } from '@bertq/client';
import type { FleetStatus } from '@bertq/client';
import type { Reading } from './fleet-cache.js';
import { Counter, Gauge, Histogram, renderMetrics, type Metric } from './prometheus.js';

/** Seconds: from a sub-millisecond cache hit to a minute-long bulk request. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Rows per request: powers of two up to well past max_batch_size. */
export const ROWS_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192];

/** The stages a worker reports per result frame, as the `stage` label names them. */
export const STAGES = ['tokenize', 'queue', 'inference', 'total'] as const;
export type Stage = (typeof STAGES)[number];

const STAGE_FIELDS: ReadonlyArray<[Stage, keyof FrameReport['timings']]> = [
  ['tokenize', 'tokenizationMs'],
  ['queue', 'queueMs'],
  ['inference', 'inferenceMs'],
  ['total', 'totalMs'],
];

export class GatewayMetrics {
  readonly httpRequests = new Counter(
    'bertq_gateway_http_requests_total',
    'HTTP requests answered, by route, method and status code.',
    ['route', 'method', 'status'],
  );
  readonly errors = new Counter('bertq_gateway_errors_total', 'Requests answered with an error, by bertq error code.', [
    'code',
  ]);
  readonly rows = new Counter(
    'bertq_gateway_rows_total',
    'Rows (sentences) encoded through the gateway, by endpoint.',
    ['endpoint'],
  );
  readonly tokens = new Counter(
    'bertq_gateway_tokens_total',
    'Tokens of the rows encoded through the gateway, as the workers counted them.',
    ['endpoint'],
  );
  readonly requestRows = new Histogram(
    'bertq_gateway_request_rows',
    'Rows per encode request (batch size).',
    ROWS_BUCKETS,
    ['endpoint'],
  );
  readonly duration = new Histogram(
    'bertq_gateway_request_duration_seconds',
    'Gateway-side latency of HTTP requests, from the first byte read to the last byte written.',
    LATENCY_BUCKETS,
    ['route'],
  );
  readonly stages = new Histogram(
    'bertq_stage_duration_seconds',
    'Worker-side stage latency of the rows encoded for this gateway, per result frame: tokenize, queue (job taken to batch start), inference, total (job taken to frames made).',
    LATENCY_BUCKETS,
    ['stage'],
  );
  readonly inFlight = new Gauge('bertq_gateway_in_flight_requests', 'HTTP requests being handled now.');
  readonly dashboardClients = new Gauge('bertq_gateway_dashboard_clients', 'Dashboards connected to /events now.');

  // Read from the fleet's status at scrape time.
  private readonly fleetUp = new Gauge('bertq_fleet_up', '1 when the fleet status could be read, else 0.');
  private readonly fleetWorkers = new Gauge('bertq_fleet_workers', 'Workers of the service, by state.', ['state']);
  private readonly queuePending = new Gauge(
    'bertq_queue_pending_jobs',
    'Jobs waiting in the JetStream consumer (queue depth), by consumer.',
    ['consumer'],
  );
  private readonly queueAckPending = new Gauge(
    'bertq_queue_ack_pending_jobs',
    'Jobs delivered to workers and not yet acknowledged, by consumer.',
    ['consumer'],
  );
  private readonly queueLocalRows = new Gauge(
    'bertq_queue_local_rows',
    "Rows held in the workers' own queues, summed over workers.",
  );
  private readonly fleetRowsRate = new Gauge(
    'bertq_fleet_rows_per_second',
    'Rows per second encoded by the whole fleet (all clients), as the workers report it.',
  );
  private readonly fleetRequestRate = new Gauge(
    'bertq_fleet_requests_per_second',
    'Jobs per second taken by the whole fleet, as the workers report it.',
  );
  private readonly workerInfo = new Gauge(
    'bertq_worker_info',
    'One series per worker, labelled with what it runs; the value is 1.',
    ['worker', 'device', 'state', 'pooling'],
  );
  private readonly workerStage = new Gauge(
    'bertq_worker_stage_latency_seconds',
    "Stage latency percentiles over each worker's recent window, as its status reports them.",
    ['worker', 'stage', 'quantile'],
  );

  /** Records the stage timings of one result frame (the client's onFrame). */
  observeFrame(report: FrameReport): void {
    // Later parts of a split row repeat the job's timings: count the row once.
    if (report.part !== undefined && report.part.index !== 1) return;
    for (const [stage, field] of STAGE_FIELDS) {
      const ms = report.timings[field];
      if (ms !== undefined) this.stages.observe({ stage }, ms / 1000);
    }
  }

  /** The exposition text, with fleet gauges from `fleet` (undefined: no reading was possible). */
  render(fleet: Reading<FleetStatus> | undefined): string {
    this.fillFleet(fleet);
    const metrics: Metric[] = [
      this.httpRequests,
      this.errors,
      this.rows,
      this.tokens,
      this.requestRows,
      this.duration,
      this.stages,
      this.inFlight,
      this.dashboardClients,
      this.fleetUp,
      this.fleetWorkers,
      this.queuePending,
      this.queueAckPending,
      this.queueLocalRows,
      this.fleetRowsRate,
      this.fleetRequestRate,
      this.workerInfo,
      this.workerStage,
    ];
    return renderMetrics(metrics);
  }

  private fillFleet(fleet: Reading<FleetStatus> | undefined): void {
    for (const g of [
      this.fleetWorkers,
      this.queuePending,
      this.queueAckPending,
      this.queueLocalRows,
      this.fleetRowsRate,
      this.fleetRequestRate,
      this.workerInfo,
      this.workerStage,
    ])
      g.reset();
    const ok = fleet?.ok === true;
    this.fleetUp.set({}, ok ? 1 : 0);
    if (!ok) return;
    const s = fleet.value;
    for (const state of ['starting', 'ready', 'draining'] as const) this.fleetWorkers.set({ state }, s.states[state]);
    for (const consumer of ['high', 'bulk'] as const) {
      const depth = s.queue[consumer];
      if (depth.pending !== null) this.queuePending.set({ consumer }, depth.pending);
      if (depth.ack_pending !== null) this.queueAckPending.set({ consumer }, depth.ack_pending);
    }
    this.queueLocalRows.set({}, s.queue.local_rows);
    this.fleetRowsRate.set({}, s.statistic.seq_per_second);
    this.fleetRequestRate.set({}, s.statistic.request_per_second);
    const stageNames: Record<string, Stage> = {
      tokenization: 'tokenize',
      queue: 'queue',
      inference: 'inference',
      total: 'total',
    };
    for (const w of s.workers) {
      this.workerInfo.set(
        { worker: w.worker_id, device: w.config.device, state: w.state, pooling: w.config.pooling_strategy },
        1,
      );
      for (const [field, stage] of Object.entries(stageNames)) {
        const t = w.timings[field as 'tokenization'];
        if (t === undefined || t.count === 0) continue;
        if (t.p50_ms !== undefined)
          this.workerStage.set({ worker: w.worker_id, stage, quantile: '0.5' }, t.p50_ms / 1000);
        if (t.p99_ms !== undefined)
          this.workerStage.set({ worker: w.worker_id, stage, quantile: '0.99' }, t.p99_ms / 1000);
      }
    }
  }
}
