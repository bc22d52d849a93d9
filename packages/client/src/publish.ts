/**
 * Publishing jobs to JetStream and turning what can go wrong into protocol errors: no stream
 * (nobody answers the publish) → NO_WORKERS, stream full → OVERLOADED, a lost ack → publish the same
 * message again (its Nats-Msg-Id makes JetStream drop the copy), the deadline → TIMEOUT.
 */
import { errors as natsErrors, RequestError } from '@nats-io/transport-node';
import { toNatsHeaders } from '@bertq/nats';
import { JetStreamApiError, type JetStreamClient, type PubAck } from '@nats-io/jetstream';
import { BertqError, InternalError, NoWorkersError, OverloadedError, TimeoutError } from '@bertq/protocol';
import type { PreparedJob } from './chunks.js';

/** Longest wait for one publish ack before publishing again (bounded further by the deadline). */
export const PUBLISH_ACK_TIMEOUT_MS = 5_000;
/**
 * In a cluster, a stream without a leader (the node that led it died; the others elect a new one
 * within seconds) answers "no responders" like a stream that does not exist. For this long a publish
 * is retried there before it is NO_WORKERS.
 */
export const LEADER_ELECTION_GRACE_MS = 10_000;
const ELECTION_RETRY_MS = 250;
/** Jobs of one request published at once: enough to fill the pipe, few enough not to flood it. */
export const PUBLISH_WINDOW = 32;

export interface PublishContext {
  js: JetStreamClient;
  subject: string;
  service: string;
  stream: string;
  requestId: string;
  deadline: number;
  /** Called before each repeated publish (for statistics). */
  onRetry?: () => void;
  /** Connected to a server that is part of a cluster (see LEADER_ELECTION_GRACE_MS). */
  clustered?: boolean;
  now?: () => number;
}

/** True when the error is a request that got no reply in time. */
function isTimeout(err: unknown): boolean {
  return (
    err instanceof natsErrors.TimeoutError ||
    (err instanceof RequestError && err.cause instanceof natsErrors.TimeoutError)
  );
}

/**
 * True when nobody is subscribed to the subject (no stream captures it, or JetStream is off). The
 * JetStream client reports that as a JetStreamNotEnabled error (not exported) caused by a no-responders
 * RequestError, so the cause chain is searched.
 */
export function isNoResponders(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof natsErrors.NoRespondersError) return true;
    if (e instanceof RequestError && e.isNoResponders()) return true;
  }
  return false;
}

/** The protocol error for a refused publish. */
export function publishError(
  err: unknown,
  ctx: Pick<PublishContext, 'subject' | 'service' | 'stream' | 'requestId'>,
  offset: number,
): BertqError {
  if (isNoResponders(err)) {
    return new NoWorkersError(
      `no worker serves service "${ctx.service}": nothing takes jobs on ${ctx.subject} (stream ${ctx.stream} does not exist, ` +
        `or JetStream is not enabled); start one with \`bertq start --service ${ctx.service}\``,
      { cause: err, details: { service: ctx.service, subject: ctx.subject } },
    );
  }
  if (err instanceof JetStreamApiError) {
    const text = err.message;
    if (/maximum (messages|bytes)/i.test(text)) {
      return new OverloadedError(
        `service "${ctx.service}" is overloaded: stream ${ctx.stream} refused the job at offset ${offset} (${text}); retry later or add workers`,
        { cause: err, details: { id: ctx.requestId, offset, stream: ctx.stream } },
      );
    }
    return new InternalError(
      `JetStream refused the job at offset ${offset} of request ${ctx.requestId}: ${text} (code ${err.code})`,
      {
        cause: err,
        details: { id: ctx.requestId, offset, code: err.code },
      },
    );
  }
  if (err instanceof BertqError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new InternalError(`publishing the job at offset ${offset} of request ${ctx.requestId} failed: ${message}`, {
    cause: err,
  });
}

/**
 * Publishes one job and waits for its ack. A timeout is a lost ack (or a slow server): the same
 * message goes again until the deadline, and JetStream de-duplicates it by Nats-Msg-Id.
 */
export async function publishJob(ctx: PublishContext, job: PreparedJob): Promise<PubAck> {
  const now = ctx.now ?? Date.now;
  const headers = toNatsHeaders(job.headers);
  const electionDeadline = now() + LEADER_ELECTION_GRACE_MS;
  for (let attempt = 1; ; attempt++) {
    const remaining = ctx.deadline - now();
    if (remaining <= 0) {
      throw new TimeoutError(
        `request ${ctx.requestId}: JetStream did not acknowledge the job at offset ${job.offset} before the deadline (${attempt - 1} attempts)`,
        { details: { id: ctx.requestId, offset: job.offset, attempts: attempt - 1 } },
      );
    }
    try {
      return await ctx.js.publish(ctx.subject, job.body, {
        headers,
        timeout: Math.min(remaining, PUBLISH_ACK_TIMEOUT_MS),
      });
    } catch (err) {
      const electing = ctx.clustered === true && isNoResponders(err) && now() < electionDeadline;
      if (!isTimeout(err) && !electing) throw publishError(err, ctx, job.offset);
      ctx.onRetry?.();
      if (electing) await new Promise((resolve) => setTimeout(resolve, ELECTION_RETRY_MS));
    }
  }
}

/**
 * Publishes every job, at most PUBLISH_WINDOW at once, and stops at the first failure (which it
 * throws). `isCancelled` lets the request stop publishing once it has failed for another reason.
 */
export async function publishAll(
  ctx: PublishContext,
  jobs: readonly PreparedJob[],
  isCancelled: () => boolean,
  onPublished: (job: PreparedJob, ack: PubAck) => void,
): Promise<void> {
  let next = 0;
  let failure: unknown;
  const lane = async (): Promise<void> => {
    while (failure === undefined && !isCancelled() && next < jobs.length) {
      const job = jobs[next++]!;
      try {
        onPublished(job, await publishJob(ctx, job));
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(PUBLISH_WINDOW, jobs.length) }, lane));
  if (failure !== undefined) throw failure;
}
