/**
 * One worker: pulls jobs from the service's `high` and `bulk` consumers, tokenizes them, batches rows
 * by token budget, runs the model on its own thread while this one keeps pulling, parsing and
 * tokenizing the next jobs, publishes each job's rows as result frames, and acknowledges a job once
 * all its rows are out. It also answers the control plane (config / status / terminate) and drains on
 * stop. The parts: the job ledger (core/ledger.ts: what is held, settled with JetStream), the
 * scheduler (core/scheduler.ts: when and what the model runs), each job's output buffer
 * (core/job-output.ts) and the publisher (nats/publisher.ts: frames out). This file ties them.
 *
 * Flow of one job:
 *   pulled (takes credits) → parseJob → deadline? → tokenize → scheduler → batch → model → output
 *   → all rows published → ack (credits back)
 * A job refused anywhere on the way gets one error frame and `term()` (never redelivered); a batch the
 * model fails hands its jobs back (`nak`) unless this was their last allowed delivery.
 */
import { performance } from 'node:perf_hooks';
import { nuid } from '@nats-io/transport-node';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import type { Consumer, JetStreamManager, JsMsg } from '@nats-io/jetstream';
import {
  BadRequestError,
  BertqError,
  HEADERS,
  InternalError,
  ModelError,
  NoWorkersError,
  PRIORITIES,
  TooLongError,
  deadlineError,
  errorFromCode,
  getHeader,
  isResultsSubject,
  parseJob,
  peekJobContext,
  serviceNames,
  settlesWithin,
  toBertqError,
  validateSubjectToken,
  WORKER_INBOX_PREFIX,
} from '@bertq/protocol';
import type { Job, Priority, ServerConfig, ServerStatus, TerminateReply, TerminateRequest } from '@bertq/protocol';
import type { TokenizedText } from '@bertq/model';
import { connectNats, fromNatsHeaders, silentLogger } from '@bertq/nats';
import type { ServiceRegistration } from '@bertq/nats';
import type { Logger } from 'pino';
import { buildServerConfig, buildServerStatus, registerControlPlane } from './control/control.js';
import type { WorkerDescription, WorkerView } from './control/control.js';
import { WorkerMetrics } from './control/metrics.js';
import { assertOneConfiguration } from './control/one-configuration.js';
import type { Batch } from './core/batcher.js';
import { Cancellations } from './core/cancellations.js';
import { Credits } from './core/credits.js';
import type { EmbeddingEngine } from './core/engine.js';
import { JobOutput } from './core/job-output.js';
import { JobLedger, PROGRESS_FRACTION, jobOf, queued } from './core/ledger.js';
import type { ConsumerLimits, HeldJob, QueuedStage } from './core/ledger.js';
import { Scheduler } from './core/scheduler.js';
import { Publisher } from './nats/publisher.js';
import { runPullLoop } from './nats/pull.js';
import {
  STREAM_DEFAULTS,
  StreamRightsError,
  ensureStream,
  openJetStreamManager,
  readConsumerLimits,
  serverName,
} from './nats/stream.js';
import type { StreamOptions } from './nats/stream.js';
import { WORKER_VERSION } from './version.js';
import { resolveSettings } from './worker-options.js';
import type { Settings, WorkerHandle, WorkerOptions, WorkerState, WorkerStats } from './worker-options.js';

export { WORKER_DEFAULTS } from './worker-options.js';
export type { WorkerHandle, WorkerOptions, WorkerState, WorkerStats } from './worker-options.js';

/**
 * A job whose computed rows reach this many bytes publishes them without waiting for its last row,
 * and a larger job keeps no single buffer (see JobOutput): what one job holds stays bounded.
 */
const FLUSH_BYTES = 8 * 1024 * 1024;
/** Delay before a job handed back after a failed batch is offered again (to any worker). */
const RETRY_DELAY_MS = 1_000;
const FLUSH_TIMEOUT_MS = 5_000;
/** How often the drain rate is sampled: fine enough to see a burst, cheap (one comparison). */
const DRAIN_SAMPLE_MS = 250;
/** Pull failures in a row after which the worker checks (and repairs) its stream at once. */
const PULL_FAILURES_BEFORE_REPAIR = 2;

