/**
 * Writes a TensorFlow checkpoint (one data shard + its index) that TensorFlow's BundleReader and
 * bertq's reader both accept: header entry under the empty key, entries in bytewise key order,
 * masked CRC-32C per tensor and per block. Used by test fixtures and benchmarks.
 */
import { mkdir, open, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ModelError } from '@bertq/protocol';
import type { Tensor } from '../types.js';
import { DT, dtypeSize, encodeBundleEntry, encodeBundleHeader } from './bundle-proto.js';
import type { NamedDtype } from './bundle-proto.js';
import { crc32c, maskCrc32c } from './crc32c.js';
import { bytesOf, elementCount } from './dtypes.js';
import { checkpointDataPath, normalizeCheckpointPrefix } from './reader.js';
import { buildTable, compareBytes } from './sstable.js';
import type { TableWriterOptions } from './sstable.js';

/** A tensor given as raw little-endian bytes, to write dtypes other than float32 (fixtures for fp16, global_step). */
export interface RawCheckpointTensor {
  dtype: NamedDtype;
  shape: number[];
  bytes: Uint8Array;
}

export interface WrittenCheckpoint {
  prefix: string;
  indexPath: string;
  dataPath: string;
  /** Bytes written to the data shard. */
  dataBytes: number;
}

/** TensorFlow's BundleWriter records producer version 1 (kTensorBundleVersion). */
const PRODUCER_VERSION = 1;

function isRaw(t: Tensor | RawCheckpointTensor): t is RawCheckpointTensor {
  return 'bytes' in t;
}

/**
 * Writes `variables` as `<prefix>.index` + `<prefix>.data-00000-of-00001`, creating the folder.
 * Float32 tensors are written from their own memory (no copy).
 */
export async function writeCheckpoint(
  prefix: string,
  variables: ReadonlyMap<string, Tensor | RawCheckpointTensor>,
  options: TableWriterOptions = {},
): Promise<WrittenCheckpoint> {
  const base = normalizeCheckpointPrefix(prefix);
  const encoder = new TextEncoder();
  const items = [...variables].map(([name, t]) => {
    if (name === '')
      throw new ModelError('writeCheckpoint: a variable name cannot be empty (the empty key holds the header)');
    const dtype: NamedDtype = isRaw(t) ? t.dtype : 'float32';
    const bytes = isRaw(t) ? t.bytes : bytesOf(t.data);
    const elementSize = dtypeSize(dtype);
    if (elementSize === undefined)
      throw new ModelError(`writeCheckpoint: variable ${name} has dtype ${dtype}, which the writer does not support`);
    const expected = elementCount(t.shape) * elementSize;
    if (bytes.length !== expected) {
      throw new ModelError(
        `writeCheckpoint: variable ${name} has shape [${t.shape.join(', ')}] (${expected} bytes of ${dtype}) but ${bytes.length} bytes of data`,
      );
    }
    return { name, key: encoder.encode(name), dtype, shape: t.shape, bytes };
  });
  items.sort((a, b) => compareBytes(a.key, b.key));

  await mkdir(dirname(base), { recursive: true });
  const dataPath = checkpointDataPath(base, 0, 1);
  const indexPath = `${base}.index`;
  const entries: Array<{ key: Uint8Array; value: Uint8Array }> = [
    { key: new Uint8Array(0), value: encodeBundleHeader({ numShards: 1, producer: PRODUCER_VERSION }) },
  ];
  const fh = await open(dataPath, 'w');
  let offset = 0;
  try {
    for (const item of items) {
      // Writes go straight from the tensor's memory, in order; write() may write less than asked.
      let written = 0;
      while (written < item.bytes.length) {
        const { bytesWritten } = await fh.write(item.bytes, written, item.bytes.length - written, offset + written);
        written += bytesWritten;
      }
      entries.push({
        key: item.key,
        value: encodeBundleEntry({
          dtypeCode: DT[item.dtype],
          shape: item.shape,
          shardId: 0,
          offset,
          size: item.bytes.length,
          crc32c: maskCrc32c(crc32c(item.bytes)),
        }),
      });
      offset += item.bytes.length;
    }
  } finally {
    await fh.close();
  }
  await writeFile(indexPath, buildTable(entries, options));
  return { prefix: base, indexPath, dataPath, dataBytes: offset };
}
