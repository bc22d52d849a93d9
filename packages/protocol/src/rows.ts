/**
 * Byte layouts of result rows. A frame body is its rows back to back: little-endian float32 or
 * float16 elements in row-major order, or (dtype json) one JSON array holding the rows, each nested to
 * the per-row shape. No I/O here; frames.ts decides which rows go into which frame.
 */
import { float16ArrayToFloat32, float32ToFloat16Bits } from './float16.js';
import { InternalError } from './errors.js';
import type { OutputDtype } from './job.js';

/** Bytes per element of the binary dtypes. */
export const BYTES_PER_ELEMENT: Readonly<Record<'f32' | 'f16', number>> = { f32: 4, f16: 2 };

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const f32Scratch = new Float32Array(1);

/** Product of a shape's dimensions (1 for the empty shape). */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Little-endian float32 bytes of `values`. */
export function float32ToBytes(values: Float32Array): Uint8Array {
  if (HOST_LITTLE_ENDIAN)
    return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i]!, true);
  return out;
}

/** Little-endian float16 bytes: from float32 values (rounded to nearest even) or from ready binary16 bits. */
export function float16ToBytes(values: Float32Array | Uint16Array): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  const view = new DataView(out.buffer);
  if (values instanceof Uint16Array) {
    for (let i = 0; i < values.length; i++) view.setUint16(i * 2, values[i]!, true);
  } else {
    for (let i = 0; i < values.length; i++) view.setUint16(i * 2, float32ToFloat16Bits(values[i]!), true);
  }
  return out;
}

/** Reads little-endian float32 bytes; copies when the bytes are not 4-aligned in their buffer. */
export function bytesToFloat32(bytes: Uint8Array): Float32Array {
  if (bytes.length % 4 !== 0) throw new InternalError(`float32 data of ${bytes.length} bytes is not a multiple of 4`);
  if (HOST_LITTLE_ENDIAN) {
    if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    return new Float32Array(Uint8Array.from(bytes).buffer); // a real copy (Buffer#slice is a view)
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
  return out;
}

/** Reads little-endian float16 bytes into float32. */
export function bytesToFloat16AsFloat32(bytes: Uint8Array): Float32Array {
  if (bytes.length % 2 !== 0) throw new InternalError(`float16 data of ${bytes.length} bytes is not a multiple of 2`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bits = new Uint16Array(bytes.length / 2);
  for (let i = 0; i < bits.length; i++) bits[i] = view.getUint16(i * 2, true);
  return float16ArrayToFloat32(bits);
}

/**
 * The shortest decimal that reads back as the same float32 (what numpy prints), so JSON output is
 * readable yet loses nothing. Non-finite values have no JSON form and are written as null.
 */
export function formatFloat32(value: number): string {
  if (!Number.isFinite(value)) return 'null';
  f32Scratch[0] = value;
  const x = f32Scratch[0]!;
  // 9 significant digits always round-trip a float32; most values need fewer.
  for (let digits = 6; digits < 9; digits++) {
    const candidate = Number(x.toPrecision(digits));
    if (Math.fround(candidate) === x) return String(candidate);
  }
  return String(Number(x.toPrecision(9)));
}

/** JSON text of one row: `values` nested to `shape` (the per-row shape). */
export function rowToJson(values: Float32Array, shape: readonly number[]): string {
  if (shape.length === 0) return formatFloat32(values[0]!);
  const parts: string[] = [];
  const write = (start: number, axis: number): void => {
    const dim = shape[axis]!;
    parts.push('[');
    if (axis === shape.length - 1) {
      for (let i = 0; i < dim; i++) {
        if (i > 0) parts.push(',');
        parts.push(formatFloat32(values[start + i]!));
      }
    } else {
      const stride = elementCount(shape.slice(axis + 1));
      for (let i = 0; i < dim; i++) {
        if (i > 0) parts.push(',');
        write(start + i * stride, axis + 1);
      }
    }
    parts.push(']');
  };
  write(0, 0);
  return parts.join('');
}

/**
 * Flattens a JSON body (an array of rows, each nested to `rowShape`) into float32, checking every
 * length. null reads as NaN (the writer's form for non-finite values).
 */
export function jsonRowsToFloat32(value: unknown, rows: number, rowShape: readonly number[]): Float32Array {
  const out = new Float32Array(rows * elementCount(rowShape));
  const fullShape = [rows, ...rowShape];
  let k = 0;
  const read = (node: unknown, axis: number, path: string): void => {
    if (axis === fullShape.length) {
      if (node === null) out[k++] = NaN;
      else if (typeof node === 'number') out[k++] = node;
      else
        throw new InternalError(
          `json result ${path} must be a number, got ${node === undefined ? 'nothing' : typeof node}`,
        );
      return;
    }
    if (!Array.isArray(node) || node.length !== fullShape[axis]) {
      throw new InternalError(
        `json result ${path} must be an array of ${fullShape[axis]}, got ${Array.isArray(node) ? `an array of ${node.length}` : typeof node}`,
      );
    }
    for (let i = 0; i < node.length; i++) read(node[i], axis + 1, `${path}[${i}]`);
  };
  read(value, 0, 'body');
  return out;
}

/** Bytes of one row's worth of elements in a binary dtype. */
export function rowBytes(dtype: OutputDtype, rowElements: number): number {
  if (dtype === 'json') throw new InternalError('json rows have no fixed byte size');
  return rowElements * BYTES_PER_ELEMENT[dtype];
}
