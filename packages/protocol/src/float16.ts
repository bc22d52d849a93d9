/**
 * IEEE 754 binary16 ("half") <-> binary32 conversion on raw bits: `output: "f16"` frames, float16
 * ONNX initializers, float16 checkpoints and safetensors all use it. Node 20 has no Float16Array; this goes when the engines field reaches Node 24, which has one.
 * Rounding is to nearest, ties to even, as hardware conversions do; overflow becomes ±Infinity, NaN
 * keeps its payload. Array versions work on integer views, with no per-element allocation.
 */
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** Decoding table: the float32 bit pattern of every half value, built once on first use (256 KiB). */
let halfToFloatBits: Uint32Array | undefined;

function decodingTable(): Uint32Array {
  if (halfToFloatBits !== undefined) return halfToFloatBits;
  const table = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exponent = (h >>> 10) & 0x1f;
    let mantissa = h & 0x3ff;
    let bits: number;
    if (exponent === 0x1f) {
      // Inf keeps a zero mantissa; NaN keeps its payload in the top mantissa bits.
      bits = sign | 0x7f800000 | (mantissa << 13);
    } else if (exponent !== 0) {
      // Normal: rebias the exponent from 15 to 127.
      bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa === 0) {
      bits = sign;
    } else {
      // Subnormal half = mantissa * 2^-24: every one is a normal float32, so normalise it.
      let e = 113; // biased float32 exponent of 2^-14, before shifting the leading bit into place
      while ((mantissa & 0x400) === 0) {
        mantissa <<= 1;
        e--;
      }
      bits = sign | (e << 23) | ((mantissa & 0x3ff) << 13);
    }
    table[h] = bits >>> 0;
  }
  halfToFloatBits = table;
  return table;
}

/** Converts one float32 bit pattern to the nearest half bit pattern (round to nearest, ties to even). */
function floatBitsToHalfBits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const abs = bits & 0x7fffffff;
  if (abs >= 0x7f800000) {
    if (abs === 0x7f800000) return sign | 0x7c00;
    // NaN: keep the top 10 payload bits (so every half NaN round-trips); if they are all zero the
    // result would read as Inf, so set the quiet bit instead.
    const payload = (abs >>> 13) & 0x3ff;
    return sign | 0x7c00 | (payload === 0 ? 0x200 : payload);
  }
  // 65520 is the midpoint between the largest half (65504) and the next step (65536, i.e. Inf);
  // ties go to the even neighbour, which is Inf.
  if (abs >= 0x477ff000) return sign | 0x7c00;
  if (abs >= 0x38800000) {
    // Normal half. Rebias 127 -> 15 and drop 13 mantissa bits; a carry out of the mantissa correctly
    // bumps the exponent (the overflow case was handled above).
    const truncated = (abs - 0x38000000) >>> 13;
    const rest = abs & 0x1fff;
    const roundUp = rest > 0x1000 || (rest === 0x1000 && (truncated & 1) === 1);
    return sign | (truncated + (roundUp ? 1 : 0));
  }
  // Below 2^-25 everything rounds to zero (2^-25 itself ties to the even zero).
  if (abs <= 0x33000000) return sign;
  // Subnormal half: value = significand * 2^(e-150); the half unit is 2^-24.
  const exponent = abs >>> 23; // 102..112 here
  const significand = (abs & 0x7fffff) | 0x800000;
  const shift = 126 - exponent; // 14..24
  const truncated = significand >>> shift;
  const rest = significand & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  const roundUp = rest > half || (rest === half && (truncated & 1) === 1);
  // Rounding up from 0x3ff yields 0x400, the smallest normal: the encoding carries over correctly.
  return sign | (truncated + (roundUp ? 1 : 0));
}

/** The binary16 bit pattern nearest to `value`. */
export function float32ToFloat16Bits(value: number): number {
  scratchF32[0] = value;
  return floatBitsToHalfBits(scratchU32[0]!);
}

/** The value of a binary16 bit pattern (exact: every half is a float32). */
export function float16BitsToFloat32(bits: number): number {
  scratchU32[0] = decodingTable()[bits & 0xffff]!;
  return scratchF32[0]!;
}

/** Float32 values to binary16 bit patterns. */
export function float32ArrayToFloat16(src: Float32Array): Uint16Array {
  const input = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < input.length; i++) out[i] = floatBitsToHalfBits(input[i]!);
  return out;
}

/** Binary16 bit patterns to float32 values. */
export function float16ArrayToFloat32(src: Uint16Array): Float32Array {
  const table = decodingTable();
  const out = new Float32Array(src.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) outBits[i] = table[src[i]!]!;
  return out;
}
