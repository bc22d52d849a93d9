import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  float32ToFloat16Bits,
  float16BitsToFloat32,
  float32ArrayToFloat16,
  float16ArrayToFloat32,
} from '../src/index.js';
import { seededRandom } from './random.js';

test('float16 - encodes the IEEE 754 reference values', () => {
  // Bit patterns from the binary16 definition (sign 1, exponent 5 with bias 15, mantissa 10).
  const cases: Array<[number, number]> = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff], // largest finite
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -24 * 1023, 0x03ff], // largest subnormal
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [1e6, 0x7c00], // overflow
    [2 ** -26, 0x0000], // underflow
  ];
  for (const [value, bits] of cases) assert.equal(float32ToFloat16Bits(value), bits, `${value}`);
  assert.equal((float32ToFloat16Bits(NaN) & 0x7c00) === 0x7c00 && (float32ToFloat16Bits(NaN) & 0x3ff) !== 0, true);
});

test('float16 - rounds to nearest with ties to even', () => {
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties go to the even mantissa (1).
  assert.equal(float32ToFloat16Bits(1 + 2 ** -11), 0x3c00);
  // 1 + 3·2^-11 is halfway between 1 + 2^-10 (odd) and 1 + 2^-9 (even).
  assert.equal(float32ToFloat16Bits(1 + 3 * 2 ** -11), 0x3c02);
  // just above halfway rounds up
  assert.equal(float32ToFloat16Bits(1 + 2 ** -11 + 2 ** -20), 0x3c01);
  // 65520 is halfway between 65504 and the next step (65536, out of range): rounds to Infinity
  assert.equal(float32ToFloat16Bits(65520), 0x7c00);
  assert.equal(float32ToFloat16Bits(65519), 0x7bff);
  // subnormal halfway: 2^-25 ties to 0 (even), 3·2^-25 ties to 2·2^-24 (even)
  assert.equal(float32ToFloat16Bits(2 ** -25), 0x0000);
  assert.equal(float32ToFloat16Bits(3 * 2 ** -25), 0x0002);
});

test('float16 - decodes every finite pattern back to a value that re-encodes to itself', () => {
  for (let bits = 0; bits < 0x10000; bits++) {
    const exp = (bits >> 10) & 0x1f;
    const value = float16BitsToFloat32(bits);
    if (exp === 0x1f) {
      assert.ok((bits & 0x3ff) === 0 ? !Number.isFinite(value) && !Number.isNaN(value) : Number.isNaN(value));
      continue;
    }
    assert.equal(float32ToFloat16Bits(value), bits, `pattern 0x${bits.toString(16)}`);
  }
});

test('float16 - random embedding values round-trip within 1e-3 relative', () => {
  const random = seededRandom(7);
  const values = new Float32Array(20000).map(() => (random() - 0.5) * 10 ** (random() * 8 - 4));
  const back = float16ArrayToFloat32(float32ArrayToFloat16(values));
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (Math.abs(v) < 2 ** -14) {
      assert.ok(Math.abs(back[i]! - v) <= 2 ** -25, `subnormal ${v} → ${back[i]}`);
    } else {
      assert.ok(Math.abs(back[i]! - v) / Math.abs(v) <= 1e-3, `${v} → ${back[i]}`);
    }
  }
});
