/**
 * The worker's room, counted in rows: before a job is pulled, credits for the most rows it can have
 * are taken (maxBatchSize for a bulk job, priorityBatchSize for a high one); once parsed, the job
 * keeps credits for its real row count and gives the rest back; when it is finished (acked,
 * terminated or handed back) it gives those back too. Nothing is pulled without credits, so a worker
 * never holds more than `total` rows, however fast the queue fills — and it holds many small
 * interactive jobs at once (so they batch together) but only a few large ones (so other workers get
 * their share).
 *
 * Credits are handed out high priority first: when one is released and both pull loops wait, the
 * high loop gets it.
 */
import type { Priority } from '@bertq/protocol';

interface Waiter {
  priority: Priority;
  need: number;
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

  /**
   * Waits for `amount` credits (at most `total`); resolves false when they did not come within
   * `timeoutMs` (the caller re-checks its state).
   */
  acquire(priority: Priority, timeoutMs: number, amount = 1): Promise<boolean> {
    const need = Math.min(amount, this.total);
    if (this.#free >= need && this.#waiters.length === 0) {
      this.#free -= need;
      return Promise.resolve(true);
    }
    return new Promise<boolean>((resolve) => {
      const waiter: Waiter = {
        priority,
        need,
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
    // High first, then in arrival order; a waiter is served only when all it needs is free.
    while (this.#waiters.length > 0) {
      const i = this.#waiters.findIndex((w) => w.priority === 'high');
      const next = Math.max(i, 0);
      const waiter = this.#waiters[next]!;
      if (this.#free < waiter.need) break;
      this.#waiters.splice(next, 1);
      clearTimeout(waiter.timer);
      this.#free -= waiter.need;
      waiter.resolve(true);
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
