/**
 * The NATS services framework (ADR-32), implemented here on core NATS: discovery on `$SRV.PING`,
 * `$SRV.INFO` and `$SRV.STATS` (plain, `.<name>`, `.<name>.<id>`), answered with the
 * `io.nats.micro.v1.*` documents, plus request/reply endpoints with per-endpoint counters. This is
 * what makes `nats micro ls|info|stats` show a bertq fleet. (nats.js ships this as @nats-io/services,
 * still a prerelease; the protocol is small, so it lives here.)
 */
import { nuid } from '@nats-io/transport-node';
import type { Msg, MsgHdrs, NatsConnection, Subscription } from '@nats-io/transport-node';
import { TooLargeError, encodeErrorFrame, toBertqError } from '@bertq/protocol';
import type { BertqError, HeaderMap } from '@bertq/protocol';
import { fromNatsHeaders, toNatsHeaders } from './headers.js';

export const SERVICE_API_PREFIX = '$SRV';
export const PING_RESPONSE_TYPE = 'io.nats.micro.v1.ping_response';
export const INFO_RESPONSE_TYPE = 'io.nats.micro.v1.info_response';
export const STATS_RESPONSE_TYPE = 'io.nats.micro.v1.stats_response';
/** The framework's default queue group: any one instance answers an endpoint request. */
export const DEFAULT_QUEUE_GROUP = 'q';

/** What an endpoint handler returns: a JSON-able document, or raw bytes with headers. */
export type EndpointReply = unknown;

export interface EndpointDefinition {
  /** Endpoint name as `nats micro info` shows it (letters, digits, `-`, `_`). */
  name: string;
  subject: string;
  /** Queue group; `null` for none (every instance answers, e.g. a per-instance subject). Default 'q'. */
  queueGroup?: string | null;
  metadata?: Record<string, string>;
  /**
   * Answers one request. The result is sent as JSON; a thrown error is sent as an error reply (the
   * framework's Nats-Service-Error headers plus bertq's `{code, message}` body) and counted.
   */
  handler: (request: {
    data: Uint8Array;
    subject: string;
    headers: HeaderMap;
  }) => Promise<EndpointReply> | EndpointReply;
}

export interface ServiceDefinition {
  name: string;
  /** Semantic version (x.y.z): the framework requires one. */
  version: string;
  description?: string;
  /** Instance id; a fresh NUID when left out. */
  id?: string;
  metadata?: Record<string, string>;
  endpoints: readonly EndpointDefinition[];
}

export interface PingResponse {
  type: typeof PING_RESPONSE_TYPE;
  name: string;
  id: string;
  version: string;
  metadata: Record<string, string>;
}

export interface EndpointInfo {
  name: string;
  subject: string;
  queue_group: string;
  metadata: Record<string, string> | null;
}

export interface InfoResponse extends Omit<PingResponse, 'type'> {
  type: typeof INFO_RESPONSE_TYPE;
  description: string;
  endpoints: EndpointInfo[];
}

export interface EndpointStats {
  name: string;
  subject: string;
  queue_group: string;
  num_requests: number;
  num_errors: number;
  last_error: string;
  /** Nanoseconds spent in the handler, in total. */
  processing_time: number;
  /** Nanoseconds per request, on average. */
  average_processing_time: number;
}

export interface StatsResponse extends Omit<PingResponse, 'type'> {
  type: typeof STATS_RESPONSE_TYPE;
  /** When the instance started, RFC 3339. */
  started: string;
  endpoints: EndpointStats[];
}

/** A registered service instance. */
export interface ServiceRegistration {
  readonly id: string;
  ping(): PingResponse;
  info(): InfoResponse;
  stats(): StatsResponse;
  /** Requests answered by the endpoints (not discovery), since start. */
  readonly requestCount: number;
  /** Unsubscribes everything, letting in-flight replies finish (bounded by `timeoutMs`). */
  stop(timeoutMs?: number): Promise<void>;
}

