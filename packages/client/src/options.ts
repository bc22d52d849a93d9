/**
 * Options of BertClient and of each call, and their validation. Everything is checked before any
 * connection is opened or anything is sent, so a typo is a BadRequestError naming the option, not a
 * hang or a server-side refusal.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { NatsConnectOptions } from '@bertq/nats';
import {
  BadRequestError,
  OUTPUT_DTYPES,
  newRequestId,
  normalizeServiceName,
  validateSubjectToken,
  validateTenant,
  DEFAULT_SERVICE,
  type OutputDtype,
} from '@bertq/protocol';
import type { FrameReport, OutputFormat } from './types.js';

export const DEFAULT_SERVER = 'nats://127.0.0.1:4222';
/** Environment variable naming the NATS server(s), comma-separated, as for the CLI. */
export const SERVER_ENV = 'BERTQ_NATS_URL';
export const DEFAULT_TIMEOUT_MS = 60_000;
/** Rows per chunk when no server config could be read and the caller named none. */
export const FALLBACK_CHUNK_ROWS = 256;
/** Requests `encodeAsync` keeps in flight unless told otherwise (bert-as-service's max_num_batch). */
export const DEFAULT_MAX_IN_FLIGHT = 8;
/** Deliveries a listen() iterator buffers before it fails with OVERLOADED. */
export const DEFAULT_LISTEN_BUFFER = 10_000;
/** setTimeout cannot wait longer than 2^31-1 ms (~24.8 days); longer timers fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const OUTPUT_FORMATS: readonly OutputFormat[] = ['ndarray', 'list'];

/**
 * Options of `BertClient.connect`. How to reach NATS (user/pass, token, nkeySeedFile, credsFile, tls,
 * name, maxReconnectAttempts) is spelled as everywhere in bertq: see `NatsConnectOptions`.
 */
export interface ClientOptions<F extends OutputFormat = OutputFormat>
  extends Omit<NatsConnectOptions, 'servers' | 'connectTimeoutMs'> {
  /** NATS server URL(s). Default: env BERTQ_NATS_URL (comma-separated), else nats://127.0.0.1:4222. */
  servers?: string | string[];
  /**
   * An open NATS connection to use instead of opening one (e.g. a gateway sharing its connection).
   * `close()` then leaves it open. Connection options (servers, user, tls, …) are ignored.
   */
  nc?: NatsConnection;
  /** Service to talk to (workers started with the same `--service`). Default `default`. */
  service?: string;
  /**
   * Results subject token. Clients sharing an identity all receive every result sent to it
   * (bert-as-service's multicast). Default: a fresh unique id, so results are private.
   */
  identity?: string;
  /**
   * Deadline of every call in milliseconds (default 60 000): a request not complete by then fails
   * with TIMEOUT naming the missing rows, and workers drop its expired chunks. Also bounds connecting.
   * -1 (bert-as-service's timeout=-1): wait as long as it takes; a request still fails with
   * NO_WORKERS within seconds once no worker serves the service.
   */
  timeout?: number;
  /**
   * Compare this client's version with the workers' (bert-as-service's check_version): a different
   * major version (minor, before 1.0) fails the first request with a BAD_REQUEST naming both.
   * `false` only warns. Default true.
   */
  checkVersion?: boolean;
  /** `ndarray` (default): `{ data: Float32Array, shape }`; `list`: nested number arrays. */
  outputFmt?: F;
  /**
   * Most rows per published chunk. Default: the server's max_batch_size (from its config), else 256.
   * A larger value is lowered to the server's max_batch_size; chunks are also cut to fit max_payload.
   */
  maxChunkRows?: number;
  /** Read the server config while connecting and print it (fails with NO_WORKERS when none answers). */
  showServerConfig?: boolean;
}

/** Options of one `encode` call. */
export interface EncodeOptions {
  /** Rows are token lists, not strings (bert-as-service's is_tokenized). */
  isTokenized?: boolean;
  /** Also return each row's tokens (needs workers started with show_tokens_to_client). */
  showTokens?: boolean;
  /**
   * Rows longer than the service's max_seq_len (bert-as-service's check_length): `'warn'` (default)
   * encodes what fits and warns once per request when rows reached max_seq_len (and were probably
   * cut); `true` refuses such a row with TOO_LONG naming it; `false` cuts silently.
   */
  checkLength?: boolean | 'warn';
  /** Deadline of this call in ms; default the client's `timeout`. */
  timeout?: number;
  /**
   * Encoding of the result frames on the wire: `f32` (default, exact), `f16` (half the bytes, about
   * 3 significant digits), `json` (readable with the `nats` CLI; slowest). The result is Float32 either way.
   */
  output?: OutputDtype;
  /** `false`: send and return the request id at once; get the result with fetch()/fetchAll(). */
  blocking?: boolean;
  /** Abandons the call: it rejects with the signal's reason, and late frames are ignored. */
  signal?: AbortSignal;
  /**
   * Called for each result frame that brings new rows of this request (not for duplicates), with the
   * worker's stage timings: what a caller needs for latency metrics. Runs on the receive path: keep
   * it cheap; what it throws is ignored.
   */
  onFrame?: (report: FrameReport) => void;
}

