/**
 * Symmetric int8 quantization of a weight matrix, one scale per output column: the weight half of
 * dynamic quantization (ONNX Runtime quantizes the activations itself, per batch, at run time).
 * Per-column scales keep a column of small weights from being flattened by one large column
 * elsewhere in the matrix, which is what keeps BERT's vectors within cosine 0.99 of float32.
 * `maxLevel` is 127 for full 8-bit weights, 64 for the 7-bit weights of CPUs whose int8 kernel
 * saturates (int8-kernel.ts).
 */
/** Largest |weight| of int8 weights whose pair sums never saturate a 16-bit lane: 255·64·2 ≤ 32767. */
export const SEVEN_BIT_MAX = 64;
/** Largest |weight| of full int8 weights (−128 left out so the range is symmetric). */
export const EIGHT_BIT_MAX = 127;

/** int8 weights as wide as the CPU's kernel sums exactly. */
export type Int8WeightBits = 7 | 8;
export const INT8_WEIGHT_BITS: readonly Int8WeightBits[] = [7, 8];

/** The largest weight magnitude for `bits`. */
export function int8WeightMax(bits: Int8WeightBits): number {
  return bits === 8 ? EIGHT_BIT_MAX : SEVEN_BIT_MAX;
}

export interface QuantizedMatrix {
  /** round(w / scale) per column, in [-maxLevel, maxLevel] (symmetric: −128 is never used). */
  values: Int8Array;
  /** One scale per output column: max |w| of the column / maxLevel (1 for an all-zero column). */
  scales: Float32Array;
}

/** Quantizes a row-major [inDim, outDim] matrix. */
export function quantizePerColumn(
  kernel: Float32Array,
  inDim: number,
  outDim: number,
  maxLevel = EIGHT_BIT_MAX,
): QuantizedMatrix {
  if (kernel.length !== inDim * outDim) throw new Error(`quantize: ${kernel.length} values for [${inDim}, ${outDim}]`);
  const maxAbs = new Float32Array(outDim);
  for (let i = 0; i < inDim; i++) {
    const row = i * outDim;
    for (let j = 0; j < outDim; j++) {
      const a = Math.abs(kernel[row + j]!);
      if (a > maxAbs[j]!) maxAbs[j] = a;
    }
  }
  const scales = maxAbs.map((m) => (m > 0 ? m / maxLevel : 1));
  const inverse = scales.map((s) => 1 / s);
  const values = new Int8Array(kernel.length);
  for (let i = 0; i < inDim; i++) {
    const row = i * outDim;
    for (let j = 0; j < outDim; j++) {
      const q = Math.round(kernel[row + j]! * inverse[j]!);
      values[row + j] = Math.min(maxLevel, Math.max(-maxLevel, q));
    }
  }
  return { values, scales };
}
