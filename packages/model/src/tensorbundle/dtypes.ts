/**
 * Conversions between the reduced-precision float formats found in weight files and float32.
 * Shared by the TensorBundle and safetensors readers (and their writers, for fixtures).
 * All byte layouts are little-endian, which is what both formats store on every host bertq runs on.
 */

import { float16ArrayToFloat32, float32ArrayToFloat16 } from '@bertq/protocol';

/** Little-endian uint16 words of `bytes` (copied only when the view is misaligned). */
function uint16Words(bytes: Uint8Array): Uint16Array {
  if ((bytes.byteOffset & 1) === 0) return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 1);
  return new Uint16Array(bytes.slice().buffer, 0, bytes.byteLength >>> 1);
}

export function float16BytesToFloat32(bytes: Uint8Array): Float32Array {
  return float16ArrayToFloat32(uint16Words(bytes));
}

export function bfloat16BytesToFloat32(bytes: Uint8Array): Float32Array {
  const src = uint16Words(bytes);
  const out = new Float32Array(src.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
  return out;
}

export function float64BytesToFloat32(bytes: Uint8Array): Float32Array {
  const aligned = (bytes.byteOffset & 7) === 0 ? bytes : bytes.slice();
  return Float32Array.from(new Float64Array(aligned.buffer, aligned.byteOffset, aligned.byteLength >>> 3));
}

/** float32 bytes as a Float32Array: a view when aligned (no copy), else one copy. */
export function float32BytesToFloat32(bytes: Uint8Array): Float32Array {
  if ((bytes.byteOffset & 3) === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
  return new Float32Array(bytes.slice().buffer);
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** float32 → bfloat16 bits, round to nearest even. */
export function float32ToBfloat16Bits(value: number): number {
  scratchF32[0] = value;
  const x = scratchU32[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return (x >>> 16) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

export function float32ToFloat16Bytes(data: Float32Array): Uint8Array {
  return new Uint8Array(float32ArrayToFloat16(data).buffer);
}

export function float32ToBfloat16Bytes(data: Float32Array): Uint8Array {
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = float32ToBfloat16Bits(data[i]!);
  return new Uint8Array(out.buffer);
}

/** Number of elements of a shape (1 for a scalar). */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Byte view of a typed array, without copying. */
export function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}
