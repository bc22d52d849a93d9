/**
 * A fleet: one supervisor process and `numWorker` worker processes on this machine (one per GPU, or
 * per slice of CPU cores), all pulling from the same service queue. The supervisor
 *   1. ensures the stream and consumers once,
 *   2. prepares the model once (loads it so the ONNX graph is built into the cache, then closes it:
 *      workers then open the cached graph fast instead of each building it),
 *   3. forks the workers (`worker-main.js`) and hands each its options over IPC,
 *   4. waits until every worker reports ready (with a deadline),
 *   5. restarts a crashed worker with backoff, and gives up with a clear error after repeated fast
 *      crashes,
 *   6. on stop(): SIGTERM to every worker (they drain), a deadline, then SIGKILL.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { EncoderOptions, PreparedModel } from '@bertq/model';
import {
  BadRequestError,
  BertqError,
  ModelError,
  errorFromCode,
  isErrorCode,
  serviceNames,
  settlesWithin,
  WORKER_INBOX_PREFIX,
} from '@bertq/protocol';
import type { Logger } from 'pino';
import { connectNats } from '@bertq/nats';
import type { NatsConnectOptions } from '@bertq/nats';
import { isWorkerMessage } from './ipc.js';
import type { ReadyInfo, SerializedError, WorkerProcessOptions, WorkerTuning } from './ipc.js';
import { createLogger } from '@bertq/nats';
import type { LogLevel } from '@bertq/nats';
import { checkStreamOptions, ensureStream, openJetStreamManager } from '../nats/stream.js';
import { assertOneConfiguration } from '../control/one-configuration.js';
import type { StreamOptions } from '../nats/stream.js';
import { WORKER_DEFAULTS } from '../worker.js';

export interface FleetOptions extends WorkerTuning {
  /** NATS server URL(s). */
  servers: string | string[];
  /** Auth and TLS (user/pass, token, NKey seed, creds file, TLS files), passed to every worker. */
  connection?: Omit<NatsConnectOptions, 'servers'>;
  /** Service name (any spelling; canonicalized). */
  service: string;
  /** Worker processes (bert-as-service's num_worker). Default 1. */
  numWorker?: number;
  /** How to load the model (folder, pooling, max_seq_len, fp16…). Device and threads are set per worker. */
  encoder: EncoderOptions;
  /**
   * GPU ordinals; workers are assigned round-robin (bert-as-service's device_map). Giving it runs the
   * workers on CUDA unless `cpu` is true. Left out: CPU.
   */
  deviceMap?: readonly number[];
  /** Run on CPU even when a deviceMap is given. */
  cpu?: boolean;
  /**
   * Inference threads per worker. Default floor(cores / numWorker), at least 1: workers share the
   * machine instead of each assuming it has every core.
   */
  threadsPerWorker?: number;
  /**
   * CPU workers compute from the weights mapped from the cached graph's data file, one copy in memory
   * for all of them, instead of each repacking a private copy for faster GEMMs. Two BERT-base workers
   * (memory.bench): float32 1,215 → 905 MiB, int8 673 → 570 MiB, at 13-35% of the speed (int8 most).
   * Off by default.
   */
  sharedWeights?: boolean;
  /** Stream and consumer settings (queue bound, ack_wait, max_deliver…), ensured once at start. */
  stream?: Omit<StreamOptions, 'service'>;
  /** Log level of the supervisor and its workers (JSON lines on stdout). Default 'info'. */
  logLevel?: LogLevel;
  /** The supervisor's logger; default a new pino logger at logLevel. */
  logger?: Logger;
  /** How long workers may take to load the model and report ready. Default 120,000 ms. */
  readyTimeoutMs?: number;
  /** How long stop() waits for workers to drain before SIGKILL. Default drainTimeoutMs + 10,000. */
  stopTimeoutMs?: number;
  /** Restart policy for crashed workers. */
  restart?: RestartPolicy;
  /** Script forked for each worker. Default: this package's worker-main.js (a custom entry may wrap the engine). */
  workerScript?: string;
  /**
   * Workers run a model that costs nothing (core/null-engine.ts: the real tokenizer, zero vectors), to
   * measure the serving path by itself. Benchmarks only: every vector is zero.
   */
  nullModel?: boolean;
  /** Node options for the worker processes (e.g. ['--max-old-space-size=4096']). Default none. */
  execArgv?: string[];
  /** Environment of the worker processes. Default: the supervisor's. */
  env?: NodeJS.ProcessEnv;
  /**
   * A fleet for one run (a benchmark, a test): stop() also deletes the service's stream, with any
   * job still queued in it. Default false: queued jobs wait for the next fleet.
   */
  removeStreamOnStop?: boolean;
}

