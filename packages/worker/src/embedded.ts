/**
 * bertq's embedded default: one NATS server on this machine. `ensureNatsServer(url)` reuses a server
 * that answers at `url`; when none does and `url` is local, it starts `nats-server -js` there as a
 * child process and waits until it answers. A remote address is never started, only reported.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { defaultCacheDir } from '@bertq/model';
import type { Logger } from 'pino';
import { NatsConnectError, natsConnectionOptions } from './connect.js';
import type { NatsConnectOptions } from './connect.js';
import { silentLogger } from './logger.js';
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
const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
const PROBE_TIMEOUT_MS = 1_000;
const POLL_MS = 100;
const LOG_LIMIT = 32 * 1024;
const LOCAL_HOSTS = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);
const FALLBACK_BINARIES = ['/usr/sbin/nats-server', '/usr/local/bin/nats-server', '/usr/bin/nats-server'];

/** Servers started here, killed when this process exits (synchronously: nothing async runs on 'exit'). */
const started = new Set<ChildProcess>();
let exitHookInstalled = false;

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

export function isLocalHost(host: string): boolean {
  return LOCAL_HOSTS.has(host);
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
  if (!isLocalHost(target.host)) {
    throw new NatsConnectError(`no NATS server at ${target.url}; bertq only starts one on this machine (localhost), so start it there`, [target.url]);
  }
  return startServer(target, options, log);
}

/** A connection when a server answers; undefined when nothing listens (refused / timed out). */
async function probe(url: string, connection: EnsureNatsServerOptions['connection']): Promise<NatsConnection | undefined> {
  const options = await natsConnectionOptions({ ...connection, servers: url, timeoutMs: PROBE_TIMEOUT_MS, maxReconnectAttempts: 0 });
  try {
    return await connect({ ...options, reconnect: false });
  } catch (err) {
    const message = (err as Error).message ?? '';
    // Something answered but refused us: a server is there, it is just not ours to probe.
    if ((err as Error).name === 'AuthorizationError' || /authoriz/i.test(message)) {
      throw new NatsConnectError(`the NATS server at ${url} refused the connection: ${message}; give its credentials`, [url], { cause: err });
    }
    return undefined;
  }
}

async function startServer(target: { host: string; port: number; url: string }, options: EnsureNatsServerOptions, log: Logger): Promise<EnsuredNatsServer> {
  const binary = findNatsServerBinary(options.binary);
  const storeDir = options.storeDir ?? defaultStoreDir(target.port);
  mkdirSync(storeDir, { recursive: true });
  // 'localhost' may resolve to ::1 or 127.0.0.1; binding the IPv4 loopback is what clients find first.
  const bindHost = target.host === 'localhost' ? '127.0.0.1' : target.host;
  const args = ['-js', '-a', bindHost, '-p', String(target.port), '-sd', storeDir];
  // Own process group: a Ctrl-C on the terminal reaches the workers, which must still ack their jobs
  // through this server while they drain; the server is stopped after them, by stop().
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  installExitHook();
  started.add(child);
  let output = '';
  const collect = (data: Buffer) => {
    output = (output + data.toString('utf8')).slice(-LOG_LIMIT);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  let exitReason: string | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exitReason ??= signal ? `was killed by ${signal}` : `exited with code ${code}`;
      started.delete(child);
      resolve();
    });
    child.once('error', (err) => {
      exitReason ??= `could not be started: ${err.message}`;
      started.delete(child);
      resolve();
    });
  });
  const describe = `${binary} ${args.join(' ')}`;
  log.info({ command: describe }, 'no NATS server answered; starting one');

  const deadline = Date.now() + (options.timeoutMs ?? START_TIMEOUT_MS);
  for (;;) {
    if (exitReason !== undefined) throw new NatsConnectError(`nats-server (${describe}) ${exitReason} before it answered:\n${output.trim()}`, [target.url]);
    const nc = await probe(target.url, options.connection).catch(() => undefined);
    if (nc !== undefined) {
      await nc.close().catch(() => undefined);
      break;
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new NatsConnectError(`nats-server (${describe}) did not answer at ${target.url} within ${options.timeoutMs ?? START_TIMEOUT_MS} ms:\n${output.trim()}`, [target.url]);
    }
    await Promise.race([exited, sleep(POLL_MS)]);
  }
  log.info({ url: target.url, pid: child.pid, storeDir }, 'nats-server started');

  let stopping: Promise<void> | undefined;
  return {
    url: target.url,
    started: true,
    ...(child.pid === undefined ? {} : { pid: child.pid }),
    storeDir,
    log: () => output,
    stop: () =>
      (stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGTERM');
        if (!(await settles(exited, STOP_TIMEOUT_MS))) {
          child.kill('SIGKILL');
          await settles(exited, STOP_TIMEOUT_MS);
        }
      })()),
  };
}

/** The nats-server binary, or a clear error with the install command. */
export function findNatsServerBinary(explicit?: string): string {
  const onPath = (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, 'nats-server'));
  const candidates = explicit !== undefined ? [explicit] : [...onPath, ...FALLBACK_BINARIES];
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  const where = explicit !== undefined ? `at ${explicit}` : `on PATH nor at ${FALLBACK_BINARIES.join(', ')}`;
  throw new NatsConnectError(
    `nats-server not found ${where}; install it (apt-get install nats-server, or a release from https://github.com/nats-io/nats-server/releases), or point --server at a running NATS server`,
    [],
  );
}

function defaultStoreDir(port: number): string {
  return join(defaultCacheDir(), `nats-${port}`);
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of started) child.kill('SIGTERM');
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function settles(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(resolve, ms, false)));
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
