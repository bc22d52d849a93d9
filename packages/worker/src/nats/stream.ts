/**
 * The JetStream side of a service: stream `BERTQ_<SVC>` holding its jobs, and the two durable pull
 * consumers `high` and `bulk` every worker binds to (that pair IS the queue group). `ensureStream` is
 * idempotent: the first worker creates them, later ones (or a restarted fleet with new limits) update
 * what JetStream lets them update, and say exactly what they cannot change.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  jetstreamManager,
} from '@nats-io/jetstream';
import type { ConsumerConfig, JetStreamManager, StreamConfig } from '@nats-io/jetstream';
import { isPermissionViolation } from '@bertq/nats';
import { BadRequestError, NoWorkersError, PRIORITIES, UnauthorizedError, serviceNames } from '@bertq/protocol';
import type { Priority } from '@bertq/protocol';

/** Options of a service's stream and consumers. Every field but `service` has a default. */
export interface StreamOptions {
  /** Service name (any spelling; the canonical form names the stream and subjects). */
  service: string;
  /**
   * Bound of each lane's queue in jobs (max_msgs_per_subject, discard new per subject; the stream's
   * max_msgs is twice it): a publish beyond it fails and the client reports OVERLOADED at once,
   * instead of letting latency grow without bound. Per lane, so a full bulk lane never refuses a
   * small interactive request. Default 10,000.
   */
  maxQueuedJobs?: number;
  /** Bound of the whole queue in bytes (max_bytes), checked like maxQueuedJobs. Default 256 MiB. */
  maxQueuedBytes?: number;
  /**
   * The longest a job may stay in the stream (max_age): the backstop that clears a job nobody will
   * take, whatever its deadline said. Longer than any request deadline. Default 600,000 (10 minutes).
   */
  maxJobAgeMs?: number;
  /**
   * How long JetStream remembers a `Nats-Msg-Id`, so a client re-publishing after a lost publish ack
   * does not get a chunk encoded twice. Longer costs server memory. Default 120,000 (2 minutes).
   */
  duplicateWindowMs?: number;
  /**
   * How long a delivered job may go unacknowledged before JetStream hands it to another worker.
   * Workers send in-progress acks while a job runs, so this bounds how fast a dead worker's jobs are
   * redelivered, not how long a job may take. Default 10,000: a killed worker's jobs go to another
   * worker well inside the usual request deadlines (the chaos suite's worker SIGKILL scenario).
   */
  ackWaitMs?: number;
  /**
   * Deliveries of one job before JetStream gives up on it (a job that crashes every worker must not
   * loop forever). The worker answers a job that fails on its last delivery with an error frame.
   * Default 5.
   */
  maxDeliver?: number;
  /** Stream replicas in a clustered JetStream (1, 3 or 5). Default 1. */
  replicas?: number;
  /** Where JetStream keeps queued jobs: 'file' survives a server restart, 'memory' is faster. Default 'file'. */
  storage?: 'file' | 'memory';
}

/** Defaults of StreamOptions, named so tests and docs can refer to them. */
export const STREAM_DEFAULTS = {
  maxQueuedJobs: 10_000,
  maxQueuedBytes: 256 * 2 ** 20,
  duplicateWindowMs: 120_000,
  ackWaitMs: 10_000,
  maxDeliver: 5,
  replicas: 1,
  storage: 'file',
  maxJobAgeMs: 600_000,
} as const;

/** What ensureStream found or did. */
export interface EnsuredStream {
  service: string;
  stream: string;
  consumers: Record<Priority, string>;
  /** The stream did not exist and was created. */
  created: boolean;
  /** Settings that were changed on an existing stream or consumer (e.g. `stream.max_msgs`). */
  updated: string[];
  /** Consumers that did not exist and were created (all of them with a new stream). */
  consumersCreated: string[];
  /** The consumers' settings as they are now (what workers use for in-progress acks). */
  ackWaitMs: number;
  maxDeliver: number;
}

/**
 * The server has no JetStream. Typed as NO_WORKERS (no queue can exist for any service), with the
 * message saying how to enable it.
 */
export class JetStreamNotEnabledError extends NoWorkersError {
  constructor(server: string, options: { cause?: unknown } = {}) {
    super(
      `the NATS server at ${server} has no JetStream, which bertq needs for its job queue: ` +
        'start it with `nats-server -js`, or add `jetstream {}` to its config file',
      { cause: options.cause, details: { server } },
    );
    this.name = 'JetStreamNotEnabledError';
  }
}

