/**
 * How `bertq encode` writes vectors: JSON lines (one array per input line, in order), one JSON array
 * of them (what `json.load` reads), NumPy `.npy` (one float32 array [rows, dims] or [rows, tokens,
 * dims]), or CSV (one row per line).
 */
import { createWriteStream, statSync } from 'node:fs';
import { rm, rename } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Writable } from 'node:stream';
import { once } from 'node:events';
import { formatFloat32 } from '@bertq/protocol';

export const OUTPUT_FORMATS = ['jsonl', 'json', 'npy', 'csv'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** The file extensions each format is written for. */
export const FORMAT_EXTENSIONS: Record<OutputFormat, readonly string[]> = {
  jsonl: ['.jsonl', '.ndjson'],
  json: ['.json'],
  npy: ['.npy'],
  csv: ['.csv'],
};

/** The format a path's extension names; undefined for any other extension. */
export function formatFromPath(path: string | undefined): OutputFormat | undefined {
  if (!path) return undefined;
  const lower = path.toLowerCase();
  return OUTPUT_FORMATS.find((f) => FORMAT_EXTENSIONS[f].some((ext) => lower.endsWith(ext)));
}

export interface VectorWriter {
  /** `rows` vectors of `rowShape` each (e.g. [768], or [25, 768] for token-level output). */
  write(data: Float32Array, rows: number, rowShape: number[], tokens?: string[][]): Promise<void>;
  close(): Promise<void>;
}

async function put(out: Writable, chunk: string | Uint8Array): Promise<void> {
  if (!out.write(chunk)) await once(out, 'drain');
}

function nested(values: Float32Array, shape: number[]): string {
  if (shape.length <= 1) {
    let s = '[';
    for (let i = 0; i < values.length; i++) s += (i ? ',' : '') + formatFloat32(values[i]!);
    return `${s}]`;
  }
  const step = values.length / shape[0]!;
  const parts: string[] = [];
  for (let i = 0; i < shape[0]!; i++) parts.push(nested(values.subarray(i * step, (i + 1) * step), shape.slice(1)));
  return `[${parts.join(',')}]`;
}

/** Row `r` of `rows` as JSON: its nested array, or `{"tokens", "embedding"}` when tokens were asked. */
function rowJson(data: Float32Array, rows: number, r: number, rowShape: number[], tokens?: string[][]): string {
  const width = data.length / rows;
  const vec = nested(data.subarray(r * width, (r + 1) * width), rowShape);
  return tokens ? `{"tokens":${JSON.stringify(tokens[r] ?? [])},"embedding":${vec}}` : vec;
}

/** The `.npy` v1.0 header for a little-endian float32 C-order array of `shape`. */
export function npyHeader(shape: number[]): Uint8Array {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  // magic(6) + version(2) + header_len(2) + dict + padding + '\n' must be a multiple of 64
  const unpadded = 10 + dict.length + 1;
  const padded = `${dict + ' '.repeat((64 - (unpadded % 64)) % 64)}\n`;
  const out = new Uint8Array(10 + padded.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0], 0);
  new DataView(out.buffer).setUint16(8, padded.length, true);
  out.set(new TextEncoder().encode(padded), 10);
  return out;
}

/** Where vectors go: a file written whole or not at all, or stdout. */
export interface Output {
  readonly stream: Writable;
  /** The file is complete: move it into place (atomically, by rename in its own folder). */
  commit(): Promise<void>;
  /** Something failed or was interrupted: remove what was written, leave no partial file. */
  abort(): Promise<void>;
}

/** The output file's folder is missing or not a folder: a user error, said in one line. */
export class OutputError extends Error {
  override name = 'OutputError';
}

/**
 * Opens `path` for writing as a hidden temporary file beside it, renamed to `path` by commit(): a
 * reader never sees a half-written file, and an interrupted run leaves none. Without a path: stdout.
 */
export function openOutput(path: string | undefined): Output {
  if (!path) return { stream: process.stdout, commit: async () => undefined, abort: async () => undefined };
  const folder = dirname(path);
  let isFolder = false;
  try {
    isFolder = statSync(folder).isDirectory();
  } catch {
    // reported below
  }
  if (!isFolder) throw new OutputError(`cannot write ${path}: the folder ${folder} does not exist (create it first)`);
  const temp = join(folder, `.${basename(path)}.${process.pid}.partial`);
  const stream = createWriteStream(temp);
  let failure: Error | undefined;
  stream.on('error', (err) => (failure ??= err));
  const closed = () => (stream.closed ? Promise.resolve() : once(stream, 'close').then(() => undefined));
  return {
    stream,
    async commit() {
      if (!stream.writableFinished) {
        stream.end();
        await closed();
      }
      if (failure) throw new OutputError(`cannot write ${path}: ${failure.message}`);
      await rename(temp, path);
    },
    async abort() {
      stream.destroy();
      await closed().catch(() => undefined);
      await rm(temp, { force: true });
    },
  };
}

/**
 * A writer for `format`. `.npy` needs the total row count up front (its header holds the shape);
 * token-level rows must all have the same length there.
 */
export function createWriter(format: OutputFormat, out: Writable, opts: { totalRows?: number } = {}): VectorWriter {
  let headerWritten: number[] | undefined;
  let written = 0;
  const finish = async () => {
    if (out !== process.stdout) {
      out.end();
      await once(out, 'finish');
    }
  };
  switch (format) {
    case 'json': {
      // One array, streamed: "[" before the first row, "," between rows, "]" at the end.
      let first = true;
      return {
        async write(data, rows, rowShape, tokens) {
          let text = '';
          for (let r = 0; r < rows; r++) {
            text += `${first ? '[\n' : ',\n'}${rowJson(data, rows, r, rowShape, tokens)}`;
            first = false;
          }
          await put(out, text);
        },
        async close() {
          await put(out, first ? '[]\n' : '\n]\n');
          await finish();
        },
      };
    }
    case 'jsonl':
      return {
        async write(data, rows, rowShape, tokens) {
          let text = '';
          for (let r = 0; r < rows; r++) text += `${rowJson(data, rows, r, rowShape, tokens)}\n`;
          await put(out, text);
        },
        close: finish,
      };
    case 'csv':
      return {
        async write(data, rows) {
          const width = data.length / rows;
          let text = '';
          for (let r = 0; r < rows; r++) {
            const row = data.subarray(r * width, (r + 1) * width);
            let line = '';
            for (let i = 0; i < row.length; i++) line += (i ? ',' : '') + formatFloat32(row[i]!);
            text += `${line}\n`;
          }
          await put(out, text);
        },
        close: finish,
      };
    case 'npy':
      return {
        async write(data, rows, rowShape) {
          if (!headerWritten) {
            if (opts.totalRows === undefined) throw new Error('npy output needs the row count before the first row');
            await put(out, npyHeader([opts.totalRows, ...rowShape]));
            headerWritten = rowShape;
          } else if (headerWritten.join() !== rowShape.join()) {
            throw new Error(
              `rows of shape [${rowShape}] after rows of shape [${headerWritten}]: token-level output of varying length (max_seq_len NONE) does not fit one .npy array; use jsonl, or start the service with --fixed-embed-length`,
            );
          }
          written += rows;
          await put(out, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
        },
        async close() {
          if (headerWritten && opts.totalRows !== written) {
            throw new Error(`npy header says ${opts.totalRows} rows but ${written} were written`);
          }
          await finish();
        },
      };
  }
}
