/**
 * Serialises ONNX ModelProto with the protobuf wire helpers. Only what bertq's graphs use: tensors
 * (raw_data), nodes with int/float/string/ints/tensor attributes, typed graph inputs and outputs.
 * Field numbers are those of onnx/onnx.proto (IR version 8).
 *
 * Ours rather than protobufjs or onnx-proto: a BERT-base graph carries ~440 MB of initializers, and
 * this writer lays their bytes into the output once, without building a message object tree or
 * copying each tensor into an intermediate buffer; the fields bertq writes are few and fixed.
 */
import { ProtoWriter } from '../proto/wire.js';

/** onnx.TensorProto.DataType */
export const DataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
} as const;
export type DataTypeCode = (typeof DataType)[keyof typeof DataType];

export type AttributeValue = number | string | number[] | { int: number } | { float: number } | TensorValue;

export interface TensorValue {
  name?: string;
  dataType: DataTypeCode;
  dims: number[];
  /** Little-endian element bytes. */
  raw: Uint8Array;
}

export interface NodeDef {
  opType: string;
  domain?: string;
  name: string;
  inputs: string[];
  outputs: string[];
  attributes?: Record<string, AttributeValue>;
}

export interface ValueInfo {
  name: string;
  dataType: DataTypeCode;
  /** Numbers for fixed dims, strings for symbolic ones ('batch', 'sequence'). */
  shape: Array<number | string>;
}

export interface ModelDef {
  graphName: string;
  nodes: NodeDef[];
  initializers: TensorValue[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  opsets: Array<{ domain: string; version: number }>;
  producerVersion: string;
  metadata?: Record<string, string>;
}

const IR_VERSION = 8;

// AttributeProto.AttributeType
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_STRING = 3;
const ATTR_TENSOR = 4;
const ATTR_INTS = 7;

// TensorProto.DataLocation
const DATA_LOCATION_EXTERNAL = 1;

/** Where a tensor's bytes are when they are kept outside the model file (ONNX external data). */
interface ExternalPlace {
  location: string;
  offset: number;
}

function tensorProto(t: TensorValue, external?: ExternalPlace): ProtoWriter {
  const w = new ProtoWriter();
  if (t.dims.length > 0) w.packedVarints(1, t.dims);
  w.varint(2, t.dataType);
  if (t.name !== undefined) w.string(8, t.name);
  if (external === undefined) return w.bytes(9, t.raw);
  const entry = (key: string, value: string) => new ProtoWriter().string(1, key).string(2, value);
  w.message(13, entry('location', external.location));
  w.message(13, entry('offset', String(external.offset)));
  w.message(13, entry('length', String(t.raw.length)));
  return w.varint(14, DATA_LOCATION_EXTERNAL);
}

function attributeProto(name: string, value: AttributeValue): ProtoWriter {
  const w = new ProtoWriter().string(1, name);
  if (typeof value === 'number') {
    // Plain numbers are ints when integral; use { float } to force a float attribute.
    if (Number.isInteger(value)) w.varint(3, value).varint(20, ATTR_INT);
    else w.float(2, value).varint(20, ATTR_FLOAT);
  } else if (typeof value === 'string') {
    w.string(4, value).varint(20, ATTR_STRING);
  } else if (Array.isArray(value)) {
    w.packedVarints(8, value).varint(20, ATTR_INTS);
  } else if ('int' in value) {
    w.varint(3, value.int).varint(20, ATTR_INT);
  } else if ('float' in value) {
    w.float(2, value.float).varint(20, ATTR_FLOAT);
  } else {
    w.message(5, tensorProto(value)).varint(20, ATTR_TENSOR);
  }
  return w;
}

function nodeProto(n: NodeDef): ProtoWriter {
  const w = new ProtoWriter();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, n.name).string(4, n.opType);
  for (const [k, v] of Object.entries(n.attributes ?? {})) w.message(5, attributeProto(k, v));
  if (n.domain) w.string(7, n.domain);
  return w;
}

function valueInfoProto(v: ValueInfo): ProtoWriter {
  const shape = new ProtoWriter();
  for (const d of v.shape) {
    const dim = new ProtoWriter();
    if (typeof d === 'number') dim.varint(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensorType = new ProtoWriter().varint(1, v.dataType).message(2, shape);
  const type = new ProtoWriter().message(1, tensorType);
  return new ProtoWriter().string(1, v.name).message(2, type);
}

/**
 * Each tensor in the data file starts at a multiple of this (64 KiB, a multiple of every page size
 * in use), so a tensor ONNX Runtime maps from the file begins on a page of its own: mmap offsets must
 * be page-aligned, and no page holds the end of one tensor and the start of the next.
 */
export const EXTERNAL_DATA_ALIGNMENT = 65_536;
/** Tensors smaller than this stay inside the model file: mapping a few bytes saves nothing. */
const EXTERNAL_DATA_MIN_BYTES = 4_096;

/** A model whose large initializers live in a data file beside it (ONNX external data). */
export interface ModelFiles {
  /** The model file: graph, small tensors, and where each large one is in the data file. */
  model: Uint8Array;
  /** The data file's contents, in order (tensors and the padding that aligns them): write them as they come. */
  data: Uint8Array[];
}

/** Serialises a model; initializer payloads are referenced, not copied, until the final concat. */
export function serializeModel(m: ModelDef): Uint8Array {
  return serialize(m, () => undefined);
}

/**
 * Serialises a model with its large initializers in a data file named `location` (which must sit
 * beside the model file). Such weights can be mapped from the file instead of copied into each
 * process: see docs/benchmarks.md, memory.bench.
 */
export function serializeModelWithExternalData(m: ModelDef, location: string): ModelFiles {
  const data: Uint8Array[] = [];
  let offset = 0;
  const model = serialize(m, (t) => {
    if (t.raw.length < EXTERNAL_DATA_MIN_BYTES) return undefined;
    const pad = (EXTERNAL_DATA_ALIGNMENT - (offset % EXTERNAL_DATA_ALIGNMENT)) % EXTERNAL_DATA_ALIGNMENT;
    if (pad > 0) data.push(new Uint8Array(pad));
    const place = { location, offset: offset + pad };
    data.push(t.raw);
    offset += pad + t.raw.length;
    return place;
  });
  return { model, data };
}

function serialize(m: ModelDef, placeOf: (t: TensorValue) => ExternalPlace | undefined): Uint8Array {
  const graph = new ProtoWriter();
  for (const n of m.nodes) graph.message(1, nodeProto(n));
  graph.string(2, m.graphName);
  for (const t of m.initializers) graph.message(5, tensorProto(t, placeOf(t)));
  for (const v of m.inputs) graph.message(11, valueInfoProto(v));
  for (const v of m.outputs) graph.message(12, valueInfoProto(v));

  const model = new ProtoWriter().varint(1, IR_VERSION).string(2, 'bertq').string(3, m.producerVersion);
  model.message(7, graph);
  for (const o of m.opsets) model.message(8, new ProtoWriter().string(1, o.domain).varint(2, o.version));
  for (const [k, v] of Object.entries(m.metadata ?? {})) model.message(14, new ProtoWriter().string(1, k).string(2, v));
  return model.finish();
}
