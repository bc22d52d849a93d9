/**
 * The one way every bertq process opens a NATS connection: servers plus user/password, token, NKey
 * seed file or credentials file, and TLS (server CA, mutual TLS). Failures become typed errors that
 * say which server and what to do, instead of nats.js's bare "connection refused":
 *   - nobody answers, or TLS fails  → NatsConnectError (a NO_WORKERS: nothing can serve you);
 *   - the server refuses our auth   → UnauthorizedError (UNAUTHORIZED).
 * Server URLs are shown with their userinfo redacted, so a password in a URL never reaches a message.
 */
import { readFile } from 'node:fs/promises';
import { connect, credsAuthenticator, nkeyAuthenticator, nkeys } from '@nats-io/transport-node';
import type { NatsConnection, NodeConnectionOptions } from '@nats-io/transport-node';
import { BadRequestError, NoWorkersError, UnauthorizedError, tenantInboxPrefix } from '@bertq/protocol';
import type { BertqErrorOptions } from '@bertq/protocol';

/** TLS files; `true` means TLS verified against the system's CAs. */
export interface TlsFiles {
  /** CA certificate(s) that sign the server's certificate. */
  caFile?: string;
  /** Client certificate and key, for mutual TLS. */
  certFile?: string;
  keyFile?: string;
}

/** How to reach and authenticate to NATS. Serializable, so a fleet can hand it to its workers. */
export interface NatsConnectOptions {
  /** One URL or several (a cluster), e.g. `nats://localhost:4222`; a string may be comma-separated. */
  servers: string | string[];
  /** Connection name shown by the server's monitoring (`nats server report connections`). */
  name?: string;
  user?: string;
  pass?: string;
  token?: string;
  /** A file holding an NKey seed (`SU…`). Mutually exclusive with credsFile. */
  nkeySeedFile?: string;
  /** NKey seed text, for callers that already hold it (prefer nkeySeedFile: a seed is a secret). */
  nkeySeed?: string;
  /** A `.creds` file (JWT + seed) from `nsc` or `bertq auth`. */
  credsFile?: string;
  /** TLS: `true` for the system CAs, or files for a private CA and mutual TLS. */
  tls?: boolean | TlsFiles;
  /** How long one connection attempt may take. Default 5,000 ms. */
  connectTimeoutMs?: number;
  /**
   * Reconnect attempts after a lost connection before the connection closes for good. Default -1:
   * forever, as NATS advises for services; every bertq request has its own deadline, so nothing
   * waits on a broker that is down, and everything comes back when it does.
   */
  maxReconnectAttempts?: number;
  /**
   * The tenant this connection speaks for (docs/security.md, "Tenants"). Its request replies then
   * come on `_INBOX.<tenant>.…`, the only inbox a tenant's NATS user may read, and a BertClient on it
   * takes its results on `bertq.v1.<svc>.results.<tenant>.<identity>`.
   */
  tenant?: string;
  /**
   * The prefix of this connection's reply subjects, where JetStream also delivers pulled messages.
   * Default `_INBOX` (`_INBOX.<tenant>` with a tenant). Workers use WORKER_INBOX_PREFIX, which no
   * client role may subscribe to.
   */
  inboxPrefix?: string;
}

/** Nobody answered at the given address(es), or TLS with them failed: nothing can serve a request. */
export class NatsConnectError extends NoWorkersError {
  readonly servers: string[];
  constructor(message: string, servers: string[], options: BertqErrorOptions = {}) {
    super(message, { ...options, details: { servers: servers.map(redactUrl), ...options.details } });
    this.name = 'NatsConnectError';
    this.servers = servers;
  }
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
export const DEFAULT_MAX_RECONNECT_ATTEMPTS = -1;
export const RECONNECT_WAIT_MS = 1_000;

/** A URL as it may be shown: `nats://user:secret@host` becomes `nats://***@host`. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]*@/i, '$1***@');
}

/** Every server URL in a message redacted, whatever nats.js wrote around it. */
function redactText(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^@/\s]*@/gi, '$1***@');
}

