/**
 * Where `bertq encode` reads sentences from: arguments, a file (one sentence a line), or stdin.
 * Files are streamed in batches, never read whole, so a million-line file needs no memory to speak of.
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';

/** Counts lines (a last line without a newline counts) at disk speed, for the progress bar's total. */
export async function countLines(path: string): Promise<number> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    let lines = 0;
    let last = 10;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      for (let i = 0; i < bytesRead; i++) if (buf[i] === 10) lines++;
      last = buf[bytesRead - 1]!;
    }
    return last === 10 ? lines : lines + 1;
  } finally {
    await fh.close();
  }
}

export interface Line {
  /** 1-based line number in the input, for error messages. */
  number: number;
  text: string;
}

/** Lines of a stream, in batches of `size`; blank lines are skipped only when asked. */
export async function* lineBatches(input: Readable, size: number, skipEmpty: boolean): AsyncGenerator<Line[]> {
  const rl = createInterface({ input, crlfDelay: Infinity });
  let batch: Line[] = [];
  let number = 0;
  for await (const text of rl) {
    number++;
    if (skipEmpty && text.trim() === '') continue;
    batch.push({ number, text });
    if (batch.length >= size) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

export function fileStream(path: string): Readable {
  return createReadStream(path, { encoding: 'utf8', highWaterMark: 1 << 20 });
}
