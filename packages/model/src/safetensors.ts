/**
 * safetensors (Hugging Face): an 8-byte little-endian header length N, N bytes of JSON mapping each
 * tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative to the byte buffer that
 * follows the header) plus an optional "__metadata__" string map, then the raw little-endian data.
 * Large models are split into shards named by `model.safetensors.index.json` ({weight_map}).
 *
 * Tensors are read with positional reads straight into the returned array; F16/BF16/F64 become float32.
 */
import { mkdir, open, readFile, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ModelError } from '@bertq/protocol';
import type { Tensor } from './types.js';
import {
  bfloat16BytesToFloat32,
  bytesOf,
  elementCount,
  float16BytesToFloat32,
  float32BytesToFloat32,
  float64BytesToFloat32,
} from './tensorbundle/dtypes.js';
import { readExactly } from './tensorbundle/positional-read.js';

/** The safetensors library refuses headers over 100 MB; so do we, before allocating one. */
const MAX_HEADER_BYTES = 100_000_000;
/** Data starts on an 8-byte boundary, as the Python writer pads it, so every dtype is aligned. */
const DATA_ALIGNMENT = 8;

const DTYPE_SIZES: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
};

/** The dtypes `readTensor` returns as float32. */
export const SAFETENSORS_FLOAT_DTYPES: ReadonlySet<string> = new Set(['F32', 'F16', 'BF16', 'F64']);

export interface SafetensorsTensorInfo {
  name: string;
  /** As the header spells it: F32, F16, BF16, I64, ... */
  dtype: string;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
  /** The file that holds it. */
  file: string;
}

function fileError(file: string, message: string, cause?: unknown): ModelError {
  return new ModelError(`safetensors file ${file} ${message}`, { cause, details: { file } });
}

function openError(what: string, file: string, err: unknown): ModelError {
  const code = (err as NodeJS.ErrnoException).code;
  return new ModelError(
    code === 'ENOENT' ? `${what} ${file} does not exist` : `${what} ${file} cannot be read (${code ?? String(err)})`,
    { cause: err, details: { file } },
  );
}

/** One opened .safetensors file. Keeps the file open: call `close()` when done. */
export class SafetensorsFile {
  constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly metadata: Readonly<Record<string, string>>,
    readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>,
  ) {}

  private info(name: string): SafetensorsTensorInfo {
    const t = this.tensors.get(name);
    if (!t)
      throw new ModelError(`safetensors file ${this.path} has no tensor ${name}`, {
        details: { file: this.path, tensor: name },
      });
    return t;
  }

  /** A tensor's raw bytes. */
  async readBytes(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    const bytes = new Uint8Array(t.end - t.begin);
    await readExactly(this.fh, bytes, t.begin, this.path);
    return bytes;
  }

  /** A float tensor as float32. */
  async readTensor(name: string): Promise<Float32Array> {
    const t = this.info(name);
    if (!SAFETENSORS_FLOAT_DTYPES.has(t.dtype)) {
      throw new ModelError(
        `tensor ${name} in ${this.path} has dtype ${t.dtype}; bertq reads only F32, F16, BF16 and F64`,
        {
          details: { file: this.path, tensor: name, dtype: t.dtype },
        },
      );
    }
    const bytes = await this.readBytes(name);
    switch (t.dtype) {
      case 'F16':
        return float16BytesToFloat32(bytes);
      case 'BF16':
        return bfloat16BytesToFloat32(bytes);
      case 'F64':
        return float64BytesToFloat32(bytes);
      default:
        return float32BytesToFloat32(bytes);
    }
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

function parseHeader(
  file: string,
  json: unknown,
  dataStart: number,
  fileSize: number,
): {
  metadata: Record<string, string>;
  tensors: Map<string, SafetensorsTensorInfo>;
} {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw fileError(file, 'has a header that is not a JSON object');
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, SafetensorsTensorInfo>();
  const dataLength = fileSize - dataStart;
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
        throw fileError(file, 'has a __metadata__ that is not an object');
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== 'string') throw fileError(file, `has __metadata__.${k} that is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const bad = (what: string): ModelError =>
      fileError(file, `has an invalid header entry for tensor ${name}: ${what}`);
    if (typeof raw !== 'object' || raw === null) throw bad('not an object');
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (typeof dtype !== 'string') throw bad('dtype is not a string');
    const size = DTYPE_SIZES[dtype];
    if (size === undefined) throw bad(`unknown dtype ${dtype}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw bad('shape is not a list of non-negative integers');
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      throw bad('data_offsets is not [begin, end]');
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) throw bad(`data_offsets [${begin}, ${end}] end before they begin`);
    if (end > dataLength) {
      throw fileError(
        file,
        `is truncated: tensor ${name} ends at data byte ${end}, but only ${dataLength} data bytes follow the header`,
      );
    }
    const expected = elementCount(shape as number[]) * size;
    if (end - begin !== expected)
      throw bad(`shape [${shape.join(', ')}] of ${dtype} needs ${expected} bytes, data_offsets span ${end - begin}`);
    tensors.set(name, { name, dtype, shape: shape as number[], begin: dataStart + begin, end: dataStart + end, file });
  }
  return { metadata, tensors };
}

