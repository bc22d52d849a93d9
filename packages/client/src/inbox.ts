/**
 * Non-blocking requests (bert-as-service's `encode(blocking=False)` + `fetch` / `fetch_all`): each
 * is tracked from send to fetch. `next()` hands them out in completion order, `takeAll()` in send
 * order once all have settled.
 */
export type Settled<T> =
  | { id: string; seq: number; ok: true; value: T }
  | { id: string; seq: number; ok: false; error: unknown };

export class NonBlockingInbox<T> {
  private seq = 0;
  /** Sent, not yet settled. */
  private outstanding = 0;
  /** Settled, not yet fetched, in completion order. */
  private readonly done: Settled<T>[] = [];
  private waiters: Array<() => void> = [];

  /** Requests sent and not fetched yet. */
  get unfetched(): number {
    return this.outstanding + this.done.length;
  }

  /** A place in send order, taken when the call starts (publishing may finish out of order). */
  reserve(): number {
    return this.seq++;
  }

  track(seq: number, id: string, promise: Promise<T>): void {
    this.outstanding++;
    promise.then(
      (value) => this.settle({ id, seq, ok: true, value }),
      (error: unknown) => this.settle({ id, seq, ok: false, error }),
    );
  }

  /** The next settled request in completion order; undefined when none is left to fetch. */
  async next(): Promise<Settled<T> | undefined> {
    for (;;) {
      const item = this.done.shift();
      if (item !== undefined) return item;
      if (this.outstanding === 0) return undefined;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** Waits for every request sent so far and returns them all in send order. */
  async takeAll(): Promise<Settled<T>[]> {
    while (this.outstanding > 0) await new Promise<void>((resolve) => this.waiters.push(resolve));
    return this.done.splice(0).sort((a, b) => a.seq - b.seq);
  }

  private settle(item: Settled<T>): void {
    this.outstanding--;
    this.done.push(item);
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