/**
 * The stream or a consumer is missing or differs from what bertq needs, and the broker refused our
 * credential the right to create or change it. The shipped `worker` role has no such right (a
 * compromised worker host must not be able to empty or redirect the queue): `bertq setup`, run once
 * with a credential that may (the admin's), creates the stream and its consumers.
 */
export class StreamRightsError extends UnauthorizedError {
  constructor(stream: string, what: string, options: { cause?: unknown } = {}) {
    super(
      `${what}, and this NATS credential may not create or change the streams or consumers of bertq ` +
        `(the worker role may not): run \`bertq setup\` once with the admin credential and the same service ` +
        'and stream options, then start the workers again',
      { cause: options.cause, details: { stream } },
    );
    this.name = 'StreamRightsError';
  }
}

/** Runs a call that creates or changes the stream or a consumer; a refusal for rights becomes StreamRightsError. */
async function needingRights<T>(stream: string, what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (isPermissionViolation(err)) throw new StreamRightsError(stream, what, { cause: err });
    throw err;
  }
}

const NANOS_PER_MS = 1_000_000;
const JSM_TIMEOUT_MS = 5_000;

/** True for the errors nats.js raises when the account or server has no JetStream. */
export function isJetStreamNotEnabled(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === 'JetStreamNotEnabled') return true;
  if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.JetStreamNotEnabledForAccount) return true;
  return /jetstream is not enabled|jetstream not enabled/i.test(err.message);
}

/** A JetStream manager, or JetStreamNotEnabledError when the server has no JetStream. */
export async function openJetStreamManager(nc: NatsConnection, timeoutMs = JSM_TIMEOUT_MS): Promise<JetStreamManager> {
  try {
    return await jetstreamManager(nc, { timeout: timeoutMs });
  } catch (err) {
    if (isJetStreamNotEnabled(err)) throw new JetStreamNotEnabledError(serverName(nc), { cause: err });
    throw err;
  }
}

/** Creates or updates a service's stream and its `high`/`bulk` consumers. Safe to run again. */
export async function ensureStream(
  target: NatsConnection | JetStreamManager,
  options: StreamOptions,
): Promise<EnsuredStream> {
  const names = serviceNames(options.service);
  const settings = resolve(options);
  const jsm = isManager(target) ? target : await openJetStreamManager(target);
  const updated: string[] = [];
  const consumersCreated: string[] = [];

  const wanted: Partial<StreamConfig> & { name: string } = {
    name: names.stream,
    description: `bertq jobs of service ${names.service}`,
    subjects: [names.jobs.high, names.jobs.bulk],
    retention: RetentionPolicy.Workqueue,
    discard: DiscardPolicy.New,
    max_msgs: 2 * settings.maxQueuedJobs,
    max_msgs_per_subject: settings.maxQueuedJobs,
    discard_new_per_subject: true,
    max_bytes: settings.maxQueuedBytes,
    duplicate_window: settings.duplicateWindowMs * NANOS_PER_MS,
    max_age: settings.maxJobAgeMs * NANOS_PER_MS,
    num_replicas: settings.replicas,
    storage: settings.storage === 'memory' ? StorageType.Memory : StorageType.File,
  };

  let created = false;
  const existing = await streamInfo(jsm, names.stream);
  if (existing === undefined) {
    try {
      await needingRights(names.stream, `stream ${names.stream} does not exist`, () => jsm.streams.add(wanted));
      created = true;
    } catch (err) {
      if (err instanceof StreamRightsError) throw err;
      // Another worker may have created it a moment ago; then it is an update like any other.
      if ((await streamInfo(jsm, names.stream)) === undefined) {
        const replicas =
          settings.replicas > 1 && /replicas|clustered|insufficient resources/i.test((err as Error).message)
            ? `: ${settings.replicas} replicas need a NATS cluster of at least ${settings.replicas} JetStream servers; on one server, leave the stream at 1 replica (--stream-replicas 1)`
            : '';
        throw new BadRequestError(
          `JetStream refused to create stream ${names.stream} (${(err as Error).message})${replicas}`,
          { cause: err, details: { stream: names.stream } },
        );
      }
      await updateStream(jsm, wanted, updated);
    }
  } else {
    await updateStream(jsm, wanted, updated, existing.config);
  }

  for (const priority of PRIORITIES) {
    await ensureConsumer(
      jsm,
      names.stream,
      {
        durable_name: names.consumers[priority],
        description: `bertq ${priority}-priority jobs of service ${names.service}`,
        filter_subject: names.jobs[priority],
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: settings.ackWaitMs * NANOS_PER_MS,
        max_deliver: settings.maxDeliver,
      },
      updated,
      consumersCreated,
    );
  }

  return {
    service: names.service,
    stream: names.stream,
    consumers: { ...names.consumers },
    created,
    updated,
    consumersCreated,
    ackWaitMs: settings.ackWaitMs,
    maxDeliver: settings.maxDeliver,
  };
}

