/**
 * The pure batcher: rows go in, padded batches come out. No I/O, no NATS, no model; time comes from
 * an injected clock, so every decision here is reproducible in a unit test.
 *
 * Modelled on text-embeddings-inference's router queue (a batch closes at a padded token budget or a
 * row cap; the entry that would overflow stays at the head; an entry alone over the budget still runs),
 * with bertq's additions: two strict priority classes, shortest-first ordering inside a class so that
 * padding stays small, aging so that long rows never starve, deadlines, a bounded queue, and a fair
 * share: a client with only a few rows queued (a 1-row query) goes ahead of a client with many (a
 * flood of small requests), in a short batch, so one busy client does not make every other one wait
 * for its backlog.
 *
 * Cost: every queued entry sits in two binary heaps (by length, by deadline) and one arrival-ordered
 * list; removal is lazy (a flag) with compaction once dead slots outnumber live ones. `push` of k rows is
 * O(k log n) and `nextBatch` is O((taken + dropped) log n) amortized, so a 10k-row queue costs no more
 * per batch than a small one.
 */
import { InternalError, BadRequestError, OverloadedError } from '@bertq/protocol';
import { MinHeap } from './min-heap.js';

export type Priority = 'high' | 'bulk';

/** One row (one sentence) of a job, as the pull loop hands it to the batcher. */
export interface BatcherInput<J> {
  /** The job the row belongs to; opaque to the batcher (the worker keeps its message, reply subject…). */
  readonly job: J;
  /** Row index inside the job. A job's rows may end up in different batches. */
  readonly row: number;
  /** Sequence length including special tokens ([CLS], [SEP]): what the row costs once padded. */
  readonly tokens: number;
  readonly priority: Priority;
  /** Epoch ms after which the row is not worth computing any more; `Infinity` for none. */
  readonly deadline: number;
  /**
   * Who sent the row (the worker uses the job's reply subject: one per client identity, and per
   * tenant). Rows of a principal with at most BatcherOptions.fairShareRows queued in the class go
   * first. Undefined: no fair share for the row.
   */
  readonly principal?: string;
}

/** A row while it is queued, stamped with the clock at push time. */
export interface QueuedEntry<J> extends BatcherInput<J> {
  readonly enqueuedAt: number;
}

export interface Batch<J> {
  /** The rows in the order they were chosen (aged rows first, then shortest-first). */
  readonly entries: readonly QueuedEntry<J>[];
  /** Longest row: the sequence length the whole batch is padded to. */
  readonly maxTokens: number;
  /** Sum of the rows' own lengths. */
  readonly realTokens: number;
  /** maxTokens × rows: what the model actually computes. */
  readonly paddedTokens: number;
}

export interface NextBatch<J> {
  /** The batch to run, or undefined when nothing is queued. */
  readonly batch: Batch<J> | undefined;
  /** Rows dropped because their deadline passed: the worker answers each with a TIMEOUT error. */
  readonly expired: readonly QueuedEntry<J>[];
}

export interface BatcherOptions {
  /**
   * Padded token budget of one batch (longest row × rows). Bounds the model's activation memory;
   * larger batches raise throughput until the device saturates. A row alone over it still runs alone.
   */
  maxBatchTokens: number;
  /** Row cap of one batch, whatever the budget allows (the graph's largest dynamic batch). */
  maxBatchSize: number;
  /**
   * A row queued longer than this is served before shorter rows of its class (oldest first), trading
   * padding for latency so that long rows never starve behind a stream of short ones.
   */
  maxWaitMs: number;
  /** Bound of the queue in rows: a push that would exceed it is refused whole with OVERLOADED. */
  maxQueuedRows: number;
  /** Optional bound in (unpadded) tokens, checked like maxQueuedRows. Default: unbounded. */
  maxQueuedTokens?: number;
  /** Clock in epoch ms; injected so tests control time. Default Date.now. */
  now?: () => number;
  /**
   * A principal with at most this many rows queued in a class is light: its rows are served before
   * the class's aged and shortest-first rows. 0 turns the fair share off. Default 16 (bert-as-service's
   * priority_batch_size: what an interactive request holds).
   */
  fairShareRows?: number;
}

export interface ClassStats {
  readonly rows: number;
  readonly tokens: number;
}

export interface BatcherStats {
  readonly queued: { readonly high: ClassStats; readonly bulk: ClassStats };
  /** Rows dropped because their deadline passed, since creation. */
  readonly dropped: number;
  readonly batches: number;
  /** Token-weighted padding efficiency over every batch formed: Σ real tokens / Σ padded tokens (1 when none). */
  readonly paddingEfficiency: number;
}

