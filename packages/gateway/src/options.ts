/**
 * Options of the HTTP gateway and their validation. Everything is checked before a port is opened or
 * NATS is dialled, so a typo is a BadRequestError naming the option, not a server that half starts.
 */
import type { ClientOptions } from '@bertq/client';
import { BadRequestError } from '@bertq/protocol';
import { LOOPBACK_HOSTS } from '@bertq/nats';
import type { Logger } from 'pino';

/** bert-as-service's HTTP example port. */
export const DEFAULT_HTTP_PORT = 8125;
/** Loopback only: serving the network is a choice (`--http-host 0.0.0.0`), not a default. */
export const DEFAULT_HTTP_HOST = '127.0.0.1';
/**
 * No cross-origin calls: a web page the user opens must not read a local gateway's answers.
 * bert-as-service's `*` is `--cors '*'`.
 */
export const DEFAULT_CORS = 'none';
/** Open HTTP connections at once; past it new connections are refused (bert-as-service's -http_max_connect). */
export const DEFAULT_MAX_CONNECTIONS = 1024;
/**
 * Rows in one HTTP request (OpenAI's own limit for /v1/embeddings inputs). The answer is one JSON
 * document held in memory, so the cap is what keeps a single request from growing the gateway's
 * process by gigabytes; bigger jobs belong to the streaming library client or `bertq encode`.
 */
export const DEFAULT_MAX_CLIENT_BATCH_SIZE = 2048;
/** Dashboard event streams open at once; past it /events answers 429. */
export const DEFAULT_MAX_EVENT_STREAMS = 32;
/** 10 MiB: ~40k short sentences in one request; anything larger is better streamed through the NATS client. */
export const DEFAULT_BODY_LIMIT = 10 * 1024 * 1024;
/** Deadline of one encode request through the fleet (the client's default). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
/** Headers of a request must arrive within this. */
export const DEFAULT_HEADERS_TIMEOUT_MS = 20_000;
/** The whole request (headers and body) must arrive within this. */
export const DEFAULT_RECEIVE_TIMEOUT_MS = 60_000;
/** How long a fleet status (one $SRV.PING round plus a status request per worker) is reused. */
export const DEFAULT_STATUS_CACHE_MS = 1_000;
/** How long close() lets requests in flight finish before it cuts their connections. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;
/** Points (one per second) the dashboard's charts keep. */
export const DEFAULT_HISTORY_POINTS = 300;

/** What `startGateway` takes. */
export interface GatewayOptions {
  /**
   * How to reach the fleet: the NATS servers, auth, TLS, service name (the gateway is a NATS client
   * of the fleet, so it scales and restarts on its own). `timeout` is replaced by `requestTimeoutMs`.
   */
  client?: Omit<ClientOptions<'ndarray'>, 'outputFmt' | 'timeout' | 'showServerConfig'>;
  /** TCP port; 0 picks a free one (see `GatewayHandle.port`). Default 8125. */
  port?: number;
  /** Interface to listen on. Default `127.0.0.1` (this host only); `0.0.0.0` serves the network. */
  host?: string;
  /** Serve HTTPS with this certificate and key (PEM files). Default: plain HTTP. */
  tls?: { certFile: string; keyFile: string };
  /**
   * Which web pages may call the API from a browser: `none` (default: no CORS headers, browsers
   * block cross-origin calls), a comma-separated list of origins (only those; the matching one is
   * echoed), or `*` (any page, as bert-as-service allowed: set a token then).
   */
  cors?: string;
  /**
   * Bearer token every API call must send (`Authorization: Bearer <token>`); compared in constant
   * time. `/health`, `/ready`, CORS preflights and the dashboard's static files stay open so probes
   * and the login prompt work. Default: none (open API — put it behind a private network).
   */
  token?: string;
  /**
   * Host names a request's `Host` header may name when there is no token (DNS rebinding: a web page
   * whose name is re-pointed at 127.0.0.1 is same-origin with the gateway, and CORS no longer stands
   * in its way). Always allowed: localhost, 127.0.0.1, ::1 and the address it listens on. A comma
   * list or an array; `*` allows any (behind a proxy that checks Host itself).
   */
  allowedHosts?: string | readonly string[];
  /** Largest request body in bytes; larger ones get 413 TOO_LARGE before they are read. Default 10 MiB. */
  bodyLimit?: number;
  /**
   * Deadline of one encode request in ms: past it the request fails with 504 TIMEOUT and workers
   * drop its queued chunks. Default 60 000.
   */
  requestTimeoutMs?: number;
  /**
   * A request's headers must arrive within headersTimeoutMs, and the whole request (headers and
   * body) within receiveTimeoutMs; a slower client (slowloris) gets 408 and its connection is closed.
   * Defaults 20 000 and 60 000 ms.
   */
  headersTimeoutMs?: number;
  receiveTimeoutMs?: number;
  /** How long a fleet status is reused by /status/server, /metrics and the dashboard. Default 1 000 ms. */
  statusCacheMs?: number;
  /** Drain budget of `close()`. Default 10 000 ms. */
  drainTimeoutMs?: number;
  /** Seconds of per-second history the dashboard's charts show. Default 300. */
  historyPoints?: number;
  /** Open HTTP connections at once (new ones past it are closed at once). Default 1024. */
  maxConnections?: number;
  /** Rows in one /encode or /v1/embeddings request; more is 413 TOO_LARGE (TEI's --max-client-batch-size). Default 2048. */
  maxClientBatchSize?: number;
  /** Dashboard event streams at once (past it /events answers 429). Default 32. */
  maxEventStreams?: number;
  /** Parent logger; the gateway logs through a child `{component: 'gateway'}`. Default: silent. */
  logger?: Logger;
}