const NAME = /^[A-Za-z0-9_-]+$/;
const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;
const STOP_TIMEOUT_MS = 2_000;
const encoder = new TextEncoder();
/** Bytes kept free under max_payload for the reply's protocol line and any headers. */
const REPLY_HEADER_SLACK = 256;

class EndpointCounters {
  requests = 0;
  errors = 0;
  lastError = '';
  processingNs = 0n;
}

/** Registers a service instance: subscribes its discovery subjects and endpoints on `nc`. */
export function registerService(nc: NatsConnection, definition: ServiceDefinition): ServiceRegistration {
  for (const [what, value] of [
    ['service name', definition.name],
    ...definition.endpoints.map((e) => ['endpoint name', e.name]),
  ] as const) {
    if (!NAME.test(value)) throw new Error(`${what} ${JSON.stringify(value)} must be letters, digits, "-" or "_"`);
  }
  if (!SEMVER.test(definition.version))
    throw new Error(`service version ${JSON.stringify(definition.version)} is not a semantic version (x.y.z)`);
  const id = definition.id ?? nuid.next();
  if (!NAME.test(id)) throw new Error(`service id ${JSON.stringify(id)} must be letters, digits, "-" or "_"`);
  const started = new Date().toISOString();
  const metadata = { ...(definition.metadata ?? {}) };
  const description = definition.description ?? '';
  const endpoints = definition.endpoints.map((e) => ({
    ...e,
    queue: e.queueGroup === undefined ? DEFAULT_QUEUE_GROUP : e.queueGroup,
    counters: new EndpointCounters(),
  }));
  const subscriptions: Subscription[] = [];
  let requestCount = 0;

  const identity = () => ({ name: definition.name, id, version: definition.version, metadata });
  const registration: ServiceRegistration = {
    id,
    ping: () => ({ type: PING_RESPONSE_TYPE, ...identity() }),
    info: () => ({
      type: INFO_RESPONSE_TYPE,
      ...identity(),
      description,
      endpoints: endpoints.map((e) => ({
        name: e.name,
        subject: e.subject,
        queue_group: e.queue ?? '',
        metadata: e.metadata ?? null,
      })),
    }),
    stats: () => ({
      type: STATS_RESPONSE_TYPE,
      ...identity(),
      started,
      endpoints: endpoints.map((e) => {
        const c = e.counters;
        return {
          name: e.name,
          subject: e.subject,
          queue_group: e.queue ?? '',
          num_requests: c.requests,
          num_errors: c.errors,
          last_error: c.lastError,
          processing_time: Number(c.processingNs),
          average_processing_time: c.requests === 0 ? 0 : Number(c.processingNs / BigInt(c.requests)),
        };
      }),
    }),
    get requestCount() {
      return requestCount;
    },
    async stop(timeoutMs = STOP_TIMEOUT_MS) {
      if (nc.isClosed()) return;
      const drains = subscriptions.map((s) => s.drain().catch(() => undefined));
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(drains), new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
      clearTimeout(timer);
      for (const s of subscriptions) if (!s.isClosed()) s.unsubscribe();
    },
  };

  // Discovery: no queue group, so every instance answers and a requester gathers them all.
  const discovery: Array<[string, () => unknown]> = [
    ['PING', registration.ping],
    ['INFO', registration.info],
    ['STATS', registration.stats],
  ];
  for (const [verb, answer] of discovery) {
    for (const subject of [
      `${SERVICE_API_PREFIX}.${verb}`,
      `${SERVICE_API_PREFIX}.${verb}.${definition.name}`,
      `${SERVICE_API_PREFIX}.${verb}.${definition.name}.${id}`,
    ]) {
      subscriptions.push(
        nc.subscribe(subject, {
          callback: (err, msg) => {
            if (err === null && msg.reply) msg.respond(encoder.encode(JSON.stringify(answer())));
          },
        }),
      );
    }
  }

  for (const endpoint of endpoints) {
    const options = endpoint.queue ? { queue: endpoint.queue } : {};
    subscriptions.push(
      nc.subscribe(endpoint.subject, {
        ...options,
        callback: (err, msg) => {
          if (err !== null) return;
          requestCount++;
          void answerRequest(nc, endpoint, endpoint.counters, msg);
        },
      }),
    );
  }
  return registration;
}

