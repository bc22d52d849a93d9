/**
 * BertClient: bert-as-service's client over NATS. A request is split into jobs published to the
 * service's JetStream stream; result frames come back on this client's results subject (shared by
 * clients with the same identity) and are placed by offset until every row is in.
 */
import { Empty, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { NatsConnectError, connectNats, redactUrl, toNatsHeaders } from '@bertq/nats';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import {
  BadRequestError,
  validateTexts,
  withDeadline,
  BertqError,
  HEADERS,
  InternalError,
  UnauthorizedError,
  NoWorkersError,
  OverloadedError,
  PRIORITIES,
  TimeoutError,
  decodeFrame,
  newRequestId,
  newRequestKey,
  sealOf,
  priorityFor,
  serviceNames,
  type AssembledResult,
  type DecodedFrame,
  type Priority,
  type ServerConfig,
  type ServiceNames,
  type TerminateRequest,
} from '@bertq/protocol';
import { AsyncQueue } from './async-queue.js';
import { cutRows, prepareJobs } from './chunks.js';
import {
  requestFleetMetrics,
  requestFleetStatus,
  requestServerConfig,
  requestTerminate,
  type FleetStatus,
  type TerminateResult,
} from './control.js';
import { ClientClosedError } from './errors.js';
import { NonBlockingInbox } from './inbox.js';
import {
  DEFAULT_LISTEN_BUFFER,
  DEFAULT_MAX_IN_FLIGHT,
  FALLBACK_CHUNK_ROWS,
  checkPositiveInt,
  natsPart,
  resolveClientOptions,
  resolveEncodeOptions,
  type ClientOptions,
  type EncodeAsyncOptions,
  type EncodeOptions,
  type ListenOptions,
  type ResolvedClientOptions,
} from './options.js';
import { formatVectors } from './output.js';
import { PartJoiner } from './part-joiner.js';
import { PendingRequest } from './pending.js';
import { fromNatsHeaders } from '@bertq/nats';
import { publishAll, publishJob, type PublishContext } from './publish.js';
import { AdmissionGate, batchRowsOf } from './admission.js';
import { SingleFlight } from './single-flight.js';
import {
  ALL_DELIVERED,
  CONSUMER_INFO_TIMEOUT_MS,
  deliveredSequences,
  jobsToReask,
  stalledRequests,
} from './recovery.js';
import type {
  ClientStatus,
  Delivery,
  Fetched,
  NdArray,
  OutputFormat,
  Texts,
  Vectors,
  VectorsWithTokens,
} from './types.js';
import { CLIENT_VERSION, versionMismatch } from './version.js';

/** A server config older than this is read again before the next request: that read is also the liveness check behind NO_WORKERS. */
export const CONFIG_MAX_AGE_MS = 1_000;
/** How long a request waits for a config re-read when it has a cached one to fall back on. */
export const STALE_CONFIG_WAIT_MS = 250;
/** Longest wait to open the NATS connection (bounded further by the client's timeout). */
export const CONNECT_TIMEOUT_MS = 20_000;
/** While requests wait, how often the client checks that some worker still serves the service. */
export const LIVENESS_INTERVAL_MS = 2_000;
/** Checks in a row that nobody answers before waiting requests fail with NO_WORKERS (~6 s). */
export const LIVENESS_MISSES = 3;
/** Request ids remembered to tell this client's frames from its clones' in listen(). */
const RECENT_IDS = 10_000;

type Result<F extends OutputFormat> = Vectors<F> | VectorsWithTokens<Vectors<F>>;

interface Stats {
  numRequest: number;
  numTotalSeq: number;
  numChunks: number;
  numCompleted: number;
  numFailed: number;
  numTimeout: number;
  framesReceived: number;
  duplicateFrames: number;
  foreignFrames: number;
  malformedFrames: number;
  forgedFrames: number;
  publishRetries: number;
  reaskedJobs: number;
  recoveries: number;
  reconnects: number;
  cancelled: number;
  shed: number;
}

export class BertClient<F extends OutputFormat = 'ndarray'> {
  /** Results subject token; pass it as `identity` to another client to make a clone. */
  readonly identity: string;
  /** Canonical service name. */
  readonly service: string;
  /** `bertq.v1.<svc>.results.<identity>`. */
  readonly resultsSubject: string;
  readonly outputFmt: F;

  private readonly names: ServiceNames;
  private readonly js: JetStreamClient;
  private readonly pending = new Map<string, PendingRequest>();
  private readonly recentIds = new Set<string>();
  private readonly listeners = new Set<AsyncQueue<Delivery<F>>>();
  private readonly inbox = new NonBlockingInbox<Fetched<F>>();
  private readonly partJoiner = new PartJoiner();
  private readonly stats: Stats = {
    numRequest: 0,
    numTotalSeq: 0,
    numChunks: 0,
    numCompleted: 0,
    numFailed: 0,
    numTimeout: 0,
    framesReceived: 0,
    duplicateFrames: 0,
    foreignFrames: 0,
    malformedFrames: 0,
    forgedFrames: 0,
    publishRetries: 0,
    reaskedJobs: 0,
    recoveries: 0,
    reconnects: 0,
    cancelled: 0,
    shed: 0,
  };
  /** Refuses at once what the queue could not serve by its deadline (admission.ts). */
  private readonly admission = new AdmissionGate(
    () => this.serverStatus(),
    () => this.queueDepth(),
  );
  private sub: Subscription | undefined;
  /** JetStream's API on this connection, made once (it does no I/O: checkAPI is off). */
  private jsmHandle: Awaited<ReturnType<typeof jetstreamManager>> | undefined;
  private config: ServerConfig | undefined;
  private configReadAt = 0;
  private readonly configRead = new SingleFlight<ServerConfig>();
  private closing: Promise<void> | undefined;
  private closedReason: string | undefined;
  /** Set when the server refused or ended the results subscription: no result can arrive any more. */
  private subscriptionError: BertqError | undefined;
  private versionWarned = false;
  /** Runs while requests wait: see checkLiveness. */
  private livenessTimer: NodeJS.Timeout | undefined;
  private livenessMisses = 0;
  /** Epoch ms the connection dropped, while it is down (reconnecting). */
  private disconnectedSince: number | undefined;
  /** When the connection last came back (0: never lost); the stall check looks at requests older than it. */
  private lastReconnectAt = 0;
  /** A stall check is running (they are not stacked). */
  private checkingStalls = false;
  /** The recovery running after the last reconnect; the next one waits for it. */
  private recovering: Promise<void> = Promise.resolve();

  private constructor(
    private readonly nc: NatsConnection,
    private readonly ownsConnection: boolean,
    private readonly options: ResolvedClientOptions,
  ) {
    // Python's BertClient(ip=…) makes `new BertClient({…})` the natural first try; connecting is
    // asynchronous here, so say what to write instead of failing on an undefined field.
    if (typeof (nc as { publish?: unknown } | undefined)?.publish !== 'function' || options === undefined) {
      throw new BadRequestError(
        'open a BertClient with `await BertClient.connect(options)`, not `new BertClient(…)`: connecting to NATS is asynchronous',
      );
    }
    this.identity = options.identity;
    this.names = serviceNames(options.service);
    this.service = this.names.service;
    this.resultsSubject = this.names.results(this.identity, options.tenant);
    this.outputFmt = options.outputFmt as F;
    this.js = jetstream(nc);
  }

  /**
   * Connects to NATS and subscribes to this identity's results subject. Succeeds with no worker
   * running (requests then fail fast with NO_WORKERS) unless `showServerConfig` asks for the config.
   */
  static async connect<F extends OutputFormat = 'ndarray'>(options: ClientOptions<F> = {}): Promise<BertClient<F>> {
    const resolved = resolveClientOptions(options);
    let nc = options.nc;
    if (nc === undefined) nc = await openConnection(options, resolved);
    const client = new BertClient<F>(nc, options.nc === undefined, resolved);
    try {
      await client.start();
    } catch (err) {
      await client.close().catch(() => {});
      throw err;
    }
    return client;
  }

  private async start(): Promise<void> {
    // Subscribe first and flush, so the server routes frames here before any job is published.
    this.sub = this.nc.subscribe(this.resultsSubject, { callback: (err, msg) => this.onMessage(err, msg) });
    await this.nc.flush();
    // A refused subscription is answered before the flush's PONG: fail now, not at every deadline.
    if (this.subscriptionError !== undefined) throw this.subscriptionError;
    void this.nc.closed().then((err) => this.onConnectionClosed(err ?? undefined));
    void this.watchReconnects();
    if (this.options.showServerConfig) {
      const config = await this.serverConfig();
      console.log(`bertq server config of service "${this.service}":\n${JSON.stringify(config, null, 2)}`);
    } else {
      // Warm the config cache in the background; the first request waits for it if needed.
      this.loadConfig().catch(() => {});
    }
  }

  // ------------------------------------------------------------------------------------------------
  // encode

  /** Sends the request and returns its id at once; fetch the result with `fetch()` / `fetchAll()`. */
  encode(texts: Texts, options: EncodeOptions & { blocking: false }): Promise<string>;
  /** Encodes the rows and returns their vectors and each row's tokens. */
  encode(
    texts: Texts,
    options: EncodeOptions & { showTokens: true; blocking?: true },
  ): Promise<VectorsWithTokens<Vectors<F>>>;
  /** Encodes the rows: `[rows, hidden]` (or `[rows, tokens, hidden]` with `pooling_strategy NONE`). */
  encode(texts: Texts, options?: EncodeOptions & { showTokens?: false; blocking?: true }): Promise<Vectors<F>>;
  encode(texts: Texts, options?: EncodeOptions): Promise<Result<F> | string>;
  async encode(texts: Texts, options?: EncodeOptions): Promise<Result<F> | string> {
    const o = resolveEncodeOptions(options, this.options.timeoutMs);
    if (!o.blocking) {
      const seq = this.inbox.reserve();
      const pending = await this.send(texts, o);
      this.inbox.track(
        seq,
        pending.id,
        pending.promise.then((result) => this.toFetched(pending.id, result, o.showTokens)),
      );
      return pending.id;
    }
    const pending = await this.send(texts, o);
    return this.toResult(pending.id, await pending.promise, o.showTokens);
  }

  /**
   * Encodes a stream of batches, keeping up to `maxInFlight` requests in flight, and yields each
   * batch's result in input order (bert-as-service's encode_async). Stopping early abandons the rest.
   */
  encodeAsync(
    batches: AsyncIterable<Texts> | Iterable<Texts>,
    options: EncodeAsyncOptions & { showTokens: true },
  ): AsyncGenerator<VectorsWithTokens<Vectors<F>>, void, undefined>;
  encodeAsync(
    batches: AsyncIterable<Texts> | Iterable<Texts>,
    options?: EncodeAsyncOptions & { showTokens?: false },
  ): AsyncGenerator<Vectors<F>, void, undefined>;
  encodeAsync(
    batches: AsyncIterable<Texts> | Iterable<Texts>,
    options?: EncodeAsyncOptions,
  ): AsyncGenerator<Result<F>, void, undefined>;
  async *encodeAsync(
    batches: AsyncIterable<Texts> | Iterable<Texts>,
    options: EncodeAsyncOptions = {},
  ): AsyncGenerator<Result<F>, void, undefined> {
    const { maxInFlight: maxInFlightOption, signal: outerSignal, ...encodeOptions } = options;
    const maxInFlight = checkPositiveInt(maxInFlightOption ?? DEFAULT_MAX_IN_FLIGHT, 'maxInFlight');
    const source = toAsyncIterator(batches);
    // One signal for every request of this stream: leaving the loop abandons what is still in flight.
    const stop = new AbortController();
    const signal = outerSignal === undefined ? stop.signal : AbortSignal.any([outerSignal, stop.signal]);
    const inFlight: Promise<Result<F>>[] = [];
    let exhausted = false;
    try {
      for (;;) {
        while (!exhausted && inFlight.length < maxInFlight) {
          const next = await source.next();
          if (next.done === true) {
            exhausted = true;
            break;
          }
          const request = this.encode(next.value, { ...encodeOptions, signal, blocking: true }) as Promise<Result<F>>;
          request.catch(() => {}); // awaited in order below; a later one failing first must not be unhandled
          inFlight.push(request);
        }
        const head = inFlight.shift();
        if (head === undefined) return;
        yield await head;
      }
    } finally {
      stop.abort(new ClientClosedError('encodeAsync stopped before this request was read'));
      await source.return?.();
    }
  }

  /**
   * Non-blocking requests, as they finish (completion order, bert-as-service's fetch). Ends when
   * every request sent with `blocking: false` has been fetched; a failed request throws its error.
   */
  async *fetch(): AsyncGenerator<Fetched<F>, void, undefined> {
    for (;;) {
      const item = await this.inbox.next();
      if (item === undefined) return;
      if (!item.ok) throw item.error;
      yield item.value;
    }
  }

  /**
   * Waits for every non-blocking request sent so far; results in send order (bert-as-service's
   * fetch_all). With `{ concat: true }`, one array of every request's rows, in send order.
   */
  async fetchAll(options: { concat: true }): Promise<Vectors<F>>;
  async fetchAll(options?: { concat?: false }): Promise<Fetched<F>[]>;
  async fetchAll(options: { concat?: boolean } = {}): Promise<Fetched<F>[] | Vectors<F>> {
    const all = await this.inbox.takeAll();
    const failed = all.find((item) => !item.ok);
    if (failed !== undefined && !failed.ok) throw failed.error;
    const results = all.map((item) => (item as { value: Fetched<F> }).value);
    return options.concat === true
      ? concatVectors(
          results.map((r) => r.vectors),
          this.outputFmt,
        )
      : results;
  }

  /**
   * Every frame delivered to this identity from now on, this client's and its clones' (multicast).
   * Frames hold chunks of requests (see ResultDelivery); error frames are yielded, not thrown. A
   * listener that falls `maxBuffered` deliveries behind fails with OVERLOADED. Ends on `close()`.
   */
  listen(options: ListenOptions = {}): AsyncIterableIterator<Delivery<F>> {
    this.ensureOpen();
    const capacity = checkPositiveInt(options.maxBuffered ?? DEFAULT_LISTEN_BUFFER, 'maxBuffered');
    const queue: AsyncQueue<Delivery<F>> = new AsyncQueue<Delivery<F>>(
      capacity,
      (n) =>
        new OverloadedError(
          `listener on ${this.resultsSubject} fell behind: more than ${n} results waiting; read faster or raise maxBuffered`,
          {
            details: { subject: this.resultsSubject, maxBuffered: n },
          },
        ),
      () => this.listeners.delete(queue),
    );
    this.listeners.add(queue);
    return queue;
  }

  // ------------------------------------------------------------------------------------------------
  // control plane

  /** Config of one worker of the service (bert-as-service's server_config). */
  async serverConfig(): Promise<ServerConfig> {
    this.ensureOpen();
    return this.loadConfig();
  }

  /** Every worker's Prometheus metrics (prom-client JSON, one list per worker); see requestFleetMetrics. */
  async workerMetrics(): Promise<unknown[][]> {
    this.ensureOpen();
    return requestFleetMetrics(this.nc, this.service);
  }

  /** Status of every worker of the service, found by services-framework discovery, and their sums. */
  async serverStatus(): Promise<FleetStatus> {
    this.ensureOpen();
    return requestFleetStatus(this.nc, this.service);
  }

  /**
   * Asks every worker of the service to drain and exit (bert-as-service's bert-serving-terminate).
   * Jobs still queued stay in JetStream for the next worker.
   */
  async terminate(request: TerminateRequest = {}): Promise<TerminateResult> {
    this.ensureOpen();
    return requestTerminate(this.nc, this.service, request);
  }

  /** Client-side statistics (bert-as-service's BertClient.status). */
  get status(): ClientStatus {
    return {
      identity: this.identity,
      service: this.service,
      resultsSubject: this.resultsSubject,
      server: this.closedReason === undefined ? this.nc.getServer() : '',
      clientVersion: CLIENT_VERSION,
      serverVersion: this.config?.server_version,
      outputFmt: this.outputFmt,
      timeoutMs: this.options.timeoutMs,
      maxChunkRows: this.config === undefined ? this.options.maxChunkRows : this.chunkRows(this.config),
      ...this.stats,
      pending: this.pending.size,
      unfetched: this.inbox.unfetched,
      listeners: this.listeners.size,
      closed: this.closedReason !== undefined,
      connected: this.closedReason === undefined && this.disconnectedSince === undefined,
      ...(this.disconnectedSince === undefined
        ? {}
        : { disconnectedSince: new Date(this.disconnectedSince).toISOString() }),
      ...(this.admission.reading === undefined ? {} : { load: this.admission.reading }),
    };
  }

  /**
   * Closes the client: requests still waiting reject with ClientClosedError, listen() iterators end,
   * the results subscription (and the connection, when this client opened it) is drained.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.shutdown('BertClient was closed');
      try {
        if (this.ownsConnection) {
          if (!this.nc.isClosed()) await this.nc.drain();
        } else if (this.sub !== undefined && !this.sub.isClosed()) {
          await this.sub.drain();
        }
      } catch (err) {
        // Already closing or closed underneath us: nothing left to drain.
        if (!this.nc.isClosed()) throw err;
      }
    })();
    return this.closing;
  }

  // ------------------------------------------------------------------------------------------------
  // internals

  /** Validates, splits and publishes one request; resolves once every job is acknowledged. */
  private async send(texts: Texts, o: ReturnType<typeof resolveEncodeOptions>): Promise<PendingRequest> {
    this.ensureOpen();
    validateTexts(texts, { isTokenized: o.isTokenized, flag: 'isTokenized' });
    o.signal?.throwIfAborted();
    const deadline = Date.now() + o.timeoutMs;
    const config = await this.currentConfig(deadline);
    if (o.showTokens && config.show_tokens_to_client === false) {
      throw new BadRequestError(
        `showTokens was asked, but the workers of service "${this.service}" do not send tokens; start them with show_tokens_to_client`,
      );
    }
    this.ensureOpen();
    // Shed before any job is built: a refused 100,000-row request costs no serialisation.
    const lane = priorityFor(texts.length, config.priority_batch_size);
    try {
      this.admission.check({
        lane,
        rows: texts.length,
        batchRows: batchRowsOf(config, texts.length),
        deadline,
        service: this.service,
      });
    } catch (err) {
      this.stats.shed++;
      throw err;
    }
    const id = newRequestId();
    const key = newRequestKey();
    const jobs = prepareJobs({
      id,
      key,
      reply: this.resultsSubject,
      deadline,
      texts: cutRows(texts, o.isTokenized, config),
      isTokenized: o.isTokenized,
      showTokens: o.showTokens,
      checkLength: o.checkLength === true,
      output: o.output,
      maxChunkRows: this.chunkRows(config),
      maxPayload: this.nc.info?.max_payload ?? config.max_payload ?? 1024 * 1024,
    });

    const onAbort = (): void => pending.fail(o.signal?.reason);
    const pending: PendingRequest = new PendingRequest({
      id,
      rows: texts.length,
      lane,
      deadline,
      timeoutMs: o.timeoutMs,
      lengthLimit: o.checkLength === 'warn' && config.max_seq_len !== null ? config.max_seq_len : undefined,
      onFrame: o.onFrame,
      seal: sealOf(key),
      onSettled: (request, error) => {
        this.pending.delete(request.id);
        o.signal?.removeEventListener('abort', onAbort);
        if (error !== undefined && request.receivedRows < request.rows) this.cancelRemote(request.id);
        if (error === undefined && request.rowsAtLimit > 0) this.warnLength(request, config.max_seq_len);
        if (error === undefined) this.stats.numCompleted++;
        else {
          this.stats.numFailed++;
          if (error instanceof TimeoutError) this.stats.numTimeout++;
        }
      },
    });
    // Registered before the first publish: a frame can arrive before the publish ack does.
    this.pending.set(id, pending);
    this.watchLiveness();
    this.remember(id);
    o.signal?.addEventListener('abort', onAbort, { once: true });
    this.stats.numRequest++;
    this.stats.numTotalSeq += texts.length;

    try {
      await publishAll(
        this.publishContext(pending),
        jobs,
        () => pending.settled,
        (job, ack) => {
          this.stats.numChunks++;
          pending.recordStored(job, ack.seq);
        },
      );
    } catch (err) {
      pending.fail(err);
      throw err;
    }
    return pending;
  }

  private publishContext(request: PendingRequest): PublishContext {
    return {
      js: this.js,
      subject: this.names.jobs[request.lane],
      service: this.service,
      stream: this.names.stream,
      requestId: request.id,
      deadline: request.deadline,
      onRetry: () => this.stats.publishRetries++,
      clustered: this.nc.info?.cluster !== undefined,
    };
  }

  /**
   * Tells the workers nobody waits for request `id` any more (it failed, was aborted, or the client
   * is closing): they skip its queued jobs instead of computing them. Best effort: a worker that
   * misses it drops the jobs at their deadline anyway.
   */
  private cancelRemote(id: string): void {
    try {
      this.nc.publish(this.names.cancel, Empty, {
        headers: toNatsHeaders({ [HEADERS.id]: id, [HEADERS.reply]: this.resultsSubject }),
      });
      this.stats.cancelled++;
    } catch {
      // the connection is closed: the jobs expire at their deadline
    }
  }

  /** Starts the liveness checks if they are not running; they stop when no request waits. */
  private watchLiveness(): void {
    if (this.livenessTimer !== undefined) return;
    this.livenessMisses = 0;
    this.livenessTimer = setInterval(() => void this.checkLiveness(), LIVENESS_INTERVAL_MS);
    this.livenessTimer.unref();
  }

  /**
   * A fleet that vanishes mid-request (terminated, or every worker dead) must not leave its clients
   * waiting for their whole timeout. While requests wait, the config endpoint is asked every
   * LIVENESS_INTERVAL_MS; "no responders" (nobody subscribed: an immediate answer from the broker)
   * LIVENESS_MISSES times in a row fails every waiting request with NO_WORKERS. A slow answer (busy
   * workers) or a broker outage (reconnecting) is not a vanished fleet and changes nothing.
   */
  private async checkLiveness(): Promise<void> {
    if (this.pending.size === 0 || this.closedReason !== undefined) {
      clearInterval(this.livenessTimer);
      this.livenessTimer = undefined;
      return;
    }
    if (this.disconnectedSince !== undefined) return;
    void this.recoverStalled();
    try {
      await this.loadConfig(); // the same read (and version check) as a request's, shared if one is running
      this.livenessMisses = 0;
    } catch (err) {
      if (!(err instanceof NoWorkersError)) return;
      if (++this.livenessMisses < LIVENESS_MISSES) return;
      this.livenessMisses = 0;
      for (const request of [...this.pending.values()]) {
        request.fail(
          new NoWorkersError(
            `no worker serves service "${this.service}" any more (nothing answered ${this.names.control.config} ` +
              `${LIVENESS_MISSES} times in ${(LIVENESS_MISSES * LIVENESS_INTERVAL_MS) / 1000} s) while request ${request.id} ` +
              `waited with ${request.receivedRows} of ${request.rows} rows; its queued jobs wait for the next worker`,
            { cause: err, details: { id: request.id, service: this.service } },
          ),
        );
      }
    }
  }

  /** Tracks the connection (status.connected); every reconnect starts a recovery, after the one before it. */
  private async watchReconnects(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (this.closedReason !== undefined) return;
      if (s.type === 'disconnect') this.disconnectedSince ??= Date.now();
      if (s.type !== 'reconnect') continue;
      this.disconnectedSince = undefined;
      this.lastReconnectAt = Date.now();
      // A config read sent while the broker was away is never answered (it runs to its 5 s timeout):
      // let callers from now on read afresh instead of queueing behind it (the gateway's /ready did);
      // the same for the admission gate's background readings.
      this.configRead.forget();
      this.admission.forgetReadsInFlight();
      this.stats.reconnects++;
      this.recovering = this.recovering
        .then(() => this.recover())
        .catch(() => {})
        .finally(() => this.stats.recoveries++);
    }
  }

  private async jsm(): Promise<Awaited<ReturnType<typeof jetstreamManager>>> {
    this.jsmHandle ??= await jetstreamManager(this.nc, { checkAPI: false, timeout: CONSUMER_INFO_TIMEOUT_MS });
    return this.jsmHandle;
  }

  /** Jobs waiting in each lane, from the consumers' info (one JetStream request each); undefined on failure. */
  private async queueDepth(): Promise<Record<Priority, number> | undefined> {
    try {
      const jsm = await this.jsm();
      const [high, bulk] = await Promise.all(
        PRIORITIES.map((lane) => jsm.consumers.info(this.names.stream, this.names.consumers[lane])),
      );
      return { high: high!.num_pending, bulk: bulk!.num_pending };
    } catch {
      return undefined;
    }
  }

  /** Re-asks for the jobs whose frames may have been lost while the connection was down. */
  private async recover(): Promise<void> {
    const requests = [...this.pending.values()].filter((r) => !r.settled);
    if (requests.length === 0) return;
    const deadline = Math.max(...requests.map((r) => r.deadline));
    const lanes = new Set(requests.map((r) => r.lane));
    const jsm = await this.jsm().catch(() => undefined);
    const delivered = await deliveredSequences(jsm, this.names.stream, this.names.consumers, lanes, deadline);
    await this.reask(requests, delivered);
  }

  /**
   * The second look of recovery.ts: requests that lived through a reconnect and have had no rows for
   * STALL_MS, in a lane whose consumer has nothing queued and nothing awaiting an ack, ask for their
   * missing jobs again. Runs with the liveness checks, so only while requests wait.
   */
  private async recoverStalled(): Promise<void> {
    if (this.checkingStalls) return;
    this.checkingStalls = true;
    try {
      const stalled = stalledRequests(this.pending.values(), this.lastReconnectAt, Date.now());
      if (stalled.length === 0) return;
      const jsm = await this.jsm();
      for (const lane of new Set(stalled.map((r) => r.lane))) {
        const info = await jsm.consumers.info(this.names.stream, this.names.consumers[lane]);
        if (info.num_pending > 0 || info.num_ack_pending > 0) continue; // they may still come
        const inLane = stalled.filter((r) => r.lane === lane);
        for (const r of inLane) r.lastProgressAt = Date.now();
        await this.reask(inLane, ALL_DELIVERED);
      }
    } catch {
      // JetStream unreadable just now: the next liveness tick looks again
    } finally {
      this.checkingStalls = false;
    }
  }

  /** Publishes again what jobsToReask picks for `requests`; a failure fails its request. */
  private async reask(requests: PendingRequest[], delivered: Record<Priority, number>): Promise<void> {
    await Promise.all(
      jobsToReask(requests, delivered).map(async ({ request, job }) => {
        const pending = request as PendingRequest;
        try {
          const ack = await publishJob(this.publishContext(pending), job);
          if (ack.duplicate) return; // still queued: JetStream dropped the copy
          this.stats.reaskedJobs++;
          pending.recordStored(job, ack.seq);
        } catch (err) {
          pending.fail(err);
        }
      }),
    );
  }

  /** Rows per job: the caller's maxChunkRows, never above the server's max_batch_size. */
  private chunkRows(config: ServerConfig | undefined): number {
    const server = config?.max_batch_size;
    const mine = this.options.maxChunkRows;
    if (server === undefined) return mine ?? FALLBACK_CHUNK_ROWS;
    return mine === undefined ? server : Math.min(mine, server);
  }

  /**
   * The server config, read again when older than CONFIG_MAX_AGE_MS. That read doubles as the
   * liveness check: nobody answering it ("no responders", immediate) is NO_WORKERS at once, instead of
   * a request waiting for its deadline in a queue nobody drains. A slow answer (busy workers) does not
   * hold requests back: past STALE_CONFIG_WAIT_MS the cached config is used and the read goes on.
   */
  private async currentConfig(deadline: number): Promise<ServerConfig> {
    const cached = this.config;
    if (cached !== undefined && Date.now() - this.configReadAt < CONFIG_MAX_AGE_MS) return cached;
    const waitUntil = cached === undefined ? deadline : Math.min(deadline, Date.now() + STALE_CONFIG_WAIT_MS);
    try {
      return await raceDeadline(
        this.loadConfig(),
        waitUntil,
        () =>
          new TimeoutError(
            `no worker of service "${this.service}" answered ${this.names.control.config} before the request's deadline`,
          ),
      );
    } catch (err) {
      if (err instanceof TimeoutError && cached !== undefined) return cached;
      throw err;
    }
  }

  /** One config read at a time, shared by every caller waiting for it. */
  private loadConfig(): Promise<ServerConfig> {
    return this.configRead.run(() =>
      requestServerConfig(this.nc, this.service).then((config) => {
        this.checkServerVersion(config);
        this.config = config;
        this.configReadAt = Date.now();
        return config;
      }),
    );
  }

  /** check_length 'warn': say once per request that rows reached max_seq_len, and what to do. */
  private warnLength(request: PendingRequest, limit: number | null): void {
    process.emitWarning(
      `${request.rowsAtLimit} of ${request.rows} rows of request ${request.id} reached max_seq_len ${limit} tokens and were probably cut, ` +
        'so their vectors miss the rest of the text. Start the service with a larger --max-seq-len, pass checkLength: true to refuse such rows (TOO_LONG), or checkLength: false to silence this',
      'BertqLengthWarning',
    );
  }

  /** bert-as-service's check_version: refuse (or, with checkVersion false, warn once) on a mismatch. */
  private checkServerVersion(config: ServerConfig): void {
    const mismatch = versionMismatch(CLIENT_VERSION, config.server_version);
    if (mismatch === undefined) return;
    const text = `bertq client and the workers of service "${this.service}" may not understand each other: ${mismatch}`;
    if (this.options.checkVersion)
      throw new BadRequestError(`${text}; upgrade one side, or pass checkVersion: false to try anyway`, {
        details: { client: CLIENT_VERSION, server: config.server_version },
      });
    if (!this.versionWarned) {
      this.versionWarned = true;
      process.emitWarning(text, 'BertqVersionWarning');
    }
  }

  private toResult(id: string, result: AssembledResult, showTokens: boolean): Result<F> {
    const vectors = formatVectors(this.outputFmt, { data: result.data, shape: result.shape });
    if (!showTokens) return vectors;
    if (result.tokens === undefined) {
      throw new InternalError(`request ${id} asked for tokens, but the result frames carried none`, {
        details: { id },
      });
    }
    return { vectors, tokens: result.tokens };
  }

  private toFetched(id: string, result: AssembledResult, showTokens: boolean): Fetched<F> {
    const shaped = this.toResult(id, result, showTokens);
    return showTokens ? { id, ...(shaped as VectorsWithTokens<Vectors<F>>) } : { id, vectors: shaped as Vectors<F> };
  }

  /** Every message on the results subject: route it to its request, and show it to listeners. */
  private onMessage(err: Error | null, msg: Msg): void {
    if (err !== null) {
      // The subscription itself failed (e.g. a permissions violation): nothing more will arrive.
      this.subscriptionError = subscriptionFailure(this.resultsSubject, err);
      this.failEverything(this.subscriptionError);
      return;
    }
    this.stats.framesReceived++;
    let frame: DecodedFrame;
    try {
      // decodeFrame copies the body out of the connection's (reused) receive buffer.
      frame = decodeFrame(fromNatsHeaders(msg.headers), msg.data);
    } catch (error) {
      this.stats.malformedFrames++;
      const id = error instanceof BertqError ? error.details?.id : undefined;
      if (typeof id === 'string') this.pending.get(id)?.fail(error);
      return;
    }
    const request = frame.id === undefined ? undefined : this.pending.get(frame.id);
    const own = frame.id !== undefined && this.recentIds.has(frame.id);
    // A job computed twice (a re-ask after a reconnect, a redelivery) sends its rows twice: they reach
    // neither the caller nor a listener twice. An own request no longer pending has all it will take.
    const outcome = request?.accept(frame);
    if (outcome === 'forged') {
      this.stats.forgedFrames++;
      return;
    }
    const repeated = request === undefined ? own : outcome === 'duplicate';
    if (repeated) {
      this.stats.duplicateFrames++;
      return;
    }
    if (request === undefined) this.stats.foreignFrames++;
    if (this.listeners.size > 0) this.deliver(frame, own);
  }

  private deliver(frame: DecodedFrame, own: boolean): void {
    let delivery: Delivery<F>;
    if (frame.kind === 'error') {
      delivery = { kind: 'error', error: frame.error, own };
      if (frame.id !== undefined) delivery.id = frame.id;
      if (frame.offset !== undefined) delivery.offset = frame.offset;
      if (frame.rows !== undefined) delivery.rows = frame.rows;
      if (frame.worker !== undefined) delivery.worker = frame.worker;
    } else {
      let data: Float32Array;
      let tokens = frame.tokens;
      if (frame.part !== undefined) {
        let row: AssembledResult | undefined;
        try {
          row = this.partJoiner.add(frame);
        } catch {
          this.stats.malformedFrames++;
          return;
        }
        if (row === undefined) return;
        data = row.data;
        tokens = row.tokens;
      } else {
        // A copy: the request's assembler may hold views of the same frame data.
        data = frame.data!.slice();
      }
      const shape = frame.part !== undefined ? [1, ...frame.shape] : [frame.rows, ...frame.shape];
      delivery = {
        kind: 'result',
        id: frame.id,
        offset: frame.offset,
        rows: frame.rows,
        vectors: formatVectors(this.outputFmt, { data, shape }),
        timings: frame.timings,
        own,
      };
      if (tokens !== undefined) delivery.tokens = tokens;
      if (frame.worker !== undefined) delivery.worker = frame.worker;
    }
    for (const listener of this.listeners) listener.push(delivery);
  }

  private remember(id: string): void {
    this.recentIds.add(id);
    if (this.recentIds.size > RECENT_IDS) this.recentIds.delete(this.recentIds.values().next().value!);
  }

  private onConnectionClosed(err: Error | undefined): void {
    if (this.closedReason !== undefined) return;
    this.shutdown(`the NATS connection closed${err ? `: ${err.message}` : ''}`, err);
  }

  /** Stops everything: waiting requests reject with ClientClosedError, listeners end. */
  private shutdown(reason: string, cause?: unknown): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    clearInterval(this.livenessTimer);
    for (const request of [...this.pending.values()]) {
      request.fail(
        new ClientClosedError(
          `${reason} while request ${request.id} was waiting (${request.receivedRows} of ${request.rows} rows received)`,
          { cause },
        ),
      );
    }
    for (const listener of [...this.listeners]) listener.end();
  }

  private failEverything(error: BertqError): void {
    for (const request of [...this.pending.values()]) request.fail(error);
    for (const listener of [...this.listeners]) listener.fail(error);
  }

  private ensureOpen(): void {
    if (this.closedReason !== undefined) throw new ClientClosedError(`BertClient is closed (${this.closedReason})`);
    if (this.subscriptionError !== undefined) throw this.subscriptionError;
  }
}