/** Starts a worker; resolves once it has warmed up its model and is pulling jobs. */
export async function startWorker(options: WorkerOptions): Promise<WorkerHandle> {
  const worker = new Worker(options);
  await worker.start();
  return worker;
}

class Worker implements WorkerHandle, WorkerView {
  readonly id: string;
  readonly service: string;
  readonly metrics: WorkerMetrics;
  readonly localBound: number;
  readonly closed: Promise<Error | undefined>;

  readonly #options: WorkerOptions;
  readonly #engine: EmbeddingEngine;
  readonly #log: Logger;
  readonly #settings: Settings;
  readonly #credits: Credits;
  readonly #ledger: JobLedger;
  readonly #scheduler: Scheduler<HeldJob>;
  readonly #startedAt = new Date();
  #state: WorkerState = 'starting';
  #nc: NatsConnection | undefined;
  #ownConnection = false;
  #jsm: JetStreamManager | undefined;
  #publisher: Publisher | undefined;
  #description: WorkerDescription | undefined;
  #registration: ServiceRegistration | undefined;
  #limits: ConsumerLimits | undefined;
  /** Requests their clients gave up on: their jobs are skipped, not computed. */
  readonly #cancellations = new Cancellations(STREAM_DEFAULTS.maxJobAgeMs);
  #cancelSubscription: Subscription | undefined;
  #streamGuardTimer: NodeJS.Timeout | undefined;
  #guarding = false;
  /** The last damage to the stream this worker may not repair (logged once). */
  #unrepairable: string | undefined;
  #pullLoops: Promise<void>[] = [];
  #progressTimer: NodeJS.Timeout | undefined;
  /** Samples the drain rate (rows/s while saturated) that clients estimate a queue's wait from. */
  #drainTimer: NodeJS.Timeout | undefined;
  #stopping = false;
  #stopPromise: Promise<void> | undefined;
  #resolveClosed!: (reason: Error | undefined) => void;

