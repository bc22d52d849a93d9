/**
 * Resumable, verified file downloads: `.incomplete` plus a Range request, size and sha256 checks
 * (where the hub gives them), rename when complete.
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ModelError } from '@bertq/protocol';
import { type RemoteFile, resolveUrl, statusError } from './listing.js';
import { sha256OfFile, sizeOf } from './cache.js';
import {
  type HubContext,
  TransientError,
  backoffMs,
  describeError,
  headerNumber,
  isTransient,
  open,
  sleep,
} from './http.js';

export interface DownloadResult {
  size: number;
  sha256: string | undefined;
}

/**
 * Fetch one file into `<dest>.incomplete`, resuming what is there, then verify it and rename it to
 * `dest`. Retries transient failures; an attempt that added bytes resets the retry count.
 */
export async function downloadFile(
  ctx: HubContext,
  file: string,
  dest: string,
  remote: RemoteFile | undefined,
  ref: string,
  onBytes: (loaded: number, total: number | undefined) => void,
): Promise<DownloadResult> {
  const tmp = `${dest}.incomplete`;
  await fsp.mkdir(path.dirname(dest), { recursive: true });
  // The commit, not the branch: every file comes from the same commit even if the branch moves meanwhile.
  const url = new URL(resolveUrl(ctx, ref, file));
  const expected: { size?: number | undefined; sha256?: string | undefined } = { ...remote };
  let failures = 0;
  let best = (await sizeOf(tmp)) ?? 0;
  let restartedAfterMismatch = false;

  for (;;) {
    const startedAt = (await sizeOf(tmp)) ?? 0;
    try {
      await fetchIntoTemp(ctx, file, url, tmp, expected, onBytes);
      const size = (await sizeOf(tmp)) ?? 0;
      if (expected.sha256) {
        const actual = await sha256OfFile(tmp);
        if (actual !== expected.sha256) {
          await fsp.rm(tmp, { force: true });
          // A resumed file may carry a bad prefix from an earlier run; one clean download settles it.
          if (startedAt > 0 && !restartedAfterMismatch) {
            restartedAfterMismatch = true;
            continue;
          }
          throw new ModelError(
            `sha256 mismatch for ${file} of model ${ctx.id}: the hub says ${expected.sha256}, the downloaded file has ${actual}; the file was deleted, try again`,
            { details: { id: ctx.id, file, expected: expected.sha256, actual } },
          );
        }
      }
      await fsp.rename(tmp, dest);
      return { size, sha256: expected.sha256 };
    } catch (err) {
      ctx.signal?.throwIfAborted();
      if (!isTransient(err)) throw err;
      const have = (await sizeOf(tmp)) ?? 0;
      if (have > best) {
        best = have;
        failures = 0;
      } else {
        failures++;
      }
      if (failures > ctx.retries) {
        throw new ModelError(
          `downloading ${file} of model ${ctx.id} from ${url.host} failed ${failures} times in a row: ${describeError(err)}`,
          {
            cause: err,
            details: { id: ctx.id, file, url: url.href },
          },
        );
      }
      await sleep(backoffMs(ctx, failures, err), ctx.signal);
    }
  }
}

/** One attempt: GET (with Range when resuming) and append to the temp file. Throws TransientError when cut short. */
export async function fetchIntoTemp(
  ctx: HubContext,
  file: string,
  url: URL,
  tmp: string,
  expected: { size?: number | undefined; sha256?: string | undefined },
  onBytes: (loaded: number, total: number | undefined) => void,
): Promise<void> {
  const existing = await sizeOf(tmp);
  let have = existing ?? 0;
  if (existing !== undefined && existing === expected.size) return; // all there; only verification is left
  if (expected.size !== undefined && have > expected.size) {
    await fsp.rm(tmp, { force: true });
    have = 0;
  }
  const { exchange, hub } = await open(ctx, url, 'GET', have > 0 ? { range: `bytes=${have}-` } : {}, () => true);
  try {
    expected.size ??= hub.linkedSize;
    expected.sha256 ??= hub.sha256;
    let start: number;
    let total: number | undefined;
    if (exchange.status === 200) {
      // A full body: either no Range was sent, or the server ignored it; start over.
      start = 0;
      total = headerNumber(exchange.headers['content-length']);
    } else if (exchange.status === 206) {
      const range = parseContentRange(exchange.headers['content-range']);
      if (!range || range.start !== have) {
        await fsp.rm(tmp, { force: true });
        throw new TransientError(
          `the server answered Range bytes=${have}- with ${String(exchange.headers['content-range'])}; restarting ${file} from zero`,
        );
      }
      start = have;
      total = range.total;
    } else if (exchange.status === 416) {
      const range = parseContentRange(exchange.headers['content-range']);
      if (range?.total !== undefined && range.total === have) {
        expected.size ??= have;
        return; // the previous attempt had everything but the rename
      }
      await fsp.rm(tmp, { force: true });
      throw new TransientError(`the server cannot resume ${file} at byte ${have}; restarting from zero`);
    } else {
      throw statusError(ctx, exchange.status, hub, file);
    }
    if (total !== undefined && expected.size !== undefined && total !== expected.size) {
      throw new ModelError(
        `${file} of model ${ctx.id}: the hub says ${expected.size} bytes but ${exchange.url.host} serves ${total}`,
        {
          details: { id: ctx.id, file, expected: expected.size, served: total },
        },
      );
    }
    expected.size ??= total;

    const handle = await fsp.open(tmp, start === 0 ? 'w' : 'a');
    let written = start;
    try {
      onBytes(written, expected.size);
      await exchange.consume(async (chunk) => {
        await handle.write(chunk);
        written += chunk.length;
        onBytes(written, expected.size);
      });
      await handle.datasync();
    } finally {
      await handle.close();
    }
    if (expected.size !== undefined && written < expected.size) {
      throw new TransientError(`the connection ended after ${written} of ${expected.size} bytes of ${file}`);
    }
    if (expected.size !== undefined && written > expected.size) {
      await fsp.rm(tmp, { force: true });
      throw new ModelError(
        `${file} of model ${ctx.id}: got ${written} bytes, ${written - expected.size} more than its size ${expected.size}`,
        {
          details: { id: ctx.id, file },
        },
      );
    }
  } finally {
    exchange.dispose();
  }
}

export function parseContentRange(
  value: string | string[] | undefined,
): { start?: number; total?: number } | undefined {
  if (typeof value !== 'string') return undefined;
  const m = /^bytes\s+(?:(\d+)-(\d+)|\*)\/(\d+|\*)$/i.exec(value.trim());
  if (!m) return undefined;
  return {
    ...(m[1] !== undefined ? { start: Number(m[1]) } : {}),
    ...(m[3] !== '*' ? { total: Number(m[3]) } : {}),
  };
}