/** Options of `encodeAsync`. */
export interface EncodeAsyncOptions extends Omit<EncodeOptions, 'blocking'> {
  /** Requests kept in flight at once (not bert-as-service's max_num_batch, which ends the input after that many batches: end the iterable instead). Default 8. */
  maxInFlight?: number;
}

/** Options of `listen`. */
export interface ListenOptions {
  /**
   * Deliveries buffered while the consumer is busy; past it the iterator fails with OVERLOADED rather
   * than growing without bound. Default 10 000.
   */
  maxBuffered?: number;
}

/** Client options with defaults applied and every value checked. */
export interface ResolvedClientOptions {
  servers: string[];
  service: string;
  identity: string;
  /** Results go to `…results.<tenant>.<identity>` when set (docs/security.md, "Tenants"). */
  tenant: string | undefined;
  timeoutMs: number;
  outputFmt: OutputFormat;
  maxChunkRows: number | undefined;
  showServerConfig: boolean;
  checkVersion: boolean;
}

/** Checks the client options and fills in defaults. `env` is injectable for tests. */
export function resolveClientOptions(
  options: ClientOptions,
  env: NodeJS.ProcessEnv = process.env,
): ResolvedClientOptions {
  if (options === null || typeof options !== 'object') {
    throw new BadRequestError(`client options must be an object, got ${options === null ? 'null' : typeof options}`);
  }
  checkOptionNames(options);
  const service = normalizeServiceName(options.service ?? DEFAULT_SERVICE);
  const identity =
    options.identity === undefined ? newRequestId() : validateSubjectToken(options.identity, 'client identity');
  const tenant = options.tenant === undefined ? undefined : validateTenant(options.tenant);
  const timeoutMs = checkTimeout(options.timeout ?? DEFAULT_TIMEOUT_MS, 'timeout');
  const outputFmt = options.outputFmt ?? 'ndarray';
  if (!OUTPUT_FORMATS.includes(outputFmt)) {
    throw new BadRequestError(
      `outputFmt must be ${OUTPUT_FORMATS.map((f) => JSON.stringify(f)).join(' or ')}, got ${JSON.stringify(outputFmt)}`,
    );
  }
  const maxChunkRows =
    options.maxChunkRows === undefined ? undefined : checkPositiveInt(options.maxChunkRows, 'maxChunkRows');
  return {
    servers: resolveServers(options.servers, env),
    service,
    identity,
    tenant,
    timeoutMs,
    outputFmt,
    maxChunkRows,
    showServerConfig: options.showServerConfig === true,
    checkVersion: options.checkVersion !== false,
  };
}

/** The options that say how to reach NATS (NatsConnectOptions' own, minus servers and the connect time). */
const NATS_OPTION_NAMES = [
  'name',
  'user',
  'pass',
  'token',
  'nkeySeedFile',
  'nkeySeed',
  'credsFile',
  'tls',
  'maxReconnectAttempts',
  'tenant',
] as const satisfies ReadonlyArray<keyof ClientOptions>;
const CLIENT_OPTION_NAMES = new Set<string>([
  'servers',
  'nc',
  'service',
  'identity',
  'timeout',
  'outputFmt',
  'maxChunkRows',
  'showServerConfig',
  'checkVersion',
  ...NATS_OPTION_NAMES,
]);

/** The NATS connection part of client options (auth, TLS, name, reconnect policy), as given. */
export function natsPart(options: ClientOptions): Omit<NatsConnectOptions, 'servers'> {
  const out: Record<string, unknown> = {};
  for (const key of NATS_OPTION_NAMES) if (options[key] !== undefined) out[key] = options[key];
  return out as Omit<NatsConnectOptions, 'servers'>;
}

/**
 * Refuses options this client does not have, so a typo or a bert-as-service habit is not silently
 * ignored while the client connects elsewhere. ip/port/port_out get the fix spelled out.
 */
