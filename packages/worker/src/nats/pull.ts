/**
 * One pull loop per consumer (`high`, `bulk`). Each pull asks JetStream for no more jobs than the
 * worker has credits for. Idle, a loop keeps one long-poll for a single job open (so an idle worker
 * answers at once); once jobs flow, it asks for as many as it has room for ("burst") until a pull
 * comes back short, which means the consumer is drained.
 */
import type { Consumer, JsMsg } from '@nats-io/jetstream';
import type { Priority } from '@bertq/protocol';
import type { Logger } from 'pino';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Credits } from '../core/credits.js';

/** JetStream (and nats.js) refuse pull expiries under one second. */
export const MIN_PULL_EXPIRES_MS = 1_000;
/** How long a loop waits for a credit before it re-checks whether it should stop. */
const CREDIT_WAIT_SLICE_MS = 250;
const ERROR_BACKOFF_MS = [100, 250, 500, 1_000, 2_000, 5_000];

export interface PullLoopOptions {
  consumer: Consumer;
  priority: Priority;
  credits: Credits;
  /** Credits (rows) one job of this consumer may need: maxBatchSize for bulk, priorityBatchSize for high. */
  jobCost: number;
  /** Expiry of the idle long-poll. Longer means fewer pull requests; stopping waits for it. */
  expiresMs: number;
  /** Most jobs asked for in one pull. */
  maxBatch: number;
  /** Takes one job; the `jobCost` credits it was pulled with now belong to the job. */
  onMessage: (msg: JsMsg, priority: Priority) => void;
  /** Called instead of onMessage for a job that arrives once stopping: hand it back. */
  onLateMessage: (msg: JsMsg) => void;
  isStopping: () => boolean;
  /** Pulling failed this many times in a row (the consumer may be gone: the worker checks the stream). */
  onFailures?: (failures: number) => void;
  logger: Logger;
}

/** Runs until `isStopping()`; resolves once its last pull has ended (within `expiresMs`). */
export async function runPullLoop(options: PullLoopOptions): Promise<void> {
  const { consumer, priority, credits, logger, jobCost } = options;
  let burst = false;
  let failures = 0;
  while (!options.isStopping()) {
    if (!(await credits.acquire(priority, CREDIT_WAIT_SLICE_MS, jobCost))) continue;
    if (options.isStopping()) {
      credits.release(jobCost);
      break;
    }
    // Credits come in whole jobs' worth: take what more jobs fit, give back the remainder.
    let extra = 0;
    if (burst) {
      const took = credits.tryTake((options.maxBatch - 1) * jobCost);
      extra = Math.floor(took / jobCost);
      credits.release(took - extra * jobCost);
    }
    const asked: number = 1 + extra;
    let received = 0;
    try {
      const messages = await consumer.fetch({
        max_messages: asked,
        expires: burst ? MIN_PULL_EXPIRES_MS : Math.max(MIN_PULL_EXPIRES_MS, options.expiresMs),
      });
      for await (const msg of messages) {
        received++;
        if (options.isStopping()) {
          // End this pull before handing the job back: JetStream redelivers a nak'd job at once to a
          // waiting pull, and this one would take it again, and again, until max_deliver gave up on it.
          messages.stop();
          options.onLateMessage(msg);
          credits.release(jobCost);
          break;
        }
        options.onMessage(msg, priority);
      }
      burst = received === asked;
      if (failures > 0) logger.info({ consumer: priority }, 'pulling works again');
      failures = 0;
    } catch (err) {
      burst = false;
      // Logged once per streak of failures (a server restart would otherwise flood the log).
      if (failures === 0) logger.warn({ err, consumer: priority }, 'pulling jobs failed; retrying with backoff');
      const wait = ERROR_BACKOFF_MS[Math.min(failures, ERROR_BACKOFF_MS.length - 1)]!;
      failures++;
      options.onFailures?.(failures);
      await sleep(wait);
    } finally {
      credits.release((asked - received) * jobCost);
    }
  }
}
