/**
 * What /metrics shows, on prom-client. Three sources, each recorded where its events happen:
 *   - the gateway itself: HTTP requests by route and status, errors by code, rows, tokens, request
 *     sizes, end-to-end latency, and the workers' stage timings read off the result frames of the
 *     requests it sent (the handlers call the methods below);
 *   - every worker's own registry, fetched over its `metrics.<worker_id>` control endpoint and summed
 *     with prom-client's aggregator (each series keeps its `worker` label);
 *   - the fleet's status (cached): queue depth of the JetStream consumers and workers by state, read
 *     at scrape time.
 */
import type { FleetStatus, FrameReport } from '@bertq/client';
import { STAGES } from '@bertq/protocol';
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { Reading } from './fleet-cache.js';

/** Seconds: from a sub-millisecond cache hit to a minute-long bulk request. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Rows per request: powers of two up to well past max_batch_size. */
export const ROWS_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192];

export class GatewayMetrics {
  readonly registry = new Registry();
  /** Totals for /status/client (prom-client reads its own values only asynchronously). */
  requestsTotal = 0;
  errorsTotal = 0;
  #fleet: Reading<FleetStatus> | undefined;

  readonly #httpRequests = new Counter({
    name: 'bertq_gateway_http_requests_total',
    help: 'HTTP requests answered, by route, method and status code.',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
  });
  readonly #errors = new Counter({
    name: 'bertq_gateway_errors_total',
    help: 'Requests answered with an error, by bertq error code.',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  readonly #rows = new Counter({
    name: 'bertq_gateway_rows_total',
    help: 'Rows (sentences) encoded through the gateway, by endpoint.',
    labelNames: ['endpoint'] as const,
    registers: [this.registry],
  });
  readonly #tokens = new Counter({
    name: 'bertq_gateway_tokens_total',
    help: 'Tokens of the rows encoded through the gateway, as the workers counted them.',
    labelNames: ['endpoint'] as const,
    registers: [this.registry],
  });
  readonly #requestRows = new Histogram({
    name: 'bertq_gateway_request_rows',
    help: 'Rows per encode request (batch size).',
    buckets: ROWS_BUCKETS,
    labelNames: ['endpoint'] as const,
    registers: [this.registry],
  });
  readonly #duration = new Histogram({
    name: 'bertq_gateway_request_duration_seconds',
    help: 'Gateway-side latency of HTTP requests, from the first byte read to the last byte written.',
    buckets: LATENCY_BUCKETS,
    labelNames: ['route'] as const,
    registers: [this.registry],
  });
  readonly #stages = new Histogram({
    name: 'bertq_stage_duration_seconds',
    help: 'Worker-side stage latency of the rows encoded for this gateway, per result frame: tokenization, queue (job taken to batch start), inference, total (job taken to frames made).',
    buckets: LATENCY_BUCKETS,
    labelNames: ['stage'] as const,
    registers: [this.registry],
  });
  readonly #inFlight = new Gauge({
    name: 'bertq_gateway_in_flight_requests',
    help: 'HTTP requests being handled now.',
    registers: [this.registry],
  });
  readonly #dashboardClients = new Gauge({
    name: 'bertq_gateway_dashboard_clients',
    help: 'Dashboards connected to /events now.',
    registers: [this.registry],
  });

  constructor() {
    // Read from the fleet's status at scrape time.
    const fleet = () => (this.#fleet?.ok === true ? this.#fleet.value : undefined);
    this.#fleetGauge('bertq_fleet_up', '1 when the fleet status could be read, else 0.', [], (set) =>
      set({}, fleet() ? 1 : 0),
    );
    this.#fleetGauge('bertq_fleet_workers', 'Workers of the service, by state.', ['state'], (set) => {
      const s = fleet();
      if (s) for (const state of ['starting', 'ready', 'draining'] as const) set({ state }, s.states[state]);
    });
    this.#fleetGauge(
      'bertq_queue_pending_jobs',
      'Jobs waiting in the JetStream consumer (queue depth), by consumer.',
      ['consumer'],
      (set) => {
        const s = fleet();
        for (const consumer of ['high', 'bulk'] as const) {
          const pending = s?.queue[consumer].pending;
          if (pending !== undefined && pending !== null) set({ consumer }, pending);
        }
      },
    );
    this.#fleetGauge(
      'bertq_queue_ack_pending_jobs',
      'Jobs delivered to workers and not yet acknowledged, by consumer.',
      ['consumer'],
      (set) => {
        const s = fleet();
        for (const consumer of ['high', 'bulk'] as const) {
          const pending = s?.queue[consumer].ack_pending;
          if (pending !== undefined && pending !== null) set({ consumer }, pending);
        }
      },
    );
    this.#fleetGauge(
      'bertq_worker_info',
      'One series per worker, labelled with what it runs; the value is 1.',
      ['worker', 'device', 'state', 'pooling'],
      (set) => {
        for (const w of fleet()?.workers ?? []) {
          set({ worker: w.worker_id, device: w.config.device, state: w.state, pooling: w.config.pooling_strategy }, 1);
        }
      },
    );
  }

  /** A gauge set afresh from the fleet status at each scrape. */
  #fleetGauge<L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    fill: (set: (labels: Partial<Record<L, string>>, value: number) => void) => void,
  ): void {
    new Gauge({
      name,
      help,
      labelNames,
      registers: [this.registry],
      collect() {
        this.reset();
        fill((labels, value) => this.set(labels, value));
      },
    });
  }

  httpRequest(route: string, method: string, status: number, seconds: number | undefined): void {
    this.requestsTotal++;
    this.#httpRequests.inc({ route, method, status: String(status) });
    if (seconds !== undefined) this.#duration.observe({ route }, seconds);
  }

  error(code: string): void {
    this.errorsTotal++;
    this.#errors.inc({ code });
  }

  encoded(endpoint: string, rows: number, tokens: number): void {
    this.#rows.inc({ endpoint }, rows);
    this.#requestRows.observe({ endpoint }, rows);
    this.#tokens.inc({ endpoint }, tokens);
  }

  inFlight(by: 1 | -1): void {
    this.#inFlight.inc(by);
  }

  dashboardClients(by: 1 | -1): void {
    this.#dashboardClients.inc(by);
  }

  /** Records the stage timings of one result frame (the client's onFrame). */
  observeFrame(report: FrameReport): void {
    // Later parts of a split row repeat the job's timings: count the row once.
    if (report.part !== undefined && report.part.index !== 1) return;
    for (const stage of STAGES) {
      const ms = report.timings[stage];
      if (ms !== undefined) this.#stages.observe({ stage }, ms / 1000);
    }
  }

  /**
   * The exposition text: the gateway's metrics with fleet gauges from `fleet` (undefined: no reading
   * was possible), and the sum of the workers' registries (`workers`, one JSON list per worker).
   */
  async render(fleet: Reading<FleetStatus> | undefined, workers: readonly unknown[][] = []): Promise<string> {
    this.#fleet = fleet;
    const registries = [this.registry];
    if (workers.length > 0) {
      registries.push(
        AggregatorRegistry.aggregate(workers as Array<Array<MetricObjectWithValues<MetricValue<string>>>>),
      );
    }
    return Registry.merge(registries).metrics();
  }

  static readonly contentType = Registry.PROMETHEUS_CONTENT_TYPE;
}
