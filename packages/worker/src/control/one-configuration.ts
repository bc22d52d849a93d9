/**
 * One service, one configuration: a service name stands for one model with one set of options, so a
 * client never gets rows of two models (or two shapes) for one request. Before a worker or a fleet
 * joins a service, it asks the running workers (services-framework discovery) for their
 * fingerprints (weights hash, graph options, tokenization: `PreparedModel.fingerprint`) and refuses
 * to join a fleet that computes something else, naming both configurations.
 *
 * Two fleets started at the same instant can both see an empty service; the check is for the
 * common mistake (a second `bertq start` on a running service), not a lock.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { BadRequestError, SERVICE_FRAMEWORK_NAME } from '@bertq/protocol';
import { pingServices } from '@bertq/nats';

/** What a worker computes, as its services metadata and its messages say it. */
export interface Configuration {
  fingerprint: string;
  model: string;
  pooling: string;
  /** null: NONE. */
  maxSeqLen: number | null;
  dims: number;
}

function describe(c: { model?: string; pooling?: string; max_seq_len?: string; dims?: string | number }): string {
  return `model ${c.model ?? '?'}, pooling ${c.pooling ?? '?'}, max_seq_len ${c.max_seq_len ?? '?'}, ${c.dims ?? '?'}-dim vectors`;
}

/** Throws BAD_REQUEST when a running worker of `service` computes something else than `mine`. */
export async function assertOneConfiguration(nc: NatsConnection, service: string, mine: Configuration): Promise<void> {
  const peers = await pingServices(nc, SERVICE_FRAMEWORK_NAME);
  const other = peers.find(
    (p) =>
      p.metadata.service === service &&
      p.metadata.fingerprint !== undefined &&
      p.metadata.fingerprint !== mine.fingerprint,
  );
  if (other === undefined) return;
  const ours = describe({
    model: mine.model,
    pooling: mine.pooling,
    max_seq_len: mine.maxSeqLen === null ? 'NONE' : String(mine.maxSeqLen),
    dims: mine.dims,
  });
  throw new BadRequestError(
    `service "${service}" is already served by worker ${other.id} with another configuration (${describe(other.metadata)}); ` +
      `this one would serve ${ours}. A service stands for one model and one set of options: start this one with ` +
      `another --service, or stop the running fleet first (bertq terminate --service ${service})`,
    { details: { service, worker: other.id, theirs: other.metadata.fingerprint, ours: mine.fingerprint } },
  );
}