/** A queued row plus its bookkeeping; `live` turns false when it is batched or dropped (lazy removal). */
interface Slot<J> {
  readonly entry: QueuedEntry<J>;
  readonly seq: number;
  live: boolean;
}

const PRIORITIES: readonly Priority[] = ['high', 'bulk'];
/** Compaction threshold slack, so tiny queues do not rebuild on every removal. */
const COMPACT_SLACK = 64;
/** See BatcherOptions.fairShareRows. */
export const DEFAULT_FAIR_SHARE_ROWS = 16;
/** A batch that serves light principals holds at most this many fair shares of rows. */
const LIGHT_BATCH_SHARES = 4;

export class Batcher<J> {
  readonly #opts: Required<BatcherOptions>;
  readonly #lanes: Record<Priority, Lane<J>> = { high: new Lane<J>(), bulk: new Lane<J>() };
  /** Every live slot with a finite deadline, soonest first. */
  readonly #byDeadline = new MinHeap<Slot<J>>((a, b) => a.entry.deadline < b.entry.deadline);
  #liveWithDeadline = 0;
  #seq = 0;
  #dropped = 0;
  #batches = 0;
  #realTokens = 0;
  #paddedTokens = 0;

  constructor(options: BatcherOptions) {
    this.#opts = {
      ...options,
      maxQueuedTokens: options.maxQueuedTokens ?? Number.POSITIVE_INFINITY,
      now: options.now ?? Date.now,
      fairShareRows: options.fairShareRows ?? DEFAULT_FAIR_SHARE_ROWS,
    };
    for (const name of ['maxBatchTokens', 'maxBatchSize', 'maxQueuedRows'] as const) {
      const value = this.#opts[name];
      if (!Number.isSafeInteger(value) || value < 1) {
        throw new BadRequestError(`batcher option ${name} must be a positive integer, got ${value}`);
      }
    }
    const { maxWaitMs, maxQueuedTokens } = this.#opts;
    if (!(maxWaitMs >= 0)) throw new BadRequestError(`batcher option maxWaitMs must be >= 0, got ${maxWaitMs}`);
    if (!(maxQueuedTokens >= 1)) {
      throw new BadRequestError(`batcher option maxQueuedTokens must be >= 1, got ${maxQueuedTokens}`);
    }
  }

  /**
   * Changes the aging threshold (see BatcherOptions.maxWaitMs) for the batches formed from now on:
   * a worker scales it with its model's batch time, so "waited too long" means "waited several
   * batches" on a slow model as on a fast one.
   */
  setMaxWaitMs(ms: number): void {
    if (!(ms >= 0)) throw new BadRequestError(`batcher option maxWaitMs must be >= 0, got ${ms}`);
    this.#opts.maxWaitMs = ms;
  }

  /** Rows queued in both classes. */
  get size(): number {
    return this.#lanes.high.rows + this.#lanes.bulk.rows;
  }

  /**
   * How many more rows a push may bring: the pull loop asks JetStream for no more than this. 0 also
   * when the token bound is already reached (a row count cannot promise tokens).
   */
  room(): number {
    if (this.#queuedTokens() >= this.#opts.maxQueuedTokens) return 0;
    return Math.max(0, this.#opts.maxQueuedRows - this.size);
  }

  /**
   * Queues rows, all or nothing. Throws OverloadedError (and queues none of them) when they would take
   * the queue over maxQueuedRows or maxQueuedTokens: throwing, because that error is exactly what the
   * worker sends back for the job. Throws InternalError for a malformed entry (a worker bug).
   */
  push(entries: readonly BatcherInput<J>[]): void {
    let tokens = 0;
    entries.forEach((e, i) => {
      if (!Number.isSafeInteger(e.tokens) || e.tokens < 1) {
        throw new InternalError(
          `batcher.push: entry ${i} (row ${e.row}) has tokens=${e.tokens}; expected a positive integer`,
        );
      }
      if (e.priority !== 'high' && e.priority !== 'bulk') {
        throw new InternalError(
          `batcher.push: entry ${i} (row ${e.row}) has priority ${String(e.priority)}; expected 'high' or 'bulk'`,
        );
      }
      if (typeof e.deadline !== 'number' || Number.isNaN(e.deadline)) {
        throw new InternalError(
          `batcher.push: entry ${i} (row ${e.row}) has deadline ${String(e.deadline)}; expected epoch ms or Infinity`,
        );
      }
      tokens += e.tokens;
    });
    const { maxQueuedRows, maxQueuedTokens } = this.#opts;
    if (this.size + entries.length > maxQueuedRows) {
      throw new OverloadedError(
        `worker queue is full: ${this.size} rows queued + ${entries.length} pushed > maxQueuedRows ${maxQueuedRows}; nothing was enqueued`,
        { details: { queuedRows: this.size, pushedRows: entries.length, maxQueuedRows } },
      );
    }
    const queuedTokens = this.#queuedTokens();
    if (queuedTokens + tokens > maxQueuedTokens) {
      throw new OverloadedError(
        `worker queue is full: ${queuedTokens} tokens queued + ${tokens} pushed > maxQueuedTokens ${maxQueuedTokens}; nothing was enqueued`,
        { details: { queuedTokens, pushedTokens: tokens, maxQueuedTokens } },
      );
    }
    const enqueuedAt = this.#opts.now();
    for (const e of entries) {
      const entry: QueuedEntry<J> = {
        job: e.job,
        row: e.row,
        tokens: e.tokens,
        priority: e.priority,
        deadline: e.deadline,
        enqueuedAt,
        ...(e.principal === undefined ? {} : { principal: e.principal }),
      };
      const slot: Slot<J> = { entry, seq: this.#seq++, live: true };
      this.#lanes[e.priority].add(slot);
      if (Number.isFinite(e.deadline)) {
        this.#byDeadline.push(slot);
        this.#liveWithDeadline++;
      }
    }
  }

  /** Drops and returns every queued row whose deadline has passed (deadline <= now). */
  expire(): QueuedEntry<J>[] {
    const now = this.#opts.now();
    const expired: QueuedEntry<J>[] = [];
    for (let top = this.#byDeadline.peek(); top !== undefined; top = this.#byDeadline.peek()) {
      if (top.live && top.entry.deadline > now) break;
      this.#byDeadline.pop();
      if (!top.live) continue;
      this.#take(top);
      expired.push(top.entry);
    }
    this.#dropped += expired.length;
    return expired;
  }

  /**
   * Drops expired rows, then forms the next batch: high before bulk, strictly; inside a class, the rows
   * of light principals first (fair share, oldest first), then rows older than maxWaitMs (oldest
   * first), then shortest first. The batch closes at the first row that would take it over
   * maxBatchTokens (padded) or maxBatchSize (4 fair shares, 64 rows by default, once it holds light
   * rows); that row stays queued at the head.
   */
  nextBatch(): NextBatch<J> {
    const expired = this.expire();
    const agedBefore = this.#opts.now() - this.#opts.maxWaitMs;
    const { maxBatchTokens, maxBatchSize } = this.#opts;
    const chosen: QueuedEntry<J>[] = [];
    let rowCap = maxBatchSize;
    let maxTokens = 0;
    let realTokens = 0;

    // Offers the head candidate; true when it joined the batch, false when the batch is closed.
    const offer = (slot: Slot<J>): boolean => {
      const longest = Math.max(maxTokens, slot.entry.tokens);
      if (chosen.length > 0 && (chosen.length >= rowCap || longest * (chosen.length + 1) > maxBatchTokens)) {
        return false;
      }
      this.#take(slot);
      chosen.push(slot.entry);
      maxTokens = longest;
      realTokens += slot.entry.tokens;
      return true;
    };

    // Fills the batch until a row does not fit (offer says false: the batch is closed).
    const fill = (): void => {
      let light = false;
      for (const priority of PRIORITIES) {
        const lane = this.#lanes[priority];
        for (const slot of lane.lightRows(this.#opts.fairShareRows)) {
          if (!offer(slot)) return;
          light = true;
        }
        // A batch that serves light clients stays short (LIGHT_BATCH_SHARES fair shares): their rows
        // come back in a quick batch rather than with a full batch of a busy client's, and the busy
        // client still fills the rest of it, so its backlog is slowed, never starved.
        if (light)
          rowCap = Math.min(maxBatchSize, Math.max(chosen.length, LIGHT_BATCH_SHARES * this.#opts.fairShareRows));
        for (let slot = lane.oldest(); slot !== undefined && slot.entry.enqueuedAt < agedBefore; slot = lane.oldest()) {
          if (!offer(slot)) return;
        }
        for (let slot = lane.shortest(); slot !== undefined; slot = lane.shortest()) {
          if (!offer(slot)) return;
        }
      }
    };
    fill();

    if (chosen.length === 0) return { batch: undefined, expired };
    const paddedTokens = maxTokens * chosen.length;
    this.#batches++;
    this.#realTokens += realTokens;
    this.#paddedTokens += paddedTokens;
    return { batch: { entries: chosen, maxTokens, realTokens, paddedTokens }, expired };
  }

  /** Removes and returns every queued row (e.g. to hand jobs back on shutdown), oldest first per class. */
  clear(): QueuedEntry<J>[] {
    const all: QueuedEntry<J>[] = [];
    for (const priority of PRIORITIES) {
      const lane = this.#lanes[priority];
      for (let slot = lane.oldest(); slot !== undefined; slot = lane.oldest()) {
        this.#take(slot);
        all.push(slot.entry);
      }
    }
    return all;
  }

  stats(): BatcherStats {
    const { high, bulk } = this.#lanes;
    return {
      queued: { high: { rows: high.rows, tokens: high.tokens }, bulk: { rows: bulk.rows, tokens: bulk.tokens } },
      dropped: this.#dropped,
      batches: this.#batches,
      paddingEfficiency: this.#paddedTokens === 0 ? 1 : this.#realTokens / this.#paddedTokens,
    };
  }

  #queuedTokens(): number {
    return this.#lanes.high.tokens + this.#lanes.bulk.tokens;
  }

  /** Marks a slot gone everywhere; the heaps and the arrival list shed it lazily. */
  #take(slot: Slot<J>): void {
    slot.live = false;
    this.#lanes[slot.entry.priority].remove(slot);
    if (Number.isFinite(slot.entry.deadline)) {
      this.#liveWithDeadline--;
      if (this.#byDeadline.size > 2 * this.#liveWithDeadline + COMPACT_SLACK) this.#byDeadline.retain((s) => s.live);
    }
  }
}

/** One priority class: its rows by arrival (for aging) and by length (shortest first). */
class Lane<J> {
  rows = 0;
  tokens = 0;
  #arrival: Slot<J>[] = [];
  #head = 0;
  readonly #byLength = new MinHeap<Slot<J>>((a, b) =>
    a.entry.tokens !== b.entry.tokens ? a.entry.tokens < b.entry.tokens : a.seq < b.seq,
  );

  /**
   * Each principal's rows, oldest first, and how many are live (removal is lazy, as elsewhere here);
   * a principal leaves the map with its last live row.
   */
  readonly #byPrincipal = new Map<string, { live: number; slots: Slot<J>[] }>();

  add(slot: Slot<J>): void {
    this.#arrival.push(slot);
    this.#byLength.push(slot);
    this.rows++;
    this.tokens += slot.entry.tokens;
    const principal = slot.entry.principal;
    if (principal !== undefined) {
      const rows = this.#byPrincipal.get(principal);
      if (rows === undefined) this.#byPrincipal.set(principal, { live: 1, slots: [slot] });
      else {
        rows.live++;
        rows.slots.push(slot);
      }
    }
  }

  /**
   * The rows of every principal with at most `limit` rows queued here, each principal's oldest first
   * (a snapshot: taking them while iterating is fine). Costs one step per queued principal.
   */
  lightRows(limit: number): Slot<J>[] {
    if (limit <= 0 || this.#byPrincipal.size === 0) return [];
    const out: Slot<J>[] = [];
    for (const rows of this.#byPrincipal.values())
      if (rows.live <= limit) for (const slot of rows.slots) if (slot.live) out.push(slot);
    return out;
  }

  remove(slot: Slot<J>): void {
    this.rows--;
    this.tokens -= slot.entry.tokens;
    const principal = slot.entry.principal;
    if (principal !== undefined) {
      const rows = this.#byPrincipal.get(principal);
      if (rows !== undefined && --rows.live === 0) this.#byPrincipal.delete(principal);
      else if (rows !== undefined && rows.slots.length > 2 * rows.live + COMPACT_SLACK)
        rows.slots = rows.slots.filter((s) => s.live);
    }
    if (this.#arrival.length - this.#head > 2 * this.rows + COMPACT_SLACK) {
      this.#arrival = this.#arrival.filter((s, i) => i >= this.#head && s.live);
      this.#head = 0;
    }
    if (this.#byLength.size > 2 * this.rows + COMPACT_SLACK) this.#byLength.retain((s) => s.live);
  }

  oldest(): Slot<J> | undefined {
    while (this.#head < this.#arrival.length && !this.#arrival[this.#head]!.live) this.#head++;
    return this.#arrival[this.#head];
  }

  shortest(): Slot<J> | undefined {
    let top = this.#byLength.peek();
    while (top !== undefined && !top.live) {
      this.#byLength.pop();
      top = this.#byLength.peek();
    }
    return top;
  }
}
