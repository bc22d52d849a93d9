/**
 * Runs ONNX models through `Runtime`, so the worker can be tested with a fake one and another engine
 * could slot in behind the same five members. The session lives in a worker thread
 * (runtime-thread.ts, the only file that imports onnxruntime-node): the calling thread stays free
 * while a batch computes.
 */
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { ModelError } from '@bertq/protocol';

import type { Device } from './devices.js';

export type { Device };

export interface RuntimeOptions {
  device?: Device;
  /** GPU ordinal for device 'cuda'. */
  deviceId?: number;
  /** Threads one inference may use (ONNX Runtime intra-op pool); default: all cores. */
  threads?: number;
  /** ONNX Runtime graph optimisation level; 'all' fuses what our plain graph leaves unfused. */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /**
   * Compute from the weights where they lie in the graph's data file (mapped, so every process on
   * the machine shares one copy through the page cache) instead of repacking a private copy for
   * faster GEMMs. Needs a graph with external data (the graph cache writes them so).
   */
  sharedWeights?: boolean;
}

export interface RuntimeTensor {
  data: Float32Array;
  dims: number[];
  /**
   * Milliseconds the session computed this batch, on the runtime thread: the time `run` took also
   * holds copying the feeds to the thread and the result back, and any batch queued before it.
   */
  computeMs: number;
}

export interface RuntimeFeeds {
  /** int64 ids and masks (bertq's graphs), or float32 data (other graphs, benchmarks). */
  [name: string]: { data: BigInt64Array | Float32Array; dims: number[] };
}

export interface Runtime {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /** The execution provider actually in use. */
  readonly device: Device;
  /** Runs one batch (the feeds are copied to the runtime thread; the result is moved back). */
  run(feeds: RuntimeFeeds, output?: string): Promise<RuntimeTensor>;
  close(): Promise<void>;
}

/** Messages to the runtime thread. */
export type ThreadRequest =
  | { type: 'open'; model: string | Uint8Array; options: RuntimeOptions }
  | { type: 'run'; id: number; feeds: RuntimeFeeds; output: string }
  | { type: 'close' };

/** Messages from the runtime thread. */
export type ThreadReply =
  | { type: 'opened'; inputNames: string[]; outputNames: string[] }
  | { type: 'result'; id: number; data: Float32Array; dims: number[]; computeMs: number }
  | { type: 'error'; id: number; message: string }
  | { type: 'closed' };

const THREAD_SCRIPT = new URL('./runtime-thread.js', import.meta.url);
/** How long close() waits for the batch in flight and the session's release. */
const CLOSE_DEADLINE_MS = 30_000;

interface Pending {
  resolve: (t: RuntimeTensor) => void;
  reject: (err: Error) => void;
}

class ThreadRuntime implements Runtime {
  readonly #pending = new Map<number, Pending>();
  #nextId = 0;
  #closed: Promise<void> | undefined;
  #onClosed: (() => void) | undefined;

  constructor(
    private readonly thread: Worker,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
    readonly device: Device,
  ) {
    thread.on('message', (msg: ThreadReply) => this.#receive(msg));
    thread.on('error', (err) =>
      this.#failAll(new ModelError(`the ONNX Runtime thread failed: ${err.message}`, { cause: err })),
    );
    thread.on('exit', (code) => {
      this.#failAll(new ModelError(`the ONNX Runtime thread exited (code ${code})`));
      this.#onClosed?.();
    });
    // An idle runtime does not keep the process alive; one with a batch in flight does.
    thread.unref();
  }

  #receive(msg: ThreadReply): void {
    if (msg.type === 'closed') {
      void this.thread.terminate();
      return;
    }
    if (msg.type !== 'result' && msg.type !== 'error') return;
    const p = this.#pending.get(msg.id);
    if (!p) return;
    this.#pending.delete(msg.id);
    if (this.#pending.size === 0) this.thread.unref();
    if (msg.type === 'result') p.resolve({ data: msg.data, dims: msg.dims, computeMs: msg.computeMs });
    else p.reject(new ModelError(`ONNX Runtime failed to run the model: ${msg.message}`));
  }

  #failAll(err: Error): void {
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }

