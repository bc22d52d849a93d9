/**
 * Strict UTF-8 decoding with a position in the error. TextDecoder({ fatal: true }) rejects bad input
 * but does not say where; a message that names the byte lets a sender find the broken character.
 */
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

/** Decodes UTF-8 or returns the index of the first byte that is not valid UTF-8. */
export function decodeUtf8(bytes: Uint8Array): { ok: true; text: string } | { ok: false; invalidAt: number } {
  try {
    return { ok: true, text: strictDecoder.decode(bytes) };
  } catch {
    return { ok: false, invalidAt: firstInvalidUtf8Byte(bytes) };
  }
}

/**
 * Index of the first byte that starts an invalid sequence (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), or -1 when all of it is valid. Only run on the error path.
 */
export function firstInvalidUtf8Byte(bytes: Uint8Array): number {
  let i = 0;
  const n = bytes.length;
  while (i < n) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i += 1;
      continue;
    }
    let need: number;
    let min: number; // smallest allowed second byte
    let max: number; // largest allowed second byte
    if (b >= 0xc2 && b <= 0xdf) [need, min, max] = [1, 0x80, 0xbf];
    else if (b === 0xe0)
      [need, min, max] = [2, 0xa0, 0xbf]; // no overlong 3-byte forms
    else if (b === 0xed)
      [need, min, max] = [2, 0x80, 0x9f]; // no UTF-16 surrogates
    else if (b >= 0xe1 && b <= 0xef) [need, min, max] = [2, 0x80, 0xbf];
    else if (b === 0xf0)
      [need, min, max] = [3, 0x90, 0xbf]; // no overlong 4-byte forms
    else if (b >= 0xf1 && b <= 0xf3) [need, min, max] = [3, 0x80, 0xbf];
    else if (b === 0xf4)
      [need, min, max] = [3, 0x80, 0x8f]; // nothing above U+10FFFF
    else return i;
    if (i + need >= n) return i; // truncated sequence
    const second = bytes[i + 1]!;
    if (second < min || second > max) return i;
    for (let k = 2; k <= need; k++) {
      const c = bytes[i + k]!;
      if (c < 0x80 || c > 0xbf) return i;
    }
    i += need + 1;
  }
  return -1;
}

/**
 * Bytes `text` takes as UTF-8, without encoding it: the size checks of every frame and job measured
 * their headers with TextEncoder, an allocation per header, 11% of a worker's CPU with 1-row jobs.
 * A lone surrogate counts 3 bytes, as TextEncoder writes it (U+FFFD).
 */
export function utf8Length(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) bytes += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 2; // a pair: 4 bytes for 2 UTF-16 units
        i++;
      } else bytes += 2;
    } else bytes += 2;
  }
  return bytes;
}
