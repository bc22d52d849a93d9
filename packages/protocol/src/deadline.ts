/**
 * The two waits every bertq package needs, once: a promise against a deadline. Plain sleeps use
 * `node:timers/promises`; these two race a promise against a timer and always clear it, so an
 * answered wait never holds the event loop open, and nothing is left to reject unobserved (which a
 * race against an aborted `timers/promises` delay would need handling for at every call).
 */

/** `promise`, or the error `onTimeout` makes when `ms` pass first. */
export function withDeadline<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), Math.max(0, ms));
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** True when `promise` settles (either way) within `ms`; false when the time runs out first. */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(resolve, Math.max(0, ms), false);
  });
  try {
    return await Promise.race([
      promise.then(
        () => true,
        () => true,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
