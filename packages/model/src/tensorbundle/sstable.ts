/**
 * The LevelDB table format that TensorFlow uses for a checkpoint's `.index` file
 * (tensorflow/core/lib/io/table_format.h, leveldb doc/table_format.md):
 *
 *   [data block]* [metaindex block] [index block] [footer: 48 bytes]
 *
 * A block is a run of prefix-compressed entries (varint shared, varint unshared, varint value length,
 * key suffix, value), then an array of uint32 restart offsets and their count; every block is
 * followed by a 5-byte trailer (compression type, masked CRC-32C of block + type byte). The index
 * block maps a separator key to each data block's handle (varint offset, varint size). The footer
 * holds the metaindex and index handles, zero padding to 40 bytes, and an 8-byte magic number.
 *
 * Index files are small (a few KiB for BERT, tens of KiB with optimizer slots), so the reader takes
 * the whole file as bytes and returns every entry in order.
 *
 * Ours: no maintained JavaScript package reads LevelDB tables from a buffer (the LevelDB bindings
 * are native and open databases, not single `.index` files), and reading one is ~300 lines.
 */
import { ModelError } from '@bertq/protocol';
import { crc32cExtend, maskCrc32c, unmaskCrc32c } from './crc32c.js';

export const FOOTER_LENGTH = 48;
const TABLE_MAGIC_LO = 0x8b80fb57;
const TABLE_MAGIC_HI = 0xdb477524;
const BLOCK_TRAILER_LENGTH = 5;
const NO_COMPRESSION = 0;
const SNAPPY_COMPRESSION = 1;

export interface BlockHandle {
  offset: number;
  size: number;
}

export interface TableEntry {
  key: Uint8Array;
  value: Uint8Array;
}

/** Decodes a varint (up to 2^53, enough for any file offset) at `pos`; returns value and next position. */
function readVarint(buf: Uint8Array, pos: number, what: string): [number, number] {
  let result = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= buf.length) throw new Error(`truncated varint in ${what}`);
    const b = buf[pos++]!;
    result += (b & 0x7f) * scale;
    if ((b & 0x80) === 0) return [result, pos];
    scale *= 128;
  }
  throw new Error(`varint too long in ${what}`);
}

