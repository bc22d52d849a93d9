import { setTimeout as delay } from 'node:timers/promises';
import { newRequestId } from '@bertq/protocol';

/** Small helpers for tests: every wait has a deadline; every test gets its own service name. */

export async function sleep(ms: number): Promise<void> {
  await delay(ms);
}

/** Polls `check` until it returns true, failing with `what` after `timeoutMs`. */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  everyMs = 25,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Largest absolute difference between two arrays of equal length. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** A service name no other test uses, so streams and subjects never collide. */
export function freshService(prefix = 'svc'): string {
  return `${prefix}-${newRequestId().slice(0, 12).toLowerCase()}`;
}
