/**
 * Calls made while the batch API is busy ride together in the next call: continuous batching for a
 * batch API. A worker tokenizes each job as it arrives; with many 1-row jobs, one native call per row
 * cost ~77 µs of fixed overhead each (13k rows/s in 1-row calls against 26k rows/s in big ones, on one
 * core). Here up to `maxInFlight` calls run at once (the native library runs them on libuv's pool of
 * 4 threads); a call that finds them all busy waits, and the waiting calls go out merged, up to
 * `maxItems` inputs per call, so big jobs still tokenize side by side while small ones pile up
 * (merged into one 3,840-row call, a 4,096-row request lost 20% of its throughput: its first batches
 * waited for the last job's rows). A call runs beside others only with enough inputs to pay for its
 * own fixed cost (minParallelItems): with one client's 64 1-row jobs in flight, four small native
 * calls at once cost the worker 0.17-0.25 ms of CPU per request against 0.16 merged behind one
 * (pipeline.bench). The first call never waits; each caller gets back exactly its own slice.
 */
export interface CoalescerOptions {
  /** Calls of `run` at once. Default 4. */
  maxInFlight?: number;
  /** Inputs one merged call gathers (a single bigger call still goes whole). Default 256. */
  maxItems?: number;
  /**
   * Inputs a call needs to run beside one already in flight (the first call always goes at once).
   * A native call costs ~77 µs whatever it carries: small jobs (1-row queries) ride together behind
   * the running call instead of paying that again side by side, while big jobs still tokenize in
   * parallel. Default 64.
   */
  minParallelItems?: number;
}

interface Waiting<I, O> {
  items: readonly I[];
  resolve: (out: O[]) => void;
  reject: (err: unknown) => void;
}

export class Coalescer<I, O> {
  #inFlight = 0;
  #waiting: Array<Waiting<I, O>> = [];
  readonly #maxInFlight: number;
  readonly #maxItems: number;
  readonly #minParallelItems: number;
  /** Inputs of the waiting calls. */
  #waitingItems = 0;

  /** `run` answers one output per input, in order. */
  constructor(
    private readonly run: (items: readonly I[]) => Promise<readonly O[]>,
    options: CoalescerOptions = {},
  ) {
    this.#maxInFlight = Math.max(1, options.maxInFlight ?? 4);
    this.#maxItems = Math.max(1, options.maxItems ?? 256);
    this.#minParallelItems = Math.max(1, options.minParallelItems ?? 64);
  }

  call(items: readonly I[]): Promise<O[]> {
    return new Promise<O[]>((resolve, reject) => {
      this.#waiting.push({ items, resolve, reject });
      this.#waitingItems += items.length;
      this.#pump();
    });
  }

  /** Starts merged calls while slots are free and calls wait. */
  #pump(): void {
    while (
      this.#inFlight < this.#maxInFlight &&
      this.#waiting.length > 0 &&
      (this.#inFlight === 0 || this.#waitingItems >= this.#minParallelItems)
    ) {
      const calls: Array<Waiting<I, O>> = [this.#waiting.shift()!];
      let size = calls[0]!.items.length;
      while (this.#waiting.length > 0 && size + this.#waiting[0]!.items.length <= this.#maxItems) {
        const next = this.#waiting.shift()!;
        size += next.items.length;
        calls.push(next);
      }
      this.#waitingItems -= size;
      this.#inFlight++;
      void this.#runMerged(calls).finally(() => {
        this.#inFlight--;
        this.#pump();
      });
    }
  }

  async #runMerged(calls: Array<Waiting<I, O>>): Promise<void> {
    // One call goes as it is (no copy of its inputs on the hot path); several are joined.
    const merged = calls.length === 1 ? calls[0]!.items : calls.flatMap((c) => c.items);
    let out: readonly O[];
    try {
      out = await this.run(merged);
      if (out.length !== merged.length) throw new Error(`${out.length} answers for ${merged.length} inputs`);
    } catch (err) {
      for (const c of calls) c.reject(err);
      return;
    }
    let at = 0;
    for (const c of calls) {
      c.resolve(out.slice(at, at + c.items.length));
      at += c.items.length;
    }
  }
}
