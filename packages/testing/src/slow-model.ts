/**
 * A model made slow for tests (a busy GPU, say), that still behaves like a model: it computes one
 * batch at a time, so a batch handed over while another computes waits for it, and it reports the
 * time it computed (`computeMs`), as the real runtime does. A plain `await delay(); run()` would
 * compute every batch handed over at once side by side, which no model does.
 */
export interface SlowModel<R, O> {
  run(rows: R): Promise<O & { computeMs: number }>;
  /** Batches handed over so far. */
  readonly batches: number;
  /** Batches being computed right now: 0 or 1. */
  readonly running: number;
}

export function slowModel<R, O extends object>(run: (rows: R) => Promise<O>, delayMs: number): SlowModel<R, O> {
  let model: Promise<unknown> = Promise.resolve();
  let batches = 0;
  let running = 0;
  return {
    get batches() {
      return batches;
    },
    get running() {
      return running;
    },
    run(rows) {
      batches++;
      const result = model.then(async () => {
        running++;
        const start = performance.now();
        try {
          await new Promise((resolve) => setTimeout(resolve, delayMs));
          const out = await run(rows);
          return { ...out, computeMs: performance.now() - start };
        } finally {
          running--;
        }
      });
      model = result.catch(() => undefined);
      return result;
    },
  };
}
