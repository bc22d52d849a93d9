/**
 * Symmetric int8 quantization of a weight matrix, one scale per output column: the weight half of
 * dynamic quantization (ONNX Runtime quantizes the activations itself, per batch, at run time).
 * Per-column scales keep a column of small weights from being flattened by one large column
 * elsewhere in the matrix, which is what keeps BERT's vectors within cosine 0.99 of float32.
 */
export interface QuantizedMatrix {
  /** round(w / scale) per column, in [-127, 127] (−128 is left out so the range is symmetric). */
  values: Int8Array;
  /** One scale per output column: max |w| of the column / 127 (1 for an all-zero column). */
  scales: Float32Array;
}

/** Quantizes a row-major [inDim, outDim] matrix. */
export function quantizePerColumn(kernel: Float32Array, inDim: number, outDim: number): QuantizedMatrix {
  if (kernel.length !== inDim * outDim) throw new Error(`quantize: ${kernel.length} values for [${inDim}, ${outDim}]`);
  const maxAbs = new Float32Array(outDim);
  for (let i = 0; i < inDim; i++) {
    const row = i * outDim;
    for (let j = 0; j < outDim; j++) {
      const a = Math.abs(kernel[row + j]!);
      if (a > maxAbs[j]!) maxAbs[j] = a;
    }
  }
  const scales = maxAbs.map((m) => (m > 0 ? m / 127 : 1));
  const inverse = scales.map((s) => 1 / s);
  const values = new Int8Array(kernel.length);
  for (let i = 0; i < inDim; i++) {
    const row = i * outDim;
    for (let j = 0; j < outDim; j++) {
      const q = Math.round(kernel[row + j]! * inverse[j]!);
      values[row + j] = Math.min(127, Math.max(-127, q));
    }
  }
  return { values, scales };
}
