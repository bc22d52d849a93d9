/**
 * Measures one benchmark point: `numClient` clients each send `clientBatchSize`-sentence requests
 * back to back; rows are counted as result frames arrive, over all clients (bert-as-service reported
 * a per-client rate), inside a window that starts after a warm-up and ends when every client has
 * done `numRepeat` measured requests or the time budget runs out. Requests still running then are
 * abandoned (their queued jobs are cancelled), and the fleet is let drain before the next point, so
 * one point's leftovers do not slow the next.
 */
import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BertClient } from '@bertq/client';
import type { PointSettings } from './experiments.js';

/** Frames a window needs before its time budget may end it: two make a rate, three a steadier one. */
export const MIN_FRAMES = 3;

export interface PointResult {
  settings: PointSettings;
  /** Sentences per second, all clients together. */
  sentPerSec: number;
  /** Rows received inside the window after its first frame, and the seconds from that frame to the last. */
  rows: number;
  seconds: number;
  /** Requests that started and finished inside the window. */
  requests: number;
  /** Latency of those requests, ms. */
  p50Ms?: number;
  p99Ms?: number;
  /** Fewer than two frames came by the cap: sentPerSec is at least this (rows of the window / its length). */
  lowerBound?: boolean;
  /** Why the point could not be measured (OVERLOADED, NO_WORKERS…); sentPerSec is then 0. */
  error?: string;
}

export interface MeasureOptions {
  /** At least `numClient` connected clients of the service. */
  clients: ReadonlyArray<BertClient<'ndarray'>>;
  settings: PointSettings;
  /** Words sentences are made of. */
  words: readonly string[];
  /** Time budget of the measured window, seconds, once MIN_FRAMES frames came in it. */
  seconds: number;
  /** Longest window, seconds, when frames come slower than that (default `seconds`). */
  maxSeconds?: number;
  /** Warm-up before the window, seconds (the first batches of a new fleet are slow). */
  warmupSeconds: number;
  /** The window also ends once every client finished this many requests inside it. */
  numRepeat: number;
}

/**
 * `count` sentences of `length` words each, picked by a fixed pseudo-random sequence: as in
 * bert-serving-benchmark, a sentence as long as max_seq_len in words fills max_seq_len in tokens.
 */
export function makeSentences(words: readonly string[], count: number, length: number, seed = 1): string[] {
  if (words.length === 0) throw new Error('no words to make sentences of');
  let s = seed >>> 0;
  const next = () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s >>> 8;
  };
  return Array.from({ length: count }, () => Array.from({ length }, () => words[next() % words.length]).join(' '));
}

function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

export async function measurePoint(o: MeasureOptions): Promise<PointResult> {
  const { settings } = o;
  if (o.clients.length < settings.numClient)
    throw new Error(`measurePoint needs ${settings.numClient} clients, got ${o.clients.length}`);
  // Distinct sentences per client, so the result is not a replay of one cached row.
  const pool = makeSentences(o.words, Math.min(settings.clientBatchSize, 512) * 2, settings.maxSeqLen, 7);
  const batchFor = (client: number, request: number): string[] => {
    const start = (client * 131 + request * settings.clientBatchSize) % pool.length;
    return Array.from({ length: settings.clientBatchSize }, (_, i) => pool[(start + i) % pool.length]!);
  };

  const stop = new AbortController();
  // Every request of every client listens to this one signal.
  setMaxListeners(settings.numClient * 4 + 16, stop.signal);
  const t0 = performance.now();
  const windowStart = t0 + o.warmupSeconds * 1000;
  // The window ends at its time budget once MIN_FRAMES frames came in it; a model too slow for that
  // (a 256-row batch of BERT-base takes seconds on a CPU) gets up to the longer cap.
  const softEnd = windowStart + o.seconds * 1000;
  const hardEnd = windowStart + Math.max(o.seconds, o.maxSeconds ?? o.seconds) * 1000;
  // Rows are counted frame by frame; the rate is taken between the window's first and last frames,
  // so a window that holds a few big frames is not rounded to whole frames per second.
  let frames = 0;
  let rows = 0;
  let firstRows = 0;
  let firstFrame: number | undefined;
  let lastFrame = windowStart;
  const latencies: number[] = [];
  const repeats = new Array<number>(settings.numClient).fill(0);
  let failure: string | undefined;

  const enoughRepeats = () => repeats.every((r) => r >= o.numRepeat);
  const maybeEnd = () => {
    const now = performance.now();
    if (now >= hardEnd || (now >= softEnd && frames >= MIN_FRAMES)) stop.abort(new Error('time budget'));
  };
  const timers = [setTimeout(maybeEnd, softEnd - t0), setTimeout(maybeEnd, hardEnd - t0 + 1)];

  const loop = async (k: number) => {
    const client = o.clients[k]!;
    for (let i = 0; !stop.signal.aborted; i++) {
      const started = performance.now();
      try {
        await client.encode(batchFor(k, i), {
          signal: stop.signal,
          checkLength: false,
          timeout: Math.max(1000, hardEnd - started + 30_000),
          onFrame: (f) => {
            const now = performance.now();
            if (now < windowStart || stop.signal.aborted) return;
            frames++;
            if (firstFrame === undefined) {
              firstFrame = now;
              firstRows = f.rows;
            } else rows += f.rows;
            lastFrame = now;
            maybeEnd();
          },
        });
      } catch (err) {
        if (stop.signal.aborted) return;
        failure = err instanceof Error ? err.message : String(err);
        stop.abort(err);
        return;
      }
      if (started >= windowStart) {
        latencies.push(performance.now() - started);
        repeats[k]!++;
        if (enoughRepeats()) stop.abort(new Error('repeats done'));
      }
    }
  };
  await Promise.all(Array.from({ length: settings.numClient }, (_, k) => loop(k)));
  for (const t of timers) clearTimeout(t);

  // One frame or none by the cap: only a lower bound, from the rows that came in the whole window.
  const measured = frames >= 2 && lastFrame > firstFrame!;
  const seconds = measured ? (lastFrame - firstFrame!) / 1000 : (hardEnd - windowStart) / 1000;
  const counted = measured ? rows : firstRows;
  latencies.sort((a, b) => a - b);
  const result: PointResult = {
    settings,
    sentPerSec: failure ? 0 : counted / seconds,
    rows: counted,
    seconds,
    requests: latencies.length,
  };
  if (!measured && !failure) result.lowerBound = true;
  const p50 = percentile(latencies, 0.5);
  const p99 = percentile(latencies, 0.99);
  if (p50 !== undefined) result.p50Ms = p50;
  if (p99 !== undefined) result.p99Ms = p99;
  if (failure) result.error = failure;
  return result;
}

/**
 * Waits until the fleet holds no job: nothing pending or unacked in either lane and nothing in a
 * worker's own queue (abandoned jobs are skipped, but a batch already running finishes). Bounded.
 */
export async function waitIdle(client: BertClient<'ndarray'>, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try {
      const s = await client.serverStatus();
      const { high, bulk, local_rows } = s.queue;
      const held = [high.pending, high.ack_pending, bulk.pending, bulk.ack_pending, local_rows];
      if (held.every((n) => (n ?? 0) === 0)) return true;
    } catch {
      // a status that does not answer is the same as busy: ask again
    }
    await sleep(200);
  }
  return false;
}