  constructor(options: WorkerOptions) {
    this.#options = options;
    this.#engine = options.engine;
    this.service = serviceNames(options.service).service;
    this.id = options.workerId === undefined ? nuid.next() : validateSubjectToken(options.workerId, 'worker id');
    this.#log = (options.logger ?? silentLogger()).child({ component: 'worker', worker: this.id });
    this.metrics = new WorkerMetrics({ service: this.service, worker: this.id });
    this.metrics.watch('bertq_worker_held_jobs', 'Jobs this worker holds (pulled, not yet acknowledged).', () =>
      this.heldJobs(),
    );
    this.metrics.watch(
      'bertq_worker_queued_rows',
      'Rows tokenized and not encoded yet: waiting for a batch, or in one the model has not returned.',
      () => this.localRows(),
    );
    const s = resolveSettings(options);
    this.#settings = s;
    // Every held job has at most maxBatchSize rows (parseJob refuses more), so the scheduler's bound
    // is never hit: the credits are what limits the worker; the bound only backs them up.
    this.localBound = s.prefetch * s.maxBatchSize;
    this.#credits = new Credits(this.localBound);
    this.#ledger = new JobLedger(this.#credits, this.#log, (_held, how) => {
      if (how === 'nak') this.metrics.jobReturned();
    });
    this.#scheduler = new Scheduler<HeldJob>({
      maxBatchTokens: s.maxBatchTokens,
      maxBatchSize: s.maxBatchSize,
      maxWaitMs: s.maxWaitMs,
      maxQueuedRows: this.localBound,
      isFinished: (held) => held.finished,
      onExpired: (held) => this.#expire(held),
      run: (batch, modelDone) => this.#runBatch(batch, modelDone),
      onRunError: (err) => this.#log.error({ err }, 'batch bookkeeping failed'),
    });
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
  }

  get state(): WorkerState {
    return this.#state;
  }

  // ---- start ---------------------------------------------------------------------------------

  async start(): Promise<void> {
    try {
      const nc = await this.#connect();
      await this.#warmUp();
      const info = this.#engine.info;
      await assertOneConfiguration(nc, this.service, {
        fingerprint: info.fingerprint,
        model: info.model,
        pooling: info.poolingStrategy,
        maxSeqLen: info.maxSeqLen,
        dims: info.dims,
      });
      this.#description = this.#describe(nc);
      const js = jetstream(nc);
      const names = serviceNames(this.service);
      const consumers = {} as Record<Priority, Consumer>;
      for (const priority of PRIORITIES)
        consumers[priority] = await js.consumers.get(names.stream, names.consumers[priority]);

      this.#registration = registerControlPlane(nc, this.#requireJsm(), this.#description, this);
      this.#cancelSubscription = nc.subscribe(names.cancel, {
        callback: (err, msg) => {
          if (err === null) this.#onCancel(fromNatsHeaders(msg.headers));
        },
      });
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
          onFailures: (n) => {
            if (n === PULL_FAILURES_BEFORE_REPAIR) void this.#guardStream();
          },
          logger: this.#log,
        }),
      );
      this.#startProgressTimer();
      this.#startStreamGuard();
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

  async #connect(): Promise<NatsConnection> {
    let nc = this.#options.nc;
    if (nc === undefined) {
      if (this.#options.servers === undefined)
        throw new BadRequestError('startWorker needs a connection: give `nc` or `servers`');
      nc = await connectNats({
        ...this.#options.connection,
        servers: this.#options.servers,
        name: this.#options.connection?.name ?? `bertq-worker-${this.id}`,
        inboxPrefix: WORKER_INBOX_PREFIX,
      });
      this.#ownConnection = true;
    }
    this.#nc = nc;
    this.#publisher = new Publisher(nc, nc.info?.max_payload ?? 1024 * 1024, this.id, this.#log);
    const jsm = await openJetStreamManager(nc);
    this.#jsm = jsm;
    if (this.#options.stream !== false) await ensureStream(jsm, { ...this.#options.stream, service: this.service });
    try {
      this.#limits = await readConsumerLimits(jsm, this.service);
    } catch (err) {
      const names = serviceNames(this.service);
      throw new NoWorkersError(
        `cannot read the consumers ${names.consumers.high} and ${names.consumers.bulk} of stream ${names.stream} at ${serverName(nc)}: ` +
          `${(err as Error).message}; start the worker with stream options (or through a fleet) so it creates them`,
        { cause: err },
      );
    }
    return nc;
  }

  #describe(nc: NatsConnection): WorkerDescription {
    const info = this.#engine.info;
    const s = this.#settings;
    const description: WorkerDescription = {
      service: this.service,
      workerId: this.id,
      info,
      device: this.#options.device ?? info.device,
      maxBatchSize: s.maxBatchSize,
      priorityBatchSize: s.priorityBatchSize,
      maxBatchTokens: s.maxBatchTokens,
      prefetch: s.prefetch,
      showTokensToClient: this.#options.showTokensToClient === true,
      maxPayload: this.#requirePublisher().maxPayload,
      startedAt: this.#startedAt,
      versions: {
        bertq: WORKER_VERSION,
        node: process.versions.node,
        'nats-server': nc.info?.version ?? 'unknown',
        ...(this.#engine.versions ?? {}),
      },
    };
    if (this.#options.model !== undefined) description.model = this.#options.model;
    return description;
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

  #requireJsm(): JetStreamManager {
    if (this.#jsm === undefined) throw new InternalError('the worker has not connected');
    return this.#jsm;
  }

  #requirePublisher(): Publisher {
    if (this.#publisher === undefined) throw new InternalError('the worker has not connected');
    return this.#publisher;
  }

  #requireLimits(): ConsumerLimits {
    if (this.#limits === undefined) throw new InternalError('the worker has not read its consumers');
    return this.#limits;
  }

  // ---- taking jobs ---------------------------------------------------------------------------

  /** The most rows one job of a consumer can have: what a pull reserves for it. */
  #jobCost(priority: Priority): number {
    return priority === 'high' ? Math.max(1, this.#settings.priorityBatchSize) : this.#settings.maxBatchSize;
  }

  #take(msg: JsMsg, priority: Priority): void {
    const held = this.#ledger.take(msg, priority, this.#jobCost(priority));
    this.metrics.jobReceived(msg.redelivered);
    void this.#admit(held).catch((err: unknown) =>
      this.#refuse(held, new InternalError(`admitting a job failed: ${(err as Error).message}`, { cause: err })),
    );
  }

  /** pulled → parsed → (deadline, show_tokens) → tokenized → queued in the scheduler. */
  async #admit(held: HeldJob): Promise<void> {
    let job: Job;
    try {
      job = parseJob(fromNatsHeaders(held.msg.headers), held.msg.data, {
        service: this.service,
        maxRows: this.#settings.maxBatchSize,
        maxBytes: this.#requirePublisher().maxPayload,
      });
    } catch (err) {
      this.#refuse(held, err);
      return;
    }
    held.stage = { kind: 'parsed', job };
    if (this.#cancellations.has(job.id, job.reply)) {
      this.#skipCancelled(held);
      return;
    }
    // The high lane jumps the queue; only small jobs may (bertq clients never send others there).
    if (held.priority === 'high' && job.texts.length > this.#settings.priorityBatchSize) {
      this.#refuse(
        held,
        new BadRequestError(
          `a job on the high lane may hold at most ${this.#settings.priorityBatchSize} rows (priority_batch_size), this one has ${job.texts.length}: publish it to the bulk lane`,
          { details: { rows: job.texts.length, limit: this.#settings.priorityBatchSize, lane: 'high' } },
        ),
      );
      return;
    }
    this.#ledger.fitCredits(held, job.texts.length);
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
        validated: true,
      });
    } catch (err) {
      this.#refuse(held, requestRelative(err, job));
      return;
    }
    if (held.finished) return; // handed back meanwhile (a drain that ran out of time)
    if (job.checkLength) {
      const cut = rows.findIndex((r) => r.truncatedFrom !== undefined);
      if (cut >= 0) {
        const limit = this.#engine.info.maxSeqLen;
        this.#refuse(
          held,
          new TooLongError(
            `texts[${job.offset + cut}] has ${rows[cut]!.truncatedFrom} tokens with [CLS]/[SEP], more than max_seq_len ${limit}: ` +
              'it would be cut (check_length). Shorten it, start the service with a larger --max-seq-len, or encode with checkLength: false',
            { details: { row: job.offset + cut, tokens: rows[cut]!.truncatedFrom, limit } },
          ),
        );
        return;
      }
    }
    held.stage = {
      kind: 'queued',
      job,
      rows,
      tokenizationMs: performance.now() - t0,
      output: new JobOutput(rows.length, this.#rowShape(rows), FLUSH_BYTES),
      inferenceMs: 0,
    };
    const deadline = job.deadline ?? Number.POSITIVE_INFINITY;
    try {
      this.#scheduler.push(
        // The client is the principal of the fair share: one busy client does not hold back the others.
        rows.map((r, row) => ({
          job: held,
          row,
          tokens: r.length,
          priority: held.priority,
          deadline,
          principal: job.reply,
        })),
      );
    } catch (err) {
      // Cannot happen while credits bound the held jobs; if it does, say so rather than drop the job.
      this.#refuse(held, err);
    }
  }

  /**
   * The shape of one row of a job's result. Token-level output (NONE pooling) is padded to the
   * job's own length (max_seq_len, or with NONE its longest row), whichever batches its rows run
   * in, so all rows of a request have one shape.
   */
  #rowShape(rows: readonly TokenizedText[]): number[] {
    const info = this.#engine.info;
    if (!info.tokenLevel) return [info.dims];
    const longest = rows.reduce((m, r) => Math.max(m, r.length), 0);
    return [this.#engine.tokenLevelLength(longest), info.dims];
  }

  /** Answers a job with one error frame (when it names where to) and terminates it. */
  #refuse(held: HeldJob, err: unknown): void {
    if (held.finished) return;
    const error = toBertqError(err);
    const job = jobOf(held);
    const context = job ?? peekJobContext(fromNatsHeaders(held.msg.headers), this.service);
    const answerable = context.id !== undefined && context.reply !== undefined;
    this.metrics.jobRefused(error.code, answerable);
    if (context.id !== undefined && context.reply !== undefined) {
      const address = {
        id: context.id,
        offset: context.offset,
        ...(context.seal === undefined ? {} : { seal: context.seal }),
        ...rowsOf(job, error),
      };
      this.#requirePublisher().error(context.reply, address, error);
      this.#log.debug({ code: error.code, err: error.message, seq: held.msg.seq }, 'job refused');
    } else {
      // Logged once: the job is terminated below, so it never comes back.
      this.#log.warn(
        { code: error.code, err: error.message, subject: held.msg.subject, seq: held.msg.seq },
        'refused a job that names no usable reply subject (Bertq-Id and Bertq-Reply are needed to answer it)',
      );
    }
    this.#ledger.settle(held, 'term');
  }

  /**
   * A client no longer waits for request `id` (cancelSubject): remember it for the jobs still to come,
   * and drop the ones held now (their rows still queued in the batcher are skipped).
   */
  #onCancel(headers: Record<string, string>): void {
    const id = getHeader(headers, HEADERS.id);
    const reply = getHeader(headers, HEADERS.reply);
    if (id === undefined || reply === undefined || !isResultsSubject(this.service, reply)) return;
    this.#cancellations.add(id, reply);
    for (const held of [...this.#ledger]) {
      const job = jobOf(held);
      if (job !== undefined && job.id === id && job.reply === reply) this.#skipCancelled(held);
    }
  }

  /** Settles a cancelled request's job without computing it or answering: nobody waits for it. */
  #skipCancelled(held: HeldJob): void {
    if (held.finished) return;
    this.metrics.jobCancelled();
    this.#ledger.settle(held, 'term');
  }

  /** The stream settings to guard: `guardStream`, else `stream` unless it is false. */
  #guarded(): Omit<StreamOptions, 'service'> | undefined {
    if (this.#options.guardStream !== undefined) return this.#options.guardStream;
    return this.#options.stream === false ? undefined : (this.#options.stream ?? {});
  }

  #startStreamGuard(): void {
    if (this.#guarded() === undefined) return;
    this.#streamGuardTimer = setInterval(() => void this.#guardStream(), this.#settings.streamCheckMs);
    this.#streamGuardTimer.unref();
  }

  /**
   * The stream heals itself: a consumer or stream deleted from outside is created again, settings
   * changed from outside (max_msgs = 1, say) are set back, and the repair is logged. Idempotent
   * (ensureStream), one at a time; failures (a broker outage) wait for the next check.
   */
  async #guardStream(): Promise<void> {
    const guarded = this.#guarded();
    if (guarded === undefined || this.#guarding || this.#stopping) return;
    this.#guarding = true;
    try {
      const r = await ensureStream(this.#requireJsm(), { ...guarded, service: this.service });
      if (r.created || r.updated.length > 0 || r.consumersCreated.length > 0) {
        this.metrics.streamRepaired();
        this.#log.warn(
          { stream: r.stream, created: r.created, updated: r.updated, consumersCreated: r.consumersCreated },
          'the stream or its consumers were deleted or changed from outside; restored them',
        );
      }
    } catch (err) {
      if (err instanceof StreamRightsError) {
        // Not ours to repair: say so once per kind of damage, at a level an operator sees.
        if (err.message !== this.#unrepairable) this.#log.error({ err }, 'the stream needs repair by an operator');
        this.#unrepairable = err.message;
      } else this.#log.debug({ err }, 'checking the stream failed; trying again later');
    } finally {
      this.#guarding = false;
    }
  }

  /** A job that arrived while stopping: back to the queue at once. */
  #handBack(msg: JsMsg): void {
    this.metrics.jobReturned();
    try {
      msg.nak();
    } catch {
      // connection gone: JetStream redelivers after ack_wait anyway
    }
  }

  #expire(held: HeldJob): void {
    const job = jobOf(held);
    if (held.finished || job === undefined) return;
    // The batcher drops a row at deadline <= now; deadlineError speaks from deadline < now: agree on "passed".
    this.#refuse(held, deadlineError(job, Math.max(Date.now(), (job.deadline ?? 0) + 1)));
  }

  // ---- inference -------------------------------------------------------------------------------

  /** Runs a batch the scheduler formed this instant (its rows are live and within their deadlines). */
  async #runBatch(batch: Batch<HeldJob>, modelDone: () => void): Promise<void> {
    const { entries } = batch;
    const start = performance.now();
    // One pass over the batch: each job's stage, and where its rows sit in the batch.
    const jobs = new Map<HeldJob, QueuedStage>();
    const positions = new Map<HeldJob, Array<{ row: number; at: number }>>();
    entries.forEach((e, at) => {
      let mine = positions.get(e.job);
      if (mine === undefined) {
        jobs.set(e.job, queued(e.job));
        mine = [];
        positions.set(e.job, mine);
      }
      mine.push({ row: e.row, at });
    });
    for (const [held, stage] of jobs) stage.queueMs ??= start - held.takenAt;
    let output;
    try {
      output = await this.#engine.run(entries.map((e) => queued(e.job).rows[e.row]!));
    } catch (err) {
      this.#batchFailed(jobs.keys(), err);
      return;
    }
    // The model is free: the next batch goes to it now, while this one's rows are written out.
    modelDone();
    // The model's own time: the wall time since `start` also holds passing rows and vectors between threads.
    const inferenceMs = output.computeMs ?? performance.now() - start;
    this.#scheduler.batchDone(entries.length, inferenceMs);
    this.metrics.batchDone(entries.length, batch.realTokens, batch.paddedTokens, inferenceMs);

    for (const [held, stage] of jobs) {
      if (held.finished) continue;
      stage.inferenceMs += inferenceMs;
      try {
        stage.output.write(output, entries.length, positions.get(held) ?? []);
      } catch (err) {
        this.#batchFailed([held], err);
        continue;
      }
      if (stage.output.complete || stage.output.pendingBytes >= FLUSH_BYTES) this.#flush(held, stage);
      if (!held.finished && stage.output.complete) this.#complete(held, stage);
    }
  }

  /**
   * Publishes a job's computed rows. They are held until the job is done (or holds FLUSH_BYTES) and
   * then sent as few, large frames: per-frame cost, not per-row cost, is what a busy fleet pays for.
   */
  #flush(held: HeldJob, stage: QueuedStage): void {
    const timings = {
      tokenization: stage.tokenizationMs,
      queue: stage.queueMs ?? 0,
      inference: stage.inferenceMs,
      takenAt: held.takenAt,
    };
    for (const run of stage.output.take()) {
      try {
        this.#requirePublisher().results(stage.job, stage.rows, run, stage.output.rowShape, timings);
      } catch (err) {
        this.#refuse(held, err);
        return;
      }
    }
  }

  #complete(held: HeldJob, stage: QueuedStage): void {
    this.metrics.jobDone(stage.output.rowsDone, {
      tokenization: stage.tokenizationMs,
      queue: stage.queueMs ?? 0,
      total: performance.now() - held.takenAt,
    });
    // Ack after every frame: on the same connection, so the server has the frames before the ack.
    this.#ledger.settle(held, 'ack');
  }

  /**
   * The model failed a batch. Its jobs go back to the queue (another worker, or this one, tries
   * again), except on their last allowed delivery: then the client gets an error instead of silence.
   */
  #batchFailed(jobs: Iterable<HeldJob>, err: unknown): void {
    const error = toBertqError(err, 'MODEL_ERROR');
    this.#log.error({ err }, 'the model failed a batch');
    this.metrics.batchFailed();
    for (const held of jobs) {
      if (held.finished) continue;
      const deliveries = held.msg.info.deliveryCount;
      const maxDeliver = this.#requireLimits()[held.priority].maxDeliver;
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
        this.#ledger.settle(held, 'nak', RETRY_DELAY_MS);
      }
    }
  }

  // ---- in-progress acks ------------------------------------------------------------------------

  #startProgressTimer(): void {
    const limits = this.#requireLimits();
    const ackWaitMs = Math.min(limits.high.ackWaitMs, limits.bulk.ackWaitMs);
    const every = Math.max(50, (ackWaitMs * PROGRESS_FRACTION) / 2);
    this.#progressTimer = setInterval(() => this.#ledger.sendProgress(limits, this.#settings.maxHoldMs), every);
    this.#progressTimer.unref();
    this.#drainTimer = setInterval(
      () => this.metrics.drain.sample(this.metrics.counters.rows, this.#scheduler.size > 0),
      DRAIN_SAMPLE_MS,
    );
    this.#drainTimer.unref();
  }

  // ---- control plane view ----------------------------------------------------------------------

  localRows(): number {
    return this.#scheduler.unencodedRows;
  }

  heldJobs(): number {
    return this.#ledger.size;
  }

  terminate(request: TerminateRequest): TerminateReply {
    const reply: TerminateReply = {
      protocol: 'bertq.v1',
      service: this.service,
      worker_id: this.id,
      state: 'draining',
      in_flight_jobs: this.#ledger.size,
    };
    this.#log.info({ reason: request.reason ?? null }, 'terminate requested');
    // After the reply is on its way: the reply is sent when this handler returns.
    setTimeout(() => void this.stop({ drainTimeoutMs: request.drain_timeout_ms }), 0);
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
      jobsCancelled: c.jobsCancelled,
      rows: c.rows,
      batches: c.batches,
      errors: { ...c.errors },
      heldJobs: this.#ledger.size,
      queuedRows: this.localRows(),
    };
  }

  config(): ServerConfig {
    if (this.#description === undefined) throw new InternalError('the worker has not started');
    return buildServerConfig(this.#description);
  }

  status(): Promise<ServerStatus> {
    if (this.#description === undefined) return Promise.reject(new InternalError('the worker has not started'));
    return buildServerStatus(this.#description, this, this.#requireJsm(), this.#registration?.requestCount ?? 0);
  }

  // ---- stopping --------------------------------------------------------------------------------

  stop(options: { drainTimeoutMs?: number | undefined; reason?: string } = {}): Promise<void> {
    this.#stopPromise ??= this.#drain(options.drainTimeoutMs ?? this.#settings.drainTimeoutMs, options.reason);
    return this.#stopPromise;
  }

  async #drain(timeoutMs: number, reason: string | undefined): Promise<void> {
    if (this.#state === 'closed') return;
    this.#log.info({ reason: reason ?? null, heldJobs: this.#ledger.size, timeoutMs }, 'draining');
    this.#state = 'draining';
    this.#stopping = true;
    this.#credits.cancelWaiters();
    const deadline = performance.now() + timeoutMs;
    // Open pulls end within pullExpiresMs; jobs that still arrive are handed back (nak) at once.
    await raceDeadline(Promise.all(this.#pullLoops), deadline);
    await raceDeadline(this.#ledger.whenEmpty(), deadline);
    const left = [...this.#ledger];
    if (left.length > 0)
      this.#log.warn({ jobs: left.length }, 'drain timed out; handing the remaining jobs back to the queue');
    for (const held of left) this.#ledger.settle(held, 'nak');
    this.#scheduler.clear();
    await this.#shutdown();
    this.#resolveClosed(undefined);
  }

  /** The connection closed for good (server gone past its reconnect attempts): end the worker. */
  #connectionLost(err: Error): void {
    this.#log.error({ err }, 'the NATS connection closed; the worker stops');
    this.#stopping = true;
    this.#credits.cancelWaiters();
    this.#ledger.forgetAll(); // JetStream redelivers them after ack_wait
    this.#scheduler.clear();
    this.#stopPromise ??= this.#shutdown().then(() => this.#resolveClosed(err));
  }

  async #shutdown(): Promise<void> {
    clearInterval(this.#progressTimer);
    clearInterval(this.#drainTimer);
    clearInterval(this.#streamGuardTimer);
    this.#cancelSubscription?.unsubscribe();
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

/** Waits for `promise` until the performance.now() `deadline`, whichever comes first. */
async function raceDeadline(promise: Promise<unknown>, deadline: number): Promise<void> {
  await settlesWithin(promise, deadline - performance.now());
}

/** The rows a refusal covers (its frame's Bertq-Rows): the job's, or what parsing could count. */
function rowsOf(job: Job | undefined, error: BertqError): { rows?: number } {
  if (job !== undefined) return { rows: job.texts.length };
  const rows = error.details?.rows;
  return typeof rows === 'number' && Number.isSafeInteger(rows) && rows >= 0 ? { rows } : {};
}
