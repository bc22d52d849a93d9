/**
 * Requests whose clients gave up (closed, aborted, past the deadline): a worker skips their jobs,
 * those it holds and those it pulls later, without computing them. An entry names the request id and
 * its results subject; both must match, so only whoever can address the request's results (its
 * client, or a clone of it) can cancel it. Entries live as long as a job can (the stream's max_age)
 * and are bounded in number: the oldest goes first.
 */
export const MAX_CANCELLATIONS = 100_000;

export class Cancellations {
  readonly #byId = new Map<string, { reply: string; until: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly max = MAX_CANCELLATIONS,
  ) {}

  get size(): number {
    return this.#byId.size;
  }

  add(id: string, reply: string, now = Date.now()): void {
    this.#byId.delete(id); // re-inserted at the end: the order is the order of expiry
    this.#byId.set(id, { reply, until: now + this.ttlMs });
    for (const [oldest, entry] of this.#byId) {
      if (this.#byId.size <= this.max && entry.until >= now) break;
      this.#byId.delete(oldest);
    }
  }

  has(id: string, reply: string, now = Date.now()): boolean {
    const entry = this.#byId.get(id);
    if (entry === undefined) return false;
    if (entry.until < now) {
      this.#byId.delete(id);
      return false;
    }
    return entry.reply === reply;
  }
}
