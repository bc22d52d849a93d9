/**
 * Shedding early: a request that the fleet could not serve before its deadline is refused with
 * OVERLOADED before any job is published, instead of waiting in the queue to time out (what TEI's
 * `--max-concurrent-requests` gives at once, here from a measured estimate rather than a count).
 *
 * The estimate comes from the fleet's status: the jobs pending ahead of this request's lane (the
 * high lane is served first, so a bulk request waits for both), times the rows per job the workers
 * have seen, plus the rows the workers already hold, drained at the fleet's capacity (rows per second
 * the workers measure while saturated, summed over workers); then the request's own rows, at the rate
 * of the batches they will run in (a 4,096-row request is batched max_batch_size rows at a time, and
 * a model computes those far faster per row than the 1-row batches of a backlog of queries: judged
 * at the backlog's rate, such a request was refused with 2 rows queued). It is only used when there is a
 * backlog: with an empty queue nothing is refused, whatever the numbers say. Two readings, both taken
 * in the background so a request never waits for one: the queue depth straight from JetStream (one
 * cheap request to the server, at most every DEPTH_MAX_AGE_MS, so a fast-growing queue is seen while
 * it grows), and the workers' capacity, rows per job and held rows from their status (a scatter to
 * every worker, at most every READING_MAX_AGE_MS). The first requests of a burst are admitted on the
 * last readings or none.
 */
import { OverloadedError, type Priority, type ServerConfig } from '@bertq/protocol';
import type { FleetStatus } from './control.js';
import { SingleFlight } from './single-flight.js';

/** A fleet status older than this is read again (in the background). */
export const READING_MAX_AGE_MS = 2_000;
/** While a backlog is seen, the status (the fleet's capacity under that load) is read this often. */
export const BACKLOG_READING_MAX_AGE_MS = 500;
/** A queue depth older than this is read again (in the background): a queue under a burst grows fast. */
export const DEPTH_MAX_AGE_MS = 250;
/**
 * Refuse when the estimate passes this share of the time left, not all of it: the queue depth is up
 * to DEPTH_MAX_AGE_MS old while the queue may be growing, and the answer still has to reach the caller.
 */
export const ADMISSION_MARGIN = 0.8;
/** A reading older than this is not used at all: the queue may have drained since. */
export const READING_STALE_MS = 5_000;
/**
 * The queue depth is read again (every DEPTH_MAX_AGE_MS) only while the rows known to be ahead reach
 * this share of what would refuse the request: a depth read is a JetStream API request to the broker,
 * and 64 clients of 1-row requests, each reading it every 250 ms, made 512 of them a second for
 * answers that could not change (a 1-row request with seconds to go is refused only behind a queue of
 * thousands of rows). The status read every READING_MAX_AGE_MS still sees any queue that grows.
 */
export const DEPTH_WATCH_SHARE = 0.25;

/** What the estimate needs from one fleet status. */
export interface LoadReading {
  /** When it was taken (ms since the epoch). */
  at: number;
  /** Rows per second the fleet drains a backlog at. */
  capacity: number;
  /** Average rows per job the workers have computed. */
  rowsPerJob: number;
  /** Jobs waiting in each lane of the stream. */
  pending: Record<Priority, number>;
  /** Rows already in the workers' hands. */
  heldRows: number;
  /** Rows per second by batch size (its power of two), as the workers measured them; may be empty. */
  capacityByBatch: Record<string, number>;
}

/** A request as admission judges it. */
export interface AdmissionRequest {
  lane: Priority;
  rows: number;
  deadline: number;
  /** The most rows one batch of this request holds (max_batch_size, and the token budget). Default: rows. */
  batchRows?: number;
}

