/**
 * The dashboard's time series: one point per second of what went through this gateway (requests,
 * rows, errors, latency percentiles, worker stage times) beside what the fleet reports (its rows/s
 * from every client, queue depth). Kept in a ring of fixed length, so a dashboard opened late still
 * sees the last minutes. Pure bookkeeping: the gateway feeds it and calls `sample()` each second.
 */
import type { FrameReport } from '@bertq/client';
import type { FleetStatus } from '@bertq/client';
import type { Reading } from './fleet-cache.js';

/** Latency percentiles are taken over the requests finished in this many ms. */
export const LATENCY_WINDOW_MS = 10_000;
/** Samples the latency window keeps at most (a flood of tiny requests must not grow it without bound). */
const LATENCY_WINDOW_CAP = 20_000;

export interface HistoryPoint {
  /** Epoch ms of the end of the second. */
  t: number;
  /** Encode requests answered in that second (errors included). */
  requests: number;
  /** Rows encoded in that second. */
  rows: number;
  /** Error answers in that second, by code. */
  errors: Record<string, number>;
  /** Gateway-side latency of encode requests over the last LATENCY_WINDOW_MS, in ms; null without requests. */
  p50: number | null;
  p95: number | null;
  p99: number | null;
  /** Mean worker stage times (ms) of the frames received in that second; null without frames. */
  stages: { tokenization: number; queue: number; inference: number } | null;
  /** Rows/s of the whole fleet (every client), from its status; null when it could not be read. */
  fleetRows: number | null;
  /** Jobs waiting in JetStream (high + bulk), from the fleet status; null when unknown. */
  queue: number | null;
  /** Requests being handled at the end of the second. */
  inFlight: number;
}

export class History {
  private readonly points: HistoryPoint[] = [];
  private requests = 0;
  private rows = 0;
  private errors: Record<string, number> = {};
  private frames = 0;
  private stageSums = { tokenization: 0, queue: 0, inference: 0 };
  /** (finish time, ms) pairs of recent requests, oldest first. */
  private readonly latencies: Array<[number, number]> = [];

  constructor(private readonly capacity: number) {}

  /** One encode request answered (successfully when `errorCode` is undefined). */
  recordRequest(now: number, durationMs: number, rows: number, errorCode?: string): void {
    this.requests++;
    this.rows += rows;
    if (errorCode !== undefined) this.errors[errorCode] = (this.errors[errorCode] ?? 0) + 1;
    this.latencies.push([now, durationMs]);
    if (this.latencies.length > LATENCY_WINDOW_CAP)
      this.latencies.splice(0, this.latencies.length - LATENCY_WINDOW_CAP);
  }

  /** Any other error answer (bad JSON, 401, …): counted, no rows, no latency. */
  recordError(errorCode: string): void {
    this.errors[errorCode] = (this.errors[errorCode] ?? 0) + 1;
  }

  recordFrame(report: FrameReport): void {
    if (report.part !== undefined && report.part.index !== 1) return;
    const t = report.timings;
    if (t.tokenization === undefined || t.queue === undefined || t.inference === undefined) return;
    this.frames++;
    this.stageSums.tokenization += t.tokenization;
    this.stageSums.queue += t.queue;
    this.stageSums.inference += t.inference;
  }

  /** Closes the current second: appends its point and starts the next. */
  sample(now: number, fleet: Reading<FleetStatus> | undefined, inFlight: number): HistoryPoint {
    while (this.latencies.length > 0 && this.latencies[0]![0] < now - LATENCY_WINDOW_MS) this.latencies.shift();
    const sorted = this.latencies.map(([, ms]) => ms).sort((a, b) => a - b);
    // A fleet reading older than a few seconds says nothing about this second.
    const fresh = fleet?.ok === true && now - fleet.at < 5_000 ? fleet.value : undefined;
    const pending = fresh === undefined ? null : sumKnown(fresh.queue.high.pending, fresh.queue.bulk.pending);
    const point: HistoryPoint = {
      t: now,
      requests: this.requests,
      rows: this.rows,
      errors: this.errors,
      p50: quantile(sorted, 0.5),
      p95: quantile(sorted, 0.95),
      p99: quantile(sorted, 0.99),
      stages:
        this.frames === 0
          ? null
          : {
              tokenization: round3(this.stageSums.tokenization / this.frames),
              queue: round3(this.stageSums.queue / this.frames),
              inference: round3(this.stageSums.inference / this.frames),
            },
      fleetRows: fresh === undefined ? null : round3(fresh.statistic.seq_per_second),
      queue: pending,
      inFlight,
    };
    this.points.push(point);
    if (this.points.length > this.capacity) this.points.shift();
    this.requests = 0;
    this.rows = 0;
    this.errors = {};
    this.frames = 0;
    this.stageSums = { tokenization: 0, queue: 0, inference: 0 };
    return point;
  }

  /** Every point kept, oldest first. */
  all(): HistoryPoint[] {
    return [...this.points];
  }
}

/** Nearest-rank quantile of sorted values; null for none. */
export function quantile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return round3(sorted[rank]!);
}

function sumKnown(a: number | null, b: number | null): number | null {
  if (a === null && b === null) return null;
  return (a ?? 0) + (b ?? 0);
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
