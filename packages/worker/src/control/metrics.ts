/**
 * A worker's counters and recent timings, as the `status` endpoint reports them (bert-as-service's
 * server_statistic, plus per-stage latency percentiles the way TEI exposes them). Everything here is
 * bounded: timing windows keep at most `capacity` samples, rate meters one bucket per second.
 */
import type { ErrorCode, Stage } from '@bertq/protocol';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Summary of one stage over the recent window, in milliseconds. */
export interface StageSummary {
  count: number;
  avg_ms: number;
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
  max_ms: number;
}

const DEFAULT_WINDOW_SAMPLES = 1024;
const DEFAULT_WINDOW_AGE_MS = 5 * 60_000;

/** The last `capacity` samples not older than `maxAgeMs`; percentiles are computed on demand. */
export class LatencyWindow {
  readonly #values: Float64Array;
  readonly #times: Float64Array;
  #next = 0;
  #size = 0;

  constructor(
    readonly capacity = DEFAULT_WINDOW_SAMPLES,
    readonly maxAgeMs = DEFAULT_WINDOW_AGE_MS,
    private readonly now: () => number = Date.now,
  ) {
    this.#values = new Float64Array(capacity);
    this.#times = new Float64Array(capacity);
  }

  add(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    this.#values[this.#next] = ms;
    this.#times[this.#next] = this.now();
    this.#next = (this.#next + 1) % this.capacity;
    this.#size = Math.min(this.#size + 1, this.capacity);
  }

  summary(): StageSummary {
    const oldest = this.now() - this.maxAgeMs;
    const recent: number[] = [];
    for (let i = 0; i < this.#size; i++) if (this.#times[i]! >= oldest) recent.push(this.#values[i]!);
    if (recent.length === 0) return { count: 0, avg_ms: 0, p50_ms: 0, p95_ms: 0, p99_ms: 0, max_ms: 0 };
    recent.sort((a, b) => a - b);
    const at = (q: number) => recent[Math.min(recent.length - 1, Math.ceil(q * recent.length) - 1)]!;
    const sum = recent.reduce((a, b) => a + b, 0);
    return {
      count: recent.length,
      avg_ms: round3(sum / recent.length),
      p50_ms: round3(at(0.5)),
      p95_ms: round3(at(0.95)),
      p99_ms: round3(at(0.99)),
      max_ms: round3(recent[recent.length - 1]!),
    };
  }
}

const DEFAULT_RATE_WINDOW_S = 60;

/** The last `size` (rows, ms) pairs and their overall rows per second: the ring both meters keep. */
class RowsPerSecondRing {
  readonly #rows: Float64Array;
  readonly #ms: Float64Array;
  #next = 0;
  #count = 0;

  constructor(readonly size: number) {
    this.#rows = new Float64Array(size);
    this.#ms = new Float64Array(size);
  }

  add(rows: number, ms: number): void {
    this.#rows[this.#next] = rows;
    this.#ms[this.#next] = ms;
    this.#next = (this.#next + 1) % this.size;
    this.#count = Math.min(this.#count + 1, this.size);
  }

  /** Rows per second over the ring; undefined while it holds no time. */
  perSecond(): number | undefined {
    let rows = 0;
    let ms = 0;
    for (let i = 0; i < this.#count; i++) {
      rows += this.#rows[i]!;
      ms += this.#ms[i]!;
    }
    return ms > 0 ? (rows * 1000) / ms : undefined;
  }
}

/**
 * Rows per second while computing, over the last `batches` batches. Unlike RateMeter's rate it does
 * not fall when the worker idles, so it answers "how long would a queue of N rows take" at once.
 */
export class CapacityMeter {
  readonly #ring: RowsPerSecondRing;

  constructor(batches = 32) {
    this.#ring = new RowsPerSecondRing(batches);
  }

  add(rows: number, ms: number): void {
    this.#ring.add(rows, ms);
  }

  /** Rows per second; 0 before the first batch. */
  perSecond(): number {
    return this.#ring.perSecond() ?? 0;
  }
}

/**
 * Rows per second of inference time by batch size, in powers of two (a batch of 10 rows counts under
 * 8, the largest power of two it holds, so a request batched 10 at a time finds it): a model computes big batches faster per row, so a backlog of 1-row jobs drains slower than one
 * request of 4,096 rows would. Clients judge a request at the rate of the batches it would get
 * (admission.ts), not at whatever batch sizes recent traffic had.
 */
export class BatchSizeCapacity {
  readonly #rings = new Map<number, RowsPerSecondRing>();