  run(feeds: RuntimeFeeds, output = this.outputNames[0]!): Promise<RuntimeTensor> {
    if (this.#closed) return Promise.reject(new ModelError('the runtime is closed'));
    for (const name of this.inputNames) {
      if (!feeds[name])
        return Promise.reject(
          new ModelError(`model input ${name} was not provided (have: ${Object.keys(feeds).join(', ')})`),
        );
    }
    const id = this.#nextId++;
    return new Promise<RuntimeTensor>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      if (this.#pending.size === 1) this.thread.ref();
      // Copied, not transferred: ids and masks are small next to the work, and callers may reuse them.
      this.thread.postMessage({ type: 'run', id, feeds, output } satisfies ThreadRequest);
    });
  }

  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      this.#onClosed = resolve;
      this.thread.ref();
      this.thread.postMessage({ type: 'close' } satisfies ThreadRequest);
      // The session is released after the batch in flight; past the deadline the thread is ended anyway.
      setTimeout(() => void this.thread.terminate(), CLOSE_DEADLINE_MS).unref();
    });
    return this.#closed;
  }
}

/** The fix for CUDA that cannot start: the same words whether the pre-check or ONNX Runtime found it. */
const CUDA_FIX =
  'The CUDA build of onnxruntime-node needs CUDA 12 and cuDNN 9 on the host and an install without ONNXRUNTIME_NODE_INSTALL=skip; use --cpu to run on the CPU.';

/**
 * The CUDA provider library onnxruntime-node would load, when it is missing (an install with
 * ONNXRUNTIME_NODE_INSTALL=skip has only the CPU build). Checked before ONNX Runtime tries: its own
 * failure first prints a raw, colored log line of its native logger to stderr.
 */
export function missingCudaProvider(bindingDir = onnxruntimeBindingDir()): string | undefined {
  if (bindingDir === undefined) return undefined;
  const library = join(bindingDir, 'libonnxruntime_providers_cuda.so');
  return process.platform === 'linux' && !existsSync(library) ? library : undefined;
}

/** Where onnxruntime-node keeps its native binding for this platform, if it can be found. */
function onnxruntimeBindingDir(): string | undefined {
  try {
    const root = dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
    const bin = join(root, 'bin');
    const napi = readdirSync(bin).find((d) => d.startsWith('napi-v'));
    return napi === undefined ? undefined : join(bin, napi, process.platform, process.arch);
  } catch {
    return undefined;
  }
}

/** Opens an ONNX model (bytes or a file path) in ONNX Runtime, in its own thread. */
export async function createRuntime(model: Uint8Array | string, opts: RuntimeOptions = {}): Promise<Runtime> {
  const device = opts.device ?? 'cpu';
  const missing = device === 'cuda' ? missingCudaProvider() : undefined;
  if (missing !== undefined)
    throw new ModelError(
      `ONNX Runtime cannot start the CUDA execution provider: ${missing} is not installed. ${CUDA_FIX}`,
    );
  const thread = new Worker(THREAD_SCRIPT);
  const opened = await new Promise<Extract<ThreadReply, { type: 'opened' }>>((resolve, reject) => {
    const onMessage = (msg: ThreadReply) => {
      cleanup();
      if (msg.type === 'opened') resolve(msg);
      else reject(new Error(msg.type === 'error' ? msg.message : `unexpected ${msg.type}`));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onExit = (code: number) => {
      cleanup();
      reject(new Error(`the ONNX Runtime thread exited with code ${code} while opening the model`));
    };
    const cleanup = () => {
      thread.off('message', onMessage);
      thread.off('error', onError);
      thread.off('exit', onExit);
    };
    thread.on('message', onMessage);
    thread.on('error', onError);
    thread.on('exit', onExit);
    thread.postMessage({ type: 'open', model, options: opts } satisfies ThreadRequest);
  }).catch(async (err: Error) => {
    await thread.terminate();
    const msg = err.message;
    if (device === 'cuda') {
      throw new ModelError(`ONNX Runtime could not start the CUDA execution provider (${msg}). ${CUDA_FIX}`, {
        cause: err,
      });
    }
    throw new ModelError(
      `ONNX Runtime could not load the model${typeof model === 'string' ? ` ${model}` : ''}: ${msg}`,
      { cause: err },
    );
  });
  return new ThreadRuntime(thread, opened.inputNames, opened.outputNames, device);
}

/** Versions for the benchmark's System line and the worker's config. */
export function runtimeVersions(): { onnxruntime: string } {
  try {
    return {
      onnxruntime: (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }).version,
    };
  } catch {
    return { onnxruntime: 'unknown' };
  }
}