/**
 * The server list: an array, or a comma-separated string, trimmed, empty entries dropped. An HTTP
 * URL (the gateway's, say) is refused at once, rather than after the connect attempts run out.
 */
export function serverList(servers: string | string[]): string[] {
  const list = (Array.isArray(servers) ? servers : servers.split(',')).map((s) => s.trim()).filter((s) => s.length > 0);
  if (list.length === 0) throw new NatsConnectError('no NATS server given', []);
  for (const url of list) {
    const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
    if (scheme !== undefined && !NATS_SCHEMES.has(scheme)) {
      throw new BadRequestError(
        `${redactUrl(url)} is not a NATS URL: the server is nats://host:4222 (or tls://, ws://, wss://); an ${scheme}:// address is the HTTP gateway's, for curl and OpenAI clients`,
      );
    }
  }
  return list;
}

const NATS_SCHEMES = new Set(['nats', 'tls', 'ws', 'wss']);

/** Builds the nats.js options (auth and TLS files read here) without connecting. */
export async function natsConnectionOptions(options: NatsConnectOptions): Promise<NodeConnectionOptions> {
  const servers = serverList(options.servers);
  const out: NodeConnectionOptions = {
    servers,
    timeout: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    maxReconnectAttempts: options.maxReconnectAttempts ?? DEFAULT_MAX_RECONNECT_ATTEMPTS,
    reconnectTimeWait: RECONNECT_WAIT_MS,
    // nats.js builds two Error objects (stack traces) for every request and JetStream publish, only to
    // name the caller when one fails: 8% of a client's CPU with 1-row requests (profiled). bertq turns
    // every failure into a typed error of its own, which says what failed.
    noAsyncTraces: true,
  };
  if (options.name !== undefined) out.name = options.name;
  if (options.tenant !== undefined) out.inboxPrefix = tenantInboxPrefix(options.tenant);
  if (options.inboxPrefix !== undefined) out.inboxPrefix = options.inboxPrefix;
  if (options.user !== undefined) out.user = options.user;
  if (options.pass !== undefined) out.pass = options.pass;
  if (options.token !== undefined) out.token = options.token;
  const nkeyGiven = options.nkeySeed !== undefined || options.nkeySeedFile !== undefined;
  if (nkeyGiven && options.credsFile !== undefined) {
    throw new NatsConnectError('give either an NKey seed or a credentials file, not both', servers);
  }
  if (options.nkeySeedFile !== undefined) {
    const seed = await readSecretFile(options.nkeySeedFile, 'NKey seed file', servers);
    out.authenticator = nkeyAuthenticator(
      userSeed(seed.toString('utf8'), `the NKey seed file ${options.nkeySeedFile}`),
    );
  } else if (options.nkeySeed !== undefined) {
    out.authenticator = nkeyAuthenticator(userSeed(options.nkeySeed, 'the NKey seed'));
  }
  if (options.credsFile !== undefined) {
    out.authenticator = credsAuthenticator(
      new Uint8Array(await readSecretFile(options.credsFile, 'credentials file', servers)),
    );
  }
  if (options.tls === true) out.tls = {};
  else if (options.tls !== undefined && options.tls !== false) {
    const tls: NonNullable<NodeConnectionOptions['tls']> = {};
    if (options.tls.caFile !== undefined) tls.caFile = options.tls.caFile;
    if (options.tls.certFile !== undefined) tls.certFile = options.tls.certFile;
    if (options.tls.keyFile !== undefined) tls.keyFile = options.tls.keyFile;
    out.tls = tls;
  }
  return out;
}

/**
 * The kinds of credential (or TLS) in connection options, named for people (never their values): what
 * makes an open, embedded nats-server the wrong thing to start in their place.
 */
