/**
 * A bounded push queue read as an async iterator: the results subscription pushes, a `for await`
 * loop pulls. Bounded because a listener that stops reading must not make the client grow without
 * limit: past `capacity` the iterator fails with the error `onOverflow` makes.
 */
export class AsyncQueue<T> implements AsyncIterableIterator<T> {
  private readonly items: T[] = [];
  private readonly waiters: Array<{ resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void }> = [];
  private ended = false;
  private failure: unknown = undefined;
  private failed = false;

  constructor(
    private readonly capacity: number,
    private readonly onOverflow: (capacity: number) => Error,
    /** Called once when the queue stops for any reason (end, failure, or the reader's `return()`). */
    private readonly onStop: () => void = () => {},
  ) {}

  /** Items waiting to be read. */
  get size(): number {
    return this.items.length;
  }

  get stopped(): boolean {
    return this.ended || this.failed;
  }

  push(item: T): void {
    if (this.stopped) return;
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter.resolve({ value: item, done: false });
      return;
    }
    if (this.items.length >= this.capacity) {
      this.fail(this.onOverflow(this.capacity));
      return;
    }
    this.items.push(item);
  }

  /** Ends the iteration once the buffered items are read. */
  end(): void {
    if (this.stopped) return;
    this.ended = true;
    this.onStop();
    for (const w of this.waiters.splice(0)) w.resolve({ value: undefined, done: true });
  }

  /** Fails the iteration once the buffered items are read. */
  fail(error: unknown): void {
    if (this.stopped) return;
    this.failed = true;
    this.failure = error;
    this.onStop();
    for (const w of this.waiters.splice(0)) w.reject(error);
  }

  next(): Promise<IteratorResult<T>> {
    if (this.items.length > 0) return Promise.resolve({ value: this.items.shift()!, done: false });
    if (this.failed) {
      const error = this.failure;
      // Throw once; afterwards the iterator is simply done.
      this.failure = undefined;
      return error === undefined ? Promise.resolve({ value: undefined, done: true }) : Promise.reject(error);
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** The reader stopped early (`break` in a `for await`): drop what is buffered and stop. */
  return(): Promise<IteratorResult<T>> {
    this.items.length = 0;
    this.end();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}
