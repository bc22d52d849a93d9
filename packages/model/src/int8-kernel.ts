/**
 * Which int8 GEMM this CPU runs, and so how wide int8 weights may be.
 *
 * ONNX Runtime multiplies uint8 activations by int8 weights (U8S8). With VNNI (AVX-512 VNNI or
 * AVX-VNNI) it sums four products straight into 32 bits: exact. Without it, on AVX2 and on
 * AVX-512BW, it uses `vpmaddubsw`, which adds each pair of products in a 16-bit lane that saturates at
 * 32767: 255 · 127 · 2 = 64770 overflows, and BERT's token vectors fell to cosine 0.963 of float32 on
 * such CPUs. ONNX Runtime's own quantization tool offers `reduce_range` (7-bit weights) for exactly
 * these CPUs: with |w| ≤ 64 a pair sums to at most 255 · 64 · 2 = 32640, which fits. So weights are
 * 8-bit where the sums are exact and 7-bit elsewhere.
 *
 * The choice is not read from CPU flags but measured: a one-node graph with the very op the encoder
 * uses (DynamicQuantizeMatMul over a constant int8 matrix) is run on inputs whose pair sums overflow 16
 * bits. That asks the kernel ONNX Runtime actually dispatches to, on any OS, CPU or emulator (under
 * `qemu-x86_64 -cpu Haswell`, /proc/cpuinfo still shows the host's flags, but the probe sees AVX2).
 * The flags only name the instruction set in reports.
 */
import { readFileSync } from 'node:fs';
import { arch } from 'node:os';
import { GraphBuilder, MS_DOMAIN } from './onnx/builder.js';
import { DataType } from './onnx/proto.js';
import { EIGHT_BIT_MAX, type Int8WeightBits } from './onnx/quantize.js';
import { createRuntime } from './runtime.js';

export interface Int8Kernel {
  /** Whether this CPU's U8S8 GEMM sums 8-bit products exactly (no 16-bit saturation). */
  exact: boolean;
  /** The weight width the encoder uses here: 8 where exact, 7 elsewhere. */
  weightBits: Int8WeightBits;
  /** The instruction set named by the CPU's flags, e.g. 'AVX-512 VNNI', 'AVX2' ('unknown' off Linux x86). */
  isa: string;
  /** One line for logs and status, e.g. 'AVX2 without VNNI: saturating int8 sums, 7-bit weights'. */
  path: string;
}

/** The instruction set named by the CPU's flags, and whether its int8 sums are exact by those flags. */
export interface Int8Isa {
  name: string;
  /** What the flags promise; undefined where they say nothing (not Linux, an unknown x86). */
  exact: boolean | undefined;
}

/**
 * The instruction set ONNX Runtime's MLAS picks its U8S8 kernel by, named from Linux's CPU flags. On
 * other systems 'unknown': the probe still decides the weights.
 */
export function int8Isa(cpuinfo: string | undefined = readCpuinfo()): Int8Isa {
  if (arch() === 'arm64') return { name: 'ARM64', exact: true };
  const line = cpuinfo?.split('\n').find((l) => l.startsWith('flags'));
  if (line === undefined) return { name: 'unknown', exact: undefined };
  const flags = new Set(line.split(':')[1]?.trim().split(/\s+/) ?? []);
  // MLAS: AVX-512BW kernels replace the AVX2 ones, and VNNI replaces either.
  if (flags.has('avx512bw'))
    return flags.has('avx512_vnni')
      ? { name: 'AVX-512 VNNI', exact: true }
      : { name: 'AVX-512BW without VNNI', exact: false };
  if (flags.has('avx2'))
    return flags.has('avx_vnni') ? { name: 'AVX-VNNI', exact: true } : { name: 'AVX2 without VNNI', exact: false };
  return { name: 'unknown', exact: undefined };
}

function readCpuinfo(): string | undefined {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return undefined;
  }
}

/** Rows, depth and columns of the probe: big enough for MLAS's packed GEMM path, not its edge cases. */
const PROBE = { rows: 8, depth: 64, cols: 32 };

/**
 * A graph computing x · w with x = 1 everywhere (quantized to uint8 255, scale 1/255) and w = 127
 * everywhere (scale 1): each output is exactly 127 · depth when the kernel is exact, about half of it
 * when each pair of products saturates at 32767.
 */
function probeGraph(): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('x', DataType.FLOAT, [PROBE.rows, PROBE.depth]);
  const w = g.initializer('w', new Int8Array(PROBE.depth * PROBE.cols).fill(EIGHT_BIT_MAX), [PROBE.depth, PROBE.cols]);
  const scale = g.initializer('w_scale', new Float32Array([1]), []);
  const [y] = g.node('DynamicQuantizeMatMul', [x, w, scale], { domain: MS_DOMAIN, outputs: ['product'] });
  g.expose(y!, 'y', DataType.FLOAT, [PROBE.rows, PROBE.cols]);
  return g.build({
    graphName: 'bertq_int8_probe',
    opsets: [
      { domain: '', version: 17 },
      { domain: MS_DOMAIN, version: 1 },
    ],
    producerVersion: '0',
    metadata: {},
  });
}

/** Runs the probe graph: whether ONNX Runtime's int8 GEMM on this CPU sums 8-bit products exactly. */
export async function int8SumsExact(): Promise<boolean> {
  const rt = await createRuntime(probeGraph(), { threads: 1 });
  try {
    const x = new Float32Array(PROBE.rows * PROBE.depth).fill(1);
    const y = await rt.run({ x: { data: x, dims: [PROBE.rows, PROBE.depth] } });
    const want = EIGHT_BIT_MAX * PROBE.depth;
    return y.data.every((v) => Math.abs(v - want) < 0.5);
  } finally {
    await rt.close();
  }
}

let detected: Promise<Int8Kernel> | undefined;

/** This process's int8 kernel, probed once (~80 ms: a runtime thread, a session, one run). */
export function detectInt8Kernel(): Promise<Int8Kernel> {
  detected ??= int8SumsExact().then((exact) => describeInt8Kernel(exact, int8Isa()));
  return detected;
}

export function describeInt8Kernel(exact: boolean, isa: Int8Isa): Int8Kernel {
  const weightBits: Int8WeightBits = exact ? 8 : 7;
  // The flags say what the CPU has; the probe what ONNX Runtime runs. They disagree under an emulator
  // or a hypervisor that hides features: name both rather than claim VNNI for a saturating kernel.
  const named =
    isa.exact === undefined || isa.exact === exact ? isa.name : `${isa.name} in the CPU flags, not in the kernel run`;
  const sums = exact ? 'exact int8 sums' : 'int8 pair sums saturate at 16 bits';
  return { exact, weightBits, isa: named, path: `${named}: ${sums}, ${weightBits}-bit weights` };
}