export function readingFromStatus(status: FleetStatus, at: number): LoadReading {
  const s = status.statistic;
  return {
    at,
    capacity: s.capacity_seq_per_second ?? 0,
    rowsPerJob: s.num_data_request > 0 ? s.num_total_seq / s.num_data_request : 1,
    pending: { high: status.queue.high.pending ?? 0, bulk: status.queue.bulk.pending ?? 0 },
    heldRows: status.queue.local_rows,
    capacityByBatch: { ...(s.capacity_by_batch_rows ?? {}) },
  };
}

/**
 * Rows per second for a request batched `batchRows` at a time: the rate measured for the largest
 * batch size run that is not bigger (bigger batches are never slower per row, so this errs on the
 * slow side), else the backlog's drain rate.
 */
export function ownRate(r: LoadReading, batchRows: number): number {
  let best: { size: number; rate: number } | undefined;
  for (const [key, rate] of Object.entries(r.capacityByBatch)) {
    const size = Number(key);
    if (size <= Math.max(1, batchRows) && rate > 0 && (best === undefined || size > best.size)) best = { size, rate };
  }
  return best === undefined ? r.capacity : Math.max(best.rate, r.capacity);
}

/**
 * The most rows one batch of a request of `rows` rows holds on the workers: max_batch_size, and as
 * many rows of max_seq_len tokens as the token budget takes (with max_seq_len NONE, the row count only).
 */
export function batchRowsOf(
  config: Pick<ServerConfig, 'max_batch_size' | 'max_batch_tokens' | 'max_seq_len'>,
  rows: number,
): number {
  let most = Math.min(rows, config.max_batch_size ?? rows);
  if (config.max_batch_tokens !== undefined && config.max_seq_len !== null && config.max_seq_len !== undefined)
    most = Math.min(most, Math.floor(config.max_batch_tokens / config.max_seq_len));
  return Math.max(1, most);
}

/** What waits ahead of a request in `lane`: the high lane is served first, so bulk waits for both. */
function queuedAhead(r: LoadReading, lane: Priority): { jobs: number; rows: number } {
  const jobs = lane === 'high' ? r.pending.high : r.pending.high + r.pending.bulk;
  return { jobs, rows: jobs * r.rowsPerJob + r.heldRows };
}

export interface WaitEstimate {
  /** Rows ahead of the request. */
  rowsAhead: number;
  /** Until its last row is done, ms. */
  waitMs: number;
}

/** How long a request of `rows` rows in `lane` would take; undefined with no backlog or no measure. */
export function estimateWait(r: LoadReading, lane: Priority, rows: number, batchRows = rows): WaitEstimate | undefined {
  const e = estimate(r, lane, rows, batchRows);
  return e && { rowsAhead: e.rowsAhead, waitMs: e.waitMs };
}

/** estimateWait, with the rate the request's own batches were judged at. */
function estimate(
  r: LoadReading,
  lane: Priority,
  rows: number,
  batchRows: number,
): (WaitEstimate & { batchRate: number }) | undefined {
  const ahead = queuedAhead(r, lane);
  if (ahead.jobs === 0 || r.capacity <= 0) return undefined;
  const batchRate = ownRate(r, Math.min(rows, batchRows));
  const seconds = ahead.rows / r.capacity + rows / batchRate;
  return { rowsAhead: ahead.rows, batchRate, waitMs: Math.round(seconds * 1e6) / 1e3 };
}

