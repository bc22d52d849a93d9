/**
 * The other side of the wire for client tests that must not depend on the worker package: the
 * service's stream and consumers as docs/protocol.md specifies them, a `config` responder, and a
 * protocol peer that pulls jobs and answers with frames built by @bertq/protocol. The peer's
 * "vectors" are row numbers (see rowValues), so a misplaced row shows. End-to-end tests with the real
 * worker and model live in the repository's test/ folder.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import {
  AckPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type ConsumerMessages,
  type JsMsg,
} from '@nats-io/jetstream';
import {
  PRIORITIES,
  encodeErrorFrame,
  encodeResultFrames,
  parseJob,
  serviceNames,
  type BertqError,
  type Frame,
  type Job,
  type ServerConfig,
} from '@bertq/protocol';
import { fromNatsHeaders, toNatsHeaders } from '@bertq/nats';
import { rowValues } from './frames.js';
import { sampleConfig } from './documents.js';

/** Creates the stream and the `high`/`bulk` durable pull consumers of a service, as a first worker would. */
export async function createJobStream(
  nc: NatsConnection,
  service: string,
  options: { maxMsgs?: number; storage?: 'memory' | 'file' } = {},
): Promise<void> {
  const names = serviceNames(service);
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({
    name: names.stream,
    subjects: [names.jobs.high, names.jobs.bulk],
    retention: RetentionPolicy.Workqueue,
    discard: DiscardPolicy.New,
    max_msgs: options.maxMsgs ?? 10_000,
    storage: options.storage === 'file' ? StorageType.File : StorageType.Memory,
    duplicate_window: 120_000_000_000,
  });
  for (const priority of PRIORITIES) {
    await jsm.consumers.add(names.stream, {
      durable_name: names.consumers[priority],
      filter_subject: names.jobs[priority],
      ack_policy: AckPolicy.Explicit,
      ack_wait: 30_000_000_000,
      max_deliver: 5,
    });
  }
}

/** Answers `bertq.v1.<svc>.config` (queue group q, as workers do) with a valid config document. */
export function answerConfig(nc: NatsConnection, service: string, overrides: Partial<ServerConfig> = {}): Subscription {
  const names = serviceNames(service);
  const doc = sampleConfig({ service: names.service, ...overrides });
  return nc.subscribe(names.control.config, {
    queue: 'q',
    callback: (_err, msg) => {
      msg.respond(JSON.stringify(doc));
    },
  });
}

/** What the peer does with one job: the frames to publish (any order, repeats allowed). */
export type Answer = (job: Job, frames: Frame[]) => Frame[];

export interface PeerOptions {
  dim?: number;
  /** Result frames are split to fit this (default 1 MiB); small values force byte parts. */
  maxPayload?: number;
  /** Rewrites the frames of a job (shuffle, duplicate, replace with an error…). Default: as built. */
  answer?: Answer;
  /** Error to answer every job with instead of rows. */
  fail?: (job: Job) => BertqError | undefined;
}

export interface Peer {
  /** Jobs taken so far, in the order the peer took them. */
  jobs: Job[];
  /** Subjects the jobs came from. */
  subjects: string[];
  stop(): Promise<void>;
}

/** Pulls jobs of both consumers and answers each with frames of rowValues rows. */
export async function startPeer(nc: NatsConnection, service: string, options: PeerOptions = {}): Promise<Peer> {
  const names = serviceNames(service);
  const js = jetstream(nc);
  const jobs: Job[] = [];
  const subjects: string[] = [];
  const streams: ConsumerMessages[] = [];
  const loops: Promise<void>[] = [];
  const dim = options.dim ?? 4;
  const handle = (m: JsMsg): void => {
    const job = parseJob(fromNatsHeaders(m.headers), m.data, { service, maxRows: 100_000, maxBytes: 8 * 1024 * 1024 });
    jobs.push(job);
    subjects.push(m.subject);
    const error = options.fail?.(job);
    let frames: Frame[];
    // As a worker does: every frame carries the seal of the job's key.
    const seal = job.seal === undefined ? {} : { seal: job.seal };
    if (error !== undefined) {
      frames = [
        encodeErrorFrame({ id: job.id, offset: job.offset, rows: job.texts.length, worker: 'peer', ...seal }, error),
      ];
    } else {
      const rows = job.texts.length;
      const data = new Float32Array(rows * dim);
      for (let i = 0; i < rows; i++) data.set(rowValues(job.offset + i, dim), i * dim);
      const tokens = job.showTokens
        ? job.texts.map((t) => ['[CLS]', ...(Array.isArray(t) ? t : t.split(' ')), '[SEP]'])
        : undefined;
      frames = encodeResultFrames(
        {
          id: job.id,
          offset: job.offset,
          rows,
          shape: [dim],
          dtype: job.output,
          data,
          worker: 'peer',
          ...seal,
          ...(tokens ? { tokens } : {}),
        },
        { maxPayload: options.maxPayload ?? 1024 * 1024 },
      );
    }
    for (const f of options.answer ? options.answer(job, frames) : frames)
      nc.publish(job.reply, f.body, { headers: toNatsHeaders(f.headers) });
    m.ack();
  };
  for (const priority of PRIORITIES) {
    const consumer = await js.consumers.get(names.stream, names.consumers[priority]);
    const messages = await consumer.consume({ max_messages: 64 });
    streams.push(messages);
    loops.push(
      (async () => {
        for await (const m of messages) {
          try {
            handle(m);
          } catch (err) {
            console.error('peer failed on a job:', err);
            throw err;
          }
        }
      })(),
    );
  }
  return {
    jobs,
    subjects,
    stop: async () => {
      for (const s of streams) s.stop();
      await Promise.all(loops);
    },
  };
}