function checkOptionNames(options: object): void {
  const given = Object.keys(options);
  const zmq = given.filter((k) => k === 'ip' || k === 'port' || k === 'port_out');
  if (zmq.length > 0) {
    const o = options as { ip?: unknown };
    const host = typeof o.ip === 'string' && o.ip !== '' ? o.ip : '127.0.0.1';
    throw new BadRequestError(
      `${zmq.join(', ')} ${zmq.length > 1 ? 'are' : 'is'} bert-as-service's ZeroMQ option${zmq.length > 1 ? 's' : ''}; bertq talks to one NATS server: pass servers: 'nats://${host}:4222' (the NATS port, 4222 by default)`,
    );
  }
  const unknown = given.filter((k) => !CLIENT_OPTION_NAMES.has(k));
  if (unknown.length > 0) {
    throw new BadRequestError(
      `unknown client option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')}; the options are ${[...CLIENT_OPTION_NAMES].join(', ')}`,
    );
  }
}

/** Server list: the option, else BERTQ_NATS_URL (comma-separated), else the local default. */
export function resolveServers(servers: string | string[] | undefined, env: NodeJS.ProcessEnv = process.env): string[] {
  const fromEnv = env[SERVER_ENV]?.trim();
  const list =
    servers === undefined
      ? fromEnv
        ? fromEnv.split(',')
        : [DEFAULT_SERVER]
      : Array.isArray(servers)
        ? servers
        : [servers];
  const cleaned = list.map((s) => (typeof s === 'string' ? s.trim() : s));
  if (cleaned.length === 0 || cleaned.some((s) => typeof s !== 'string' || s.length === 0)) {
    throw new BadRequestError(
      `servers must be one or more NATS URLs like ${DEFAULT_SERVER}, got ${JSON.stringify(servers)}`,
    );
  }
  return cleaned;
}

/** Per-call options, checked; `timeoutMs` falls back to the client's. */
export function resolveEncodeOptions(
  options: EncodeOptions | undefined,
  clientTimeoutMs: number,
): Required<Pick<EncodeOptions, 'isTokenized' | 'showTokens' | 'output' | 'blocking' | 'checkLength'>> & {
  timeoutMs: number;
  signal: AbortSignal | undefined;
  onFrame: EncodeOptions['onFrame'];
} {
  const o = options ?? {};
  if (typeof o !== 'object') throw new BadRequestError(`encode options must be an object, got ${typeof o}`);
  for (const key of ['isTokenized', 'showTokens', 'blocking'] as const) {
    if (o[key] !== undefined && typeof o[key] !== 'boolean') {
      throw new BadRequestError(`encode option ${key} must be true or false, got ${JSON.stringify(o[key])}`);
    }
  }
  if (o.checkLength !== undefined && typeof o.checkLength !== 'boolean' && o.checkLength !== 'warn') {
    throw new BadRequestError(
      `encode option checkLength must be true, false or 'warn', got ${JSON.stringify(o.checkLength)}`,
    );
  }
  if (o.onFrame !== undefined && typeof o.onFrame !== 'function') {
    throw new BadRequestError(`encode option onFrame must be a function, got ${typeof o.onFrame}`);
  }
  const output = o.output ?? 'f32';
  if (!OUTPUT_DTYPES.includes(output)) {
    throw new BadRequestError(
      `encode option output must be one of ${OUTPUT_DTYPES.map((d) => JSON.stringify(d)).join(', ')}, got ${JSON.stringify(output)}`,
    );
  }
  return {
    isTokenized: o.isTokenized === true,
    showTokens: o.showTokens === true,
    blocking: o.blocking !== false,
    checkLength: o.checkLength ?? 'warn',
    output,
    timeoutMs: o.timeout === undefined ? clientTimeoutMs : checkTimeout(o.timeout, 'timeout'),
    signal: o.signal,
    onFrame: o.onFrame,
  };
}

/** A timeout of -1: as long as it takes (the longest timer Node can set). */
export const WAIT_FOREVER = -1;

export function checkTimeout(value: number, what: string): number {
  if (value === WAIT_FOREVER) return MAX_TIMER_MS;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > MAX_TIMER_MS) {
    throw new BadRequestError(
      `${what} must be a number of milliseconds between 1 and ${MAX_TIMER_MS}, or -1 for as long as it takes, got ${String(value)}`,
    );
  }
  return Math.ceil(value);
}

export function checkPositiveInt(value: number, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new BadRequestError(`${what} must be a positive integer, got ${String(value)}`);
  }
  return value;
}
