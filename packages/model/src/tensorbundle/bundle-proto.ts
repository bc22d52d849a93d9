/**
 * The two protobuf messages of a TensorBundle index (tensorflow/core/protobuf/tensor_bundle.proto)
 * and the DataType codes they use (tensorflow/core/framework/types.proto). Field numbers are TF's.
 */
import { ProtoWriter, readFields, readPackedVarints, WIRE_LEN } from '../proto/wire.js';

/** DataType enum values bertq names; others are reported as `DT_<code>`. */
export const DT = {
  float32: 1,
  float64: 2,
  int32: 3,
  uint8: 4,
  int16: 5,
  int8: 6,
  string: 7,
  complex64: 8,
  int64: 9,
  bool: 10,
  bfloat16: 14,
  uint16: 17,
  complex128: 18,
  float16: 19,
  resource: 20,
  variant: 21,
  uint32: 22,
  uint64: 23,
} as const;
export type NamedDtype = keyof typeof DT;
/** A tensor's element type as the index declares it; `DT_<n>` for codes bertq has no name for. */
export type CheckpointDtype = NamedDtype | `DT_${number}`;

const NAME_OF_CODE = new Map<number, NamedDtype>(Object.entries(DT).map(([k, v]) => [v, k as NamedDtype]));

export function dtypeName(code: number): CheckpointDtype {
  return NAME_OF_CODE.get(code) ?? `DT_${code}`;
}

/** Bytes per element of the fixed-size types (undefined for string/variant/resource). */
export function dtypeSize(dtype: CheckpointDtype): number | undefined {
  switch (dtype) {
    case 'float64':
    case 'int64':
    case 'uint64':
    case 'complex64':
      return 8;
    case 'complex128':
      return 16;
    case 'float32':
    case 'int32':
    case 'uint32':
      return 4;
    case 'float16':
    case 'bfloat16':
    case 'int16':
    case 'uint16':
      return 2;
    case 'int8':
    case 'uint8':
    case 'bool':
      return 1;
    default:
      return undefined;
  }
}

export interface BundleHeader {
  numShards: number;
  endianness: 'little' | 'big';
  version: { producer: number; minConsumer: number; badConsumers: number[] };
}

export interface BundleEntry {
  dtype: CheckpointDtype;
  shape: number[];
  shardId: number;
  offset: number;
  size: number;
  /** Masked CRC-32C of the tensor's bytes, as stored. */
  crc32c: number;
  /** The variable was saved in slices (a partitioned variable); its bytes live under other keys. */
  partitioned: boolean;
}

function decodeVersion(buf: Uint8Array): BundleHeader['version'] {
  const v = { producer: 0, minConsumer: 0, badConsumers: [] as number[] };
  for (const f of readFields(buf)) {
    if (f.field === 1) v.producer = Number(BigInt.asIntN(32, f.int));
    else if (f.field === 2) v.minConsumer = Number(BigInt.asIntN(32, f.int));
    else if (f.field === 3) {
      if (f.wire === WIRE_LEN) for (const x of readPackedVarints(f.bytes)) v.badConsumers.push(Number(x));
      else v.badConsumers.push(Number(f.int));
    }
  }
  return v;
}

export function decodeBundleHeader(buf: Uint8Array): BundleHeader {
  const h: BundleHeader = {
    numShards: 0,
    endianness: 'little',
    version: { producer: 0, minConsumer: 0, badConsumers: [] },
  };
  for (const f of readFields(buf)) {
    if (f.field === 1) h.numShards = Number(f.int);
    else if (f.field === 2) h.endianness = f.int === 1n ? 'big' : 'little';
    else if (f.field === 3) h.version = decodeVersion(f.bytes);
  }
  return h;
}

function decodeShape(buf: Uint8Array): number[] {
  const dims: number[] = [];
  for (const f of readFields(buf)) {
    if (f.field === 2) {
      let size = 0n;
      for (const d of readFields(f.bytes)) if (d.field === 1) size = BigInt.asIntN(64, d.int);
      dims.push(Number(size));
    } else if (f.field === 3 && f.int !== 0n) {
      throw new Error('shape has unknown rank');
    }
  }
  return dims;
}

export function decodeBundleEntry(buf: Uint8Array): BundleEntry {
  const e: BundleEntry = {
    dtype: dtypeName(0),
    shape: [],
    shardId: 0,
    offset: 0,
    size: 0,
    crc32c: 0,
    partitioned: false,
  };
  for (const f of readFields(buf)) {
    switch (f.field) {
      case 1:
        e.dtype = dtypeName(Number(f.int));
        break;
      case 2:
        e.shape = decodeShape(f.bytes);
        break;
      case 3:
        e.shardId = Number(f.int);
        break;
      case 4:
        e.offset = Number(BigInt.asIntN(64, f.int));
        break;
      case 5:
        e.size = Number(BigInt.asIntN(64, f.int));
        break;
      case 6:
        e.crc32c = Number(f.int);
        break;
      case 7:
        e.partitioned = true;
        break;
    }
  }
  return e;
}

export function encodeBundleHeader(h: { numShards: number; producer: number }): Uint8Array {
  const version = new ProtoWriter().varint(1, h.producer);
  // endianness LITTLE is the enum default and, like TensorFlow, is left out.
  return new ProtoWriter().varint(1, h.numShards).message(3, version).finish();
}

export function encodeBundleEntry(e: Omit<BundleEntry, 'partitioned' | 'dtype'> & { dtypeCode: number }): Uint8Array {
  const shape = new ProtoWriter();
  for (const d of e.shape) shape.message(2, new ProtoWriter().varint(1, d));
  const w = new ProtoWriter().varint(1, e.dtypeCode).message(2, shape);
  // Zero-valued scalars are omitted (proto3), exactly as TensorFlow's own index shows.
  if (e.shardId !== 0) w.varint(3, e.shardId);
  if (e.offset !== 0) w.varint(4, e.offset);
  if (e.size !== 0) w.varint(5, e.size);
  w.fixed32(6, e.crc32c);
  return w.finish();
}