  constructor(private readonly batchesPerSize = 16) {}

  /** The power of two a batch of `rows` rows is counted under. */
  static bucket(rows: number): number {
    return 2 ** Math.floor(Math.log2(Math.max(1, rows)));
  }

  add(rows: number, ms: number): void {
    const key = BatchSizeCapacity.bucket(rows);
    let ring = this.#rings.get(key);
    if (ring === undefined) {
      ring = new RowsPerSecondRing(this.batchesPerSize);
      this.#rings.set(key, ring);
    }
    ring.add(rows, ms);
  }

  /** Rows per second of inference time for each batch size seen, keyed by its power of two. */
  perSecond(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [key, ring] of [...this.#rings].sort((a, b) => a[0] - b[0])) {
      const rate = ring.perSecond();
      if (rate !== undefined) out[String(key)] = round3(rate);
    }
    return out;
  }
}

/**
 * Rows per second of wall time while the worker was saturated (rows waiting for the model at both
 * ends of a sampling interval): its real drain rate, every overhead included (tokenizing, publishing,
 * a busy event loop), which inference time alone overstates for a small model. Over the last
 * `samples` saturated intervals, however long ago: an idle worker keeps what it knew.
 */
export class DrainRateMeter {
  readonly #ring: RowsPerSecondRing;
  #last: { at: number; rows: number; saturated: boolean } | undefined;

  constructor(samples = 40) {
    this.#ring = new RowsPerSecondRing(samples);
  }

  /** One reading: rows done so far, and whether rows are waiting for the model now. */
  sample(rowsDone: number, saturated: boolean, now = performance.now()): void {
    const last = this.#last;
    if (last?.saturated && saturated && now > last.at) this.#ring.add(rowsDone - last.rows, now - last.at);
    this.#last = { at: now, rows: rowsDone, saturated };
  }

  /** Rows per second; undefined before the worker was ever saturated. */
  perSecond(): number | undefined {
    return this.#ring.perSecond();
  }
}

/** Events per second over the last `windowSeconds` (or since start, when younger). */
export class RateMeter {
  readonly #buckets: Float64Array;
  readonly #stamps: Float64Array;
  readonly #start: number;

  constructor(
    readonly windowSeconds = DEFAULT_RATE_WINDOW_S,
    private readonly now: () => number = Date.now,
  ) {
    this.#buckets = new Float64Array(windowSeconds);
    this.#stamps = new Float64Array(windowSeconds).fill(-1);
    this.#start = now();
  }

  add(n = 1): void {
    const second = Math.floor(this.now() / 1000);
    const slot = second % this.windowSeconds;
    if (this.#stamps[slot] !== second) {
      this.#stamps[slot] = second;
      this.#buckets[slot] = 0;
    }
    this.#buckets[slot]! += n;
  }