/** Reads the ack_wait / max_deliver the consumers actually have (a worker adapts to them). */
export async function readConsumerLimits(
  jsm: JetStreamManager,
  service: string,
): Promise<Record<Priority, { ackWaitMs: number; maxDeliver: number }>> {
  const names = serviceNames(service);
  const out = {} as Record<Priority, { ackWaitMs: number; maxDeliver: number }>;
  for (const priority of PRIORITIES) {
    const info = await jsm.consumers.info(names.stream, names.consumers[priority]);
    out[priority] = {
      ackWaitMs: Math.round((info.config.ack_wait ?? STREAM_DEFAULTS.ackWaitMs * NANOS_PER_MS) / NANOS_PER_MS),
      // -1 (unlimited) is kept as Infinity: no delivery is ever the last one.
      maxDeliver:
        info.config.max_deliver === undefined || info.config.max_deliver < 1
          ? Number.POSITIVE_INFINITY
          : info.config.max_deliver,
    };
  }
  return out;
}

type ResolvedStreamOptions = Required<StreamOptions>;

/**
 * Refuses stream options that could never work (replicas 2, a job age below the duplicate window…)
 * without touching NATS: a fleet checks them before it spends minutes loading a model.
 */
export function checkStreamOptions(options: StreamOptions): void {
  resolve(options);
}

function resolve(options: StreamOptions): ResolvedStreamOptions {
  const out: ResolvedStreamOptions = {
    service: options.service,
    maxQueuedJobs: options.maxQueuedJobs ?? STREAM_DEFAULTS.maxQueuedJobs,
    duplicateWindowMs: options.duplicateWindowMs ?? STREAM_DEFAULTS.duplicateWindowMs,
    ackWaitMs: options.ackWaitMs ?? STREAM_DEFAULTS.ackWaitMs,
    maxDeliver: options.maxDeliver ?? STREAM_DEFAULTS.maxDeliver,
    replicas: options.replicas ?? STREAM_DEFAULTS.replicas,
    storage: options.storage ?? STREAM_DEFAULTS.storage,
    maxJobAgeMs: options.maxJobAgeMs ?? STREAM_DEFAULTS.maxJobAgeMs,
    maxQueuedBytes: options.maxQueuedBytes ?? STREAM_DEFAULTS.maxQueuedBytes,
  };
  const positive = (name: string, value: number | undefined) => {
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 1)) {
      throw new BadRequestError(`stream option ${name} must be a positive integer, got ${String(value)}`);
    }
  };
  positive('maxQueuedJobs', out.maxQueuedJobs);
  positive('maxQueuedBytes', out.maxQueuedBytes);
  positive('duplicateWindowMs', out.duplicateWindowMs);
  positive('ackWaitMs', out.ackWaitMs);
  positive('maxDeliver', out.maxDeliver);
  positive('maxJobAgeMs', out.maxJobAgeMs);
  if (out.maxJobAgeMs < out.duplicateWindowMs) {
    throw new BadRequestError(
      `stream option maxJobAgeMs (${out.maxJobAgeMs}) must be at least duplicateWindowMs (${out.duplicateWindowMs})`,
    );
  }
  if (![1, 3, 5].includes(out.replicas))
    throw new BadRequestError(`stream option replicas must be 1, 3 or 5, got ${out.replicas}`);
  if (out.storage !== 'file' && out.storage !== 'memory') {
    throw new BadRequestError(`stream option storage must be "file" or "memory", got ${JSON.stringify(out.storage)}`);
  }
  return out;
}

async function streamInfo(jsm: JetStreamManager, name: string) {
  try {
    return await jsm.streams.info(name);
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) return undefined;
    throw err;
  }
}

