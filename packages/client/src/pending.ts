/**
 * One request in flight: its assembler, its deadline, and the promise the caller awaits. It settles
 * exactly once: all rows in, an error frame, the deadline, an abort, or the client closing.
 */
import {
  HEADERS,
  InternalError,
  RequestAssembler,
  TimeoutError,
  type AssembledResult,
  type BertqError,
  type DecodedFrame,
  type Priority,
  type ResultFrame,
} from '@bertq/protocol';
import type { PreparedJob } from './chunks.js';
import type { StoredJob } from './recovery.js';
import type { FrameReport } from './types.js';

export interface PendingOptions {
  id: string;
  rows: number;
  /** The jobs subject (lane) the request's jobs go to. */
  lane: Priority;
  /** Epoch ms; the request fails with TIMEOUT then. */
  deadline: number;
  /** The call's timeout, for the message. */
  timeoutMs: number;
  /** Called once when the request settles (the client forgets it). */
  onSettled: (request: PendingRequest, error: unknown) => void;
  /** Rows that reach this many tokens are counted in `rowsAtLimit` (max_seq_len, for check_length 'warn'). */
  lengthLimit?: number | undefined;
  /** Told about every frame that brings new rows (see EncodeOptions.onFrame). */
  onFrame?: ((report: FrameReport) => void) | undefined;
  /**
   * The seal of the key the request's jobs carry (sealOf): a frame without it was computed from a job
   * somebody else published under this request's id, and is dropped ('forged').
   */
  seal?: string | undefined;
  now?: () => number;
}

/** What `accept` did with a frame. */
export type AcceptOutcome = 'rows' | 'duplicate' | 'failed' | 'ignored' | 'forged';

export class PendingRequest {
  readonly id: string;
  readonly rows: number;
  readonly deadline: number;
  readonly lane: Priority;
  readonly promise: Promise<AssembledResult>;
  /** Jobs JetStream acknowledged, by offset, for re-asking after a reconnect (recovery.ts). */
  private readonly stored = new Map<number, StoredJob>();
  private readonly assembler: RequestAssembler;
  private readonly timeoutMs: number;
  private readonly onSettled: PendingOptions['onSettled'];
  private readonly onFrame: PendingOptions['onFrame'];
  private resolvePromise!: (result: AssembledResult) => void;
  private rejectPromise!: (error: unknown) => void;
  private timer: NodeJS.Timeout | undefined;
  private done = false;
  private readonly lengthLimit: number | undefined;
  private readonly seal: string | undefined;
  /** Rows whose token count reached lengthLimit: probably cut by max_seq_len. */
  rowsAtLimit = 0;
  /** When rows last arrived, or its jobs were last asked for again (recovery's stall check). */
  lastProgressAt: number;
  private readonly now: () => number;

  constructor(options: PendingOptions) {
    this.id = options.id;
    this.rows = options.rows;
    this.deadline = options.deadline;
    this.lane = options.lane;
    this.timeoutMs = options.timeoutMs;
    this.onSettled = options.onSettled;
    this.onFrame = options.onFrame;
    this.lengthLimit = options.lengthLimit;
    this.seal = options.seal;
    this.assembler = new RequestAssembler({ id: options.id, rows: options.rows });
    this.promise = new Promise<AssembledResult>((resolve, reject) => {
      this.resolvePromise = resolve;
      this.rejectPromise = reject;
    });
    // The caller may not await until publishing is done; a rejection before then is still handled.
    this.promise.catch(() => {});
    this.now = options.now ?? Date.now;
    this.lastProgressAt = this.now();
    this.timer = setTimeout(() => this.expire(), Math.max(0, this.deadline - this.now()));
  }

  /** When the request began: its deadline less its timeout. */
  get createdAt(): number {
    return this.deadline - this.timeoutMs;
  }

  get settled(): boolean {
    return this.done;
  }

