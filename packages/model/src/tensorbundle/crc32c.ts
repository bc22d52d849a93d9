/**
 * CRC-32C (Castagnoli), the checksum TensorFlow puts on every SSTable block and on every tensor of a
 * checkpoint. Slicing-by-8 tables: a byte-at-a-time loop runs at a few hundred MB/s in V8, which
 * would make checksumming a 440 MB BERT-base checkpoint slower than reading it. Ours rather than a
 * package: the maintained ones are native addons (a build step on every platform) or byte-at-a-time.
 */

const POLY_REFLECTED = 0x82f63b78;
const MASK_DELTA = 0xa282ead8;

// Int32Array, not Uint32Array: V8 keeps int32 values unboxed, while uint32 values above 2^31 are
// held as doubles, which turns every XOR of the hot loop into a conversion.
function buildTables(): Int32Array[] {
  const t0 = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY_REFLECTED : c >>> 1;
    t0[n] = c;
  }
  const tables = [t0];
  for (let k = 1; k < 8; k++) {
    const prev = tables[k - 1]!;
    const next = new Int32Array(256);
    for (let n = 0; n < 256; n++) next[n] = (prev[n]! >>> 8) ^ t0[prev[n]! & 0xff]!;
    tables.push(next);
  }
  return tables;
}

const [T0, T1, T2, T3, T4, T5, T6, T7] = buildTables() as [
  Int32Array,
  Int32Array,
  Int32Array,
  Int32Array,
  Int32Array,
  Int32Array,
  Int32Array,
  Int32Array,
];

/** The slicing-by-8 loop over pairs of little-endian words; kept apart so V8 sees only Int32Array here. */
function crcWordPairs(crc: number, words: Int32Array, pairs: number): number {
  let c = crc;
  for (let w = 0; w < pairs; w++) {
    const a = c ^ words[2 * w]!;
    const b = words[2 * w + 1]!;
    c =
      T7[a & 0xff]! ^
      T6[(a >>> 8) & 0xff]! ^
      T5[(a >>> 16) & 0xff]! ^
      T4[a >>> 24]! ^
      T3[b & 0xff]! ^
      T2[(b >>> 8) & 0xff]! ^
      T1[(b >>> 16) & 0xff]! ^
      T0[b >>> 24]!;
  }
  return c;
}

function crcBytes(crc: number, data: Uint8Array, from: number): number {
  let c = crc;
  for (let i = from; i < data.length; i++) c = T0[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return c;
}

/** Continues a CRC-32C over more bytes (`crc` is a finished value, as crc32c::Extend takes it). */
export function crc32cExtend(crc: number, data: Uint8Array): number {
  let c = ~crc;
  let done = 0;
  // Word reads need 4-byte alignment of the view; buffers we allocate for tensors always have it.
  // Little-endian words: byte i is the low byte, as the byte-wise loop consumes it.
  if ((data.byteOffset & 3) === 0 && data.length >= 16) {
    const pairs = data.length >>> 3;
    c = crcWordPairs(c, new Int32Array(data.buffer, data.byteOffset, pairs * 2), pairs);
    done = pairs * 8;
  }
  return ~crcBytes(c, data, done) >>> 0;
}

/** CRC-32C of `data`. */
export function crc32c(data: Uint8Array): number {
  return crc32cExtend(0, data);
}

/**
 * LevelDB/TensorFlow store checksums "masked", so that a CRC computed over data that itself embeds
 * CRCs stays well distributed (leveldb util/crc32c.h).
 */
export function maskCrc32c(crc: number): number {
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + MASK_DELTA) >>> 0;
}

export function unmaskCrc32c(masked: number): number {
  const rot = (masked - MASK_DELTA) >>> 0;
  return ((rot >>> 17) | (rot << 15)) >>> 0;
}
