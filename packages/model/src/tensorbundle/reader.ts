/**
 * Reads a TensorFlow checkpoint (TensorBundle V2: `<prefix>.index` + `<prefix>.data-NNNNN-of-MMMMM`)
 * without TensorFlow. The index is an SSTable whose empty key holds the BundleHeaderProto and whose
 * other keys are variable names mapped to BundleEntryProto (dtype, shape, shard, offset, size, crc).
 * Tensor bytes are read with positional reads straight into the array that is returned, and every
 * tensor's CRC-32C is checked, as TensorFlow's BundleReader does.
 */
import { open, readFile, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { ModelError } from '@bertq/protocol';
import { decodeBundleEntry, decodeBundleHeader, dtypeSize } from './bundle-proto.js';
import type { BundleEntry, BundleHeader, CheckpointDtype } from './bundle-proto.js';
import { crc32c, unmaskCrc32c } from './crc32c.js';
import {
  bfloat16BytesToFloat32,
  elementCount,
  float16BytesToFloat32,
  float32BytesToFloat32,
  float64BytesToFloat32,
} from './dtypes.js';
import { readExactly } from './positional-read.js';
import { readTable } from './sstable.js';

/** One variable of a checkpoint, as its index describes it. */
export interface CheckpointEntry extends BundleEntry {
  name: string;
}

export type CheckpointHeader = BundleHeader;

/** The dtypes `readTensor` converts to float32. */
export const FLOAT_DTYPES: ReadonlySet<CheckpointDtype> = new Set(['float32', 'float16', 'bfloat16', 'float64']);

/** The newest TensorBundle format version this reader understands (TensorFlow's kTensorBundleVersion). */
const BUNDLE_VERSION = 1;

/** `<prefix>.data-00000-of-00001`, TensorFlow's shard file name (util/tensor_bundle/naming.cc). */
export function checkpointDataPath(prefix: string, shard: number, numShards: number): string {
  return `${prefix}.data-${String(shard).padStart(5, '0')}-of-${String(numShards).padStart(5, '0')}`;
}

/** Accepts a prefix, or a path to its `.index` or one of its data files, and returns the prefix. */
export function normalizeCheckpointPrefix(path: string): string {
  return path.replace(/\.index$/, '').replace(/\.data-\d{5}-of-\d{5}$/, '');
}

export interface CheckpointSummary {
  /** Variables listed in the index (the header entry not counted). */
  variableCount: number;
  /** Elements of all float variables (what a model card calls parameters). */
  parameterCount: number;
  /** Per shard: the bytes its data file must hold (end of the last tensor in it). */
  shardBytes: number[];
  /** Variables that are not float tensors (global_step and the like); the weight loader ignores them. */
  nonFloatVariables: string[];
}

/** An opened checkpoint. Holds open data files once read from: call `close()` when done. */
export class Checkpoint {
  private readonly handles = new Map<number, Promise<{ fh: FileHandle; size: number }>>();

  constructor(
    readonly prefix: string,
    readonly indexPath: string,
    readonly header: CheckpointHeader,
    readonly entries: ReadonlyMap<string, CheckpointEntry>,
  ) {}

  /** Data file path of each shard, in shard order. */
  get dataFiles(): string[] {
    return Array.from({ length: this.header.numShards }, (_, i) =>
      checkpointDataPath(this.prefix, i, this.header.numShards),
    );
  }

  summary(): CheckpointSummary {
    const shardBytes = new Array<number>(this.header.numShards).fill(0);
    let parameterCount = 0;
    const nonFloatVariables: string[] = [];
    for (const e of this.entries.values()) {
      shardBytes[e.shardId] = Math.max(shardBytes[e.shardId] ?? 0, e.offset + e.size);
      if (FLOAT_DTYPES.has(e.dtype)) parameterCount += elementCount(e.shape);
      else nonFloatVariables.push(e.name);
    }
    return { variableCount: this.entries.size, parameterCount, shardBytes, nonFloatVariables };
  }

  /** Checks that every data shard exists and is long enough for the tensors the index places in it. */
  async verifyDataFiles(): Promise<void> {
    const { shardBytes } = this.summary();
    for (const [shard, path] of this.dataFiles.entries()) {
      const size = await this.statShard(shard, path);
      if (size < shardBytes[shard]!) {
        throw new ModelError(
          `checkpoint data file ${path} is truncated: it has ${size} bytes, but index ${this.indexPath} places tensors up to byte ${shardBytes[shard]}`,
          { details: { file: path, size, expected: shardBytes[shard] } },
        );
      }
    }
  }

  private async statShard(shard: number, path: string): Promise<number> {
    try {
      return (await stat(path)).size;
    } catch (err) {
      throw this.missingShardError(shard, path, err);
    }
  }

  private missingShardError(shard: number, path: string, cause: unknown): ModelError {
    const inShard = [...this.entries.values()].filter((e) => e.shardId === shard).length;
    const code = (cause as NodeJS.ErrnoException).code;
    const what = code === 'ENOENT' ? 'is missing' : `cannot be read (${code ?? String(cause)})`;
    return new ModelError(
      `checkpoint data file ${path} ${what}: index ${this.indexPath} lists ${inShard} variables stored in it`,
      { cause, details: { file: path } },
    );
  }

  private shardHandle(shard: number): Promise<{ fh: FileHandle; size: number }> {
    let h = this.handles.get(shard);
    if (!h) {
      const path = checkpointDataPath(this.prefix, shard, this.header.numShards);
      h = (async () => {
        let fh: FileHandle;
        try {
          fh = await open(path, 'r');
        } catch (err) {
          throw this.missingShardError(shard, path, err);
        }
        return { fh, size: (await fh.stat()).size };
      })();
      // A failed open is not cached, so a file that appears later can still be read.
      h.catch(() => this.handles.delete(shard));
      this.handles.set(shard, h);
    }
    return h;
  }

  private entry(name: string): CheckpointEntry {
    const e = this.entries.get(name);
    if (!e) {
      throw new ModelError(`checkpoint ${this.indexPath} has no variable ${name}`, {
        details: { file: this.indexPath, variable: name },
      });
    }
    return e;
  }

  /** The raw bytes of a variable, CRC-checked. */
  async readBytes(name: string): Promise<Uint8Array> {
    const e = this.entry(name);
    const path = checkpointDataPath(this.prefix, e.shardId, this.header.numShards);
    if (e.partitioned) {
      throw new ModelError(
        `variable ${name} in ${this.indexPath} was saved partitioned (in slices), which bertq does not read`,
        {
          details: { file: this.indexPath, variable: name },
        },
      );
    }
    const { fh, size } = await this.shardHandle(e.shardId);
    if (e.offset + e.size > size) {
      throw new ModelError(
        `checkpoint data file ${path} is truncated: variable ${name} needs bytes ${e.offset}..${e.offset + e.size}, the file has ${size}`,
        { details: { file: path, variable: name } },
      );
    }
    // A fresh ArrayBuffer per tensor: 4-byte aligned, so float32 data becomes a view with no copy.
    const bytes = new Uint8Array(e.size);
    await readExactly(fh, bytes, e.offset, path);
    const actual = crc32c(bytes);
    if (actual !== unmaskCrc32c(e.crc32c)) {
      throw new ModelError(
        `variable ${name} in ${path} fails its CRC-32C check (stored ${unmaskCrc32c(e.crc32c).toString(16)}, computed ${actual.toString(16)}): the file is corrupt`,
        { details: { file: path, variable: name } },
      );
    }
    return bytes;
  }

  /** A float variable as float32 (float16, bfloat16 and float64 are converted). */
  async readTensor(name: string): Promise<Float32Array> {
    const e = this.entry(name);
    if (!FLOAT_DTYPES.has(e.dtype)) {
      throw new ModelError(
        `variable ${name} in ${this.indexPath} has dtype ${e.dtype}; bertq reads only float tensors`,
        {
          details: { file: this.indexPath, variable: name, dtype: e.dtype },
        },
      );
    }
    const expected = elementCount(e.shape) * dtypeSize(e.dtype)!;
    if (expected !== e.size) {
      throw new ModelError(
        `variable ${name} in ${this.indexPath} has shape [${e.shape.join(', ')}] of ${e.dtype} (${expected} bytes) but ${e.size} bytes stored`,
        { details: { file: this.indexPath, variable: name } },
      );
    }
    const bytes = await this.readBytes(name);
    switch (e.dtype) {
      case 'float16':
        return float16BytesToFloat32(bytes);
      case 'bfloat16':
        return bfloat16BytesToFloat32(bytes);
      case 'float64':
        return float64BytesToFloat32(bytes);
      default:
        return float32BytesToFloat32(bytes);
    }
  }

  /** Closes the data files opened so far. The checkpoint may still be read afterwards (files reopen). */
  async close(): Promise<void> {
    const pending = [...this.handles.values()];
    this.handles.clear();
    for (const h of pending) {
      try {
        await (await h).fh.close();
      } catch {
        // A shard that never opened has nothing to close.
      }
    }
  }
}

/**
 * Opens a checkpoint by prefix (`/m/bert_model.ckpt`; a path ending in `.index` is accepted too).
 * Reads and validates only the index: a folder that lacks its data files still lists its variables,
 * and the first read (or `verifyDataFiles()`) names the missing file.
 */
export async function openCheckpoint(prefixOrIndexPath: string): Promise<Checkpoint> {
  const prefix = normalizeCheckpointPrefix(prefixOrIndexPath);
  const indexPath = `${prefix}.index`;
  let file: Uint8Array;
  try {
    file = await readFile(indexPath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ModelError(
      code === 'ENOENT'
        ? `checkpoint index ${indexPath} does not exist`
        : `checkpoint index ${indexPath} cannot be read (${code ?? String(err)})`,
      { cause: err, details: { file: indexPath } },
    );
  }
  const table = readTable(file, indexPath);
  const bad = (msg: string, cause?: unknown): ModelError =>
    new ModelError(`checkpoint index ${indexPath} ${msg}`, { cause, details: { file: indexPath } });
  if (table.length === 0 || table[0]!.key.length !== 0) throw bad('has no header entry (the empty key)');

  let header: CheckpointHeader;
  try {
    header = decodeBundleHeader(table[0]!.value);
  } catch (err) {
    throw bad(`has an unparseable header: ${(err as Error).message}`, err);
  }
  if (header.numShards < 1) throw bad(`declares ${header.numShards} data shards`);
  if (header.endianness !== 'little') throw bad('was written on a big-endian machine, which bertq does not read');
  if (header.version.minConsumer > BUNDLE_VERSION || header.version.badConsumers.includes(BUNDLE_VERSION)) {
    throw bad(`needs a newer reader (bundle format min_consumer ${header.version.minConsumer})`);
  }

  const decoder = new TextDecoder('utf-8', { fatal: true });
  const entries = new Map<string, CheckpointEntry>();
  for (const { key, value } of table.slice(1)) {
    let name = '';
    try {
      name = decoder.decode(key);
      const e = decodeBundleEntry(value);
      if (e.shardId < 0 || e.shardId >= header.numShards) throw new Error(`shard ${e.shardId} of ${header.numShards}`);
      if (e.offset < 0 || e.size < 0 || e.shape.some((d) => d < 0))
        throw new Error('negative offset, size or dimension');
      entries.set(name, { name, ...e });
    } catch (err) {
      throw bad(`has an invalid entry for ${name || 'a variable'}: ${(err as Error).message}`, err);
    }
  }
  return new Checkpoint(prefix, indexPath, header, entries);
}

/** One line per variable plus totals: what `bertq` prints for a checkpoint, without reading its data. */
export async function listCheckpointVariables(
  prefixOrIndexPath: string,
): Promise<CheckpointSummary & { variables: Array<{ name: string; dtype: CheckpointDtype; shape: number[] }> }> {
  const ckpt = await openCheckpoint(prefixOrIndexPath);
  const variables = [...ckpt.entries.values()].map(({ name, dtype, shape }) => ({ name, dtype, shape }));
  return { ...ckpt.summary(), variables };
}
