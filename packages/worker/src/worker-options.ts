/**
 * What a worker is given (WorkerOptions, with their defaults and the checks they must pass) and what
 * it shows (WorkerHandle, WorkerStats).
 */
import { BadRequestError } from '@bertq/protocol';
import type { ServerConfig, ServerStatus } from '@bertq/protocol';
import { defaultMaxBatchTokens } from '@bertq/model';
import type { NatsConnectOptions } from '@bertq/nats';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { ModelDescription } from './control/control.js';
import type { WorkerCounters } from './control/metrics.js';
import type { EmbeddingEngine } from './core/engine.js';
import type { StreamOptions } from './nats/stream.js';

export interface WorkerOptions {
  /** An open connection to use (the caller closes it). Or give `servers` (and auth) and the worker connects. */
  nc?: NatsConnection;
  /** Where NATS is, when no `nc` is given. */
  servers?: string | string[];
  /** Auth and TLS for the connection the worker opens itself. */
  connection?: Omit<NatsConnectOptions, 'servers'>;
  /** Service name (any spelling; canonicalized). */
  service: string;
  /** The model. The worker does not close it: whoever made it does. */
  engine: EmbeddingEngine;
  /**
   * Most rows in one job and in one model batch (bert-as-service's max_batch_size). Clients split
   * requests into jobs of this size; a bigger job is refused with TOO_LARGE. Default 256.
   */
  maxBatchSize?: number;
  /**
   * Padded token budget of one model batch (longest row × rows). Bounds activation memory; larger
   * batches raise throughput until the device saturates. Default 2,048 on CPU (enough to keep the cores
   * busy, small enough to pad little), 16,384 on CUDA.
   */
  maxBatchTokens?: number;
  /** Requests of at most this many rows are urgent (clients send them to jobs.high). Default 16 (at most maxBatchSize). */
  priorityBatchSize?: number;
  /**
   * How much work the worker holds at once (pulled, not yet acknowledged), in full-size jobs: the
   * worker holds at most prefetch × maxBatchSize rows — that many bulk jobs, or many more small
   * high-priority ones, which then share batches. At least 2. More keeps the model busier between
   * pulls and a larger length-sorted window pads less; fewer spreads a burst more evenly over the
   * fleet. Default 8.
   */
  prefetch?: number;
  /**
   * A queued row older than this runs before shorter rows of its class (no starvation). The worker
   * raises it to the time it needs to work through all it may hold (its row bound over its recent
   * batch size, times its recent batch time) plus two batches: under load every row waits that long
   * anyway, and a smaller threshold would turn shortest-first batching back into FIFO — and padding
   * back up. Default 100.
   */
  maxWaitMs?: number;
  /** Services-framework instance id (a NUID when left out). */
  workerId?: string;
  /** Root or parent logger; the worker logs through a child `{component: 'worker', worker: id}`. */
  logger?: Logger;
  /**
   * Create/update the stream and consumers with these settings before pulling (idempotent). `false`:
   * they must exist already (a fleet ensures them once, before forking its workers). Default `{}`.
   */
  stream?: Omit<StreamOptions, 'service'> | false;
  /**
   * The stream settings this worker restores when the stream or its consumers are deleted or changed
   * from outside (checked every `streamCheckMs`, and at once when pulling keeps failing). Default:
   * `stream`, when it is not false; nothing is guarded otherwise.
   */
  guardStream?: Omit<StreamOptions, 'service'>;
  /** How often the guarded stream is checked. Default 30,000. */
  streamCheckMs?: number;
  /** Expiry of an idle pull (≥ 1,000). Stopping waits for open pulls, so this bounds part of a drain. Default 2,000. */
  pullExpiresMs?: number;
  /** How long stop() lets held jobs finish before handing the rest back to the queue. Default 30,000. */
  drainTimeoutMs?: number;
  /**
   * In-progress acks stop for a job held longer than this, so a wedged worker cannot keep a job
   * forever: JetStream then gives it to another worker. Default 600,000 (10 minutes).
   */
  maxHoldMs?: number;
  /**
   * Answer jobs that ask for their tokens (`show_tokens`); when false such a job gets BAD_REQUEST
   * saying how to enable it (bert-as-service's show_tokens_to_client). Default false.
   */
  showTokensToClient?: boolean;
  /** Device label for the control plane (`cpu`, `cuda:0`). Default: the engine's device. */
  device?: string;
  /** How the model was named at start, for the `config` endpoint. */
  model?: ModelDescription;
}

