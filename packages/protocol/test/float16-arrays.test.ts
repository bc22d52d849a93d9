import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  float16ArrayToFloat32 as float16BitsToFloat32,
  float32ArrayToFloat16 as float32ToFloat16Bits,
} from '../src/float16.js';

const ALL_HALVES = Uint16Array.from({ length: 65536 }, (_, i) => i);

/** The value of a half bit pattern, straight from the IEEE 754 definition (independent of the table). */
function halfValueByDefinition(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >>> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

function f32(value: number): Float32Array {
  return Float32Array.of(value);
}

function f32FromBits(bits: number): Float32Array {
  return new Float32Array(Uint32Array.of(bits).buffer);
}

function encodeOne(value: number): number {
  return float32ToFloat16Bits(f32(value))[0]!;
}

test('float16 arrays - decodes every one of the 65536 half values to its IEEE 754 value', () => {
  const decoded = float16BitsToFloat32(ALL_HALVES);
  for (let h = 0; h < 65536; h++) {
    const expected = halfValueByDefinition(h);
    const got = decoded[h]!;
    if (Number.isNaN(expected)) {
      assert.ok(Number.isNaN(got), `half 0x${h.toString(16)} should decode to NaN, got ${got}`);
    } else {
      assert.ok(Object.is(got, expected), `half 0x${h.toString(16)} decoded to ${got}, expected ${expected}`);
    }
  }
});

test('float16 arrays - every half value, NaN payloads included, survives float32 and back bit for bit', () => {
  const back = float32ToFloat16Bits(float16BitsToFloat32(ALL_HALVES));
  for (let h = 0; h < 65536; h++)
    assert.equal(back[h], h, `half 0x${h.toString(16)} came back as 0x${back[h]!.toString(16)}`);
});

test('float16 arrays - rounds every midpoint between neighbouring halves to the even one, and its neighbours to the nearest', () => {
  // All positive finite halves in increasing order are 0x0000..0x7bff; their midpoints fit in float32
  // exactly (12 significant bits), so the ties are tested exhaustively, one float32 ulp either side too.
  const values = float16BitsToFloat32(ALL_HALVES);
  const probe = new Float32Array(3);
  const probeBits = new Uint32Array(probe.buffer);
  for (let lo = 0; lo < 0x7bff; lo++) {
    const hi = lo + 1;
    const mid = (values[lo]! + values[hi]!) / 2;
    probe[0] = mid;
    assert.equal(probe[0], mid, 'midpoint must be exact in float32');
    probeBits[1] = probeBits[0]! - 1; // just below the midpoint (positive floats order like their bits)
    probeBits[2] = probeBits[0]! + 1; // just above
    const [atMid, below, above] = float32ToFloat16Bits(probe);
    const even = lo % 2 === 0 ? lo : hi;
    assert.equal(atMid, even, `midpoint ${mid} between 0x${lo.toString(16)} and 0x${hi.toString(16)}`);
    assert.equal(below, lo, `just below midpoint ${mid}`);
    assert.equal(above, hi, `just above midpoint ${mid}`);
    // The same holds mirrored for negative values, with the sign bit set.
    const negative = float32ToFloat16Bits(Float32Array.of(-probe[0]!, -probe[1]!, -probe[2]!));
    assert.deepEqual([...negative], [even | 0x8000, lo | 0x8000, hi | 0x8000]);
  }
});

test('float16 arrays - overflows past 65504 to infinity only from the rounding midpoint 65520 on', () => {
  assert.equal(encodeOne(65504), 0x7bff);
  assert.equal(encodeOne(65519.99609375), 0x7bff); // largest float32 below 65520
  assert.equal(encodeOne(65520), 0x7c00);
  assert.equal(encodeOne(-65520), 0xfc00);
  assert.equal(encodeOne(1e10), 0x7c00);
  assert.equal(encodeOne(3.4028234663852886e38), 0x7c00);
  assert.equal(encodeOne(Infinity), 0x7c00);
  assert.equal(encodeOne(-Infinity), 0xfc00);
});

test('float16 arrays - encodes signed zeros, subnormals and underflow correctly', () => {
  assert.equal(encodeOne(0), 0x0000);
  assert.equal(encodeOne(-0), 0x8000);
  assert.equal(encodeOne(2 ** -24), 0x0001); // smallest half subnormal
  assert.equal(encodeOne(2 ** -25), 0x0000); // tie between 0 and 2^-24 goes to even 0
  assert.equal(encodeOne(-(2 ** -25)), 0x8000);
  assert.equal(float32ToFloat16Bits(f32FromBits(0x33000001))[0], 0x0001); // just above 2^-25
  assert.equal(encodeOne(3 * 2 ** -25), 0x0002); // tie between 1 and 2 ulps goes to even 2
  assert.equal(encodeOne(2 ** -14), 0x0400); // smallest normal half
  assert.equal(encodeOne(2 ** -14 - 2 ** -25), 0x0400); // tie between 0x3ff and 0x400 goes to even 0x400
  assert.equal(encodeOne(2 ** -14 - 2 ** -24), 0x03ff); // largest subnormal half
  assert.equal(float32ToFloat16Bits(f32FromBits(0x00000001))[0], 0x0000); // float32 subnormal
  assert.equal(encodeOne(1e-30), 0x0000);
});

test('float16 arrays - encodes ordinary values, including ties in the normal range, to their nearest half', () => {
  assert.equal(encodeOne(1), 0x3c00);
  assert.equal(encodeOne(-2), 0xc000);
  assert.equal(encodeOne(0.1), 0x2e66); // 0.0999755859375
  assert.equal(encodeOne(1 / 3), 0x3555);
  assert.equal(encodeOne(1 + 2 ** -11), 0x3c00); // tie, mantissa 0 is even
  assert.equal(encodeOne(1 + 3 * 2 ** -11), 0x3c02); // tie, rounds up to even mantissa 2
  assert.equal(encodeOne(2047.5), 0x67ff + 1); // tie between 2047 (odd) and 2048 -> 2048, crosses an exponent
  assert.equal(encodeOne(Math.PI), 0x4248);
});

test('float16 arrays - NaN stays NaN, with its sign, even when its payload lives only in the low bits', () => {
  for (const bits of [0x7fc00000, 0xffc00000, 0x7f800001, 0x7fa00000, 0xff800fff]) {
    const h = float32ToFloat16Bits(f32FromBits(bits))[0]!;
    assert.equal(h & 0x7c00, 0x7c00, `0x${bits.toString(16)}: exponent must be all ones`);
    assert.notEqual(h & 0x3ff, 0, `0x${bits.toString(16)}: mantissa must be non-zero (else it reads as Inf)`);
    assert.equal(h & 0x8000, (bits >>> 16) & 0x8000, `0x${bits.toString(16)}: sign kept`);
  }
});

test('float16 arrays - reads float32 input through a view with a byte offset', () => {
  const backing = new Float32Array([7, 1.5, -0.25, 65504]);
  const view = backing.subarray(1, 3);
  assert.deepEqual([...float32ToFloat16Bits(view)], [0x3e00, 0xb400]);
  assert.deepEqual([...float16BitsToFloat32(Uint16Array.of(0x3e00, 0xb400))], [1.5, -0.25]);
});