  get receivedRows(): number {
    return this.assembler.receivedRows;
  }

  /** Records a job JetStream stored at stream sequence `seq` (or stored again, after a re-ask). */
  recordStored(job: PreparedJob, seq: number): void {
    const known = this.stored.get(job.offset);
    if (known === undefined) this.stored.set(job.offset, { job, seq, attempts: 0 });
    else {
      known.seq = seq;
      // A new Nats-Msg-Id was used up; the original id again (a lost job restored) uses none.
      if (job.headers[HEADERS.msgId] !== known.job.headers[HEADERS.msgId]) known.attempts++;
    }
  }

  /** Stored jobs whose rows are not all in. */
  unfinishedJobs(): StoredJob[] {
    if (this.done) return [];
    return [...this.stored.values()].filter((s) => !this.assembler.hasRows(s.job.offset, s.job.rows));
  }

  /** Feeds one frame of this request. Error frames fail the whole request, as the protocol says. */
  accept(frame: DecodedFrame): AcceptOutcome {
    if (this.done) return 'ignored';
    // Before anything else, error frames too: a forged error must not fail the request either.
    if (this.seal !== undefined && frame.seal !== this.seal) return 'forged';
    if (frame.kind === 'error') {
      this.fail(frame.error);
      return 'failed';
    }
    let added: boolean;
    try {
      added = this.assembler.add(frame);
    } catch (err) {
      this.fail(err);
      return 'failed';
    }
    if (!added) return 'duplicate';
    this.lastProgressAt = this.now();
    if (
      this.lengthLimit !== undefined &&
      frame.tokenCounts !== undefined &&
      (frame.part === undefined || frame.part.index === 1)
    )
      for (const n of frame.tokenCounts) if (n >= this.lengthLimit) this.rowsAtLimit++;
    if (this.onFrame !== undefined) this.report(frame);
    if (this.assembler.complete) {
      let result: AssembledResult;
      try {
        result = this.assembler.result();
      } catch (err) {
        this.fail(err);
        return 'failed';
      }
      this.settle(undefined);
      this.resolvePromise(result);
    }
    return 'rows';
  }

  /** Fails the request (no-op once settled). */
  fail(error: unknown): void {
    if (this.done) return;
    this.settle(error);
    this.rejectPromise(error);
  }

  /** Rows not received yet, e.g. `0-255, 512-767`. */
  describeMissing(): string {
    return this.assembler
      .missingRanges()
      .map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`))
      .join(', ');
  }

  private report(frame: ResultFrame): void {
    const report: FrameReport = { id: frame.id, offset: frame.offset, rows: frame.rows, timings: frame.timings };
    if (frame.worker !== undefined) report.worker = frame.worker;
    if (frame.tokenCounts !== undefined) report.tokenCounts = frame.tokenCounts;
    if (frame.part !== undefined) report.part = { index: frame.part.index, count: frame.part.count };
    try {
      this.onFrame!(report);
    } catch {
      // A metrics callback must not break the request it observes.
    }
  }

  private expire(): void {
    this.timer = undefined;
    if (this.done) return;
    const missing = this.describeMissing();
    const error: BertqError = new TimeoutError(
      `request ${this.id} timed out after ${this.timeoutMs} ms with ${this.assembler.receivedRows} of ${this.rows} rows received ` +
        `(missing rows ${missing}): the workers are too slow or stopped`,
      {
        details: {
          id: this.id,
          rows: this.rows,
          received: this.assembler.receivedRows,
          missing,
          timeoutMs: this.timeoutMs,
        },
      },
    );
    this.fail(error);
  }

  private settle(error: unknown): void {
    this.done = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    try {
      this.onSettled(this, error);
    } catch (err) {
      // A bookkeeping bug must not leave the caller hanging.
      this.rejectPromise(
        new InternalError(`settling request ${this.id} failed: ${(err as Error).message}`, { cause: err }),
      );
    }
  }
}