  perSecond(): number {
    const now = this.now();
    const second = Math.floor(now / 1000);
    let sum = 0;
    for (let i = 0; i < this.windowSeconds; i++) {
      if (this.#stamps[i]! > second - this.windowSeconds) sum += this.#buckets[i]!;
    }
    const span = Math.min(this.windowSeconds, Math.max(1, (now - this.#start) / 1000));
    return round3(sum / span);
  }
}

/** bert-as-service's active clients: distinct reply subjects seen within the last few minutes. */
export class ClientTracker {
  readonly #lastSeen = new Map<string, number>();
  #total = 0;

  constructor(
    readonly activeWindowMs = 3 * 60_000,
    /** Bound on remembered clients; the oldest are forgotten first. */
    readonly maxTracked = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  see(client: string): void {
    if (!this.#lastSeen.has(client)) this.#total++;
    // Re-insert so the Map's order stays oldest-first.
    this.#lastSeen.delete(client);
    this.#lastSeen.set(client, this.now());
    if (this.#lastSeen.size > this.maxTracked) this.#lastSeen.delete(this.#lastSeen.keys().next().value!);
  }

  active(): number {
    const since = this.now() - this.activeWindowMs;
    for (const [client, at] of this.#lastSeen) {
      if (at >= since) break;
      this.#lastSeen.delete(client);
    }
    return this.#lastSeen.size;
  }

  get total(): number {
    return this.#total;
  }
}

/** Counters since start. */
export interface WorkerCounters {
  /** Jobs taken off the queue (every delivery counts). */
  jobsReceived: number;
  /** Jobs whose rows were all published and acknowledged. */
  jobsDone: number;
  /** Jobs answered with an error frame. */
  jobsFailed: number;
  /** Jobs refused that had no usable reply subject: logged, counted, terminated. */
  jobsUnanswerable: number;
  /** Deliveries that were redeliveries (a worker died or was too slow before). */
  jobsRedelivered: number;
  /** Jobs handed back (nak) to the queue, e.g. while draining or after a failed batch. */
  jobsReturned: number;
  /** Jobs dropped because their deadline passed. */
  jobsTimedOut: number;
  /** Jobs skipped, not computed, because their client cancelled the request (closed, aborted, gave up). */
  jobsCancelled: number;
  /** Rows encoded and published. */
  rows: number;
  batches: number;
  batchRows: number;
  batchPaddedTokens: number;
  batchRealTokens: number;
  /** Error frames by code. */
  errors: Partial<Record<ErrorCode, number>>;
}

/** Seconds: from a sub-millisecond tokenization to a minute-long bulk job. */
export const STAGE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Rows per model batch: powers of two up to well past max_batch_size. */
export const BATCH_ROWS_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/**
 * One worker's metrics, recorded where each event happens (the worker calls one method per event).
 * Two views of the same events: `counters`, timing windows and rates for the `status` endpoint
 * (bert-as-service's server_statistic, and TEI-like percentiles), and a prom-client registry that the
 * `metrics.<worker_id>` control endpoint serves as JSON and the gateway aggregates for /metrics.
 * Adding a Prometheus metric is one declaration here and one line where its event happens.
 */
export class WorkerMetrics {
  readonly counters: WorkerCounters = {
    jobsReceived: 0,
    jobsDone: 0,
    jobsFailed: 0,
    jobsUnanswerable: 0,
    jobsRedelivered: 0,
    jobsReturned: 0,
    jobsTimedOut: 0,
    jobsCancelled: 0,
    rows: 0,
    batches: 0,
    batchRows: 0,
    batchPaddedTokens: 0,
    batchRealTokens: 0,
    errors: {},
  };
  readonly timings: Record<Stage, LatencyWindow> = {
    tokenization: new LatencyWindow(),
    queue: new LatencyWindow(),
    inference: new LatencyWindow(),
    total: new LatencyWindow(),
  };
  readonly jobRate = new RateMeter();
  /** Rows per second of inference time: what a backlog drains at, however idle the worker was. */
  readonly capacity = new CapacityMeter();
  /** Rows per second while saturated: the drain rate with every overhead. */
  readonly drain = new DrainRateMeter();

  /**
   * What a backlog drains at: the measured drain rate once the worker has been saturated, else the
   * inference-time rate (an upper bound, for a worker that never had a backlog yet).
   */
  capacityPerSecond(): number {
    return this.drain.perSecond() ?? this.capacity.perSecond();
  }
  /**
   * Inference-time rows per second by batch size (see BatchSizeCapacity): what a request batched that
   * many rows at a time drains at. Inference time, not wall time: the per-job overheads that slow a
   * backlog of 1-row jobs (tokenizing, frames, acks per job) are small next to a big job's compute.
   */
  readonly capacityByBatch = new BatchSizeCapacity();
  readonly rowRate = new RateMeter();
  readonly clients = new ClientTracker();

  readonly registry = new Registry();
  readonly #jobs = new Counter({
    name: 'bertq_worker_jobs_total',
    help: 'Jobs by what became of them: received (every delivery), done, failed (answered with an error), unanswerable, returned (handed back to the queue), timed_out.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly #redelivered = new Counter({
    name: 'bertq_worker_redelivered_jobs_total',
    help: 'Deliveries that were redeliveries (a worker died or was too slow before).',
    registers: [this.registry],
  });
  readonly #errors = new Counter({
    name: 'bertq_worker_errors_total',
    help: 'Error frames sent and jobs refused, by bertq error code.',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  readonly #rows = new Counter({
    name: 'bertq_worker_rows_total',
    help: 'Rows encoded and published.',
    registers: [this.registry],
  });
  readonly #tokens = new Counter({
    name: 'bertq_worker_batch_tokens_total',
    help: 'Tokens through the model: real (the rows themselves) and padded (what the batches computed).',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly #batchRows = new Histogram({
    name: 'bertq_worker_batch_rows',
    help: 'Rows per model batch.',
    buckets: BATCH_ROWS_BUCKETS,
    registers: [this.registry],
  });
  readonly #stages = new Histogram({
    name: 'bertq_worker_stage_duration_seconds',
    help: 'Stage latency per job (inference: per batch): tokenization, queue (taken to first batch), inference, total (taken to last frame).',
    labelNames: ['stage'] as const,
    buckets: STAGE_BUCKETS,
    registers: [this.registry],
  });

