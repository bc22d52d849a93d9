/**
 * The control plane seen from a client: one worker's config (`bertq.v1.<svc>.config`), and the
 * fleet's status gathered the way docs/protocol.md says: `$SRV.PING.bertq`, keep the workers of this
 * service, ask each its own `status.<worker_id>`, and sum what adds up.
 */
import { Empty, type NatsConnection } from '@nats-io/transport-node';
import {
  NoWorkersError,
  PROTOCOL_ID,
  SERVICE_FRAMEWORK_NAME,
  TimeoutError,
  UnauthorizedError,
  controlSubject,
  decodeControlReply,
  toBertqError,
  type ConsumerDepth,
  type ServerConfig,
  type ServerStatus,
  type TerminateReply,
  type TerminateRequest,
} from '@bertq/protocol';
import { fromNatsHeaders, pingServices } from '@bertq/nats';
import { isNoResponders } from './publish.js';

/** Longest wait for one control reply. */
export const CONTROL_TIMEOUT_MS = 5_000;

function noWorkers(service: string, what: string, cause?: unknown): NoWorkersError {
  return new NoWorkersError(
    `no worker serves service "${service}": ${what}; start one with \`bertq start --service ${service}\``,
    {
      cause,
      details: { service },
    },
  );
}

/** The broker refused the publish (NATS permissions). */
function isPermissionDenied(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (/permissions violation/i.test(e.message)) return true;
  }
  return false;
}

function isTimeout(err: unknown): boolean {
  return (
    err instanceof Error &&
    (err.name === 'TimeoutError' || (err.cause instanceof Error && err.cause.name === 'TimeoutError'))
  );
}

/** Config of any one worker of the service (the `config` endpoint's queue group picks it). */
export async function requestServerConfig(
  nc: NatsConnection,
  service: string,
  timeoutMs = CONTROL_TIMEOUT_MS,
): Promise<ServerConfig> {
  const subject = controlSubject(service, 'config');
  try {
    const reply = await nc.request(subject, Empty, { timeout: timeoutMs });
    return decodeControlReply('config', fromNatsHeaders(reply.headers), reply.data);
  } catch (err) {
    if (isNoResponders(err)) throw noWorkers(service, `nothing answers ${subject}`, err);
    if (isTimeout(err))
      throw new TimeoutError(`no worker of service "${service}" answered ${subject} within ${timeoutMs} ms`, {
        cause: err,
      });
    throw toBertqError(err);
  }
}

/** A worker found by `$SRV.PING.bertq`. */
export interface DiscoveredWorker {
  id: string;
  version?: string;
  metadata: Record<string, string>;
}

/** The ids of every worker of `service` that answers `$SRV.PING.bertq` within the discovery window. */
export async function discoverWorkers(nc: NatsConnection, service: string): Promise<DiscoveredWorker[]> {
  let replies: Awaited<ReturnType<typeof pingServices>>;
  try {
    replies = await pingServices(nc, SERVICE_FRAMEWORK_NAME);
  } catch (err) {
    throw toBertqError(err);
  }
  return replies
    .filter((r) => r.metadata.service === service && r.metadata.protocol === PROTOCOL_ID)
    .map((r) => ({ id: r.id, version: r.version === '' ? undefined : r.version, metadata: r.metadata }));
}

/** Status of the whole fleet of one service (what `bertq status` and `GET /status/server` show). */
export interface FleetStatus {
  protocol: typeof PROTOCOL_ID;
  service: string;
  /** When the status was gathered (ISO 8601). */
  server_current_time: string;
  /** Workers that answered with their status. */
  num_workers: number;
  /** Workers per state. */
  states: { starting: number; ready: number; draining: number };
  /** Counters summed over the workers (rates too: each worker reports its own). */
  statistic: {
    num_data_request: number;
    num_total_seq: number;
    num_sys_request: number;
    num_total_request: number;
    num_exception: number;
    num_timeout: number;
    num_redelivered: number;
    request_per_second: number;
    seq_per_second: number;
    /** Rows per second the workers drain a backlog at (measured while saturated), summed. */
    capacity_seq_per_second: number;
    /** The same by batch size (keyed by the largest power of two a batch holds), summed over the workers that ran it. */
    capacity_by_batch_rows: Record<string, number>;
  };
  /**
   * The JetStream queue: the consumers are shared by the fleet, so this is one reading (the most
   * recent report), not a sum. `local_rows` sums the rows each worker holds in its own queue.
   */
  queue: { high: ConsumerDepth; bulk: ConsumerDepth; local_rows: number };
  /** Every worker's own status, by worker_id. */
  workers: ServerStatus[];
  /** Workers that answered discovery but not the status request, with the reason. */
  unreachable: Array<{ worker_id: string; error: string }>;
}

const SUMMED = [
  'num_data_request',
  'num_total_seq',
  'num_sys_request',
  'num_total_request',
  'num_exception',
  'num_timeout',
  'num_redelivered',
  'request_per_second',
  'seq_per_second',
  'capacity_seq_per_second',
] as const;