export interface RestartPolicy {
  /** Give up after this many fast crashes in a row of one worker slot. Default 5. */
  maxFastCrashes?: number;
  /** A crash within this long after the worker (re)started counts as fast. Default 30,000 ms. */
  fastCrashMs?: number;
  /** Delay before the n-th restart in a row (the last value repeats). Default 250, 500, 1000, 2000, 5000 ms. */
  backoffMs?: readonly number[];
}

/** One worker process as the supervisor sees it. */
export interface FleetWorker {
  /** Slot in the fleet (0-based); a restarted worker keeps its slot. */
  index: number;
  pid: number;
  /** Worker id (services-framework instance id); changes on restart. */
  id: string;
  device: string;
  /** Times this slot was restarted after a crash. */
  restarts: number;
}

export interface FleetReadyInfo {
  service: string;
  model: string;
  dims: number;
  workers: number;
  devices: string[];
  /** precision int8: the CPU's int8 kernel path, e.g. 'AVX2 without VNNI: …, 7-bit weights'. */
  int8Kernel?: string;
}

export interface FleetHandle {
  readonly service: string;
  /** The live workers (pids and ids change when a worker is restarted). */
  readonly workers: readonly FleetWorker[];
  readonly ready: FleetReadyInfo;
  /** Drains every worker (SIGTERM), waits up to stopTimeoutMs, then SIGKILLs what is left. */
  stop(): Promise<void>;
  /**
   * Resolves once the fleet is down: undefined after stop() or when every worker exited cleanly
   * (e.g. `terminate`); a FleetError when it gave up on a crashing worker. Never rejects.
   */
  readonly closed: Promise<Error | undefined>;
}

/** The fleet could not start, or gave up on a worker that kept crashing. */
export class FleetError extends Error {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FleetError';
  }
}

const DEFAULT_READY_TIMEOUT_MS = 120_000;
const STOP_GRACE_MS = 10_000;
const KILL_WAIT_MS = 5_000;
const DEFAULT_RESTART: Required<RestartPolicy> = {
  maxFastCrashes: 5,
  fastCrashMs: 30_000,
  backoffMs: [250, 500, 1_000, 2_000, 5_000],
};
const WORKER_MAIN = fileURLToPath(new URL('./worker-main.js', import.meta.url));

/** Kill every forked worker when the supervisor exits, even abruptly (synchronous: 'exit' runs no async code). */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

export async function startFleet(options: FleetOptions): Promise<FleetHandle> {
  const fleet = new Fleet(options);
  await fleet.start();
  return fleet;
}

interface Slot {
  index: number;
  device: 'cpu' | 'cuda';
  deviceId: number | undefined;
  label: string;
  child?: ChildProcess;
  info?: ReadyInfo;
  startedAt: number;
  restarts: number;
  fastCrashes: number;
  /** The process exited (resolves with how). */
  exited?: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  restartTimer?: NodeJS.Timeout;
  /** Exited cleanly on its own (terminate): not restarted. */
  done: boolean;
}

class Fleet implements FleetHandle {
  readonly service: string;
  readonly closed: Promise<Error | undefined>;
  #ready: FleetReadyInfo | undefined;
  readonly #options: FleetOptions;
  readonly #log: Logger;
  readonly #slots: Slot[] = [];
  /** The prepared model of each device kind in the fleet (cpu, cuda), shared by its workers. */
  readonly #prepared = new Map<Slot['device'], PreparedModel>();
  readonly #numWorker: number;
  readonly #threads: number;
  readonly #restart: Required<RestartPolicy>;
  #stopping = false;
  #stopPromise: Promise<void> | undefined;
  /** This start created the stream (rather than found it): a failed start removes it again. */
  #streamCreated = false;
  #resolveClosed!: (reason: Error | undefined) => void;
  #closedSettled = false;