function pushVarint(out: number[], value: number): void {
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

function readHandle(buf: Uint8Array, pos: number, what: string): [BlockHandle, number] {
  const [offset, p1] = readVarint(buf, pos, what);
  const [size, p2] = readVarint(buf, p1, what);
  return [{ offset, size }, p2];
}

/** Decodes the entries of one block's contents (trailer already stripped). */
function decodeBlock(block: Uint8Array, what: string): TableEntry[] {
  if (block.length < 4) throw new Error(`${what} is shorter than its restart count`);
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const numRestarts = view.getUint32(block.length - 4, true);
  const restartsStart = block.length - 4 - 4 * numRestarts;
  if (numRestarts === 0 || restartsStart < 0) throw new Error(`${what} has an invalid restart count ${numRestarts}`);
  const entries: TableEntry[] = [];
  let lastKey: Uint8Array = new Uint8Array(0);
  let pos = 0;
  while (pos < restartsStart) {
    let shared: number, unshared: number, valueLength: number;
    [shared, pos] = readVarint(block, pos, what);
    [unshared, pos] = readVarint(block, pos, what);
    [valueLength, pos] = readVarint(block, pos, what);
    if (shared > lastKey.length || pos + unshared + valueLength > restartsStart) {
      throw new Error(`${what} has a corrupt entry at byte ${pos}`);
    }
    const key = new Uint8Array(shared + unshared);
    key.set(lastKey.subarray(0, shared), 0);
    key.set(block.subarray(pos, pos + unshared), shared);
    pos += unshared;
    entries.push({ key, value: block.subarray(pos, pos + valueLength) });
    pos += valueLength;
    lastKey = key;
  }
  return entries;
}

/** Returns a block's contents after checking its trailer (compression type and checksum). */
function blockContents(file: Uint8Array, handle: BlockHandle, what: string): Uint8Array {
  const end = handle.offset + handle.size;
  if (end + BLOCK_TRAILER_LENGTH > file.length) {
    throw new Error(`${what} (bytes ${handle.offset}..${end}) runs past the end of the file (${file.length} bytes)`);
  }
  const type = file[end]!;
  const stored = new DataView(file.buffer, file.byteOffset + end + 1, 4).getUint32(0, true);
  const actual = crc32cExtend(crc32cExtend(0, file.subarray(handle.offset, end)), file.subarray(end, end + 1));
  if (unmaskCrc32c(stored) !== actual) throw new Error(`${what} fails its CRC-32C check (file corrupt)`);
  if (type === SNAPPY_COMPRESSION) {
    // TensorFlow's BundleWriter never compresses (tensor_bundle.cc: kNoCompression).
    throw new Error(`${what} is Snappy-compressed, which bertq does not read`);
  }
  if (type !== NO_COMPRESSION) throw new Error(`${what} has unknown compression type ${type}`);
  return file.subarray(handle.offset, end);
}

/** Reads every entry of an SSTable, in key order. Errors name `fileName`. */
export function readTable(file: Uint8Array, fileName: string): TableEntry[] {
  try {
    if (file.length < FOOTER_LENGTH) {
      throw new Error(`it is ${file.length} bytes, shorter than the ${FOOTER_LENGTH}-byte table footer`);
    }
    const footer = file.subarray(file.length - FOOTER_LENGTH);
    const fv = new DataView(footer.buffer, footer.byteOffset, FOOTER_LENGTH);
    if (fv.getUint32(40, true) !== TABLE_MAGIC_LO || fv.getUint32(44, true) !== TABLE_MAGIC_HI) {
      throw new Error('its footer lacks the table magic number (not a TensorFlow checkpoint index)');
    }
    const [, afterMeta] = readHandle(footer, 0, 'the footer');
    const [indexHandle] = readHandle(footer, afterMeta, 'the footer');
    const index = decodeBlock(blockContents(file, indexHandle, 'the index block'), 'the index block');
    const entries: TableEntry[] = [];
    for (const [i, indexEntry] of index.entries()) {
      const [handle] = readHandle(indexEntry.value, 0, 'an index entry');
      const what = `data block ${i}`;
      for (const e of decodeBlock(blockContents(file, handle, what), what)) entries.push(e);
    }
    return entries;
  } catch (err) {
    if (err instanceof ModelError) throw err;
    throw new ModelError(`checkpoint index ${fileName} is not a valid SSTable: ${(err as Error).message}`, {
      cause: err,
      details: { file: fileName },
    });
  }
}

/** Options of the table writer; the defaults are TensorFlow's (table/table_builder options). */
export interface TableWriterOptions {
  /** Target uncompressed size of a data block in bytes. Default 262144 (TensorFlow's). */
  blockSize?: number;
  /** Entries between restart points in data blocks. Default 16. */
  restartInterval?: number;
}

class BlockBuilder {
  private bytes: number[] = [];
  private restarts: number[] = [0];
  private counter = 0;
  private lastKey: Uint8Array = new Uint8Array(0);
  count = 0;

  constructor(private readonly restartInterval: number) {}

  get estimatedSize(): number {
    return this.bytes.length + 4 * this.restarts.length + 4;
  }

  add(key: Uint8Array, value: Uint8Array): void {
    let shared = 0;
    if (this.counter < this.restartInterval) {
      const max = Math.min(key.length, this.lastKey.length);
      while (shared < max && key[shared] === this.lastKey[shared]) shared++;
    } else {
      this.restarts.push(this.bytes.length);
      this.counter = 0;
    }
    pushVarint(this.bytes, shared);
    pushVarint(this.bytes, key.length - shared);
    pushVarint(this.bytes, value.length);
    for (let i = shared; i < key.length; i++) this.bytes.push(key[i]!);
    for (const b of value) this.bytes.push(b);
    this.lastKey = key;
    this.counter++;
    this.count++;
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.bytes.length + 4 * this.restarts.length + 4);
    out.set(this.bytes, 0);
    const view = new DataView(out.buffer);
    let pos = this.bytes.length;
    for (const r of this.restarts) {
      view.setUint32(pos, r, true);
      pos += 4;
    }
    view.setUint32(pos, this.restarts.length, true);
    return out;
  }
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/**
 * LevelDB's bytewise FindShortestSeparator: the shortest key k with start <= k < limit, made by
 * bumping the first differing byte of `start`. Keeping index keys short is what TensorFlow does, and
 * doing the same makes our index byte-identical to TensorFlow's for the same entries.
 */
function shortestSeparator(start: Uint8Array, limit: Uint8Array): Uint8Array {
  const n = Math.min(start.length, limit.length);
  let diff = 0;
  while (diff < n && start[diff] === limit[diff]) diff++;
  if (diff < n) {
    const byte = start[diff]!;
    if (byte < 0xff && byte + 1 < limit[diff]!) {
      const out = start.slice(0, diff + 1);
      out[diff] = byte + 1;
      return out;
    }
  }
  return start;
}

/** LevelDB's bytewise FindShortSuccessor: the shortest key >= `key` (first non-0xff byte bumped). */
function shortSuccessor(key: Uint8Array): Uint8Array {
  for (let i = 0; i < key.length; i++) {
    if (key[i] !== 0xff) {
      const out = key.slice(0, i + 1);
      out[i] = key[i]! + 1;
      return out;
    }
  }
  return key;
}

/**
 * Builds an uncompressed SSTable from entries, which must be in strictly increasing bytewise key
 * order (the table's comparator), the way LevelDB's TableBuilder lays it out.
 */
export function buildTable(entries: readonly TableEntry[], options: TableWriterOptions = {}): Uint8Array {
  const blockSize = options.blockSize ?? 262144;
  const restartInterval = options.restartInterval ?? 16;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  const writeBlock = (contents: Uint8Array): BlockHandle => {
    const trailer = new Uint8Array(BLOCK_TRAILER_LENGTH);
    trailer[0] = NO_COMPRESSION;
    const crc = crc32cExtend(crc32cExtend(0, contents), trailer.subarray(0, 1));
    new DataView(trailer.buffer).setUint32(1, maskCrc32c(crc), true);
    const handle = { offset, size: contents.length };
    chunks.push(contents, trailer);
    offset += contents.length + BLOCK_TRAILER_LENGTH;
    return handle;
  };
  const encodeHandle = (h: BlockHandle): Uint8Array => {
    const out: number[] = [];
    pushVarint(out, h.offset);
    pushVarint(out, h.size);
    return Uint8Array.from(out);
  };

  // LevelDB uses restart interval 1 in index blocks so a seek can binary-search every key.
  const index = new BlockBuilder(1);
  let block = new BlockBuilder(restartInterval);
  let lastKey: Uint8Array | undefined;
  // A finished block's index entry waits for the next key, so its separator can be shortened.
  let pendingHandle: BlockHandle | undefined;
  const flush = (): void => {
    if (block.count === 0) return;
    pendingHandle = writeBlock(block.finish());
    block = new BlockBuilder(restartInterval);
  };
  for (const { key, value } of entries) {
    if (lastKey !== undefined && compareBytes(lastKey, key) >= 0) {
      throw new Error('buildTable: keys must be unique and in increasing bytewise order');
    }
    if (pendingHandle && lastKey) {
      index.add(shortestSeparator(lastKey, key), encodeHandle(pendingHandle));
      pendingHandle = undefined;
    }
    block.add(key, value);
    lastKey = key;
    if (block.estimatedSize >= blockSize) flush();
  }
  flush();
  if (pendingHandle && lastKey) index.add(shortSuccessor(lastKey), encodeHandle(pendingHandle));
  const metaindexHandle = writeBlock(new BlockBuilder(restartInterval).finish());
  const indexHandle = writeBlock(index.finish());

  const footer = new Uint8Array(FOOTER_LENGTH);
  const handles = [...encodeHandle(metaindexHandle), ...encodeHandle(indexHandle)];
  footer.set(handles, 0);
  const fv = new DataView(footer.buffer);
  fv.setUint32(40, TABLE_MAGIC_LO, true);
  fv.setUint32(44, TABLE_MAGIC_HI, true);
  chunks.push(footer);
  offset += FOOTER_LENGTH;

  const out = new Uint8Array(offset);
  let pos = 0;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.length;
  }
  return out;
}

export { compareBytes };
