/**
 * When and what the model runs: rows wait in the pure Batcher; the moment the model frees up, the
 * next batch is formed from them (largest length-sorted window, least padding) and handed to `run`.
 * Nothing is lost by waiting until then: pulling, parsing and tokenizing the next jobs happen on this
 * thread while the model computes on its own (the runtime thread), and picking rows and padding them
 * takes well under a millisecond.
 *
 * With a backlog, one batch ahead is handed over while the model computes (`maxInFlight` 2): the
 * model thread then starts the next batch the moment it finishes one, instead of idling while this
 * thread takes the results, writes them out and forms the next batch (11% of the model thread's time
 * with 4096-row requests, profiled). Only a full batch goes ahead: without a backlog, rows that
 * arrive while the model computes would miss a batch formed early, and batches would shrink.
 *
 * It also keeps the aging threshold right: a row waits out of length order only once it has waited
 * longer than the worker needs to work through everything it may hold. A fixed threshold would turn
 * shortest-first batching back into FIFO under load, and padding back up.
 */
import { Batcher } from './batcher.js';
import type { Batch, BatcherInput, QueuedEntry } from './batcher.js';

/** Aging threshold, in batch times, beyond the time needed to work through everything held. */
const AGING_SLACK_BATCHES = 2;
/** Weight of the newest batch in the moving averages of batch time and size. */
const BATCH_TIME_EWMA = 0.2;

export interface SchedulerOptions<J> {
  maxBatchTokens: number;
  maxBatchSize: number;
  /** The aging threshold's floor (ms). */
  maxWaitMs: number;
  /** Most rows held at once (the batcher's bound). */
  maxQueuedRows: number;
  /** A job whose rows are skipped (finished: acked, refused or handed back meanwhile). */
  isFinished: (job: J) => boolean;
  /** Rows whose deadline passed before a batch took them: their job gets TIMEOUT. */
  onExpired: (job: J) => void;
  /** Runs one batch on the model; the next batch is formed when it settles. */
  run: (batch: Batch<J>) => Promise<void>;
  /**
   * Batches handed to `run` and not settled yet, at most (default 1). Above 1, the batches after the
   * first are formed only from a backlog that fills them (see above); `run` must keep their order.
   */
  maxInFlight?: number;
  /** A failure of `run` itself (its own errors are its business): logged by the caller. */
  onRunError: (err: unknown) => void;
}

export class Scheduler<J> {
  readonly #batcher: Batcher<J>;
  #inFlight = 0;
  #inFlightRows = 0;
  readonly #maxInFlight: number;
  /** Moving averages of the model's batch time (ms) and batch size (rows). */
  #batchMs: number | undefined;
  #batchRows: number | undefined;

  constructor(private readonly options: SchedulerOptions<J>) {
    this.#batcher = new Batcher<J>({
      maxBatchTokens: options.maxBatchTokens,
      maxBatchSize: options.maxBatchSize,
      maxWaitMs: options.maxWaitMs,
      maxQueuedRows: options.maxQueuedRows,
    });
    this.#maxInFlight = Math.max(1, options.maxInFlight ?? 1);
  }

  /** Rows waiting for a batch. */
  get size(): number {
    return this.#batcher.size;
  }

  /** Batches handed to the model and not settled yet. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Rows not encoded yet: waiting for a batch, or in a batch the model has not returned. */
  get unencodedRows(): number {
    return this.#batcher.size + this.#inFlightRows;
  }

  /** Whether the model has more work than the batch it computes: rows wait, or a batch waits ahead. */
  get backlogged(): boolean {
    return this.#batcher.size > 0 || this.#inFlight > 1;
  }

  /** Queues rows, and starts a batch if the model is idle (or one ahead, if they fill it). */
  push(entries: readonly BatcherInput<J>[]): void {
    this.#batcher.push(entries);
    this.#fill();
  }

  clear(): void {
    this.#batcher.clear();
  }

  /** Feeds the moving averages with a batch the model finished, and moves the aging threshold. */
  batchDone(rows: number, ms: number): void {
    this.#batchMs = this.#batchMs === undefined ? ms : this.#batchMs + BATCH_TIME_EWMA * (ms - this.#batchMs);
    this.#batchRows =
      this.#batchRows === undefined ? rows : this.#batchRows + BATCH_TIME_EWMA * (rows - this.#batchRows);
    const batchesToDrain = this.options.maxQueuedRows / Math.max(1, this.#batchRows);
    this.#batcher.setMaxWaitMs(
      Math.max(this.options.maxWaitMs, (batchesToDrain + AGING_SLACK_BATCHES) * this.#batchMs),
    );
  }

  /** Hands the model batches while it may take more: one when idle, more only from a full backlog. */
  #fill(): void {
    while (this.#inFlight < this.#maxInFlight && (this.#inFlight === 0 || this.#batcher.hasFullBatch())) {
      const batch = this.#formBatch();
      if (batch === undefined) return;
      const rows = batch.entries.length;
      this.#inFlight++;
      this.#inFlightRows += rows;
      void this.options
        .run(batch)
        .catch((err: unknown) => this.options.onRunError(err))
        .finally(() => {
          this.#inFlight--;
          this.#inFlightRows -= rows;
          this.#fill();
        });
    }
  }

  /** The next batch of live rows: expired rows go to onExpired, rows of finished jobs are skipped. */
  #formBatch(): Batch<J> | undefined {
    for (;;) {
      const { batch, expired } = this.#batcher.nextBatch();
      for (const entry of expired) this.options.onExpired(entry.job);
      if (batch === undefined) return undefined;
      const live = batch.entries.filter((e) => !this.options.isFinished(e.job));
      if (live.length === batch.entries.length) return batch;
      if (live.length > 0) return batchOf(live);
    }
  }
}

/** A batch of the given entries (used when some rows of a formed batch were dropped). */
function batchOf<J>(entries: readonly QueuedEntry<J>[]): Batch<J> {
  let maxTokens = 0;
  let realTokens = 0;
  for (const e of entries) {
    maxTokens = Math.max(maxTokens, e.tokens);
    realTokens += e.tokens;
  }
  return { entries, maxTokens, realTokens, paddedTokens: maxTokens * entries.length };
}
