/**
 * Subject, stream and consumer names of wire protocol v1. Every name a worker, client, gateway or
 * plain `nats` CLI user needs is derived here from one service name, so the parts cannot drift.
 *
 * The version sits in the subject (`bertq.v1.…`) so a v2 fleet can run beside v1 on the same NATS.
 */
import { BadRequestError } from './errors.js';

export const PROTOCOL_VERSION = 'v1';
/** Prefix of every bertq subject. */
export const SUBJECT_ROOT = `bertq.${PROTOCOL_VERSION}`;
/** Name every worker registers under in the NATS services framework (`$SRV.PING.bertq`, `nats micro ls`). */
export const SERVICE_FRAMEWORK_NAME = 'bertq';
/** The service name used when none is given. */
export const DEFAULT_SERVICE = 'default';

export type Priority = 'high' | 'bulk';
export const PRIORITIES: readonly Priority[] = ['high', 'bulk'];

export type ControlOperation = 'config' | 'status' | 'terminate' | 'metrics';
export const CONTROL_OPERATIONS: readonly ControlOperation[] = ['config', 'status', 'terminate', 'metrics'];

const TOKEN = /^[A-Za-z0-9_-]+$/;
const MAX_SERVICE_LENGTH = 64;
const MAX_TOKEN_LENGTH = 128;

/**
 * Checks a service name and returns its canonical form: lower case, with '_' written as '-'.
 * Names are case-insensitive and '-' ≡ '_' because the stream name upper-cases the service and maps
 * '-' to '_': without one canonical form, `a-b` and `A_B` would share a stream but not subjects.
 */
export function normalizeServiceName(service: string): string {
  if (typeof service !== 'string' || service.length === 0) {
    throw new BadRequestError('service name is empty: use 1-64 letters, digits, "-" or "_"');
  }
  if (service.length > MAX_SERVICE_LENGTH || !TOKEN.test(service)) {
    throw new BadRequestError(
      `service name ${JSON.stringify(service)} is invalid: use 1-${MAX_SERVICE_LENGTH} letters, digits, "-" or "_"`,
      { details: { service } },
    );
  }
  return service.toLowerCase().replaceAll('_', '-');
}

/**
 * Checks one subject token chosen by a user or a program (a client identity, a worker id). Unlike
 * service names these keep their case: NUIDs are mixed-case.
 */
export function validateSubjectToken(value: string, what: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_TOKEN_LENGTH || !TOKEN.test(value)) {
    throw new BadRequestError(
      `${what} ${JSON.stringify(value)} is invalid: use 1-${MAX_TOKEN_LENGTH} letters, digits, "-" or "_"`,
      { details: { [what.replaceAll(' ', '_')]: value } },
    );
  }
  return value;
}

/** `bertq.v1.<svc>.jobs.high` or `.jobs.bulk`: where a client publishes a job (a stream subject). */
export function jobSubject(service: string, priority: Priority): string {
  if (priority !== 'high' && priority !== 'bulk') {
    throw new BadRequestError(`priority must be "high" or "bulk", got ${JSON.stringify(priority)}`);
  }
  return `${SUBJECT_ROOT}.${normalizeServiceName(service)}.jobs.${priority}`;
}

/** `bertq.v1.<svc>.jobs.>`: every job subject of a service, the subject filter of its stream. */
export function jobWildcardSubject(service: string): string {
  return `${SUBJECT_ROOT}.${normalizeServiceName(service)}.jobs.>`;
}

/**
 * True when `subject` is `bertq.v1.<service>.results.<identity>` or `…results.<tenant>.<identity>`,
 * the only places a worker of `service` may publish. A job's Bertq-Reply is checked against it: a
 * reply naming any other subject (the fleet's terminate endpoint, another service's results, a deeper
 * subject, `$JS.API…`) is refused and never answered.
 */
export function isResultsSubject(service: string, subject: string): boolean {
  const prefix = `${SUBJECT_ROOT}.${normalizeServiceName(service)}.results.`;
  if (typeof subject !== 'string' || !subject.startsWith(prefix)) return false;
  const tokens = subject.slice(prefix.length).split('.');
  return tokens.length <= 2 && tokens.every((t) => t.length > 0 && t.length <= MAX_TOKEN_LENGTH && TOKEN.test(t));
}

/**
 * `bertq.v1.<svc>.results.<identity>`: where workers publish result frames. Every subscriber of it
 * receives them, so clients that share an identity share results (bert-as-service's multicast).
 *
 * With a tenant, `bertq.v1.<svc>.results.<tenant>.<identity>`: the tenant is a subject token of its
 * own because NATS permissions match whole tokens, so a tenant's user can be allowed
 * `…results.<tenant>.*` and nothing else (docs/security.md, "Tenants").
 */
export function resultsSubject(service: string, identity: string, tenant?: string): string {
  const base = `${SUBJECT_ROOT}.${normalizeServiceName(service)}.results`;
  const id = validateSubjectToken(identity, 'client identity');
  return tenant === undefined ? `${base}.${id}` : `${base}.${validateTenant(tenant)}.${id}`;
}