/** Opens a .safetensors file and validates its header against the file's size. */
export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw openError('safetensors file', path, err);
  }
  try {
    const fileSize = (await fh.stat()).size;
    if (fileSize < 8)
      throw fileError(
        path,
        `is ${fileSize} bytes, too short for the 8-byte header length (truncated or not safetensors)`,
      );
    const prefix = new Uint8Array(8);
    await readExactly(fh, prefix, 0, path);
    const headerLength = new DataView(prefix.buffer).getBigUint64(0, true);
    if (headerLength > BigInt(MAX_HEADER_BYTES)) {
      throw fileError(
        path,
        `declares a ${headerLength}-byte header, over the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`,
      );
    }
    const n = Number(headerLength);
    if (8 + n > fileSize)
      throw fileError(path, `is truncated: its header needs ${8 + n} bytes, the file has ${fileSize}`);
    const headerBytes = new Uint8Array(n);
    await readExactly(fh, headerBytes, 8, path);
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
    } catch (err) {
      throw fileError(path, `has a header that is not valid JSON: ${(err as Error).message}`, err);
    }
    const { metadata, tensors } = parseHeader(path, json, 8 + n, fileSize);
    return new SafetensorsFile(path, fh, metadata, tensors);
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** Several safetensors files seen as one (the shards of a model). */
export class SafetensorsSet {
  constructor(
    readonly files: readonly SafetensorsFile[],
    readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>,
  ) {}

  private fileOf(name: string): SafetensorsFile {
    const info = this.tensors.get(name);
    const f = info && this.files.find((x) => x.path === info.file);
    if (!f) {
      throw new ModelError(`no tensor ${name} in ${this.files.map((x) => x.path).join(', ')}`, {
        details: { tensor: name, files: this.files.map((x) => x.path) },
      });
    }
    return f;
  }

  readTensor(name: string): Promise<Float32Array> {
    return this.fileOf(name).readTensor(name);
  }

  async close(): Promise<void> {
    for (const f of this.files) await f.close();
  }
}

/** Opens several safetensors files as one name space; a name in two files is an error. */
export async function openSafetensorsSet(paths: readonly string[]): Promise<SafetensorsSet> {
  const files: SafetensorsFile[] = [];
  try {
    const tensors = new Map<string, SafetensorsTensorInfo>();
    for (const p of paths) {
      const f = await openSafetensors(p);
      files.push(f);
      for (const [name, info] of f.tensors) {
        const prior = tensors.get(name);
        if (prior)
          throw new ModelError(`tensor ${name} is in both ${prior.file} and ${p}`, {
            details: { file: p, tensor: name },
          });
        tensors.set(name, info);
      }
    }
    return new SafetensorsSet(files, tensors);
  } catch (err) {
    for (const f of files) await f.close();
    throw err;
  }
}

/**
 * Reads `model.safetensors.index.json` and returns the shard paths it names (in first-use order),
 * with the weight map. Does not open the shards.
 */
export async function readSafetensorsIndex(
  indexPath: string,
): Promise<{ shardPaths: string[]; weightMap: Map<string, string> }> {
  let text: string;
  try {
    text = await readFile(indexPath, 'utf8');
  } catch (err) {
    throw openError('safetensors index', indexPath, err);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ModelError(`safetensors index ${indexPath} is not valid JSON: ${(err as Error).message}`, {
      cause: err,
      details: { file: indexPath },
    });
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new ModelError(`safetensors index ${indexPath} has no "weight_map" object`, { details: { file: indexPath } });
  }
  const weightMap = new Map<string, string>();
  const shardPaths: string[] = [];
  for (const [name, shard] of Object.entries(map)) {
    // A shard name is a file beside the index; anything with a path in it is refused.
    if (typeof shard !== 'string' || shard === '' || basename(shard) !== shard) {
      throw new ModelError(
        `safetensors index ${indexPath} maps ${name} to ${JSON.stringify(shard)}, which is not a file name`,
        {
          details: { file: indexPath, tensor: name },
        },
      );
    }
    const p = join(dirname(indexPath), shard);
    weightMap.set(name, p);
    if (!shardPaths.includes(p)) shardPaths.push(p);
  }
  return { shardPaths, weightMap };
}

