/**
 * Readings of the fleet (its status, its config), each taken at most once per `maxAgeMs` however many
 * scrapes, dashboards and requests ask: a status read is a $SRV.PING round plus a request to every
 * worker, and Prometheus scraping every second must not turn into that much traffic per scrape.
 */
import { toBertqError, type BertqError } from '@bertq/protocol';

/** One reading: the value, or why there is none, and when it was taken (epoch ms). */
export type Reading<T> = { ok: true; value: T; at: number } | { ok: false; error: BertqError; at: number };

export interface CachedReadingOptions {
  now?: () => number;
  /**
   * The connection's epoch (its reconnect count). A read begun in an earlier epoch is not waited for
   * and its result not kept: a request sent while the broker was away is never answered and only
   * runs out its timeout, so once the connection is back the next caller reads afresh.
   */
  epoch?: () => number;
}

export class CachedReading<T> {
  private last: Reading<T> | undefined;
  private inFlight: { epoch: number; reading: Promise<Reading<T>> } | undefined;
  private readonly now: () => number;
  private readonly epoch: () => number;

  constructor(
    private readonly read: () => Promise<T>,
    private readonly maxAgeMs: number,
    options: CachedReadingOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.epoch = options.epoch ?? (() => 0);
  }

  /** A reading no older than maxAgeMs; concurrent callers share one read. Never rejects. */
  get(): Promise<Reading<T>> {
    const last = this.last;
    if (last !== undefined && this.now() - last.at < this.maxAgeMs) return Promise.resolve(last);
    const epoch = this.epoch();
    if (this.inFlight?.epoch === epoch) return this.inFlight.reading;
    const flight = {
      epoch,
      reading: this.read()
        .then(
          (value): Reading<T> => ({ ok: true, value, at: this.now() }),
          (err: unknown): Reading<T> => ({ ok: false, error: toBertqError(err), at: this.now() }),
        )
        .then((reading) => {
          if (this.inFlight === flight) this.inFlight = undefined;
          if (flight.epoch === this.epoch()) this.last = reading;
          return reading;
        }),
    };
    this.inFlight = flight;
    return flight.reading;
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
