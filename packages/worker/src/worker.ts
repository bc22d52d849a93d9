/**
 * One worker: pulls jobs from the service's `high` and `bulk` consumers, tokenizes them, batches rows
 * by token budget (the pure Batcher), runs the model on its own thread while this one keeps pulling,
 * parsing and tokenizing the next jobs (the next batch is formed the moment the model frees), publishes
 * each job's rows as result frames the moment they are computed, and acknowledges a job once all its
 * rows are out. It also answers the control plane (config / status / terminate) and drains on stop.
 *
 * Flow of one job:
 *   pulled (takes a credit) → parseJob → deadline? → tokenize → batcher → batch → model → frames
 *   → all rows published → ack (credit back)
 * A job refused anywhere on the way gets one error frame and `term()` (never redelivered); a batch the
 * model fails hands its jobs back (`nak`) unless this was their last allowed delivery.
 */
import { performance } from 'node:perf_hooks';
import { nuid } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import type { Consumer, JetStreamManager, JsMsg } from '@nats-io/jetstream';
import {
  BadRequestError,
  BertqError,
  InternalError,
  ModelError,
  NoWorkersError,
  PRIORITIES,
  deadlineError,
  encodeErrorFrame,
  encodeResultFrames,
  errorFromCode,
  parseJob,
  peekJobContext,
  serviceNames,
  toBertqError,
  validateSubjectToken,
} from '@bertq/protocol';
import type { Job, Priority, ServerConfig, ServerStatus, TerminateReply, TerminateRequest } from '@bertq/protocol';
import { defaultMaxBatchTokens } from '@bertq/model';
import type { TokenizedText } from '@bertq/model';
import type { Logger } from 'pino';
import { Batcher } from './core/batcher.js';
import type { Batch, QueuedEntry } from './core/batcher.js';
import { connectNats } from '@bertq/nats';
import type { NatsConnectOptions } from '@bertq/nats';
import { buildServerConfig, buildServerStatus, registerControlPlane } from './control/control.js';
import type { ModelDescription, WorkerDescription, WorkerView } from './control/control.js';
import { Credits } from './core/credits.js';
import type { EmbeddingEngine } from './core/engine.js';
import { silentLogger } from '@bertq/nats';
import { WorkerMetrics } from './control/metrics.js';
import type { WorkerCounters } from './control/metrics.js';
import { fromNatsHeaders, toNatsHeaders } from '@bertq/nats';
import { runPullLoop } from './nats/pull.js';
import { mergeRuns, splitBatchOutput } from './core/results.js';
import type { RowRun } from './core/results.js';
import type { ServiceRegistration } from '@bertq/nats';
import { ensureStream, openJetStreamManager, readConsumerLimits, serverName } from './nats/stream.js';
import type { StreamOptions } from './nats/stream.js';
import { WORKER_VERSION } from './version.js';

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
  drainTimeoutMs: 30_000,
  maxHoldMs: 600_000,
} as const;

/**
 * Aging threshold, in batch times, beyond the time the worker needs to work through everything it
 * may hold: a row only goes out of length order once it has waited longer than that — only a row
 * that shorter ones kept overtaking.
 */
const AGING_SLACK_BATCHES = 2;
/** A job holding this many bytes of computed rows publishes them without waiting for its last row. */
const FLUSH_BYTES = 8 * 1024 * 1024;
/** Weight of the newest batch in the moving averages of batch time and size. */
const BATCH_TIME_EWMA = 0.2;

/** In-progress acks go out once a job has been held this fraction of ack_wait without one. */
const PROGRESS_FRACTION = 1 / 3;
/** Delay before a job handed back after a failed batch is offered again (to any worker). */
const RETRY_DELAY_MS = 1_000;
const FLUSH_TIMEOUT_MS = 5_000;