export function credentialsGiven(connection: Omit<NatsConnectOptions, 'servers'> | undefined): string[] {
  if (connection === undefined) return [];
  const kinds: Array<[string, boolean]> = [
    ['a user', connection.user !== undefined],
    ['a password', connection.pass !== undefined],
    ['a token', connection.token !== undefined],
    ['an NKey seed', connection.nkeySeed !== undefined || connection.nkeySeedFile !== undefined],
    ['a credentials file', connection.credsFile !== undefined],
    ['TLS options', connection.tls !== undefined && connection.tls !== false],
  ];
  return kinds.filter(([, given]) => given).map(([name]) => name);
}

/**
 * A seed checked before any connection is tried: nats.js would otherwise fail the handshake with an
 * error that reads like an unreachable server. The message names the file and the problem, never
 * the content.
 */
function userSeed(text: string, what: string): Uint8Array {
  const seed = new TextEncoder().encode(text.trim());
  let publicKey: string;
  try {
    publicKey = nkeys.fromSeed(seed).getPublicKey();
  } catch (err) {
    throw new BadRequestError(
      `${what} does not hold a valid NKey seed (${(err as Error).message.replace(/^nkeys: /, '')}): it should be one line, SU followed by 56 characters, as \`bertq auth init\` or \`nsc\` write it`,
      { cause: err },
    );
  }
  if (!publicKey.startsWith('U')) {
    throw new BadRequestError(
      `${what} holds the seed of a NATS ${publicKey.startsWith('A') ? 'account' : publicKey.startsWith('O') ? 'operator' : 'server or cluster'}, not of a user (SU…): give the user's seed`,
    );
  }
  return seed;
}

async function readSecretFile(path: string, what: string, servers: string[]): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    // The path is named, never the content.
    throw new NatsConnectError(
      `cannot read the NATS ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`,
      servers,
      {
        cause: err,
      },
    );
  }
}

/**
 * True when the broker refused a publish or subscribe of ours for lack of rights (nats.js rejects the
 * request with PermissionViolationError, sometimes inside a RequestError's cause).
 */
export function isPermissionViolation(err: unknown): boolean {
  for (let e = err as { name?: string; cause?: unknown } | undefined, depth = 0; e != null && depth < 4; depth++) {
    if (e.name === 'PermissionViolationError') return true;
    e = e.cause as typeof e;
  }
  return false;
}

/** True when nats.js says the server refused our credentials. */
export function isAuthFailure(err: unknown): boolean {
  const e = err as { name?: string; code?: string; message?: string } | undefined;
  return e?.name === 'AuthorizationError' || /authoriz|authent|credentials/i.test(e?.message ?? '');
}

/** The typed error for a failed connect: UNAUTHORIZED for refused auth, else NatsConnectError. */
export function connectError(err: unknown, servers: string[]): UnauthorizedError | NatsConnectError {
  const where = servers.map(redactUrl).join(', ');
  const reason = redactText((err as Error)?.message ?? String(err));
  if (isAuthFailure(err)) {
    return new UnauthorizedError(
      `the NATS server at ${where} refused the connection: ${reason}; check the user/password, token, NKey seed or credentials file`,
      { cause: err, details: { servers: servers.map(redactUrl) } },
    );
  }
  if (/tls|certificate|ssl/i.test(reason)) {
    return new NatsConnectError(`TLS with the NATS server at ${where} failed: ${reason}`, servers, { cause: err });
  }
  return new NatsConnectError(
    `no NATS server at ${where} (${reason}); start one (\`nats-server -js\`, or \`bertq start\` does it on localhost) or point --server at a running one`,
    servers,
    { cause: err },
  );
}

/** Connects, or throws UnauthorizedError / NatsConnectError saying which server and what to do. */
export async function connectNats(options: NatsConnectOptions): Promise<NatsConnection> {
  const natsOptions = await natsConnectionOptions(options);
  const servers = natsOptions.servers as string[];
  try {
    return await connect(natsOptions);
  } catch (err) {
    throw connectError(err, servers);
  }
}
