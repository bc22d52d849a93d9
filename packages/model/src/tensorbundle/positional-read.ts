import type { FileHandle } from 'node:fs/promises';
import { ModelError } from '@bertq/protocol';

/**
 * Fills `target` from `position` in the file with positional reads (no stream, no intermediate
 * buffer): a tensor lands directly in the memory that backs its Float32Array. `fileName` is named
 * when the file ends early.
 */
export async function readExactly(
  fh: FileHandle,
  target: Uint8Array,
  position: number,
  fileName: string,
): Promise<void> {
  // A single read() is capped near 2 GiB by libuv; read in chunks well below that.
  const CHUNK = 1 << 30;
  let done = 0;
  while (done < target.length) {
    const want = Math.min(CHUNK, target.length - done);
    const { bytesRead } = await fh.read(target, done, want, position + done);
    if (bytesRead === 0) {
      throw new ModelError(
        `${fileName} ends at byte ${position + done}, but ${target.length - done} more bytes were expected from there (file truncated?)`,
        { details: { file: fileName } },
      );
    }
    done += bytesRead;
  }
}