/** A job from the moment it is pulled until it is acked, terminated or handed back. */
interface HeldJob {
  readonly msg: JsMsg;
  readonly priority: Priority;
  /** performance.now() when pulled. */
  readonly takenAt: number;
  lastProgressAt: number;
  job?: Job;
  rows?: TokenizedText[];
  rowsDone: number;
  tokenizationMs?: number;
  queueMs?: number;
  inferenceMs: number;
  /** Acked, terminated or handed back: rows still queued for it are skipped. */
  finished: boolean;
  /** Credits (rows) this job holds: its consumer's job cost until parsed, then its row count. */
  credits: number;
  /** Computed rows not yet published (see #flush), and their size. */
  pendingRuns: RowRun<HeldJob>[];
  pendingBytes: number;
}

/** Starts a worker; resolves once it has warmed up its model and is pulling jobs. */
export async function startWorker(options: WorkerOptions): Promise<WorkerHandle> {
  const worker = new Worker(options);
  await worker.start();
  return worker;
}

class Worker implements WorkerHandle, WorkerView {
  readonly id: string;
  readonly service: string;
  readonly metrics = new WorkerMetrics();
  readonly localBound: number;
  readonly closed: Promise<Error | undefined>;

  readonly #options: WorkerOptions;
  readonly #engine: EmbeddingEngine;
  readonly #log: Logger;
  readonly #settings: {
    maxBatchSize: number;
    maxBatchTokens: number;
    priorityBatchSize: number;
    prefetch: number;
    maxWaitMs: number;
    pullExpiresMs: number;
    drainTimeoutMs: number;
    maxHoldMs: number;
  };
  readonly #batcher: Batcher<HeldJob>;
  readonly #credits: Credits;
  readonly #held = new Set<HeldJob>();
  readonly #startedAt = new Date();
  #state: WorkerState = 'starting';
  #nc: NatsConnection | undefined;
  #ownConnection = false;
  #jsm: JetStreamManager | undefined;
  #description: WorkerDescription | undefined;
  #registration: ServiceRegistration | undefined;
  #limits: Record<Priority, { ackWaitMs: number; maxDeliver: number }> | undefined;
  #maxPayload = 0;
  #pullLoops: Promise<void>[] = [];
  #progressTimer: NodeJS.Timeout | undefined;
  #running = false;
  /** Moving averages of the model's batch time (ms) and batch size (rows), for the aging threshold. */
  #batchMs: number | undefined;
  #batchRows: number | undefined;
  #stopping = false;
  #stopPromise: Promise<void> | undefined;
  #heldEmpty: (() => void) | undefined;
  #resolveClosed!: (reason: Error | undefined) => void;

  constructor(options: WorkerOptions) {
    this.#options = options;
    this.#engine = options.engine;
    this.service = serviceNames(options.service).service;
    this.id = options.workerId === undefined ? nuid.next() : validateSubjectToken(options.workerId, 'worker id');
    this.#log = (options.logger ?? silentLogger()).child({ component: 'worker', worker: this.id });
    const maxBatchSize = options.maxBatchSize ?? WORKER_DEFAULTS.maxBatchSize;
    const s = {
      maxBatchSize,
      maxBatchTokens: options.maxBatchTokens ?? defaultMaxBatchTokens(options.engine.info.device),
      priorityBatchSize: options.priorityBatchSize ?? Math.min(WORKER_DEFAULTS.priorityBatchSize, maxBatchSize),
      prefetch: options.prefetch ?? WORKER_DEFAULTS.prefetch,
      maxWaitMs: options.maxWaitMs ?? WORKER_DEFAULTS.maxWaitMs,
      pullExpiresMs: options.pullExpiresMs ?? WORKER_DEFAULTS.pullExpiresMs,
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
    for (const name of ['maxWaitMs', 'pullExpiresMs', 'drainTimeoutMs', 'maxHoldMs'] as const) {
      if (!(s[name] >= 0))
        throw new BadRequestError(`worker option ${name} must be a non-negative number, got ${s[name]}`);
    }
    this.#settings = s;
    // Every held job has at most maxBatchSize rows (parseJob refuses more), so this bound is never
    // hit: the credits are what limits the worker; the batcher's bound only backs them up.
    this.localBound = s.prefetch * s.maxBatchSize;
    this.#batcher = new Batcher<HeldJob>({
      maxBatchTokens: s.maxBatchTokens,
      maxBatchSize: s.maxBatchSize,
      maxWaitMs: s.maxWaitMs,
      maxQueuedRows: this.localBound,
    });
    this.#credits = new Credits(s.prefetch * s.maxBatchSize);
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
  }

  get state(): WorkerState {
    return this.#state;
  }

  // ---- start ---------------------------------------------------------------------------------

  async start(): Promise<void> {
    try {
      await this.#connect();
      await this.#warmUp();
      const nc = this.#nc!;
      const info = this.#engine.info;
      this.#description = {
        service: this.service,
        workerId: this.id,
        info,
        device: this.#options.device ?? info.device,
        maxBatchSize: this.#settings.maxBatchSize,
        priorityBatchSize: this.#settings.priorityBatchSize,
        maxBatchTokens: this.#settings.maxBatchTokens,
        prefetch: this.#settings.prefetch,
        showTokensToClient: this.#options.showTokensToClient === true,
        maxPayload: this.#maxPayload,
        startedAt: this.#startedAt,
        versions: {
          bertq: WORKER_VERSION,
          node: process.versions.node,
          ...(nc.info?.version === undefined ? {} : { 'nats-server': nc.info.version }),
          ...(this.#engine.versions ?? {}),
        },
        ...(this.#options.model === undefined ? {} : { model: this.#options.model }),
      };
      const js = jetstream(nc);
      const names = serviceNames(this.service);
      const consumers = {} as Record<Priority, Consumer>;
      for (const priority of PRIORITIES)
        consumers[priority] = await js.consumers.get(names.stream, names.consumers[priority]);

      this.#registration = registerControlPlane(nc, this.#jsm!, this.#description, this);
      this.#state = 'ready';
      this.#pullLoops = PRIORITIES.map((priority) =>
        runPullLoop({
          consumer: consumers[priority],
          priority,
          credits: this.#credits,
          jobCost: this.#jobCost(priority),
          expiresMs: this.#settings.pullExpiresMs,
          maxBatch: Math.floor(this.#credits.total / this.#jobCost(priority)),
          onMessage: (msg, p) => this.#take(msg, p),
          onLateMessage: (msg) => this.#handBack(msg),
          isStopping: () => this.#stopping,
          logger: this.#log,
        }),
      );
      this.#startProgressTimer();
      nc.closed().then(
        (err) => {
          if (!this.#stopping) this.#connectionLost(err ?? new Error('the NATS connection closed'));
        },
        () => undefined,
      );
      this.#log.info(
        {
          service: this.service,
          model: info.model,
          device: this.#description.device,
          dims: info.dims,
          prefetch: this.#settings.prefetch,
        },
        'worker ready',
      );
    } catch (err) {
      this.#state = 'closed';
      await this.#closeConnection();
      this.#resolveClosed(err as Error);
      throw err;
    }
  }

  async #connect(): Promise<void> {
    if (this.#options.nc !== undefined) {
      this.#nc = this.#options.nc;
    } else {
      if (this.#options.servers === undefined)
        throw new BadRequestError('startWorker needs a connection: give `nc` or `servers`');
      this.#nc = await connectNats({
        ...this.#options.connection,
        servers: this.#options.servers,
        name: this.#options.connection?.name ?? `bertq-worker-${this.id}`,
      });
      this.#ownConnection = true;
    }
    const nc = this.#nc;
    this.#maxPayload = nc.info?.max_payload ?? 1024 * 1024;
    this.#jsm = await openJetStreamManager(nc);
    if (this.#options.stream !== false)
      await ensureStream(this.#jsm, { ...this.#options.stream, service: this.service });
    try {
      this.#limits = await readConsumerLimits(this.#jsm, this.service);
    } catch (err) {
      const names = serviceNames(this.service);
      throw new NoWorkersError(
        `cannot read the consumers ${names.consumers.high} and ${names.consumers.bulk} of stream ${names.stream} at ${serverName(nc)}: ` +
          `${(err as Error).message}; start the worker with stream options (or through a fleet) so it creates them`,
        { cause: err },
      );
    }
  }

  /** One tiny batch through the model before pulling, so the first real job does not pay for first-run setup. */
  async #warmUp(): Promise<void> {
    try {
      const rows = await this.#engine.tokenize(['warm up']);
      await this.#engine.run(rows);
    } catch (err) {
      throw err instanceof BertqError
        ? err
        : new ModelError(`the model failed its warm-up batch: ${(err as Error).message}`, { cause: err });
    }
  }

  // ---- taking jobs ---------------------------------------------------------------------------

  /** The most rows one job of a consumer can have: what a pull reserves for it. */
  #jobCost(priority: Priority): number {
    return priority === 'high' ? Math.max(1, this.#settings.priorityBatchSize) : this.#settings.maxBatchSize;
  }

  #take(msg: JsMsg, priority: Priority): void {
    const now = performance.now();
    const held: HeldJob = {
      msg,
      priority,
      takenAt: now,
      lastProgressAt: now,
      rowsDone: 0,
      inferenceMs: 0,
      finished: false,
      credits: this.#jobCost(priority),
      pendingRuns: [],
      pendingBytes: 0,
    };
    this.#held.add(held);
    this.metrics.counters.jobsReceived++;
    if (msg.redelivered) this.metrics.counters.jobsRedelivered++;
    void this.#admit(held).catch((err: unknown) =>
      this.#refuse(held, new InternalError(`admitting a job failed: ${(err as Error).message}`, { cause: err })),
    );
  }

  async #admit(held: HeldJob): Promise<void> {
    const { msg } = held;
    let job: Job;
    try {
      job = parseJob(fromNatsHeaders(msg.headers), msg.data, {
        service: this.service,
        maxRows: this.#settings.maxBatchSize,
        maxBytes: this.#maxPayload,
      });
    } catch (err) {
      this.#refuse(held, err);
      return;
    }
    held.job = job;
    // Keep credits for the rows the job really has (a job on the high subject with more rows than
    // priorityBatchSize — a misbehaving client — just holds more until it is done).
    const rowCount = job.texts.length;
    if (rowCount < held.credits) this.#credits.release(held.credits - rowCount);
    else if (rowCount > held.credits) held.credits += this.#credits.tryTake(rowCount - held.credits);
    if (rowCount <= held.credits) held.credits = rowCount;
    this.metrics.clients.see(job.reply);
    const late = deadlineError(job, Date.now());
    if (late !== undefined) {
      this.#refuse(held, late);
      return;
    }
    if (job.showTokens && this.#options.showTokensToClient !== true) {
      this.#refuse(
        held,
        new BadRequestError(
          `service "${this.service}" does not send tokens to clients: start it with --show-tokens-to-client to allow show_tokens`,
        ),
      );
      return;
    }
    const t0 = performance.now();
    let rows: TokenizedText[];
    try {
      rows = await this.#engine.tokenize(job.texts, {
        isTokenized: job.isTokenized,
        showTokens: job.showTokens,
        validated: true, // parseJob did
      });
    } catch (err) {
      this.#refuse(held, requestRelative(err, job));
      return;
    }
    held.tokenizationMs = performance.now() - t0;
    if (held.finished) return; // handed back meanwhile (a drain that ran out of time)
    held.rows = rows;
    const deadline = job.deadline ?? Number.POSITIVE_INFINITY;
    try {
      this.#batcher.push(
        rows.map((r, row) => ({ job: held, row, tokens: r.length, priority: held.priority, deadline })),
      );
    } catch (err) {
      // Cannot happen while credits bound the held jobs; if it does, say so rather than drop the job.
      this.#refuse(held, err);
      return;
    }
    this.#kick();
  }

  /** Answers a job with one error frame (when it names where to) and terminates it. */
  #refuse(held: HeldJob, err: unknown): void {
    if (held.finished) return;
    const error = toBertqError(err);
    const context = held.job ?? peekJobContext(fromNatsHeaders(held.msg.headers), this.service);
    this.metrics.countError(error.code);
    if (error.code === 'TIMEOUT') this.metrics.counters.jobsTimedOut++;
    if (context.id !== undefined && context.reply !== undefined) {
      this.metrics.counters.jobsFailed++;
      const frame = encodeErrorFrame(
        {
          id: context.id,
          ...(context.offset === undefined ? {} : { offset: context.offset }),
          ...(held.job ? { rows: held.job.texts.length } : {}),
          worker: this.id,
        },
        error,
        { maxPayload: this.#maxPayload },
      );
      this.#publish(context.reply, frame.body, frame.headers);
      this.#log.debug({ code: error.code, err: error.message, seq: held.msg.seq }, 'job refused');
    } else {
      this.metrics.counters.jobsUnanswerable++;
      // Logged once: the job is terminated below, so it never comes back.
      this.#log.warn(
        { code: error.code, err: error.message, subject: held.msg.subject, seq: held.msg.seq },
        'refused a job that names no usable reply subject (Bertq-Id and Bertq-Reply are needed to answer it)',
      );
    }
    this.#finish(held, 'term');
  }

  #handBack(msg: JsMsg): void {
    this.metrics.counters.jobsReturned++;
    try {
      msg.nak();
    } catch {
      // connection gone: JetStream redelivers after ack_wait anyway
    }
  }

  /** Ends a job's stay: ack (done), term (refused, never again) or nak (hand back for redelivery). */
  #finish(held: HeldJob, how: 'ack' | 'term' | 'nak', delayMs?: number): void {
    if (held.finished) return;
    held.finished = true;
    this.#held.delete(held);
    try {
      if (how === 'ack') held.msg.ack();
      else if (how === 'term') held.msg.term();
      else held.msg.nak(delayMs);
    } catch (err) {
      this.#log.warn({ err, how }, 'could not settle a job with JetStream; it will be redelivered after ack_wait');
    }
    if (how === 'nak') this.metrics.counters.jobsReturned++;
    this.#credits.release(held.credits);
    if (this.#held.size === 0) this.#heldEmpty?.();
  }

  // ---- batching and inference ------------------------------------------------------------------

  /** Starts a batch when the model is idle (new rows while it runs wait for #runNext). */
  #kick(): void {
    if (!this.#running) this.#runNext();
  }

  /**
   * Forms the next batch the moment the model frees up, not earlier: the window of queued rows is
   * then as large as it gets, so the shortest-first ordering pads least. Nothing is lost by waiting:
   * the work that prepares a batch — pulling, parsing, tokenizing — runs on this thread while the
   * model computes on its own (runtime thread), and picking rows and padding them takes well under a
   * millisecond.
   */
  #runNext(): void {
    const batch = this.#formBatch();
    if (batch === undefined) {
      this.#running = false;
      return;
    }
    this.#running = true;
    void this.#runBatch(batch)
      .catch((err: unknown) => this.#log.error({ err }, 'batch bookkeeping failed'))
      .finally(() => this.#runNext());
  }

  /** The next batch of live rows: expired rows are answered with TIMEOUT, rows of finished jobs skipped. */
  #formBatch(): Batch<HeldJob> | undefined {
    for (;;) {
      const { batch, expired } = this.#batcher.nextBatch();
      for (const entry of expired) this.#expire(entry.job);
      if (batch === undefined) return undefined;
      const live = batch.entries.filter((e) => !e.job.finished);
      if (live.length === batch.entries.length) return batch;
      if (live.length > 0) return batchOf(live);
    }
  }

  #expire(held: HeldJob): void {
    const job = held.job;
    if (held.finished || job === undefined) return;
    // The batcher drops a row at deadline <= now; deadlineError speaks from deadline < now: agree on "passed".
    this.#refuse(held, deadlineError(job, Math.max(Date.now(), (job.deadline ?? 0) + 1)));
  }

  /** Runs a batch formed this instant by #formBatch (its rows are live and within their deadlines). */
  async #runBatch(batch: Batch<HeldJob>): Promise<void> {
    const { entries } = batch;
    const start = performance.now();
    const jobs = new Set(entries.map((e) => e.job));
    for (const held of jobs) held.queueMs ??= start - held.takenAt;
    let output;
    try {
      output = await this.#engine.run(entries.map((e) => e.job.rows![e.row]!));
    } catch (err) {
      this.#batchFailed(jobs, err);
      return;
    }
    const inferenceMs = performance.now() - start;
    this.#batchMs =
      this.#batchMs === undefined ? inferenceMs : this.#batchMs + BATCH_TIME_EWMA * (inferenceMs - this.#batchMs);
    this.#batchRows =
      this.#batchRows === undefined
        ? entries.length
        : this.#batchRows + BATCH_TIME_EWMA * (entries.length - this.#batchRows);
    const batchesToDrain = this.localBound / Math.max(1, this.#batchRows);
    this.#batcher.setMaxWaitMs(
      Math.max(this.#settings.maxWaitMs, (batchesToDrain + AGING_SLACK_BATCHES) * this.#batchMs),
    );
    this.metrics.countBatch(entries.length, batch.realTokens, batch.paddedTokens);
    this.metrics.timings.inference.add(inferenceMs);
    for (const held of jobs) held.inferenceMs += inferenceMs;

    let runs;
    try {
      runs = splitBatchOutput(
        entries,
        output,
        output.shape.length === 3 ? this.#engine.tokenLevelLength(output.shape[1]!) : undefined,
      );
    } catch (err) {
      this.#batchFailed(jobs, err);
      return;
    }
    for (const run of runs) {
      const held = run.job;
      if (held.finished) continue;
      held.pendingRuns.push(run);
      held.pendingBytes += run.data.byteLength;
      held.rowsDone += run.rows;
    }
    for (const held of jobs) {
      if (held.finished) continue;
      const done = held.rowsDone === held.rows!.length;
      if (done || held.pendingBytes >= FLUSH_BYTES) this.#flush(held);
      if (!held.finished && done) this.#complete(held);
    }
  }

  /**
   * Publishes a job's computed rows. A batch holds rows of several jobs in length order, so one job's
   * rows come out of each batch in short runs; they are held until the job is done (or holds
   * FLUSH_BYTES) and then sent as few, large frames: per-frame cost, not per-row cost, is what a
   * busy fleet pays for.
   */
  #flush(held: HeldJob): void {
    const job = held.job!;
    const runs = mergeRuns(held.pendingRuns);
    held.pendingRuns = [];
    held.pendingBytes = 0;
    for (const run of runs) {
      try {
        const frames = encodeResultFrames(
          {
            id: job.id,
            offset: job.offset + run.firstRow,
            rows: run.rows,
            shape: run.rowShape,
            dtype: job.output,
            data: run.data,
            ...(job.showTokens
              ? { tokens: held.rows!.slice(run.firstRow, run.firstRow + run.rows).map((r) => r.tokens ?? []) }
              : {}),
            tokenCounts: held.rows!.slice(run.firstRow, run.firstRow + run.rows).map((r) => r.length),
            timings: {
              tokenizationMs: held.tokenizationMs ?? 0,
              queueMs: held.queueMs ?? 0,
              inferenceMs: held.inferenceMs,
              totalMs: performance.now() - held.takenAt,
            },
            worker: this.id,
          },
          { maxPayload: this.#maxPayload },
        );
        for (const frame of frames) this.#publish(job.reply, frame.body, frame.headers);
      } catch (err) {
        this.#refuse(held, err);
        return;
      }
    }
  }

  #complete(held: HeldJob): void {
    const total = performance.now() - held.takenAt;
    this.metrics.timings.tokenization.add(held.tokenizationMs ?? 0);
    this.metrics.timings.queue.add(held.queueMs ?? 0);
    this.metrics.timings.total.add(total);
    this.metrics.countJobDone(held.rowsDone);
    // Ack after every frame: on the same connection, so the server has the frames before the ack.
    this.#finish(held, 'ack');
  }

  /**
   * The model failed a batch. Its jobs go back to the queue (another worker, or this one, tries
   * again), except on their last allowed delivery: then the client gets an error instead of silence.
   */
  #batchFailed(jobs: Set<HeldJob>, err: unknown): void {
    const error = toBertqError(err, 'MODEL_ERROR');
    this.#log.error({ err, jobs: jobs.size }, 'the model failed a batch');
    for (const held of jobs) {
      if (held.finished) continue;
      const deliveries = held.msg.info.deliveryCount;
      const maxDeliver = this.#limits![held.priority].maxDeliver;
      if (deliveries >= maxDeliver) {
        this.#refuse(
          held,
          new InternalError(
            `the job failed on its last allowed delivery (${deliveries} of ${maxDeliver}): ${error.message}`,
            {
              cause: err,
              details: { code: error.code, deliveries },
            },
          ),
        );
      } else {
        this.#finish(held, 'nak', RETRY_DELAY_MS);
      }
    }
  }

  /**
   * Publishes one frame. Never throws: a frame that cannot go out (the connection is closing) is
   * logged, and since the job's ack cannot go out either, JetStream redelivers the job after ack_wait.
   */
  #publish(subject: string, body: Uint8Array, headers: Record<string, string>): void {
    try {
      this.#nc!.publish(subject, body, { headers: toNatsHeaders(headers) });
    } catch (err) {
      this.#log.warn({ err }, 'could not publish a frame; the job will be redelivered');
    }
  }

  // ---- in-progress acks ------------------------------------------------------------------------

  #startProgressTimer(): void {
    const ackWaitMs = Math.min(this.#limits!.high.ackWaitMs, this.#limits!.bulk.ackWaitMs);
    const every = Math.max(50, (ackWaitMs * PROGRESS_FRACTION) / 2);
    this.#progressTimer = setInterval(() => this.#sendProgress(), every);
    this.#progressTimer.unref();
  }

  #sendProgress(): void {
    const now = performance.now();
    for (const held of this.#held) {
      const ackWaitMs = this.#limits![held.priority].ackWaitMs;
      if (now - held.lastProgressAt < ackWaitMs * PROGRESS_FRACTION) continue;
      if (now - held.takenAt > this.#settings.maxHoldMs) continue; // let JetStream move it elsewhere
      try {
        held.msg.working();
        held.lastProgressAt = now;
      } catch {
        // connection down: nothing to do until it is back
      }
    }
  }

  // ---- control plane view ----------------------------------------------------------------------

  localRows(): number {
    return this.#batcher.size;
  }

  heldJobs(): number {
    return this.#held.size;
  }

  terminate(request: TerminateRequest): TerminateReply {
    const reply: TerminateReply = {
      protocol: 'bertq.v1',
      service: this.service,
      worker_id: this.id,
      state: 'draining',
      in_flight_jobs: this.#held.size,
    };
    this.#log.info({ reason: request.reason ?? null }, 'terminate requested');
    // After the reply is on its way: the reply is sent when this handler returns.
    setTimeout(
      () =>
        void this.stop({
          ...(request.drain_timeout_ms === undefined ? {} : { drainTimeoutMs: request.drain_timeout_ms }),
        }),
      0,
    );
    return reply;
  }

  /** The state the control plane reports (it never sees 'closed': its endpoints are gone by then). */
  currentState(): 'starting' | 'ready' | 'draining' {
    return this.#state === 'closed' ? 'draining' : this.#state;
  }

  stats(): WorkerStats {
    const c = this.metrics.counters;
    return {
      state: this.#state,
      jobsReceived: c.jobsReceived,
      jobsDone: c.jobsDone,
      jobsFailed: c.jobsFailed,
      jobsUnanswerable: c.jobsUnanswerable,
      jobsRedelivered: c.jobsRedelivered,
      jobsReturned: c.jobsReturned,
      jobsTimedOut: c.jobsTimedOut,
      rows: c.rows,
      batches: c.batches,
      errors: { ...c.errors },
      heldJobs: this.#held.size,
      queuedRows: this.localRows(),
    };
  }

  config(): ServerConfig {
    if (this.#description === undefined) throw new InternalError('the worker has not started');
    return buildServerConfig(this.#description);
  }

  status(): Promise<ServerStatus> {
    if (this.#description === undefined) return Promise.reject(new InternalError('the worker has not started'));
    return buildServerStatus(this.#description, this, this.#jsm!, this.#registration?.requestCount ?? 0);
  }

  // ---- stopping --------------------------------------------------------------------------------

  stop(options: { drainTimeoutMs?: number; reason?: string } = {}): Promise<void> {
    this.#stopPromise ??= this.#drain(options.drainTimeoutMs ?? this.#settings.drainTimeoutMs, options.reason);
    return this.#stopPromise;
  }

  async #drain(timeoutMs: number, reason: string | undefined): Promise<void> {
    if (this.#state === 'closed') return;
    this.#log.info({ reason: reason ?? null, heldJobs: this.#held.size, timeoutMs }, 'draining');
    this.#state = 'draining';
    this.#stopping = true;
    this.#credits.cancelWaiters();
    const deadline = performance.now() + timeoutMs;
    // Open pulls end within pullExpiresMs; jobs that still arrive are handed back (nak) at once.
    await raceDeadline(Promise.all(this.#pullLoops), deadline);
    if (this.#held.size > 0) {
      await raceDeadline(new Promise<void>((resolve) => (this.#heldEmpty = resolve)), deadline);
    }
    const left = [...this.#held];
    if (left.length > 0)
      this.#log.warn({ jobs: left.length }, 'drain timed out; handing the remaining jobs back to the queue');
    for (const held of left) this.#finish(held, 'nak');
    this.#batcher.clear();
    await this.#shutdown();
    this.#resolveClosed(undefined);
  }

  /** The connection closed for good (server gone past its reconnect attempts): end the worker. */
  #connectionLost(err: Error): void {
    this.#log.error({ err }, 'the NATS connection closed; the worker stops');
    this.#stopping = true;
    this.#credits.cancelWaiters();
    for (const held of [...this.#held]) {
      held.finished = true; // JetStream redelivers them after ack_wait
      this.#held.delete(held);
    }
    this.#batcher.clear();
    this.#stopPromise ??= this.#shutdown().then(() => this.#resolveClosed(err));
  }

  async #shutdown(): Promise<void> {
    clearInterval(this.#progressTimer);
    await this.#registration?.stop().catch(() => undefined);
    await this.#closeConnection();
    this.#state = 'closed';
    this.#log.info(this.stats(), 'worker closed');
  }

  async #closeConnection(): Promise<void> {
    const nc = this.#nc;
    if (nc === undefined || nc.isClosed()) return;
    const deadline = performance.now() + FLUSH_TIMEOUT_MS;
    // Acks and frames are buffered in the client: flush (or drain our own connection) so they reach the server.
    if (this.#ownConnection)
      await raceDeadline(
        nc.drain().catch(() => undefined),
        deadline,
      );
    else
      await raceDeadline(
        nc.flush().catch(() => undefined),
        deadline,
      );
    if (this.#ownConnection && !nc.isClosed()) await nc.close().catch(() => undefined);
  }
}

/** A batch of the given entries (used when some rows of a formed batch were dropped). */
function batchOf(entries: readonly QueuedEntry<HeldJob>[]): Batch<HeldJob> {
  let maxTokens = 0;
  let realTokens = 0;
  for (const e of entries) {
    maxTokens = Math.max(maxTokens, e.tokens);
    realTokens += e.tokens;
  }
  return { entries, maxTokens, realTokens, paddedTokens: maxTokens * entries.length };
}

/**
 * Tokenizer errors count rows from 0 within the job; the protocol counts from the start of the
 * request. Rewrites `texts[i]` and `details.row` by the job's offset, and adds the job's address.
 */
function requestRelative(err: unknown, job: Job): BertqError {
  const error = toBertqError(err);
  const row = error.details?.row;
  const details = { ...(error.details ?? {}), id: job.id, offset: job.offset, reply: job.reply };
  if (typeof row !== 'number' || job.offset === 0)
    return errorFromCode(error.code, error.message, { cause: err, details });
  const shifted = row + job.offset;
  const message = error.message.replace(/texts\[(\d+)\]/g, (m, i: string) =>
    Number(i) === row ? `texts[${shifted}]` : m,
  );
  return errorFromCode(error.code, message, { cause: err, details: { ...details, row: shifted } });
}

async function raceDeadline(promise: Promise<unknown>, deadline: number): Promise<void> {
  const ms = Math.max(0, deadline - performance.now());
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