  readonly #streamRepairs = new Counter({
    name: 'bertq_worker_stream_repairs_total',
    help: 'Times the worker found its stream or consumers deleted or changed from outside, and restored them.',
    registers: [this.registry],
  });

  readonly #modelFailures = new Counter({
    name: 'bertq_worker_model_failures_total',
    help: 'Batches the model failed (their jobs went back to the queue, or failed on their last delivery).',
    registers: [this.registry],
  });

  /** `labels` (service, worker) go on every series, so the gateway can sum several workers' registries. */
  constructor(labels: Record<string, string> = {}) {
    this.registry.setDefaultLabels(labels);
  }

  /** Gauges read at scrape time (what the worker holds now). */
  watch(name: string, help: string, read: () => number): void {
    new Gauge({
      name,
      help,
      registers: [this.registry],
      collect() {
        this.set(read());
      },
    });
  }

  jobReceived(redelivered: boolean): void {
    this.counters.jobsReceived++;
    this.#jobs.inc({ outcome: 'received' });
    if (redelivered) {
      this.counters.jobsRedelivered++;
      this.#redelivered.inc();
    }
  }

  /** A job refused: answered with an error frame, or unanswerable (no usable reply subject). */
  jobRefused(code: ErrorCode, answered: boolean): void {
    this.counters.errors[code] = (this.counters.errors[code] ?? 0) + 1;
    this.#errors.inc({ code });
    if (code === 'TIMEOUT') {
      this.counters.jobsTimedOut++;
      this.#jobs.inc({ outcome: 'timed_out' });
    }
    if (answered) this.counters.jobsFailed++;
    else this.counters.jobsUnanswerable++;
    this.#jobs.inc({ outcome: answered ? 'failed' : 'unanswerable' });
  }

  /** The stream or a consumer was deleted or changed from outside, and the worker restored it. */
  streamRepaired(): void {
    this.#streamRepairs.inc();
  }

  jobCancelled(): void {
    this.counters.jobsCancelled++;
    this.#jobs.inc({ outcome: 'cancelled' });
  }

  jobReturned(): void {
    this.counters.jobsReturned++;
    this.#jobs.inc({ outcome: 'returned' });
  }

  /** A job whose rows were all published: its stage timings (ms). */
  jobDone(rows: number, ms: Omit<Record<Stage, number>, 'inference'>): void {
    this.counters.jobsDone++;
    this.counters.rows += rows;
    this.jobRate.add(1);
    this.rowRate.add(rows);
    this.#jobs.inc({ outcome: 'done' });
    this.#rows.inc(rows);
    for (const stage of ['tokenization', 'queue', 'total'] as const) this.#stage(stage, ms[stage]);
  }

  batchDone(rows: number, realTokens: number, paddedTokens: number, inferenceMs: number): void {
    this.capacity.add(rows, inferenceMs);
    this.capacityByBatch.add(rows, inferenceMs);
    const c = this.counters;
    c.batches++;
    c.batchRows += rows;
    c.batchRealTokens += realTokens;
    c.batchPaddedTokens += paddedTokens;
    this.#batchRows.observe(rows);
    this.#tokens.inc({ kind: 'real' }, realTokens);
    this.#tokens.inc({ kind: 'padded' }, paddedTokens);
    this.#stage('inference', inferenceMs);
  }

  batchFailed(): void {
    this.#modelFailures.inc();
  }

  #stage(stage: Stage, ms: number): void {
    this.timings[stage].add(ms);
    if (Number.isFinite(ms) && ms >= 0) this.#stages.observe({ stage }, ms / 1000);
  }
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
