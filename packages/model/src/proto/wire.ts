/**
 * Protocol-buffers wire format, just enough of it for the two binary formats bertq speaks without
 * their libraries: TensorFlow's TensorBundle index (read and, for fixtures, written) and ONNX
 * ModelProto (written). Field numbers live with the messages that use them.
 */

export const WIRE_VARINT = 0;
export const WIRE_I64 = 1;
export const WIRE_LEN = 2;
export const WIRE_I32 = 5;

/** Appends protobuf fields to a growing list of chunks; `finish()` concatenates them once. */
export class ProtoWriter {
  private chunks: Uint8Array[] = [];
  private scratch: number[] = [];
  private size = 0;

  get length(): number {
    return this.size + this.scratch.length;
  }

  private flushScratch(): void {
    if (this.scratch.length === 0) return;
    const bytes = Uint8Array.from(this.scratch);
    this.chunks.push(bytes);
    this.size += bytes.length;
    this.scratch = [];
  }

  private rawVarint(value: number | bigint): void {
    let v = BigInt.asUintN(64, BigInt(value));
    if (v < 0x80n) {
      this.scratch.push(Number(v));
      return;
    }
    while (v >= 0x80n) {
      this.scratch.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.scratch.push(Number(v));
  }

  private tag(field: number, wire: number): void {
    this.rawVarint((field << 3) | wire);
  }

  /** int32/int64/uint64/bool/enum field (negative numbers as 10-byte two's complement, as protobuf does). */
  varint(field: number, value: number | bigint | boolean): this {
    this.tag(field, WIRE_VARINT);
    this.rawVarint(typeof value === 'boolean' ? (value ? 1 : 0) : value);
    return this;
  }

  float(field: number, value: number): this {
    this.tag(field, WIRE_I32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.scratch.push(...b);
    return this;
  }

  fixed64(field: number, value: bigint): this {
    this.tag(field, WIRE_I64);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, value), true);
    this.scratch.push(...b);
    return this;
  }

  fixed32(field: number, value: number): this {
    this.tag(field, WIRE_I32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, value >>> 0, true);
    this.scratch.push(...b);
    return this;
  }

  /** A length-delimited field; large payloads are kept by reference, not copied, until finish(). */
  bytes(field: number, value: Uint8Array): this {
    this.tag(field, WIRE_LEN);
    this.rawVarint(value.length);
    if (value.length < 64) {
      for (const b of value) this.scratch.push(b);
    } else {
      this.flushScratch();
      this.chunks.push(value);
      this.size += value.length;
    }
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  /** An embedded message. */
  message(field: number, inner: ProtoWriter): this {
    inner.flushScratch();
    this.tag(field, WIRE_LEN);
    this.rawVarint(inner.size);
    this.flushScratch();
    for (const c of inner.chunks) this.chunks.push(c);
    this.size += inner.size;
    return this;
  }

  /** Packed repeated varints (int64 dims, int32 lists). */
  packedVarints(field: number, values: ArrayLike<number | bigint>): this {
    const inner = new ProtoWriter();
    for (let i = 0; i < values.length; i++) inner.rawVarint(values[i]!);
    inner.flushScratch();
    return this.bytes(field, inner.finish());
  }

  finish(): Uint8Array {
    this.flushScratch();
    if (this.chunks.length === 1) return this.chunks[0]!;
    const out = new Uint8Array(this.size);
    let off = 0;
    for (const c of this.chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  }
}

export interface ProtoField {
  field: number;
  wire: number;
  /** For varint, i64 and i32 fields. */
  int: bigint;
  /** For length-delimited fields: a view into the input, not a copy. */
  bytes: Uint8Array;
}

/** Iterates over the fields of one message. Throws on truncated or malformed input. */
export function* readFields(buf: Uint8Array): Generator<ProtoField> {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (pos >= buf.length) throw new Error('protobuf: truncated varint');
      const b = buf[pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 63n) throw new Error('protobuf: varint too long');
    }
  };
  while (pos < buf.length) {
    const key = Number(varint());
    const field = key >>> 3;
    const wire = key & 7;
    switch (wire) {
      case WIRE_VARINT:
        yield { field, wire, int: varint(), bytes: EMPTY };
        break;
      case WIRE_I64:
        if (pos + 8 > buf.length) throw new Error('protobuf: truncated fixed64');
        yield { field, wire, int: view.getBigUint64(pos, true), bytes: buf.subarray(pos, pos + 8) };
        pos += 8;
        break;
      case WIRE_I32:
        if (pos + 4 > buf.length) throw new Error('protobuf: truncated fixed32');
        yield { field, wire, int: BigInt(view.getUint32(pos, true)), bytes: buf.subarray(pos, pos + 4) };
        pos += 4;
        break;
      case WIRE_LEN: {
        const len = Number(varint());
        if (pos + len > buf.length) throw new Error('protobuf: truncated length-delimited field');
        yield { field, wire, int: 0n, bytes: buf.subarray(pos, pos + len) };
        pos += len;
        break;
      }
      default:
        throw new Error(`protobuf: unsupported wire type ${wire}`);
    }
  }
}

/** Decodes a packed repeated varint field's payload. */
export function readPackedVarints(buf: Uint8Array): bigint[] {
  const out: bigint[] = [];
  let pos = 0;
  while (pos < buf.length) {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (pos >= buf.length) throw new Error('protobuf: truncated packed varint');
      const b = buf[pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) break;
      shift += 7n;
    }
    out.push(result);
  }
  return out;
}

const EMPTY = new Uint8Array(0);