/** Opens every shard named by a `model.safetensors.index.json` and checks each tensor is where it says. */
export async function openSafetensorsIndex(indexPath: string): Promise<SafetensorsSet> {
  const { shardPaths, weightMap } = await readSafetensorsIndex(indexPath);
  const set = await openSafetensorsSet(shardPaths);
  for (const [name, p] of weightMap) {
    const actual = set.tensors.get(name)?.file;
    if (actual !== p) {
      await set.close();
      throw new ModelError(
        `safetensors index ${indexPath} places ${name} in ${p}, but ${actual === undefined ? 'no shard holds it' : `it is in ${actual}`}`,
        { details: { file: indexPath, tensor: name } },
      );
    }
  }
  return set;
}

/** A tensor given as raw little-endian bytes, to write dtypes other than F32. */
export interface RawSafetensor {
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

function isRaw(t: Tensor | RawSafetensor): t is RawSafetensor {
  return 'bytes' in t;
}

/** Writes one .safetensors file (tensors in name order, data 8-byte aligned), creating its folder. */
export async function writeSafetensors(
  path: string,
  tensors: ReadonlyMap<string, Tensor | RawSafetensor>,
  metadata: Readonly<Record<string, string>> = { format: 'pt' },
): Promise<{ path: string; bytes: number }> {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  const payloads: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    const dtype = isRaw(t) ? t.dtype : 'F32';
    const bytes = isRaw(t) ? t.bytes : bytesOf(t.data);
    const size = DTYPE_SIZES[dtype];
    if (size === undefined) throw new ModelError(`writeSafetensors: tensor ${name} has unknown dtype ${dtype}`);
    if (bytes.length !== elementCount(t.shape) * size) {
      throw new ModelError(
        `writeSafetensors: tensor ${name} has shape [${t.shape.join(', ')}] of ${dtype} but ${bytes.length} bytes`,
      );
    }
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    payloads.push(bytes);
    offset += bytes.length;
  }
  let headerText = JSON.stringify(header);
  const encoder = new TextEncoder();
  let headerBytes = encoder.encode(headerText);
  const pad = (DATA_ALIGNMENT - ((8 + headerBytes.length) % DATA_ALIGNMENT)) % DATA_ALIGNMENT;
  headerText += ' '.repeat(pad);
  headerBytes = encoder.encode(headerText);

  await mkdir(dirname(resolve(path)), { recursive: true });
  const fh = await open(path, 'w');
  try {
    const prefix = new Uint8Array(8);
    new DataView(prefix.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
    let pos = 0;
    for (const chunk of [prefix, headerBytes, ...payloads]) {
      let written = 0;
      while (written < chunk.length) {
        const { bytesWritten } = await fh.write(chunk, written, chunk.length - written, pos + written);
        written += bytesWritten;
      }
      pos += chunk.length;
    }
    return { path, bytes: pos };
  } finally {
    await fh.close();
  }
}

/**
 * Writes tensors as `model-0000i-of-0000n.safetensors` shards of at most `maxShardBytes` data each
 * (a tensor larger than that gets a shard of its own) plus `model.safetensors.index.json`, as
 * transformers' save_pretrained does.
 */
export async function writeShardedSafetensors(
  dir: string,
  tensors: ReadonlyMap<string, Tensor | RawSafetensor>,
  maxShardBytes: number,
): Promise<{ indexPath: string; shardPaths: string[] }> {
  const shards: Array<Map<string, Tensor | RawSafetensor>> = [];
  let current = new Map<string, Tensor | RawSafetensor>();
  let currentBytes = 0;
  for (const name of [...tensors.keys()].sort()) {
    const t = tensors.get(name)!;
    const bytes = isRaw(t) ? t.bytes.length : t.data.byteLength;
    if (current.size > 0 && currentBytes + bytes > maxShardBytes) {
      shards.push(current);
      current = new Map();
      currentBytes = 0;
    }
    current.set(name, t);
    currentBytes += bytes;
  }
  if (current.size > 0) shards.push(current);
  const n = String(shards.length).padStart(5, '0');
  const weightMap: Record<string, string> = {};
  const shardPaths: string[] = [];
  let totalSize = 0;
  for (const [i, shard] of shards.entries()) {
    const fileName = `model-${String(i + 1).padStart(5, '0')}-of-${n}.safetensors`;
    const p = join(dir, fileName);
    await writeSafetensors(p, shard);
    shardPaths.push(p);
    for (const [name, t] of shard) {
      weightMap[name] = fileName;
      totalSize += isRaw(t) ? t.bytes.length : t.data.byteLength;
    }
  }
  const indexPath = join(dir, 'model.safetensors.index.json');
  await writeFile(indexPath, JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2));
  return { indexPath, shardPaths };
}