/**
 * Checks a tenant name: one subject token, used in results subjects and as the inbox prefix
 * `_INBOX.<tenant>` of the tenant's connections.
 */
export function validateTenant(tenant: string): string {
  return validateSubjectToken(tenant, 'tenant');
}

/**
 * `_BERTQ_WORKER_INBOX`: the inbox prefix of every worker-side connection (workers and the fleet's
 * supervisor). JetStream delivers pulled jobs to the puller's inbox, so a worker on the default
 * `_INBOX.<nuid>` would hand every job's text, id and reply to any client allowed `_INBOX.>`. Its
 * first token is not `_INBOX`, so no client role may read it (docs/security.md).
 */
export const WORKER_INBOX_PREFIX = '_BERTQ_WORKER_INBOX';

/** `_INBOX.<tenant>`: the inbox prefix of a tenant's connections, the only inbox its user may read. */
export function tenantInboxPrefix(tenant: string): string {
  return `_INBOX.${validateTenant(tenant)}`;
}

/**
 * `bertq.v1.<svc>.cancel`: where a client says it no longer waits for a request (closed, aborted,
 * past its deadline). Core NATS, heard by every worker (no queue group): each skips the request's
 * jobs it holds or will pull. Headers Bertq-Id and Bertq-Reply name the request; no body.
 */
export function cancelSubject(service: string): string {
  return `${SUBJECT_ROOT}.${normalizeServiceName(service)}.cancel`;
}

/**
 * `bertq.v1.<svc>.<op>`: a control endpoint answered by any one worker (services-framework queue
 * group); with `workerId`, `bertq.v1.<svc>.<op>.<workerId>`, answered by that worker only.
 */
export function controlSubject(service: string, op: ControlOperation, workerId?: string): string {
  if (!CONTROL_OPERATIONS.includes(op)) {
    throw new BadRequestError(
      `control operation must be one of ${CONTROL_OPERATIONS.join(', ')}, got ${JSON.stringify(op)}`,
    );
  }
  const base = `${SUBJECT_ROOT}.${normalizeServiceName(service)}.${op}`;
  return workerId === undefined ? base : `${base}.${validateSubjectToken(workerId, 'worker id')}`;
}

/** `BERTQ_<SVC>`: the JetStream stream (work-queue retention) that holds a service's jobs. */
export function streamName(service: string): string {
  return `BERTQ_${normalizeServiceName(service).toUpperCase().replaceAll('-', '_')}`;
}

/**
 * Durable pull consumer of one priority class. Names are scoped to the stream, so `high` and `bulk`
 * are unique without repeating the service; every worker of the service binds to the same two.
 */
export function consumerName(priority: Priority): string {
  if (priority !== 'high' && priority !== 'bulk') {
    throw new BadRequestError(`priority must be "high" or "bulk", got ${JSON.stringify(priority)}`);
  }
  return priority;
}

/**
 * bert-as-service's priority rule: a job of at most `priorityBatchSize` rows jumps the queue. Workers
 * drain `high` before `bulk`, so interactive single sentences are not stuck behind bulk loads.
 */
export function priorityFor(rows: number, priorityBatchSize: number): Priority {
  return rows <= priorityBatchSize ? 'high' : 'bulk';
}

/** Every name of one service, derived at once (for workers and clients that need them all). */
export interface ServiceNames {
  /** Canonical service name (lower case, '-' for '_'). */
  service: string;
  stream: string;
  jobs: { high: string; bulk: string; all: string };
  consumers: { high: string; bulk: string };
  control: { config: string; status: string; terminate: string };
  /** Where clients cancel requests they no longer wait for (cancelSubject). */
  cancel: string;
  /** Results subject of a client identity (of a tenant, when given). */
  results(identity: string, tenant?: string): string;
  /** Direct control subject of one worker. */
  workerControl(op: ControlOperation, workerId: string): string;
}

export function serviceNames(service: string): ServiceNames {
  const svc = normalizeServiceName(service);
  return {
    service: svc,
    stream: streamName(svc),
    jobs: { high: jobSubject(svc, 'high'), bulk: jobSubject(svc, 'bulk'), all: jobWildcardSubject(svc) },
    consumers: { high: consumerName('high'), bulk: consumerName('bulk') },
    control: {
      config: controlSubject(svc, 'config'),
      status: controlSubject(svc, 'status'),
      terminate: controlSubject(svc, 'terminate'),
    },
    cancel: cancelSubject(svc),
    results: (identity, tenant) => resultsSubject(svc, identity, tenant),
    workerControl: (op, workerId) => controlSubject(svc, op, workerId),
  };
}

/**
 * True for a subject a message can be published to: dot-separated non-empty tokens, no wildcards, no
 * whitespace or control characters. Used to check the reply subject a job names.
 */
export function isPublishSubject(subject: string): boolean {
  if (typeof subject !== 'string' || subject.length === 0 || subject.length > 1024) return false;
  // eslint-disable-next-line no-control-regex
  if (/[\s\u0000-\u001f\u007f]/.test(subject)) return false;
  for (const token of subject.split('.')) {
    if (token.length === 0 || token === '*' || token === '>') return false;
  }
  return true;
}