/**
 * Why the results subscription ended. The broker refusing it is UNAUTHORIZED, with the usual cause:
 * a tenant's user may read only `…results.<tenant>.*`, so it must say which tenant it is.
 */
function subscriptionFailure(subject: string, err: Error): BertqError {
  if (/permissions? violation/i.test(err.message)) {
    return new UnauthorizedError(
      `the NATS user may not read this client's results subject ${subject}: ${err.message}. A tenant's user must name its tenant (--tenant, BERTQ_TENANT, or the tenant option)`,
      { cause: err, details: { subject } },
    );
  }
  return new InternalError(`results subscription ${subject} failed: ${err.message}`, { cause: err });
}

/**
 * Opens the NATS connection with the client's auth options: unreachable servers are NO_WORKERS,
 * refused credentials UNAUTHORIZED. It reconnects forever by default: every request keeps its own
 * deadline, so a broker restart costs the requests in flight at most their deadline, never the client.
 */
async function openConnection(options: ClientOptions, resolved: ResolvedClientOptions): Promise<NatsConnection> {
  const connectTimeoutMs = Math.min(resolved.timeoutMs, CONNECT_TIMEOUT_MS);
  try {
    return await connectNats({
      ...natsPart(options),
      servers: resolved.servers,
      name: options.name ?? `bertq-client:${resolved.service}`,
      connectTimeoutMs,
    });
  } catch (err) {
    // Cut short by the client's own timeout, a connect says nothing about whether a server is there.
    if (err instanceof NatsConnectError && connectTimeoutMs < CONNECT_TIMEOUT_MS && /\btimeout\b/i.test(err.message))
      throw new TimeoutError(
        `could not connect to ${resolved.servers.map(redactUrl).join(', ')} within the client's timeout of ${resolved.timeoutMs} ms; the server may well be up: allow a longer timeout`,
        { cause: err, details: { timeoutMs: resolved.timeoutMs } },
      );
    throw err;
  }
}

