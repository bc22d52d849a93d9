/**
 * bertq's embedded default: one NATS server on this machine. `ensureNatsServer(url)` reuses a server
 * that answers at `url`; when none does and `url` is local, it starts `nats-server -js` there as a
 * child process and waits until it answers. A remote address is never started, only reported.
 */
import { mkdirSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { defaultCacheDir } from '@bertq/model';
import type { Logger } from 'pino';
import { SERVICE_FRAMEWORK_NAME, normalizeServiceName } from '@bertq/protocol';
import {
  NatsConnectError,
  START_TIMEOUT_MS,
  connectError,
  credentialsGiven,
  isLoopbackHost,
  natsConnectionOptions,
  pingServices,
  silentLogger,
  startNatsServer,
} from '@bertq/nats';
import type { NatsConnectOptions } from '@bertq/nats';
import { JetStreamNotEnabledError, openJetStreamManager } from './stream.js';

export interface EnsureNatsServerOptions {
  /** JetStream store directory of a started server (`-sd`). Default `<bertq cache>/nats-<port>` ($BERTQ_CACHE, else $XDG_CACHE_HOME/bertq or ~/.cache/bertq). */
  storeDir?: string;
  /** Path of the nats-server binary. Default: PATH, then /usr/sbin, /usr/local/bin, /usr/bin. */
  binary?: string;
  /** How long a started server may take to answer. Default 10,000 ms. */
  timeoutMs?: number;
  /** Auth/TLS for probing a server that is already running (to check it has JetStream). */
  connection?: Omit<NatsConnectOptions, 'servers'>;
  logger?: Logger;
}

export interface EnsuredNatsServer {
  /** The URL, normalized (`nats://host:port`). */
  url: string;
  /** True when this call started the server (then stop() ends it). */
  started: boolean;
  /** Process id of a started server. */
  pid?: number;
  storeDir?: string;
  /** Stops a server this call started (SIGTERM, SIGKILL after a deadline); does nothing otherwise. */
  stop(): Promise<void>;
  /** The started server's recent output. */
  log(): string;
}

const DEFAULT_PORT = 4222;
const PROBE_TIMEOUT_MS = 1_000;

/** Host and port of a NATS URL (`nats://h:p`, `h:p`, `h`); the port defaults to 4222. */
export function parseNatsUrl(url: string): { host: string; port: number; url: string } {
  const text = url.includes('://') ? url : `nats://${url}`;
  let parsed: URL;
  try {
    parsed = new URL(text);
  } catch {
    throw new NatsConnectError(`${JSON.stringify(url)} is not a NATS URL (expected nats://host:port)`, [url]);
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = parsed.port === '' ? DEFAULT_PORT : Number(parsed.port);
  const shown = host.includes(':') ? `[${host}]` : host;
  return { host, port, url: `${parsed.protocol}//${shown}:${port}` };
}

/** Reuses the NATS server at `url`, or starts one there when it is local and nothing answers. */
export async function ensureNatsServer(url: string, options: EnsureNatsServerOptions = {}): Promise<EnsuredNatsServer> {
  const log = options.logger ?? silentLogger();
  const target = parseNatsUrl(url);
  const existing = await probe(target.url, options.connection);
  if (existing !== undefined) {
    try {
      await openJetStreamManager(existing);
    } catch (err) {
      if (err instanceof JetStreamNotEnabledError) throw new JetStreamNotEnabledError(target.url, { cause: err });
      throw err;
    } finally {
      await existing.close().catch(() => undefined);
    }
    log.info({ url: target.url }, 'using the NATS server that answers there');
    return { url: target.url, started: false, stop: () => Promise.resolve(), log: () => '' };
  }
  if (!isLoopbackHost(target.host)) {
    throw new NatsConnectError(
      `no NATS server at ${target.url}; bertq only starts one on this machine (localhost), so start it there`,
      [target.url],
    );
  }
  refuseOpenServer(
    `no NATS server answers at ${target.url}, and bertq will not start an open one there`,
    target.url,
    options,
  );
  const storeDir = options.storeDir ?? defaultStoreDir(target.port);
  mkdirSync(storeDir, { recursive: true });
  return startServer(target, storeDir, options, log);
}

/**
 * A nats-server of the caller's own, never one that is already running (`bertq start --own-nats`, what
 * bert-serving-start does): on a port the server picks itself (no window in which another program
 * takes it), with its store in the server's own temporary folder, removed when it stops.
 */
export async function startPrivateNatsServer(options: EnsureNatsServerOptions = {}): Promise<EnsuredNatsServer> {
  refuseOpenServer('bertq will not start an open nats-server of its own', 'a private nats-server', options);
  return startServer({ host: '127.0.0.1', port: -1 }, options.storeDir, options, options.logger ?? silentLogger());
}

/**
 * Fails closed: credentials say a secured server was meant to be used. An embedded server would check
 * none of them, and any local user could then read, forge or terminate everything on it.
 */
function refuseOpenServer(what: string, where: string, options: EnsureNatsServerOptions): void {
  const given = credentialsGiven(options.connection);
  if (given.length === 0) return;
  throw new NatsConnectError(
    `${what} because ${given.join(', ')} ${given.length > 1 ? 'were' : 'was'} given: ` +
      'start the secured nats-server those credentials are for (deploy/nats/nats-server.conf, or the server `bertq auth init` wrote a config for), or leave the credentials out to get an embedded server for this machine',
    [where],
  );
}

/**
 * A connection when a server answers; undefined only when nothing listens there (refused, timed out).
 * Anything else means a server IS there (it refused our credentials, or TLS with it failed), so the
 * failure is thrown: starting our own server on its port would only fail with "address in use".
 */
async function probe(
  url: string,
  connection: EnsureNatsServerOptions['connection'],
): Promise<NatsConnection | undefined> {
  const options = await natsConnectionOptions({
    ...connection,
    servers: url,
    connectTimeoutMs: PROBE_TIMEOUT_MS,
    maxReconnectAttempts: 0,
  });
  try {
    return await connect({ ...options, reconnect: false });
  } catch (err) {
    if (!nothingListens(err)) throw connectError(err, [url]);
    // A timeout can also be a program that accepts the connection and never speaks NATS (an HTTP
    // server, say): starting our server on its port would fail with "address already in use".
    const { host, port } = parseNatsUrl(url);
    if (await tcpAccepts(host, port)) {
      throw new NatsConnectError(
        `something that is not a NATS server listens at ${url} (it took the connection but did not speak NATS within ${PROBE_TIMEOUT_MS} ms): stop it, or point --server at a NATS server or at a free local port for an embedded one`,
        [url],
        { cause: err },
      );
    }
    return undefined;
  }
}

/** Whether anything accepts a TCP connection at host:port within the probe's time. */
function tcpAccepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host, port });
    const done = (accepted: boolean) => {
      socket.destroy();
      resolve(accepted);
    };
    socket.setTimeout(PROBE_TIMEOUT_MS, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** nats.js's ways of saying that no server listens at an address. */
function nothingListens(err: unknown): boolean {
  const e = err as { code?: string; message?: string; cause?: { code?: string } } | undefined;
  const code = e?.code ?? e?.cause?.code ?? '';
  return (
    ['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EADDRNOTAVAIL', 'EHOSTUNREACH'].includes(code) ||
    /ECONNREFUSED|timeout|timed out/i.test(e?.message ?? '')
  );
}

/**
 * Starts nats-server -js at `target` (port -1: one the server picks; the URL is then the server's own)
 * with its store in `storeDir` (undefined: the server's temporary folder, removed by stop()).
 */
async function startServer(
  target: { host: string; port: number; url?: string },
  storeDir: string | undefined,
  options: EnsureNatsServerOptions,
  log: Logger,
): Promise<EnsuredNatsServer> {
  // 'localhost' may resolve to ::1 or 127.0.0.1; binding the IPv4 loopback is what clients find first.
  const host = target.host === 'localhost' ? '127.0.0.1' : target.host;
  log.info({ host, port: target.port, storeDir }, 'starting a nats-server');
  const server = await startNatsServer({
    host,
    port: target.port,
    ...(storeDir === undefined ? {} : { storeDir }),
    // Own process group: a Ctrl-C on the terminal reaches the workers, which must still ack their
    // jobs through this server while they drain; the server is stopped after them, by stop().
    detached: true,
    timeoutMs: options.timeoutMs ?? START_TIMEOUT_MS,
    binary: options.binary,
  });
  const url = target.url ?? server.url;
  log.info({ url, pid: server.pid, storeDir: server.storeDir }, 'nats-server started');
  return {
    url,
    started: true,
    pid: server.pid,
    ...(server.storeDir === undefined ? {} : { storeDir: server.storeDir }),
    log: () => server.log(),
    stop: () => server.stop(),
  };
}

/**
 * The bertq services other than `service` that have workers on the server at `url` (services-framework
 * discovery): an embedded server is not stopped under them. Empty when the server does not answer.
 */
export async function otherServicesOn(
  url: string,
  service: string,
  connection: Omit<NatsConnectOptions, 'servers'> = {},
): Promise<string[]> {
  let nc: NatsConnection | undefined;
  try {
    nc = await connect({
      ...(await natsConnectionOptions({ ...connection, servers: url, connectTimeoutMs: PROBE_TIMEOUT_MS })),
      reconnect: false,
    });
    const found = await pingServices(nc, SERVICE_FRAMEWORK_NAME);
    const ours = normalizeServiceName(service);
    return [...new Set(found.map((r) => r.metadata?.service).filter((s): s is string => !!s && s !== ours))].sort();
  } catch {
    return [];
  } finally {
    await nc?.close().catch(() => undefined);
  }
}

function defaultStoreDir(port: number): string {
  return join(defaultCacheDir(), `nats-${port}`);
}
