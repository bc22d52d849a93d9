/**
 * Readings of the fleet (its status, its config), each taken at most once per `maxAgeMs` however many
 * scrapes, dashboards and requests ask: a status read is a $SRV.PING round plus a request to every
 * worker, and Prometheus scraping every second must not turn into that much traffic per scrape.
 */
import { toBertqError, type BertqError } from '@bertq/protocol';

/** One reading: the value, or why there is none, and when it was taken (epoch ms). */
export type Reading<T> = { ok: true; value: T; at: number } | { ok: false; error: BertqError; at: number };

export class CachedReading<T> {
  private last: Reading<T> | undefined;
  private inFlight: Promise<Reading<T>> | undefined;
  /** Bumped by invalidate(): a read begun before it is answered to its callers but not kept. */
  private generation = 0;

  constructor(
    private readonly read: () => Promise<T>,
    private readonly maxAgeMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** A reading no older than maxAgeMs; concurrent callers share one read. Never rejects. */
  get(): Promise<Reading<T>> {
    const last = this.last;
    if (last !== undefined && this.now() - last.at < this.maxAgeMs) return Promise.resolve(last);
    const generation = this.generation;
    this.inFlight ??= this.read()
      .then(
        (value): Reading<T> => ({ ok: true, value, at: this.now() }),
        (err: unknown): Reading<T> => ({ ok: false, error: toBertqError(err), at: this.now() }),
      )
      .then((reading) => {
        if (generation === this.generation) {
          this.last = reading;
          this.inFlight = undefined;
        }
        return reading;
      });
    return this.inFlight;
  }

  /**
   * Forgets the last reading and any read in flight, so the next caller reads afresh. For when the
   * connection was lost: a read sent just before (or while) it was down may wait for its whole
   * deadline, and nobody should queue behind it once the broker is back.
   */
  invalidate(): void {
    this.generation++;
    this.last = undefined;
    this.inFlight = undefined;
  }

  /** The value no older than maxAgeMs, or the error of reading it (thrown). */
  async value(): Promise<T> {
    const reading = await this.get();
    if (!reading.ok) throw reading.error;
    return reading.value;
  }

  /**
   * The last good value at once when there is one, refreshed in the background once it is older than
   * maxAgeMs: a request path never waits on a re-read (a busy fleet may answer control requests late).
   * Without a good value yet, reads (or throws the reason there is none).
   */
  async latest(): Promise<T> {
    const last = this.last;
    if (last?.ok === true) {
      if (this.now() - last.at >= this.maxAgeMs) void this.get();
      return last.value;
    }
    return this.value();
  }

  /** The latest reading, however old, without reading again (the dashboard's tick uses it). */
  peek(): Reading<T> | undefined {
    return this.last;
  }
}
