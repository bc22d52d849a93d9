/**
 * The body of one worker process of a fleet: wait for the supervisor's `start` message, load the
 * model the supervisor prepared (its graph is built: the worker only opens it), start the worker,
 * report `ready`, drain on SIGTERM / SIGINT / `stop` / lost supervisor, report `closed` and exit.
 * Exit code 0 after a drain; 1 after a failure (the supervisor restarts crashed workers).
 *
 * `worker-main.ts` runs this as is; a custom entry may pass hooks (e.g. to wrap the engine).
 */
import type { Encoder } from '@bertq/model';
import type { EmbeddingEngine, EngineRunResult } from '../core/engine.js';
import { nullEngine } from '../core/null-engine.js';
import { isSupervisorMessage, serializeError } from './ipc.js';
import type { WorkerMessage, WorkerProcessOptions } from './ipc.js';
import { createLogger } from '@bertq/nats';
import { startWorker } from '../worker.js';
import type { WorkerHandle } from '../worker.js';

export interface WorkerProcessHooks {
  /** Replaces the engine the worker gets (wrap it, instrument it); called once after the model loads. */
  wrapEngine?: (engine: EmbeddingEngine) => EmbeddingEngine;
}

/** How long a forked worker waits for its `start` message before giving up. */
const START_MESSAGE_TIMEOUT_MS = 30_000;
/** After `closed` is sent, the longest the process lingers for the message to flush. */
const EXIT_GRACE_MS = 2_000;

export function runWorkerProcess(hooks: WorkerProcessHooks = {}): void {
  if (process.send === undefined) {
    process.stderr.write(
      'bertq worker-main must be started by a fleet supervisor (child_process.fork with an IPC channel)\n',
    );
    process.exit(2);
  }
  const waiting = setTimeout(() => {
    process.stderr.write(`bertq worker: no start message from the supervisor within ${START_MESSAGE_TIMEOUT_MS} ms\n`);
    process.exit(1);
  }, START_MESSAGE_TIMEOUT_MS);
  process.once('message', (message: unknown) => {
    clearTimeout(waiting);
    if (!isSupervisorMessage(message) || message.type !== 'start') {
      process.stderr.write(`bertq worker: expected a start message, got ${JSON.stringify(message)}\n`);
      process.exit(1);
    }
    void run(message.options, hooks);
  });
}

async function run(options: WorkerProcessOptions, hooks: WorkerProcessHooks): Promise<void> {
  // Root logger of this process; the worker adds {component: 'worker', worker: id} to its own lines.
  const root = createLogger(options.logLevel, { fleetIndex: options.index });
  const log = root.child({ component: 'worker-process' });
  let encoder: Encoder | undefined;
  let handle: WorkerHandle | undefined;
  let stopRequested: number | undefined | null = null; // null: not asked; number/undefined: drain timeout

  const requestStop = (drainTimeoutMs?: number) => {
    if (handle !== undefined) void handle.stop({ drainTimeoutMs });
    else stopRequested = drainTimeoutMs;
  };
  process.on('SIGTERM', () => requestStop());
  process.on('SIGINT', () => requestStop());
  // The supervisor is gone (crashed or killed): drain rather than linger as an orphan.
  process.on('disconnect', () => requestStop());
  process.on('message', (message: unknown) => {
    if (isSupervisorMessage(message) && message.type === 'stop') requestStop(message.drainTimeoutMs);
  });

  try {
    const model = await import('@bertq/model');
    encoder = await model.Encoder.open(options.prepared, options.open);
    let engine: EmbeddingEngine = encoderEngine(encoder, model.runtimeVersions());
    if (options.nullModel) engine = nullEngine(engine);
    if (hooks.wrapEngine) engine = hooks.wrapEngine(engine);
    handle = await startWorker({
      servers: options.connection.servers,
      connection: options.connection,
      service: options.service,
      engine,
      ...options.tuning,
      logger: root,
      stream: false, // the supervisor ensured the stream once, before forking
      guardStream: options.guardStream,
      device: options.deviceLabel,
      model: options.model,
    });
  } catch (err) {
    log.error({ err }, 'the worker could not start');
    await encoder?.close().catch(() => undefined);
    await send({ type: 'failed', error: serializeError(err) });
    process.exit(1);
  }

  await send({
    type: 'ready',
    id: handle.id,
    pid: process.pid,
    model: encoder.info.model,
    dims: encoder.info.dims,
    device: options.deviceLabel,
  });
  if (stopRequested !== null) void handle.stop({ drainTimeoutMs: stopRequested });
  const reason = await handle.closed;
  await encoder.close().catch((err: unknown) => log.warn({ err }, 'closing the model failed'));
  await send(reason === undefined ? { type: 'closed' } : { type: 'closed', error: serializeError(reason) });
  process.exit(reason === undefined ? 0 : 1);
}

/** The Encoder as an EmbeddingEngine, with the runtime versions the `config` endpoint reports. */
function encoderEngine(encoder: Encoder, versions: Record<string, string>): EmbeddingEngine {
  return {
    get info() {
      return encoder.info;
    },
    versions,
    tokenize: (texts, opts) => encoder.tokenize(texts, opts),
    run: (rows): Promise<EngineRunResult> => encoder.run(rows),
    tokenLevelLength: (longest) => encoder.tokenLevelLength(longest),
    close: () => encoder.close(),
  };
}

/** Sends one message to the supervisor; resolves when it is written (or the channel is gone), within a deadline. */
function send(message: WorkerMessage): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined || !process.connected) {
      resolve();
      return;
    }
    const timer = setTimeout(resolve, EXIT_GRACE_MS);
    process.send(message, undefined, {}, () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