/** Fields JetStream cannot change on an existing stream; a mismatch needs the stream deleted first. */
const FIXED_STREAM_FIELDS = ['retention', 'storage'] as const;
const MUTABLE_STREAM_FIELDS = [
  'subjects',
  'discard',
  'max_msgs',
  'max_msgs_per_subject',
  'discard_new_per_subject',
  'max_bytes',
  'duplicate_window',
  'max_age',
  'num_replicas',
  'description',
] as const;

async function updateStream(
  jsm: JetStreamManager,
  wanted: Partial<StreamConfig> & { name: string },
  updated: string[],
  current?: StreamConfig,
): Promise<void> {
  const have = current ?? (await jsm.streams.info(wanted.name)).config;
  for (const field of FIXED_STREAM_FIELDS) {
    if (have[field] !== wanted[field]) {
      throw new BadRequestError(
        `stream ${wanted.name} exists with ${field} ${JSON.stringify(have[field])}, but bertq needs ${JSON.stringify(wanted[field])}; ` +
          `JetStream cannot change it: delete the stream (nats stream rm ${wanted.name}) and start again`,
        { details: { stream: wanted.name, field, have: have[field], want: wanted[field] } },
      );
    }
  }
  const changed = MUTABLE_STREAM_FIELDS.filter((f) => JSON.stringify(have[f]) !== JSON.stringify(wanted[f]));
  if (changed.length === 0) return;
  await needingRights(wanted.name, `stream ${wanted.name} differs from what bertq needs in ${changed.join(', ')}`, () =>
    jsm.streams.update(wanted.name, { ...have, ...pick(wanted, changed) }),
  );
  updated.push(...changed.map((f) => `stream.${f}`));
}

/** Consumer fields bertq sets that JetStream cannot update in place. */
const FIXED_CONSUMER_FIELDS = ['ack_policy', 'deliver_policy'] as const;
const MUTABLE_CONSUMER_FIELDS = ['ack_wait', 'max_deliver', 'description', 'filter_subject'] as const;

async function ensureConsumer(
  jsm: JetStreamManager,
  stream: string,
  wanted: Partial<ConsumerConfig> & { durable_name: string },
  updated: string[],
  created: string[],
): Promise<void> {
  let current: ConsumerConfig | undefined;
  try {
    current = (await jsm.consumers.info(stream, wanted.durable_name)).config;
  } catch (err) {
    if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.ConsumerNotFound)) throw err;
  }
  if (current === undefined) {
    try {
      await needingRights(stream, `consumer ${wanted.durable_name} of stream ${stream} does not exist`, () =>
        jsm.consumers.add(stream, wanted),
      );
      created.push(wanted.durable_name);
      return;
    } catch (err) {
      if (err instanceof StreamRightsError) throw err;
      // Created concurrently by another worker: compare and update below.
      current = (
        await jsm.consumers.info(stream, wanted.durable_name).catch(() => {
          throw err;
        })
      ).config;
    }
  }
  for (const field of FIXED_CONSUMER_FIELDS) {
    if (current[field] !== wanted[field]) {
      throw new BadRequestError(
        `consumer ${wanted.durable_name} of stream ${stream} exists with ${field} ${JSON.stringify(current[field])}, but bertq needs ` +
          `${JSON.stringify(wanted[field])}; delete it (nats consumer rm ${stream} ${wanted.durable_name}) and start again`,
        { details: { stream, consumer: wanted.durable_name, field } },
      );
    }
  }
  const changed = MUTABLE_CONSUMER_FIELDS.filter((f) => JSON.stringify(current[f]) !== JSON.stringify(wanted[f]));
  if (changed.length === 0) return;
  await needingRights(
    stream,
    `consumer ${wanted.durable_name} of stream ${stream} differs from what bertq needs in ${changed.join(', ')}`,
    () => jsm.consumers.update(stream, wanted.durable_name, pick(wanted, changed)),
  );
  updated.push(...changed.map((f) => `consumer.${wanted.durable_name}.${f}`));
}

function pick<T extends object, K extends keyof T>(from: T, keys: readonly K[]): Pick<T, K> {
  const out = {} as Pick<T, K>;
  for (const k of keys) out[k] = from[k];
  return out;
}

function isManager(target: NatsConnection | JetStreamManager): target is JetStreamManager {
  return (
    typeof (target as JetStreamManager).streams === 'object' &&
    typeof (target as JetStreamManager).consumers === 'object'
  );
}

/** How to name the server in a message: the one we are connected to. */
export function serverName(nc: NatsConnection): string {
  const server = nc.getServer();
  return server.includes('://') ? server : `nats://${server}`;
}
