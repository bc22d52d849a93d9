/**
 * The one table that says, per device, which ONNX Runtime execution providers run a session and
 * which graph and batching defaults suit it. Everything device-dependent reads it from here.
 */
export const DEVICES = ['cpu', 'cuda'] as const;
export type Device = (typeof DEVICES)[number];

/**
 * Numeric precision of the graph's weights and compute: float32 is exact; float16 halves weights and
 * activations (a GPU's fast path); int8 stores every weight matrix as int8 per output channel and
 * quantizes activations at run time (ONNX Runtime's DynamicQuantizeMatMul: the CPU's fast path).
 */
export const PRECISIONS = ['float32', 'float16', 'int8'] as const;
export type Precision = (typeof PRECISIONS)[number];

export interface DeviceProfile {
  /** ONNX Runtime execution providers, in order of preference, for GPU ordinal `deviceId`. */
  executionProviders(deviceId: number): Array<string | { name: string; deviceId: number }>;
  /**
   * Whether graphs use ONNX Runtime's fused transformer kernels by default: the fast path on CUDA;
   * on CPU bench/model.bench.ts measures them no faster than the plain graph, which also runs on any
   * ONNX runtime.
   */
  fusedByDefault: boolean;
  /**
   * Padded tokens (rows × longest) per inference batch by default. On a CPU ~2k tokens already keep
   * every core busy and smaller batches cut from a length-sorted window pad less; a GPU needs more.
   */
  maxBatchTokens: number;
  /**
   * Whether ONNX Runtime's intra-op threads spin while they wait for work (its default) or sleep. Off
   * on CPU: a worker shares its cores with its own main thread (tokenizing, NATS) and usually with the
   * broker and clients, and spinning threads take that CPU from them. encode-e2e.bench measured 32
   * one-row clients 10-15% faster without spinning, 4096-row requests and the bare model no slower.
   */
  spinWait: boolean;
}

export const DEVICE_PROFILES: Readonly<Record<Device, DeviceProfile>> = {
  cpu: { executionProviders: () => ['cpu'], fusedByDefault: false, maxBatchTokens: 2048, spinWait: false },
  cuda: {
    executionProviders: (deviceId) => [{ name: 'cuda', deviceId }],
    fusedByDefault: true,
    maxBatchTokens: 16384,
    spinWait: true,
  },
};
