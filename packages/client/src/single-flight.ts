/**
 * One read at a time, shared by everyone who asks while it runs. `forget()` lets the next caller start
 * a fresh read without waiting for the one in flight, which still answers its own callers: after a
 * reconnect, a request sent while the broker was away is never answered and only runs out its
 * timeout, and nobody should queue behind it.
 */
export class SingleFlight<T> {
  #current: Promise<T> | undefined;

  /** The read in flight, or a new one started by `read`. */
  run(read: () => Promise<T>): Promise<T> {
    if (this.#current !== undefined) return this.#current;
    const flight: Promise<T> = read().finally(() => {
      // A forgotten read that ends late must not clear a newer one.
      if (this.#current === flight) this.#current = undefined;
    });
    this.#current = flight;
    return flight;
  }

  forget(): void {
    this.#current = undefined;
  }
}
