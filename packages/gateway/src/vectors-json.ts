/**
 * Vectors as response text, fast: the gateway turns every row it returns into JSON numbers or base64,
 * so this is its hot path. Numbers are written with 9 significant digits, which read back to exactly
 * the same float32 (JSON.stringify of the widened float64 writes ~17 digits — half again the bytes —
 * and the shortest-round-trip search is ~2.5× slower). Non-finite values have no JSON form: null.
 */

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** `[v0,v1,…]` for `length` values of `data` from `start`. */
export function floatsToJson(data: Float32Array, start: number, length: number): string {
  const parts = new Array<string>(length);
  for (let i = 0; i < length; i++) {
    const v = data[start + i]!;
    parts[i] = Number.isFinite(v) ? v.toPrecision(9) : 'null';
  }
  return `[${parts.join(',')}]`;
}

/** Little-endian float32 bytes of `length` values from `start`, base64 (OpenAI's `encoding_format: base64`). */
export function floatsToBase64(data: Float32Array, start: number, length: number): string {
  if (HOST_LITTLE_ENDIAN) return Buffer.from(data.buffer, data.byteOffset + start * 4, length * 4).toString('base64');
  const bytes = Buffer.allocUnsafe(length * 4);
  for (let i = 0; i < length; i++) bytes.writeFloatLE(data[start + i]!, i * 4);
  return bytes.toString('base64');
}

/** JSON text of a whole array of `shape` (row axis first), nested like numpy's tolist(). */
export function arrayToJson(data: Float32Array, shape: readonly number[]): string {
  if (shape.length === 0) return floatsToJson(data, 0, 1).slice(1, -1);
  const write = (start: number, axis: number): string => {
    const dim = shape[axis]!;
    if (axis === shape.length - 1) return floatsToJson(data, start, dim);
    let stride = 1;
    for (let a = axis + 1; a < shape.length; a++) stride *= shape[a]!;
    const parts = new Array<string>(dim);
    for (let i = 0; i < dim; i++) parts[i] = write(start + i * stride, axis + 1);
    return `[${parts.join(',')}]`;
  };
  return write(0, 0);
}

/** Divides `length` values from `start` by their L2 norm in place (after truncating to `dimensions`). */
export function normalizeInPlace(data: Float32Array, start: number, length: number): void {
  let sum = 0;
  for (let i = 0; i < length; i++) sum += data[start + i]! * data[start + i]!;
  const norm = Math.sqrt(sum);
  if (norm === 0 || !Number.isFinite(norm)) return;
  for (let i = 0; i < length; i++) data[start + i] = data[start + i]! / norm;
}