/** The OVERLOADED a request gets when the estimate says it would miss its deadline; else undefined. */
export function admissionError(
  r: LoadReading | undefined,
  request: AdmissionRequest & { service: string },
  now: number,
): OverloadedError | undefined {
  if (r === undefined || now - r.at > READING_STALE_MS || !Number.isFinite(request.deadline)) return undefined;
  const e = estimate(r, request.lane, request.rows, request.batchRows ?? request.rows);
  if (e === undefined || e.waitMs <= ADMISSION_MARGIN * (request.deadline - now)) return undefined;
  const seconds = (ms: number) => (ms / 1000).toFixed(1);
  return new OverloadedError(
    `service "${request.service}" is overloaded: about ${Math.round(e.rowsAhead)} rows are queued ahead of this request, ` +
      `~${seconds(e.waitMs)} s at the fleet's ${Math.round(r.capacity)} rows/s (${Math.round(e.batchRate)} rows/s for this request's batches), too close to its deadline in ${seconds(request.deadline - now)} s; ` +
      'nothing was sent. Retry later, allow a longer timeout, or add workers',
    {
      details: {
        rowsAhead: Math.round(e.rowsAhead),
        estimatedWaitMs: Math.round(e.waitMs),
        deadlineInMs: Math.round(request.deadline - now),
        capacity: Math.round(r.capacity),
        batchRate: Math.round(e.batchRate),
        lane: request.lane,
      },
    },
  );
}

/**
 * Whether a fresh queue depth could change this request's answer: the rows known to be ahead reach
 * DEPTH_WATCH_SHARE of the backlog that would refuse it. Without a measured capacity nothing is
 * refused, so nothing needs reading.
 */
export function depthMatters(r: LoadReading, request: AdmissionRequest, now: number): boolean {
  if (r.capacity <= 0 || !Number.isFinite(request.deadline)) return false;
  const toDrain = queuedAhead(r, request.lane).rows + request.rows;
  const refusingRows = (ADMISSION_MARGIN * Math.max(0, request.deadline - now) * r.capacity) / 1000;
  return toDrain >= DEPTH_WATCH_SHARE * refusingRows;
}

/** Keeps the latest readings, refreshing them in the background while requests come. */
export class AdmissionGate {
  #reading: LoadReading | undefined;
  #statusAt = Number.NEGATIVE_INFINITY;
  readonly #statusRead = new SingleFlight<void>();
  readonly #depthRead = new SingleFlight<void>();

  constructor(
    private readonly readStatus: () => Promise<FleetStatus>,
    /** Jobs waiting in each lane, straight from JetStream; undefined when it cannot be read. */
    private readonly readDepth: () => Promise<Record<Priority, number> | undefined>,
    private readonly now: () => number = Date.now,
  ) {}

  get reading(): LoadReading | undefined {
    return this.#reading;
  }

  /** Throws OVERLOADED when the request would miss its deadline; starts refreshes when readings are old. */
  check(request: AdmissionRequest & { service: string }): void {
    const now = this.now();
    const backlog = this.#reading !== undefined && this.#reading.pending.high + this.#reading.pending.bulk > 0;
    if (now - this.#statusAt > (backlog ? BACKLOG_READING_MAX_AGE_MS : READING_MAX_AGE_MS)) void this.refreshStatus();
    else if (
      this.#reading !== undefined &&
      now - this.#reading.at > DEPTH_MAX_AGE_MS &&
      depthMatters(this.#reading, request, now)
    )
      void this.refreshDepth();
    const refusal = admissionError(this.#reading, request, now);
    if (refusal) throw refusal;
  }

  /** One status read at a time; a failed read keeps the old reading (it goes stale on its own). */
  refreshStatus(): Promise<void> {
    return this.#statusRead.run(() =>
      this.readStatus()
        .then((status) => {
          const at = this.now();
          this.#statusAt = at;
          this.#reading = readingFromStatus(status, at);
        })
        .catch(() => undefined),
    );
  }

  /** One depth read at a time: fresh pending counts on the last status's capacity. */
  refreshDepth(): Promise<void> {
    return this.#depthRead.run(() =>
      this.readDepth()
        .then((pending) => {
          if (pending !== undefined && this.#reading !== undefined)
            this.#reading = { ...this.#reading, pending, at: this.now() };
        })
        .catch(() => undefined),
    );
  }

  /** After a reconnect: the next check starts fresh reads instead of waiting behind unanswered ones. */
  forgetReadsInFlight(): void {
    this.#statusRead.forget();
    this.#depthRead.forget();
  }
}
