/**
 * The only file that imports onnxruntime-node. Everything else runs models through `Runtime`, so the
 * worker can be tested with a fake one and another engine could slot in behind the same five members.
 */
import ort from 'onnxruntime-node';
import { ModelError } from '@bertq/protocol';

export type Device = 'cpu' | 'cuda';

export interface RuntimeOptions {
  device?: Device;
  /** GPU ordinal for device 'cuda'. */
  deviceId?: number;
  /** Threads one inference may use (ONNX Runtime intra-op pool); default: all cores. */
  threads?: number;
  /** ONNX Runtime graph optimisation level; 'all' fuses what our plain graph leaves unfused. */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
}

export interface RuntimeTensor {
  data: Float32Array;
  dims: number[];
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
  run(feeds: RuntimeFeeds, output?: string): Promise<RuntimeTensor>;
  close(): Promise<void>;
}

class OrtRuntime implements Runtime {
  constructor(
    private readonly session: ort.InferenceSession,
    readonly device: Device,
  ) {}

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }
  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  async run(feeds: RuntimeFeeds, output = this.session.outputNames[0]!): Promise<RuntimeTensor> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const name of this.session.inputNames) {
      const f = feeds[name];
      if (!f) throw new ModelError(`model input ${name} was not provided (have: ${Object.keys(feeds).join(', ')})`);
      ortFeeds[name] = f.data instanceof Float32Array ? new ort.Tensor('float32', f.data, f.dims) : new ort.Tensor('int64', f.data, f.dims);
    }
    const result = await this.session.run(ortFeeds, [output]);
    const t = result[output]!;
    if (t.type !== 'float32') throw new ModelError(`model output ${output} is ${t.type}, expected float32`);
    return { data: t.data as Float32Array, dims: [...t.dims] };
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}

/** Opens an ONNX model (bytes or a file path) in ONNX Runtime. */
export async function createRuntime(model: Uint8Array | string, opts: RuntimeOptions = {}): Promise<Runtime> {
  const device = opts.device ?? 'cpu';
  const options: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: opts.optimization ?? 'all',
    executionMode: 'sequential',
    enableCpuMemArena: true,
    enableMemPattern: true,
    executionProviders: device === 'cuda' ? [{ name: 'cuda', deviceId: opts.deviceId ?? 0 }] : ['cpu'],
    logSeverityLevel: 3,
  };
  if (opts.threads !== undefined) {
    options.intraOpNumThreads = opts.threads;
    options.interOpNumThreads = 1;
  }
  try {
    const session =
      typeof model === 'string'
        ? await ort.InferenceSession.create(model, options)
        : await ort.InferenceSession.create(model, options);
    return new OrtRuntime(session, device);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    if (device === 'cuda') {
      throw new ModelError(
        `ONNX Runtime could not start the CUDA execution provider (${msg}). The CUDA build of onnxruntime-node ` +
          'needs CUDA 12 and cuDNN 9 on the host and an install without ONNXRUNTIME_NODE_INSTALL=skip; use --cpu to run on the CPU.',
        { cause: err },
      );
    }
    throw new ModelError(`ONNX Runtime could not load the model${typeof model === 'string' ? ` ${model}` : ''}: ${msg}`, { cause: err });
  }
}

/** Versions for the benchmark's System line. */
export function runtimeVersions(): { onnxruntime: string } {
  return { onnxruntime: ort.env.versions?.common ?? 'unknown' };
}