/** Counters and gauges of one worker (the `status` endpoint has the full picture). */
export interface WorkerStats
  extends Pick<
    WorkerCounters,
    | 'jobsReceived'
    | 'jobsDone'
    | 'jobsFailed'
    | 'jobsUnanswerable'
    | 'jobsRedelivered'
    | 'jobsReturned'
    | 'jobsTimedOut'
    | 'jobsCancelled'
    | 'rows'
    | 'batches'
    | 'errors'
  > {
  state: WorkerState;
  heldJobs: number;
  queuedRows: number;
}

export type WorkerState = 'starting' | 'ready' | 'draining' | 'closed';

export interface WorkerHandle {
  /** The worker id (services-framework instance id, `Bertq-Worker` header). */
  readonly id: string;
  readonly service: string;
  readonly state: WorkerState;
  stats(): WorkerStats;
  /** The `config` document this worker answers with. */
  config(): ServerConfig;
  /** The `status` document this worker answers with. */
  status(): Promise<ServerStatus>;
  /** Drains (stop pulling, finish and publish what is held, ack) and closes. Resolves when closed. */
  stop(options?: { drainTimeoutMs?: number; reason?: string }): Promise<void>;
  /**
   * Resolves once the worker has closed: undefined after a drain (stop, terminate), or the error that
   * ended it (its NATS connection closed for good). Never rejects.
   */
  readonly closed: Promise<Error | undefined>;
}

export const WORKER_DEFAULTS = {
  maxBatchSize: 256,
  priorityBatchSize: 16,
  prefetch: 8,
  maxWaitMs: 100,
  pullExpiresMs: 2_000,
  streamCheckMs: 30_000,
  drainTimeoutMs: 30_000,
  maxHoldMs: 600_000,
} as const;

/** WorkerOptions with defaults applied and checked. */
export interface Settings {
  maxBatchSize: number;
  maxBatchTokens: number;
  priorityBatchSize: number;
  prefetch: number;
  maxWaitMs: number;
  pullExpiresMs: number;
  streamCheckMs: number;
  drainTimeoutMs: number;
  maxHoldMs: number;
}

export function resolveSettings(options: WorkerOptions): Settings {
  const maxBatchSize = options.maxBatchSize ?? WORKER_DEFAULTS.maxBatchSize;
  const s: Settings = {
    maxBatchSize,
    maxBatchTokens: options.maxBatchTokens ?? defaultMaxBatchTokens(options.engine.info.device),
    priorityBatchSize: options.priorityBatchSize ?? Math.min(WORKER_DEFAULTS.priorityBatchSize, maxBatchSize),
    prefetch: options.prefetch ?? WORKER_DEFAULTS.prefetch,
    maxWaitMs: options.maxWaitMs ?? WORKER_DEFAULTS.maxWaitMs,
    pullExpiresMs: options.pullExpiresMs ?? WORKER_DEFAULTS.pullExpiresMs,
    streamCheckMs: options.streamCheckMs ?? WORKER_DEFAULTS.streamCheckMs,
    drainTimeoutMs: options.drainTimeoutMs ?? WORKER_DEFAULTS.drainTimeoutMs,
    maxHoldMs: options.maxHoldMs ?? WORKER_DEFAULTS.maxHoldMs,
  };
  for (const name of ['maxBatchSize', 'maxBatchTokens', 'prefetch'] as const) {
    if (!Number.isSafeInteger(s[name]) || s[name] < 1)
      throw new BadRequestError(`worker option ${name} must be a positive integer, got ${s[name]}`);
  }
  if (s.prefetch < 2)
    throw new BadRequestError(`worker option prefetch must be at least 2 (one job per consumer), got ${s.prefetch}`);
  if (!Number.isSafeInteger(s.priorityBatchSize) || s.priorityBatchSize < 0 || s.priorityBatchSize > s.maxBatchSize) {
    throw new BadRequestError(
      `worker option priorityBatchSize must be an integer from 0 to maxBatchSize (${s.maxBatchSize}), got ${s.priorityBatchSize}`,
    );
  }
  for (const name of ['maxWaitMs', 'pullExpiresMs', 'streamCheckMs', 'drainTimeoutMs', 'maxHoldMs'] as const) {
    if (!(s[name] >= 0))
      throw new BadRequestError(`worker option ${name} must be a non-negative number, got ${s[name]}`);
  }
  return s;
}
