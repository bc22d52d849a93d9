/**
 * The job ledger: every job a worker holds, from the moment it is pulled until it is acked,
 * terminated or handed back, with the credits (rows) it holds and what is known of it so far. It
 * settles jobs with JetStream (ack / term / nak), keeps their ack deadlines moving while they wait
 * (in-progress acks), and says when it is empty (a drain waits for that).
 *
 * What is known of a job grows in stages, and `HeldJob.stage` says which: pulled (only the message),
 * parsed (the job's headers and body), queued (its rows tokenized and in the batcher, with the
 * buffer their vectors go to). Code that needs the rows asks for the `queued` stage, so a job can
 * never be batched before it is tokenized.
 */
import { performance } from 'node:perf_hooks';
import type { JsMsg } from '@nats-io/jetstream';
import { InternalError } from '@bertq/protocol';
import type { Job, Priority } from '@bertq/protocol';
import type { TokenizedText } from '@bertq/model';
import type { Logger } from 'pino';
import type { Credits } from './credits.js';
import type { JobOutput } from './job-output.js';

/** What is known of a held job. */
export type JobStage =
  | { readonly kind: 'pulled' }
  | { readonly kind: 'parsed'; readonly job: Job }
  | {
      readonly kind: 'queued';
      readonly job: Job;
      readonly rows: readonly TokenizedText[];
      readonly tokenizationMs: number;
      readonly output: JobOutput;
      /** From being taken to its first batch starting; set then. */
      queueMs?: number;
      /** Model time of every batch that held its rows. */
      inferenceMs: number;
    };

export type QueuedStage = Extract<JobStage, { kind: 'queued' }>;

/** A job from the moment it is pulled until it is acked, terminated or handed back. */
export interface HeldJob {
  readonly msg: JsMsg;
  readonly priority: Priority;
  /** performance.now() when pulled. */
  readonly takenAt: number;
  lastProgressAt: number;
  stage: JobStage;
  /** Acked, terminated or handed back: rows still queued for it are skipped. */
  finished: boolean;
  /** Credits (rows) this job holds: its consumer's job cost until parsed, then its row count. */
  credits: number;
}

/** The job of a held job, once parsed. */
export function jobOf(held: HeldJob): Job | undefined {
  return held.stage.kind === 'pulled' ? undefined : held.stage.job;
}

/** The queued stage of a job whose rows are in the batcher (anything else is a bug). */
export function queued(held: HeldJob): QueuedStage {
  if (held.stage.kind !== 'queued') throw new InternalError(`a job in stage ${held.stage.kind} reached the model`);
  return held.stage;
}

export type Settlement = 'ack' | 'term' | 'nak';

/** Per consumer: how long JetStream waits for an ack, and how often it delivers a job. */
export type ConsumerLimits = Record<Priority, { ackWaitMs: number; maxDeliver: number }>;

/** In-progress acks go out once a job has been held this fraction of ack_wait without one. */
export const PROGRESS_FRACTION = 1 / 3;

export class JobLedger {
  readonly #held = new Set<HeldJob>();
  #emptied: (() => void) | undefined;

  constructor(
    private readonly credits: Credits,
    private readonly log: Logger,
    /** Called once per settled job, with how. */
    private readonly onSettled: (held: HeldJob, how: Settlement) => void = () => {},
  ) {}

  get size(): number {
    return this.#held.size;
  }

  [Symbol.iterator](): IterableIterator<HeldJob> {
    return this.#held.values();
  }

  /** Records a pulled job, holding `cost` credits (its consumer's most rows per job). */
  take(msg: JsMsg, priority: Priority, cost: number): HeldJob {
    const now = performance.now();
    const held: HeldJob = {
      msg,
      priority,
      takenAt: now,
      lastProgressAt: now,
      stage: { kind: 'pulled' },
      finished: false,
      credits: cost,
    };
    this.#held.add(held);
    return held;
  }

  /**
   * Keeps credits for the rows the job really has: gives back what it does not need, or takes what
   * more it needs when they are free (a job on the high subject with more rows than
   * priorityBatchSize — a misbehaving client — just holds more until it is done).
   */
  fitCredits(held: HeldJob, rows: number): void {
    if (rows < held.credits) {
      this.credits.release(held.credits - rows);
      held.credits = rows;
    } else if (rows > held.credits) held.credits += this.credits.tryTake(rows - held.credits);
  }

  /** Ends a job's stay: ack (done), term (refused, never again) or nak (hand back for redelivery). */
  settle(held: HeldJob, how: Settlement, delayMs?: number): void {
    if (held.finished) return;
    held.finished = true;
    this.#held.delete(held);
    try {
      if (how === 'ack') held.msg.ack();
      else if (how === 'term') held.msg.term();
      else held.msg.nak(delayMs);
    } catch (err) {
      this.log.warn({ err, how }, 'could not settle a job with JetStream; it will be redelivered after ack_wait');
    }
    this.credits.release(held.credits);
    this.onSettled(held, how);
    if (this.#held.size === 0) this.#emptied?.();
  }

  /**
   * Forgets every job without settling it (the connection is gone for good): JetStream redelivers
   * them after ack_wait.
   */
  forgetAll(): void {
    for (const held of this.#held) held.finished = true;
    this.#held.clear();
  }

  /** Resolves when no job is held. */
  whenEmpty(): Promise<void> {
    if (this.#held.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#emptied = resolve;
    });
  }

  /**
   * Sends an in-progress ack for every job held for PROGRESS_FRACTION of its ack wait without one,
   * except a job held longer than `maxHoldMs`: JetStream then gives it to another worker, so a
   * wedged worker cannot keep a job forever.
   */
  sendProgress(limits: ConsumerLimits, maxHoldMs: number): void {
    const now = performance.now();
    for (const held of this.#held) {
      if (now - held.lastProgressAt < limits[held.priority].ackWaitMs * PROGRESS_FRACTION) continue;
      if (now - held.takenAt > maxHoldMs) continue;
      try {
        held.msg.working();
        held.lastProgressAt = now;
      } catch {
        // connection down: nothing to do until it is back
      }
    }
  }
}
