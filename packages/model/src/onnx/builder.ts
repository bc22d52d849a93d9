/**
 * A small graph-building layer over proto.ts: unique value names, typed constants, op helpers that
 * return their output names. Keeps graph.ts readable as the BERT computation it describes.
 */
import { DataType, serializeModel, serializeModelWithExternalData } from './proto.js';
import type { AttributeValue, DataTypeCode, ModelDef, ModelFiles, NodeDef, TensorValue, ValueInfo } from './proto.js';

export const MS_DOMAIN = 'com.microsoft';

/** What a model carries besides its graph. */
export type ModelMeta = Omit<ModelDef, 'nodes' | 'initializers' | 'inputs' | 'outputs'>;

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

export class GraphBuilder {
  private readonly nodes: NodeDef[] = [];
  private readonly initializers: TensorValue[] = [];
  private readonly inputs: ValueInfo[] = [];
  private readonly outputs: ValueInfo[] = [];
  private readonly used = new Set<string>();
  private readonly constCache = new Map<string, string>();
  private counter = 0;

  /** A fresh value name with a readable prefix. */
  name(prefix: string): string {
    let n = prefix;
    while (this.used.has(n)) n = `${prefix}_${++this.counter}`;
    this.used.add(n);
    return n;
  }

  input(name: string, dataType: DataTypeCode, shape: Array<number | string>): string {
    this.used.add(name);
    this.inputs.push({ name, dataType, shape });
    return name;
  }

  output(name: string, dataType: DataTypeCode, shape: Array<number | string>): void {
    this.outputs.push({ name, dataType, shape });
  }

  /** A weight. float16 data is passed as Uint16Array bit patterns, int8 as Int8Array. */
  initializer(
    prefix: string,
    data: Float32Array | Uint16Array | BigInt64Array | Int32Array | Int8Array,
    dims: number[],
  ): string {
    const dataType: DataTypeCode =
      data instanceof Float32Array
        ? DataType.FLOAT
        : data instanceof Uint16Array
          ? DataType.FLOAT16
          : data instanceof BigInt64Array
            ? DataType.INT64
            : data instanceof Int8Array
              ? DataType.INT8
              : DataType.INT32;
    const expected = dims.reduce((a, b) => a * b, 1);
    if (expected !== data.length) throw new Error(`initializer ${prefix}: ${data.length} values for dims [${dims}]`);
    const name = this.name(prefix);
    this.initializers.push({ name, dataType, dims, raw: bytesOf(data) });
    return name;
  }

  /** A small int64 constant, shared between uses. */
  int64(values: number[], dims: number[] = [values.length]): string {
    const key = `i64:${dims}:${values}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const name = this.initializer('const_i64', BigInt64Array.from(values.map(BigInt)), dims);
    this.constCache.set(key, name);
    return name;
  }

  /** A scalar float constant (float32, or float16 bits when `half`), shared between uses. */
  scalar(value: number, half: boolean, toHalf: (v: Float32Array) => Uint16Array): string {
    const key = `f:${half}:${value}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const f = Float32Array.of(value);
    const name = this.initializer('const_f', half ? toHalf(f) : f, []);
    this.constCache.set(key, name);
    return name;
  }

  /** Adds a node and returns its output names. */
  node(
    opType: string,
    inputs: string[],
    opts: {
      attributes?: Record<string, AttributeValue>;
      domain?: string;
      outputs?: number | string[];
      name?: string;
    } = {},
  ): string[] {
    const base = opts.name ?? opType.toLowerCase();
    const outputs = Array.isArray(opts.outputs)
      ? opts.outputs.map((o) => (o === '' ? '' : this.name(o)))
      : Array.from({ length: opts.outputs ?? 1 }, () => this.name(base));
    const node: NodeDef = { opType, name: this.name(`${base}_node`), inputs, outputs };
    if (opts.attributes) node.attributes = opts.attributes;
    if (opts.domain) node.domain = opts.domain;
    this.nodes.push(node);
    return outputs;
  }

  /** Single-output shorthand. */
  op(opType: string, inputs: string[], attributes?: Record<string, AttributeValue>, name?: string): string {
    const opts: { attributes?: Record<string, AttributeValue>; name?: string } = {};
    if (attributes) opts.attributes = attributes;
    if (name) opts.name = name;
    return this.node(opType, inputs, opts)[0]!;
  }

  /** Renames an existing value to a public output name with an Identity node. */
  expose(value: string, name: string, dataType: DataTypeCode, shape: Array<number | string>): void {
    this.used.add(name);
    this.nodes.push({ opType: 'Identity', name: this.name(`${name}_node`), inputs: [value], outputs: [name] });
    this.output(name, dataType, shape);
  }

  build(meta: ModelMeta): Uint8Array {
    return serializeModel(this.#model(meta));
  }

  /** The model with its large initializers in a data file `location`, to be written beside it. */
  buildWithExternalData(meta: ModelMeta, location: string): ModelFiles {
    return serializeModelWithExternalData(this.#model(meta), location);
  }

  #model(meta: ModelMeta): ModelDef {
    return { ...meta, nodes: this.nodes, initializers: this.initializers, inputs: this.inputs, outputs: this.outputs };
  }
}
