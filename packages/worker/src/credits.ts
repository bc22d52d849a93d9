/**
 * The worker's room, counted in jobs: a credit is taken before a job is pulled and given back when
 * the job is finished (acked, terminated or handed back). Nothing is pulled without a credit, so a
 * worker never holds more than `total` jobs, however fast the queue fills.
 *
 * Credits are handed out high priority first: when one is released and both pull loops wait, the
 * high loop gets it.
 */
import type { Priority } from '@bertq/protocol';

interface Waiter {
  priority: Priority;
  resolve: (got: boolean) => void;
  timer: NodeJS.Timeout;
}

export class Credits {
  #free: number;
  readonly #waiters: Waiter[] = [];

  constructor(readonly total: number) {
    this.#free = total;
  }

  get free(): number {
    return this.#free;
  }

  /** Jobs held or reserved: total − free. */
  get taken(): number {
    return this.total - this.#free;
  }

  /** Takes up to `n` credits at once, without waiting; returns how many it took. */
  tryTake(n: number): number {
    const taken = Math.max(0, Math.min(n, this.#free));
    this.#free -= taken;
    return taken;
  }

  /** Waits for one credit; resolves false when none came within `timeoutMs` (the caller re-checks its state). */
  acquire(priority: Priority, timeoutMs: number): Promise<boolean> {
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve(true);
    }
    return new Promise<boolean>((resolve) => {
      const waiter: Waiter = {
        priority,
        resolve,
        timer: setTimeout(() => {
          const i = this.#waiters.indexOf(waiter);
          if (i >= 0) this.#waiters.splice(i, 1);
          resolve(false);
        }, timeoutMs),
      };
      this.#waiters.push(waiter);
    });
  }

  release(n = 1): void {
    if (n <= 0) return;
    this.#free = Math.min(this.total, this.#free + n);
    while (this.#free > 0 && this.#waiters.length > 0) {
      const i = this.#waiters.findIndex((w) => w.priority === 'high');
      const [waiter] = this.#waiters.splice(i >= 0 ? i : 0, 1);
      clearTimeout(waiter!.timer);
      this.#free--;
      waiter!.resolve(true);
    }
  }

  /** Wakes every waiter with false (shutdown). */
  cancelWaiters(): void {
    for (const w of this.#waiters.splice(0)) {
      clearTimeout(w.timer);
      w.resolve(false);
    }
  }
}