async function answerRequest(
  nc: NatsConnection,
  endpoint: EndpointDefinition,
  counters: EndpointCounters,
  msg: Msg,
): Promise<void> {
  const start = process.hrtime.bigint();
  counters.requests++;
  let body: Uint8Array;
  let hdrs: MsgHdrs | undefined;
  try {
    const reply = await endpoint.handler({
      data: msg.data,
      subject: msg.subject,
      headers: fromNatsHeaders(msg.headers),
    });
    body = encoder.encode(JSON.stringify(reply));
    const limit = nc.info?.max_payload;
    // The server would drop a reply over its max_payload without a word, and the requester would
    // wait for a bare timeout: answer with an error that says so instead.
    if (limit !== undefined && body.length + REPLY_HEADER_SLACK > limit) {
      throw new TooLargeError(
        `the ${endpoint.name} reply is ${body.length} bytes, over the NATS server's max_payload of ${limit}: raise max_payload in the server's configuration`,
        { details: { bytes: body.length, limit } },
      );
    }
  } catch (err) {
    const error: BertqError = toBertqError(err);
    counters.errors++;
    counters.lastError = `${error.status}:${error.message}`;
    const frame = encodeErrorFrame({}, error, { maxPayload: nc.info?.max_payload });
    body = frame.body;
    hdrs = toNatsHeaders(frame.headers);
  } finally {
    counters.processingNs += process.hrtime.bigint() - start;
  }
  if (!msg.reply || nc.isClosed()) return;
  try {
    msg.respond(body, hdrs === undefined ? undefined : { headers: hdrs });
  } catch {
    // The connection closed under us: a requester gets a timeout, which is all we could tell it.
  }
}

/** How long discovery waits: for the first reply, and after the last one (instances answer within a round trip). */
export const DISCOVERY_MAX_WAIT_MS = 1_000;
export const DISCOVERY_STALL_MS = 150;

/**
 * Every instance of the service `name` that answers `$SRV.PING.<name>` within the discovery window.
 * No responder at all is an empty list; replies that are not the framework's are skipped.
 */
export async function pingServices(nc: NatsConnection, name: string): Promise<PingResponse[]> {
  const found = new Map<string, PingResponse>();
  let replies: AsyncIterable<Msg>;
  try {
    replies = await nc.requestMany(`${SERVICE_API_PREFIX}.PING.${name}`, new Uint8Array(0), {
      strategy: 'stall',
      stall: DISCOVERY_STALL_MS,
      maxWait: DISCOVERY_MAX_WAIT_MS,
    });
  } catch (err) {
    if ((err as { code?: string }).code === '503' || /no responders/i.test(String((err as Error).message))) return [];
    throw err;
  }
  try {
    for await (const msg of replies) {
      if (msg.headers?.code === 503) return [...found.values()]; // no responders
      let doc: Partial<PingResponse>;
      try {
        doc = msg.json();
      } catch {
        continue; // not a services-framework reply: another implementation's noise
      }
      if (typeof doc.id !== 'string' || doc.name !== name) continue;
      found.set(doc.id, {
        type: PING_RESPONSE_TYPE,
        name,
        id: doc.id,
        version: String(doc.version ?? ''),
        metadata: doc.metadata ?? {},
      });
    }
  } catch (err) {
    if (/no responders/i.test(String((err as Error).message))) return [];
    throw err;
  }
  return [...found.values()].sort((a, b) => a.id.localeCompare(b.id));
}