  constructor(options: FleetOptions) {
    this.#options = options;
    this.service = serviceNames(options.service).service;
    this.#numWorker = options.numWorker ?? 1;
    if (!Number.isSafeInteger(this.#numWorker) || this.#numWorker < 1) {
      throw new BadRequestError(`numWorker must be a positive integer, got ${String(options.numWorker)}`);
    }
    const cores = availableParallelism();
    this.#threads = options.threadsPerWorker ?? Math.max(1, Math.floor(cores / this.#numWorker));
    if (!Number.isSafeInteger(this.#threads) || this.#threads < 1) {
      throw new BadRequestError(`threadsPerWorker must be a positive integer, got ${String(options.threadsPerWorker)}`);
    }
    const gpus = options.cpu === true ? [] : [...(options.deviceMap ?? [])];
    if (gpus.some((g) => !Number.isSafeInteger(g) || g < 0))
      throw new BadRequestError(
        `deviceMap must list GPU ordinals (integers >= 0), got ${JSON.stringify(options.deviceMap)}`,
      );
    for (let index = 0; index < this.#numWorker; index++) {
      const deviceId = gpus.length > 0 ? gpus[index % gpus.length] : undefined;
      this.#slots.push({
        index,
        device: deviceId === undefined ? 'cpu' : 'cuda',
        deviceId,
        label: deviceId === undefined ? 'cpu' : `cuda:${deviceId}`,
        startedAt: 0,
        restarts: 0,
        fastCrashes: 0,
        done: false,
      });
    }
    this.#restart = { ...DEFAULT_RESTART, ...options.restart };
    this.#log = (options.logger ?? createLogger(options.logLevel ?? 'info')).child({
      component: 'fleet',
      service: this.service,
    });
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
  }

  get ready(): FleetReadyInfo {
    if (this.#ready === undefined) throw new FleetError('the fleet has not started');
    return this.#ready;
  }

  get workers(): FleetWorker[] {
    return this.#slots
      .filter(
        (s) =>
          s.info !== undefined && s.child !== undefined && s.child.exitCode === null && s.child.signalCode === null,
      )
      .map((s) => ({ index: s.index, pid: s.info!.pid, id: s.info!.id, device: s.label, restarts: s.restarts }));
  }

  async start(): Promise<void> {
    const o = this.#options;
    const connection: NatsConnectOptions = { ...o.connection, servers: o.servers };
    // 0. Stream options that can never work fail now, not after the model has loaded.
    checkStreamOptions({ ...o.stream, service: this.service });
    // 1. The model, once per device kind: resolves, downloads and builds (or finds) the graph with
    //    that device's final options, opening no session; the workers only open what it hands them.
    const { prepareModel, outputDim } = await import('@bertq/model');
    const started = Date.now();
    for (const device of new Set(this.#slots.map((slot) => slot.device))) {
      const prepared = await prepareModel({ ...o.encoder, device }).catch((err: unknown) => {
        throw err instanceof BertqError
          ? err
          : new ModelError(`cannot prepare the model: ${(err as Error).message}`, { cause: err });
      });
      this.#prepared.set(device, prepared);
      this.#log.info(
        {
          model: prepared.model,
          device,
          graph: prepared.graphPath,
          cacheHit: prepared.graphCacheHit,
          ...(prepared.int8Kernel && { int8Kernel: prepared.int8Kernel.path }),
          ms: Date.now() - started,
        },
        'model prepared',
      );
    }
    const info = [...this.#prepared.values()][0]!;
    const dims = outputDim(info.config, info.graphOptions);
    // 2. One service, one configuration: refuse to join a running fleet that computes something
    //    else; then the stream and consumers, once, before any worker binds to them.
    const nc = await connectNats({
      ...connection,
      name: `bertq-fleet-${this.service}`,
      inboxPrefix: WORKER_INBOX_PREFIX,
    });
    try {
      await assertOneConfiguration(nc, this.service, {
        fingerprint: info.fingerprint,
        model: info.model,
        pooling: info.graphOptions.poolingStrategy,
        maxSeqLen: info.maxSeqLen,
        dims,
      });
      const ensured = await ensureStream(nc, { ...o.stream, service: this.service });
      this.#streamCreated = ensured.created;
      this.#log.info({ stream: ensured.stream, created: ensured.created, updated: ensured.updated }, 'stream ready');
    } finally {
      await nc.close().catch(() => undefined);
    }

    // 3-4. Fork every worker and wait until all are ready.
    installExitHook();
    const deadline = Date.now() + (o.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS);
    try {
      await Promise.all(this.#slots.map((slot) => this.#launch(slot, deadline)));
    } catch (err) {
      this.#stopping = true;
      await Promise.all(this.#slots.map((slot) => this.#terminate(slot, KILL_WAIT_MS)));
      // A stream this start created and nobody used yet goes too: a failed start leaves nothing.
      if (this.#streamCreated) await this.#removeStream({ onlyIfEmpty: !o.removeStreamOnStop });
      this.#settle(err as Error);
      throw err;
    }
    this.#ready = {
      service: this.service,
      model: info.model,
      dims,
      workers: this.#numWorker,
      devices: this.#slots.map((s) => s.label),
      ...(info.int8Kernel && { int8Kernel: info.int8Kernel.path }),
    };
    this.#log.info({ workers: this.workers.map((w) => ({ pid: w.pid, id: w.id, device: w.device })) }, 'fleet ready');
  }

  /** Forks the worker of a slot and resolves when it reports ready; rejects on failure or deadline. */
  #launch(slot: Slot, deadline: number): Promise<void> {
    const o = this.#options;
    const child = fork(o.workerScript ?? WORKER_MAIN, [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      execArgv: o.execArgv ?? [],
      env: o.env ?? process.env,
      serialization: 'json',
    });
    liveChildren.add(child);
    slot.child = child;
    slot.info = undefined;
    slot.startedAt = Date.now();
    slot.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        liveChildren.delete(child);
        resolve({ code, signal });
      });
    });
    let lastError: SerializedError | undefined;
    // The last error a worker reported (a failed start, or what ended it), for the crash log.
    child.on('message', (message: unknown) => {
      if (isWorkerMessage(message) && message.type !== 'ready' && message.error !== undefined)
        lastError = message.error;
    });

    const tuning: WorkerTuning = {};
    for (const key of [
      'maxBatchSize',
      'maxBatchTokens',
      'priorityBatchSize',
      'prefetch',
      'maxWaitMs',
      'pullExpiresMs',
      'drainTimeoutMs',
      'maxHoldMs',
    ] as const) {
      if (o[key] !== undefined) tuning[key] = o[key];
    }
    if (o.showTokensToClient !== undefined) tuning.showTokensToClient = o.showTokensToClient;
    const startOptions: WorkerProcessOptions = {
      index: slot.index,
      connection: { ...o.connection, servers: o.servers },
      service: this.service,
      prepared: this.#prepared.get(slot.device)!,
      open: {
        device: slot.device,
        deviceId: slot.deviceId,
        threads: this.#threads,
        ...(o.sharedWeights ? { sharedWeights: true } : {}),
      },
      deviceLabel: slot.label,
      ...(o.nullModel ? { nullModel: true } : {}),
      tuning,
      guardStream: o.stream ?? {},
      model: {
        ...((o.encoder.modelDir ?? o.encoder.model) ? { modelDir: o.encoder.modelDir ?? o.encoder.model } : {}),
        tunedModelDir: o.encoder.tunedModelDir,
        ckptName: o.encoder.ckptName,
        configName: o.encoder.configName,
        graphTmpDir: o.encoder.graphTmpDir,
      },
      logLevel: o.logLevel ?? 'info',
    };
    child.send({ type: 'start', options: startOptions });

    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const cleanup = () => {
        clearTimeout(timer);
        child.off('message', onMessage);
      };
      const onMessage = (message: unknown) => {
        if (!isWorkerMessage(message)) return;
        if (message.type === 'ready') {
          cleanup();
          slot.info = {
            id: message.id,
            pid: message.pid,
            model: message.model,
            dims: message.dims,
            device: message.device,
          };
          this.#log.info(
            { index: slot.index, pid: message.pid, worker: message.id, device: message.device },
            'worker ready',
          );
          void slot.exited!.then((how) => this.#onExit(slot, child, how, lastError));
          resolve();
        } else if (message.type === 'failed') {
          cleanup();
          reject(rebuildError(message.error, `worker ${slot.index} (${slot.label}) could not start`));
        }
      };
      child.on('message', onMessage);
      void slot.exited!.then(({ code, signal }) => {
        if (slot.info !== undefined) return;
        cleanup();
        reject(
          lastError !== undefined
            ? rebuildError(lastError, `worker ${slot.index} (${slot.label}) could not start`)
            : new FleetError(
                `worker ${slot.index} (${slot.label}) exited (${signal ?? `code ${code}`}) before it was ready`,
              ),
        );
      });
      timer = setTimeout(
        () => {
          cleanup();
          child.kill('SIGKILL');
          reject(
            new FleetError(
              `worker ${slot.index} (${slot.label}) did not report ready within ${o.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS} ms`,
            ),
          );
        },
        Math.max(0, deadline - Date.now()),
      );
    });
  }

  /** A worker exited after it was ready: restart it if it crashed; close the fleet when none is left. */
  #onExit(
    slot: Slot,
    child: ChildProcess,
    how: { code: number | null; signal: NodeJS.Signals | null },
    lastError: SerializedError | undefined,
  ): void {
    if (slot.child !== child || this.#stopping) return;
    const clean = how.code === 0;
    if (clean) {
      // A worker exits cleanly only when told to (terminate): the fleet goes with it, including a
      // worker that was restarting after a crash and so never heard the terminate.
      slot.done = true;
      this.#log.info({ index: slot.index, pid: child.pid }, 'worker exited after draining; the fleet stops');
      this.#stopPromise ??= this.#shutdown(undefined);
      return;
    }
    const lived = Date.now() - slot.startedAt;
    slot.fastCrashes = lived < this.#restart.fastCrashMs ? slot.fastCrashes + 1 : 1;
    const why = how.signal ?? `code ${how.code}`;
    this.#log.error(
      { index: slot.index, pid: child.pid, exit: why, livedMs: lived, error: lastError?.message },
      'worker crashed',
    );
    if (slot.fastCrashes > this.#restart.maxFastCrashes) {
      const error = new FleetError(
        `worker ${slot.index} (${slot.label}) crashed ${slot.fastCrashes} times in a row, each within ${this.#restart.fastCrashMs} ms of starting ` +
          `(last: ${why}${lastError ? `, ${lastError.message}` : ''}); giving up. Check the logs above for its error.`,
      );
      this.#log.fatal({ err: error }, 'fleet gives up');
      void this.#shutdown(error);
      return;
    }
    const backoff = this.#restart.backoffMs;
    const delay = backoff[Math.min(slot.fastCrashes - 1, backoff.length - 1)] ?? 0;
    slot.restartTimer = setTimeout(() => {
      if (this.#stopping) return;
      slot.restarts++;
      const deadline = Date.now() + (this.#options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS);
      this.#launch(slot, deadline).catch((err: unknown) => {
        // A restart that fails to come up counts as another fast crash; its exit handler is not
        // attached (it never became ready), so handle it here.
        this.#log.error({ index: slot.index, err }, 'restarted worker did not come up');
        this.#onExit(slot, slot.child!, { code: 1, signal: null }, { name: 'Error', message: (err as Error).message });
      });
    }, delay);
  }

  stop(): Promise<void> {
    this.#stopPromise ??= this.#shutdown(undefined);
    return this.#stopPromise;
  }

  async #shutdown(reason: Error | undefined): Promise<void> {
    this.#stopping = true;
    for (const slot of this.#slots) clearTimeout(slot.restartTimer);
    const drain = this.#options.drainTimeoutMs ?? WORKER_DEFAULTS.drainTimeoutMs;
    const timeout = this.#options.stopTimeoutMs ?? drain + STOP_GRACE_MS;
    this.#log.info({ timeoutMs: timeout }, 'stopping workers');
    await Promise.all(this.#slots.map((slot) => this.#terminate(slot, timeout)));
    if (this.#options.removeStreamOnStop) await this.#removeStream({ onlyIfEmpty: false });
    this.#settle(reason);
    this.#log.info('fleet stopped');
  }

  /** Deletes the service's stream (best effort: a broker that is gone keeps it, and says nothing). */
  async #removeStream({ onlyIfEmpty }: { onlyIfEmpty: boolean }): Promise<void> {
    const stream = serviceNames(this.service).stream;
    try {
      const nc = await connectNats({
        ...this.#options.connection,
        servers: this.#options.servers,
        name: `bertq-fleet-${this.service}`,
        inboxPrefix: WORKER_INBOX_PREFIX,
      });
      try {
        const jsm = await openJetStreamManager(nc);
        if (onlyIfEmpty && (await jsm.streams.info(stream)).state.messages > 0) return;
        await jsm.streams.delete(stream);
        this.#log.info({ stream }, 'stream removed');
      } finally {
        await nc.close().catch(() => undefined);
      }
    } catch (err) {
      this.#log.warn({ stream, err }, 'could not remove the stream');
    }
  }

  /** SIGTERM (the worker drains), then SIGKILL after `timeoutMs`. */
  async #terminate(slot: Slot, timeoutMs: number): Promise<void> {
    const child = slot.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    if (!(await settlesWithin(slot.exited!, timeoutMs))) {
      this.#log.warn({ index: slot.index, pid: child.pid }, 'worker did not drain in time; killing it');
      child.kill('SIGKILL');
      await settlesWithin(slot.exited!, KILL_WAIT_MS);
    }
  }

  #settle(reason: Error | undefined): void {
    if (this.#closedSettled) return;
    this.#closedSettled = true;
    this.#resolveClosed(reason);
  }
}

/** Turns a worker's serialized error back into its typed class where it had one. */
function rebuildError(error: SerializedError, context: string): Error {
  if (error.code !== undefined && isErrorCode(error.code))
    return errorFromCode(error.code, `${context}: ${error.message}`);
  return new FleetError(`${context}: ${error.message}`);
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of liveChildren) child.kill('SIGKILL');
  });
}