/** `promise`, or the error `onTimeout` makes when `deadline` (epoch ms) passes first. */
function raceDeadline<T>(promise: Promise<T>, deadline: number, onTimeout: () => Error): Promise<T> {
  return withDeadline(promise, deadline - Date.now(), onTimeout);
}

function toAsyncIterator<T>(source: AsyncIterable<T> | Iterable<T>): AsyncIterator<T> | Iterator<T> {
  if (source !== null && typeof source === 'object' && Symbol.asyncIterator in source)
    return source[Symbol.asyncIterator]();
  if (source !== null && typeof source === 'object' && Symbol.iterator in source)
    return (source as Iterable<T>)[Symbol.iterator]();
  throw new BadRequestError('encodeAsync takes an iterable (or async iterable) of batches, each a list of texts');
}

/** The rows of several results as one array (bert-as-service's fetch_all(concat=True)). */
function concatVectors<F extends OutputFormat>(parts: readonly Vectors<F>[], format: F): Vectors<F> {
  if (format === 'list') return (parts as unknown as unknown[][]).flat() as unknown as Vectors<F>;
  const arrays = parts as unknown as NdArray[];
  const rowShape = arrays[0]?.shape.slice(1) ?? [];
  for (const a of arrays) {
    if (a.shape.slice(1).join() !== rowShape.join()) {
      throw new BadRequestError(`cannot concatenate results of row shapes [${rowShape}] and [${a.shape.slice(1)}]`);
    }
  }
  const data = new Float32Array(arrays.reduce((n, a) => n + a.data.length, 0));
  let at = 0;
  for (const a of arrays) {
    data.set(a.data, at);
    at += a.data.length;
  }
  const rows = arrays.reduce((n, a) => n + (a.shape[0] ?? 0), 0);
  return { data, shape: [rows, ...rowShape] } as unknown as Vectors<F>;
}
