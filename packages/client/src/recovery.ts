/**
 * Getting back what a broker outage lost. Result frames travel on core NATS (at most once), so a frame
 * published while this client was disconnected is gone. When the connection comes back the client
 * publishes again, once per reconnect, every job JetStream had stored (the publish was acknowledged)
 * whose rows are not all in:
 *   - a job its lane's consumer has already delivered (sequence ≤ the consumer's delivered stream
 *     sequence) goes under a new Nats-Msg-Id (dedupId attempt n): its frames may be lost, so it must
 *     be computed again;
 *   - a job not delivered yet goes under its own Nats-Msg-Id: JetStream drops that copy as a
 *     duplicate while the job is still queued, and stores it again if a broker killed before writing
 *     it to disk lost it (a SIGKILLed nats-server can lose messages it had acknowledged).
 * Work may be done twice; the caller never sees a row twice, because the request's assembler keeps
 * the first copy of each row and ignores the rest.
 *
 * When the consumer cannot be read (JetStream still recovering after the restart, or a broker that
 * forbids it), every stored unfinished job is re-asked: more duplicate work, nothing lost.
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import { dedupId, HEADERS, type Priority } from '@bertq/protocol';
import type { PreparedJob } from './chunks.js';

/** A job JetStream acknowledged: its stream sequence, and how often it was re-asked. */
export interface StoredJob {
  job: PreparedJob;
  seq: number;
  attempts: number;
}

/** What recovery needs of a request in flight. */
export interface RecoverableRequest {
  readonly lane: Priority;
  readonly settled: boolean;
  /** Stored jobs whose rows are not all in. */
  unfinishedJobs(): StoredJob[];
}

/** How long one consumer read may take, and how often it is tried while JetStream comes back. */
export const CONSUMER_INFO_TIMEOUT_MS = 2_000;
export const CONSUMER_INFO_ATTEMPTS = 5;

/**
 * The consumers' delivered stream sequence per lane; Infinity for a lane that could not be read
 * (re-ask everything in it). Retries while JetStream recovers, within `deadline`.
 */
export async function deliveredSequences(
  jsm: JetStreamManager | undefined,
  stream: string,
  consumers: Record<Priority, string>,
  lanes: ReadonlySet<Priority>,
  deadline: number,
): Promise<Record<Priority, number>> {
  const out: Record<Priority, number> = { high: Number.POSITIVE_INFINITY, bulk: Number.POSITIVE_INFINITY };
  if (jsm === undefined) return out;
  for (const lane of lanes) {
    for (let attempt = 0; attempt < CONSUMER_INFO_ATTEMPTS && Date.now() < deadline; attempt++) {
      try {
        const info = await jsm.consumers.info(stream, consumers[lane]);
        out[lane] = info.delivered.stream_seq;
        break;
      } catch {
        await new Promise((r) => setTimeout(r, Math.min(250 * 2 ** attempt, Math.max(0, deadline - Date.now()))));
      }
    }
  }
  return out;
}

/** The jobs to publish again, each under its next attempt's Nats-Msg-Id. */
export function jobsToReask(
  requests: Iterable<RecoverableRequest>,
  delivered: Record<Priority, number>,
): Array<{ request: RecoverableRequest; stored: StoredJob; job: PreparedJob }> {
  const out: Array<{ request: RecoverableRequest; stored: StoredJob; job: PreparedJob }> = [];
  for (const request of requests) {
    if (request.settled) continue;
    for (const stored of request.unfinishedJobs()) {
      if (stored.seq > delivered[request.lane]) {
        // Not delivered yet: the same message again, a no-op unless the broker lost it.
        out.push({ request, stored, job: stored.job });
        continue;
      }
      const attempt = stored.attempts + 1;
      const id = stored.job.headers[HEADERS.id]!;
      const headers = { ...stored.job.headers, [HEADERS.msgId]: dedupId(id, stored.job.offset, attempt) };
      out.push({ request, stored, job: { ...stored.job, headers } });
    }
  }
  return out;
}