/** The options with defaults applied and every value checked. */
export interface ResolvedGatewayOptions {
  port: number;
  host: string;
  cors: CorsPolicy;
  token: string | undefined;
  /** Host names requests may name without a token; 'any' when `*` was given. */
  allowedHosts: ReadonlySet<string> | 'any';
  bodyLimit: number;
  requestTimeoutMs: number;
  headersTimeoutMs: number;
  receiveTimeoutMs: number;
  statusCacheMs: number;
  drainTimeoutMs: number;
  historyPoints: number;
  maxConnections: number;
  maxClientBatchSize: number;
  maxEventStreams: number;
  tls: { certFile: string; keyFile: string } | undefined;
}

/** Which browser origins may call the API. */
export type CorsPolicy = { kind: 'any' } | { kind: 'none' } | { kind: 'list'; origins: ReadonlySet<string> };

export function resolveGatewayOptions(options: GatewayOptions): ResolvedGatewayOptions {
  if (options === null || typeof options !== 'object') throw new BadRequestError('gateway options must be an object');
  const port = options.port ?? DEFAULT_HTTP_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65_535)
    throw new BadRequestError(`gateway port must be an integer from 0 to 65535, got ${String(port)}`);
  const host = options.host ?? DEFAULT_HTTP_HOST;
  if (typeof host !== 'string' || host.trim() === '')
    throw new BadRequestError(`gateway host must be a host name or address, got ${JSON.stringify(host)}`);
  const token = options.token;
  if (token !== undefined && (typeof token !== 'string' || token.length === 0 || /\s/.test(token))) {
    throw new BadRequestError(
      'gateway token must be a non-empty string without whitespace (it is sent as `Authorization: Bearer <token>`)',
    );
  }
  return {
    port,
    host: host.trim(),
    cors: parseCors(options.cors ?? DEFAULT_CORS),
    token,
    bodyLimit: positiveInt(options.bodyLimit ?? DEFAULT_BODY_LIMIT, 'bodyLimit (bytes)'),
    requestTimeoutMs: positiveInt(options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS, 'requestTimeoutMs'),
    headersTimeoutMs: positiveInt(
      Math.min(
        options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS,
        options.receiveTimeoutMs ?? DEFAULT_RECEIVE_TIMEOUT_MS,
      ),
      'headersTimeoutMs',
    ),
    receiveTimeoutMs: positiveInt(options.receiveTimeoutMs ?? DEFAULT_RECEIVE_TIMEOUT_MS, 'receiveTimeoutMs'),
    statusCacheMs: nonNegativeInt(options.statusCacheMs ?? DEFAULT_STATUS_CACHE_MS, 'statusCacheMs'),
    drainTimeoutMs: nonNegativeInt(options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS, 'drainTimeoutMs'),
    historyPoints: positiveInt(options.historyPoints ?? DEFAULT_HISTORY_POINTS, 'historyPoints'),
    maxConnections: positiveInt(options.maxConnections ?? DEFAULT_MAX_CONNECTIONS, 'maxConnections'),
    maxClientBatchSize: positiveInt(
      options.maxClientBatchSize ?? DEFAULT_MAX_CLIENT_BATCH_SIZE,
      'maxClientBatchSize (rows per request)',
    ),
    maxEventStreams: positiveInt(options.maxEventStreams ?? DEFAULT_MAX_EVENT_STREAMS, 'maxEventStreams'),
    tls: options.tls,
    allowedHosts: parseAllowedHosts(options.allowedHosts, host.trim()),
  };
}

