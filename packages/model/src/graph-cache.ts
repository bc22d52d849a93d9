/**
 * On-disk cache of built graphs, keyed by the weights' content hash and the graph options, so a
 * worker restart (or the second of eight workers) opens a ready graph instead of reading 440 MB of
 * weights and rebuilding. The content hash of a weight file is itself remembered by
 * (path, size, mtime) so it is computed once per file version, not at every start.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { GRAPH_VERSION } from './graph.js';
import type { ModelFiles } from './onnx/proto.js';
import type { GraphOptions } from './types.js';

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 4 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** sha256 of a file's contents, memoised on disk by path + size + mtime. */
export async function fileContentHash(path: string, cacheDir: string): Promise<string> {
  const abs = resolve(path);
  const st = await stat(abs);
  const memoKey = createHash('sha256').update(`${abs}\0${st.size}\0${st.mtimeMs}`).digest('hex');
  const memoPath = join(cacheDir, 'hashes', memoKey);
  try {
    return (await readFile(memoPath, 'utf8')).trim();
  } catch {
    const digest = await sha256File(abs);
    await writeAtomic(memoPath, digest);
    return digest;
  }
}

async function writeAtomic(path: string, data: string | Uint8Array | Iterable<Uint8Array>): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true });
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

/**
 * The cache key of a graph: the weights' content hash and the WHOLE options object, canonicalised.
 * No hand-kept field list: an option added to GraphOptions changes the key by itself.
 */
export function graphCacheKey(weightsHash: string, options: GraphOptions): string {
  return canonicalHash({ v: GRAPH_VERSION, weightsHash, options });
}

/** sha256 of a value's JSON with object keys sorted: equal values, equal hashes, whatever the key order. */
export function canonicalHash(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex').slice(0, 32);
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/**
 * Graphs are stored as a small model file and a data file of weights beside it (ONNX external data),
 * so ONNX Runtime maps the weights instead of reading the whole graph into memory and copying each
 * tensor out of it: 130–175 MB less per worker on BERT-base, and with shared weights
 * (`Encoder.load({ sharedWeights: true })`) one copy in memory for every worker on the machine.
 */
export class GraphCache {
  constructor(readonly dir: string) {}

  pathFor(key: string): string {
    return join(this.dir, `${key}.onnx`);
  }

  /** The data file's name, as the model file refers to it (relative: beside the model file). */
  dataLocationFor(key: string): string {
    return `${key}.onnx.data`;
  }

  /** The model file of `key`, when it and its data file are both there. */
  async get(key: string): Promise<string | undefined> {
    const p = this.pathFor(key);
    try {
      const [model] = await Promise.all([stat(p), stat(join(this.dir, this.dataLocationFor(key)))]);
      return model.size > 0 ? p : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Stores a graph, each file whole or not at all: the data file first, then the model file, so a
   * model file is never there without its data (concurrent workers may race to write the same key:
   * both are right).
   */
  async put(key: string, files: ModelFiles): Promise<string> {
    const p = this.pathFor(key);
    await writeAtomic(join(this.dir, this.dataLocationFor(key)), files.data);
    await writeAtomic(p, files.model);
    return p;
  }
}
