/**
 * One way to open a NATS connection from the options a user gives on the command line: servers plus
 * user/password, token, NKey seed or credentials file, and TLS files. Failures say which server and
 * what to do, instead of nats.js's bare "connection refused".
 */
import { readFile } from 'node:fs/promises';
import { connect, credsAuthenticator, nkeyAuthenticator } from '@nats-io/transport-node';
import type { NatsConnection, NodeConnectionOptions } from '@nats-io/transport-node';

/** How to reach and authenticate to NATS. Serializable, so a fleet can hand it to its workers. */
export interface NatsConnectOptions {
  /** One URL or several (a cluster), e.g. `nats://localhost:4222`. */
  servers: string | string[];
  /** Connection name shown by the server's monitoring (`nats server report connections`). */
  name?: string;
  user?: string;
  pass?: string;
  token?: string;
  /** NKey seed (`SU…`) text; mutually exclusive with credsFile. */
  nkeySeed?: string;
  /** A `.creds` file (JWT + seed) from `nsc`. */
  credsFile?: string;
  /** TLS: CA to verify the server, and a client certificate/key for mutual TLS. */
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
  /** How long one connection attempt may take. Default 5,000 ms. */
  timeoutMs?: number;
  /**
   * Reconnect attempts after a lost connection before giving up (-1: forever). Default 60 attempts,
   * 1 s apart: a server restart is survived, a server gone for good ends the process (its supervisor
   * restarts it) rather than leaving it waiting forever.
   */
  maxReconnectAttempts?: number;
}

/** No NATS server answered at the given address(es), or it refused the credentials. */
export class NatsConnectError extends Error {
  readonly servers: string[];
  constructor(message: string, servers: string[], options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'NatsConnectError';
    this.servers = servers;
  }
}

const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
const DEFAULT_MAX_RECONNECT_ATTEMPTS = 60;
const RECONNECT_WAIT_MS = 1_000;

/** Builds the nats.js options (auth and TLS files read here) without connecting. */
export async function natsConnectionOptions(options: NatsConnectOptions): Promise<NodeConnectionOptions> {
  const servers = serverList(options.servers);
  const out: NodeConnectionOptions = {
    servers,
    timeout: options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    maxReconnectAttempts: options.maxReconnectAttempts ?? DEFAULT_MAX_RECONNECT_ATTEMPTS,
    reconnectTimeWait: RECONNECT_WAIT_MS,
  };
  if (options.name !== undefined) out.name = options.name;
  if (options.user !== undefined) out.user = options.user;
  if (options.pass !== undefined) out.pass = options.pass;
  if (options.token !== undefined) out.token = options.token;
  if (options.nkeySeed !== undefined && options.credsFile !== undefined) {
    throw new NatsConnectError('give either an NKey seed or a credentials file, not both', servers);
  }
  if (options.nkeySeed !== undefined) out.authenticator = nkeyAuthenticator(new TextEncoder().encode(options.nkeySeed.trim()));
  if (options.credsFile !== undefined) {
    const creds = await readFile(options.credsFile).catch((err: unknown) => {
      throw new NatsConnectError(`cannot read NATS credentials file ${options.credsFile}: ${(err as Error).message}`, servers, { cause: err });
    });
    out.authenticator = credsAuthenticator(new Uint8Array(creds));
  }
  if (options.tls !== undefined) {
    const tls: NonNullable<NodeConnectionOptions['tls']> = {};
    if (options.tls.caFile !== undefined) tls.caFile = options.tls.caFile;
    if (options.tls.certFile !== undefined) tls.certFile = options.tls.certFile;
    if (options.tls.keyFile !== undefined) tls.keyFile = options.tls.keyFile;
    out.tls = tls;
  }
  return out;
}

/** Connects, or throws NatsConnectError saying which server did not answer or refused us. */
export async function connectNats(options: NatsConnectOptions): Promise<NatsConnection> {
  const natsOptions = await natsConnectionOptions(options);
  const servers = natsOptions.servers as string[];
  try {
    return await connect(natsOptions);
  } catch (err) {
    const where = servers.join(', ');
    const reason = (err as Error).message ?? String(err);
    const name = (err as Error).name ?? '';
    if (name === 'AuthorizationError' || /authoriz|authent|credentials|permission/i.test(reason)) {
      throw new NatsConnectError(`the NATS server at ${where} refused the connection: ${reason}; check the user/password, token, NKey or credentials`, servers, { cause: err });
    }
    if (/tls|certificate|ssl/i.test(reason)) {
      throw new NatsConnectError(`TLS with the NATS server at ${where} failed: ${reason}`, servers, { cause: err });
    }
    throw new NatsConnectError(
      `no NATS server at ${where} (${reason}); start one (\`nats-server -js\`, or \`bertq start\` does it on localhost) or point --server at a running one`,
      servers,
      { cause: err },
    );
  }
}

function serverList(servers: string | string[]): string[] {
  const list = (Array.isArray(servers) ? servers : servers.split(',')).map((s) => s.trim()).filter((s) => s.length > 0);
  if (list.length === 0) throw new NatsConnectError('no NATS server given', []);
  return list;
}