/** The allowed `Host` names: the loopback names (@bertq/nats), the bind address (unless a wildcard) and `extra`. */
export function parseAllowedHosts(
  extra: string | readonly string[] | undefined,
  bindHost: string,
): ReadonlySet<string> | 'any' {
  const given = (typeof extra === 'string' ? extra.split(',') : (extra ?? []))
    .map((h) => h.trim().toLowerCase())
    .filter(Boolean);
  if (given.includes('*')) return 'any';
  for (const h of given) {
    if (!/^[a-z0-9.:[\]-]+$/.test(h))
      throw new BadRequestError(`allowed host ${JSON.stringify(h)} is not a host name or address`);
  }
  const wildcard = bindHost === '0.0.0.0' || bindHost === '::';
  return new Set([...LOOPBACK_HOSTS, ...(wildcard ? [] : [bindHost.toLowerCase()]), ...given.map(hostName)]);
}

/** The name in a `Host` header or allowed-host entry: lowercase, without its port or IPv6 brackets. */
export function hostName(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') > 0 ? h.indexOf(']') : undefined);
  const colons = h.split(':').length - 1;
  return colons === 1 ? h.slice(0, h.indexOf(':')) : h; // name:port; a bare IPv6 address keeps its colons
}

/** Whether a request naming `host` (its Host header; undefined when absent) may be answered. */
export function hostAllowed(allowed: ReadonlySet<string> | 'any', host: string | undefined): boolean {
  // No Host header: not a browser (every browser sends one), so not a rebinding attack.
  return allowed === 'any' || host === undefined || allowed.has(hostName(host));
}

/** `*`, `none`, or a comma-separated list of origins like `https://app.example.com`. */
export function parseCors(value: string): CorsPolicy {
  if (typeof value !== 'string') throw new BadRequestError(`cors must be a string, got ${typeof value}`);
  const text = value.trim();
  if (text === '*') return { kind: 'any' };
  if (text === '' || text.toLowerCase() === 'none') return { kind: 'none' };
  const origins = text
    .split(',')
    .map((o) => o.trim())
    .filter(Boolean);
  for (const origin of origins) {
    if (!/^[a-z][a-z0-9+.-]*:\/\/[^\s/]+$/i.test(origin)) {
      throw new BadRequestError(
        `cors origin ${JSON.stringify(origin)} must look like scheme://host[:port] (no path), or use * or none`,
      );
    }
  }
  return { kind: 'list', origins: new Set(origins) };
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/** `1048576`, `512kb`, `10mb`, `1gib` → bytes (units are powers of 1024). */
export function parseByteSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined)
    throw new BadRequestError(
      `size ${JSON.stringify(text)} must be a number of bytes, optionally with kb, mb or gb (e.g. 10mb)`,
    );
  const bytes = Math.floor(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes) || bytes < 1)
    throw new BadRequestError(`size ${JSON.stringify(text)} must be at least 1 byte`);
  return bytes;
}

function positiveInt(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 1)
    throw new BadRequestError(`gateway option ${what} must be a positive integer, got ${String(value)}`);
  return value;
}

function nonNegativeInt(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 0)
    throw new BadRequestError(`gateway option ${what} must be a non-negative integer, got ${String(value)}`);
  return value;
}