/** Sums one fleet status from per-worker statuses (pure: no I/O). */
export function aggregateStatus(
  service: string,
  statuses: readonly ServerStatus[],
  unreachable: FleetStatus['unreachable'] = [],
  now: Date = new Date(),
): FleetStatus {
  const workers = [...statuses].sort((a, b) => a.worker_id.localeCompare(b.worker_id));
  const statistic = {
    ...Object.fromEntries(SUMMED.map((k) => [k, 0])),
    capacity_by_batch_rows: {},
  } as FleetStatus['statistic'];
  const states = { starting: 0, ready: 0, draining: 0 };
  let localRows = 0;
  for (const w of workers) {
    for (const k of SUMMED) {
      const v = w.statistic[k];
      if (typeof v === 'number' && Number.isFinite(v)) statistic[k] += v;
    }
    const bySize = statistic.capacity_by_batch_rows;
    for (const [size, rate] of Object.entries(w.statistic.capacity_by_batch_rows ?? {})) {
      if (typeof rate === 'number' && Number.isFinite(rate)) bySize[size] = (bySize[size] ?? 0) + rate;
    }
    states[w.state] += 1;
    localRows += w.queue.local_rows;
  }
  const latest = [...workers].sort((a, b) => Date.parse(b.server_current_time) - Date.parse(a.server_current_time))[0];
  const unknown: ConsumerDepth = { pending: null, ack_pending: null };
  return {
    protocol: PROTOCOL_ID,
    service,
    server_current_time: now.toISOString(),
    num_workers: workers.length,
    states,
    statistic,
    queue: { high: latest?.queue.high ?? unknown, bulk: latest?.queue.bulk ?? unknown, local_rows: localRows },
    workers,
    unreachable,
  };
}

/** Discovers the fleet, asks every worker its status, and aggregates. NO_WORKERS when none is found. */
export async function requestFleetStatus(
  nc: NatsConnection,
  service: string,
  timeoutMs = CONTROL_TIMEOUT_MS,
): Promise<FleetStatus> {
  const found = await discoverWorkers(nc, service);
  if (found.length === 0)
    throw noWorkers(service, `no worker of this service answered $SRV.PING.${SERVICE_FRAMEWORK_NAME}`);
  const statuses: ServerStatus[] = [];
  const unreachable: FleetStatus['unreachable'] = [];
  await Promise.all(
    found.map(async (worker) => {
      const subject = controlSubject(service, 'status', worker.id);
      try {
        const reply = await nc.request(subject, Empty, { timeout: timeoutMs });
        statuses.push(decodeControlReply('status', fromNatsHeaders(reply.headers), reply.data));
      } catch (err) {
        // A worker that left between discovery and now, or answers garbage: report, keep the rest.
        const message = isNoResponders(err)
          ? 'no longer answers'
          : isTimeout(err)
            ? `no reply within ${timeoutMs} ms`
            : (err as Error).message;
        unreachable.push({ worker_id: worker.id, error: message });
      }
    }),
  );
  if (statuses.length === 0) {
    throw noWorkers(
      service,
      `${found.length} worker(s) answered discovery but none answered its status: ${unreachable.map((u) => `${u.worker_id}: ${u.error}`).join('; ')}`,
    );
  }
  return aggregateStatus(
    service,
    statuses,
    unreachable.sort((a, b) => a.worker_id.localeCompare(b.worker_id)),
  );
}

/**
 * Every worker's metrics registry (prom-client's JSON form, one list per worker, each series
 * labelled with its worker), for a gateway to sum into one Prometheus page. Workers that do not
 * answer in time are left out: a scrape shows what it can.
 */
export async function requestFleetMetrics(
  nc: NatsConnection,
  service: string,
  timeoutMs = CONTROL_TIMEOUT_MS,
): Promise<unknown[][]> {
  const found = await discoverWorkers(nc, service);
  const replies = await Promise.all(
    found.map(async (worker) => {
      try {
        const reply = await nc.request(controlSubject(service, 'metrics', worker.id), Empty, { timeout: timeoutMs });
        return decodeControlReply('metrics', fromNatsHeaders(reply.headers), reply.data);
      } catch {
        return undefined;
      }
    }),
  );
  return replies.filter((r): r is unknown[] => r !== undefined);
}

/** What `terminate` achieved: the workers now draining, and those that did not answer. */
export interface TerminateResult {
  service: string;
  draining: TerminateReply[];
  unreachable: Array<{ worker_id: string; error: string }>;
}

/**
 * Asks every worker of the service to drain and exit (bert-as-service's bert-serving-terminate):
 * each finishes the jobs it holds; jobs still queued in JetStream wait for the next worker.
 */
export async function requestTerminate(
  nc: NatsConnection,
  service: string,
  request: TerminateRequest = {},
  timeoutMs = CONTROL_TIMEOUT_MS,
): Promise<TerminateResult> {
  const found = await discoverWorkers(nc, service);
  if (found.length === 0)
    throw noWorkers(service, `no worker of this service answered $SRV.PING.${SERVICE_FRAMEWORK_NAME}`);
  const body = new TextEncoder().encode(JSON.stringify(request));
  const result: TerminateResult = { service, draining: [], unreachable: [] };
  let denied: UnauthorizedError | undefined;
  await Promise.all(
    found.map(async (worker) => {
      const subject = controlSubject(service, 'terminate', worker.id);
      try {
        const reply = await nc.request(subject, body, { timeout: timeoutMs });
        result.draining.push(decodeControlReply('terminate', fromNatsHeaders(reply.headers), reply.data));
      } catch (err) {
        if (isPermissionDenied(err)) {
          denied ??= new UnauthorizedError(
            `this NATS user may not publish to ${subject}: terminating a fleet takes the admin role (docs/security.md)`,
            { cause: err, details: { subject } },
          );
        }
        const message = isNoResponders(err)
          ? 'no longer answers'
          : isTimeout(err)
            ? `no reply within ${timeoutMs} ms`
            : (err as Error).message;
        result.unreachable.push({ worker_id: worker.id, error: message });
      }
    }),
  );
  // Refused by the broker and stopped nothing: say so, do not report a quiet success.
  if (denied !== undefined && result.draining.length === 0) throw denied;
  result.draining.sort((a, b) => a.worker_id.localeCompare(b.worker_id));
  return result;
}
