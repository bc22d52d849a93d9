/**
 * When and what the model runs: rows wait in the pure Batcher; the moment the model frees up, the
 * next batch is formed from them (largest length-sorted window, least padding) and handed to `run`.
 * Nothing is lost by waiting until then: pulling, parsing and tokenizing the next jobs happen on this
 * thread while the model computes on its own (the runtime thread), and picking rows and padding them
 * takes well under a millisecond.
 *
 * "Frees up" means the model has returned a batch's output (`modelDone`), not that the output has been
 * written out and published: the model thread idled 11% of the time with 4096-row requests
 * (profiled) while this thread did that before forming the next batch. Handing the model a second
 * batch to queue while it computes one was measured too: no faster than this (encode-e2e.bench,
 * alternating runs), and it would make a high-priority row that arrives meanwhile wait a batch more.
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
  /**
   * Runs one batch on the model. The next batch is formed when `modelDone` is called (the model has
   * returned this batch's output, which `run` may still be writing out) or when the promise settles,
   * whichever comes first.
   */
  run: (batch: Batch<J>, modelDone: () => void) => Promise<void>;
  /** A failure of `run` itself (its own errors are its business): logged by the caller. */
  onRunError: (err: unknown) => void;
}

export class Scheduler<J> {
  readonly #batcher: Batcher<J>;
  /** Rows of the batch the model is computing; 0 when it is idle (a batch has at least one row). */
  #computingRows = 0;
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
  }

  /** Rows waiting for a batch. */
  get size(): number {
    return this.#batcher.size;
  }

  /** Whether the model is computing a batch. */
  get computing(): boolean {
    return this.#computingRows > 0;
  }

  /** Rows not encoded yet: waiting for a batch, or in the batch the model is computing. */
  get unencodedRows(): number {
    return this.#batcher.size + this.#computingRows;
  }

  /** Queues rows and starts a batch if the model is idle. */
  push(entries: readonly BatcherInput<J>[]): void {
    this.#batcher.push(entries);
    if (!this.computing) this.#runNext();
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

  #runNext(): void {
    const batch = this.#formBatch();
    if (batch === undefined) return;
    this.#computingRows = batch.entries.length;
    let done = false;
    const modelDone = () => {
      if (done) return;
      done = true;
      this.#computingRows = 0;
      this.#runNext();
    };
    void this.options
      .run(batch, modelDone)
      .catch((err: unknown) => this.options.onRunError(err))
      .finally(modelDone);
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
