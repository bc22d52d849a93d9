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
 *
 * The consumers' positions are as the restarted broker reports them, and a SIGKILLed nats-server can
 * restore one from before its last deliveries. A job delivered then, computed while this client was
 * away and acknowledged afterwards, looks undelivered: its copy is dropped as a duplicate and nothing
 * would ever send its rows again (CI saw it once: in the broker-SIGKILL test, 1 request of 667 ran to
 * its TIMEOUT).
 * So a request that lived through a reconnect and has had no rows for STALL_MS is looked at again
 * (stalledRequests): when its lane's consumer has nothing queued and nothing awaiting an ack, none of
 * its missing jobs can still arrive, and every one is re-asked under a new Nats-Msg-Id.
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

/** How long a request that lived through a reconnect may go without rows before it is looked at again. */
export const STALL_MS = 3_000;

/** Every lane taken as delivered: jobsToReask then re-asks every unfinished job under a new Nats-Msg-Id. */
export const ALL_DELIVERED: Record<Priority, number> = {
  high: Number.POSITIVE_INFINITY,
  bulk: Number.POSITIVE_INFINITY,
};

/** What the stall check needs of a request, beyond what recovery needs. */
export interface StallableRequest extends RecoverableRequest {
  readonly createdAt: number;
  readonly lastProgressAt: number;
}

/**
 * Requests that began before the last reconnect (`lastReconnectAt`, 0 for none), still miss stored
 * jobs, and have had no rows (nor a re-ask) for STALL_MS since then.
 */
export function stalledRequests<R extends StallableRequest>(
  requests: Iterable<R>,
  lastReconnectAt: number,
  now: number,
): R[] {
  if (lastReconnectAt === 0) return [];
  const out: R[] = [];
  for (const r of requests) {
    if (r.settled || r.createdAt > lastReconnectAt) continue;
    if (now - Math.max(r.lastProgressAt, lastReconnectAt) < STALL_MS) continue;
    if (r.unfinishedJobs().length > 0) out.push(r);
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
