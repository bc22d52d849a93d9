/**
 * The one nats-server launcher, used by the tests and by `bertq start`'s embedded server. Modelled on
 * nats.js's test launcher (`nst`): write a config, start the server, wait for its ports file, race
 * against early exit. By default a server is private: random ports, its own temp dir (config, ports
 * file, JetStream store), never the machine's shared server on 4222. The embedded server instead pins
 * its host, port and store directory.
 *
 * Every server started here is killed when this process exits (a crashed test runner included), so
 * none outlives its owner; `detached` servers (the embedded one) are spared the terminal's signals, so
 * workers draining on Ctrl-C can still ack through them, and are stopped by their owner.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { settlesWithin } from '@bertq/protocol';
import { NatsConnectError } from './connect.js';
import {
  accessSync,
  constants,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

/** A value in nats-server's config language; strings are written quoted. */
export type NatsConfigValue =
  | string
  | number
  | boolean
  | readonly NatsConfigValue[]
  | { readonly [key: string]: NatsConfigValue };
export type NatsConfig = { readonly [key: string]: NatsConfigValue };

export interface NatsServerOptions {
  /** Enable JetStream with its store in the server's temp dir. Default true. */
  jetstream?: boolean;
  /**
   * Extra configuration: an object deep-merged over the defaults (so `{ jetstream: { max_mem: ... } }`
   * keeps the private store_dir), or raw config text appended as is (for unquoted values like `1MB`).
   */
  config?: NatsConfig | string | readonly string[];
  /** Extra command-line arguments, after `-c <config>` (e.g. `['-DV']` for protocol tracing). */
  args?: readonly string[];
  /** The server's max_payload in bytes (NATS default 1 MiB). */
  maxPayload?: number;
  /** Also open the HTTP monitoring port (random). Default false. */
  monitor?: boolean;
  /** How long to wait for the server to report its ports. Default START_TIMEOUT_MS. */
  timeoutMs?: number;
  /** Path of the nats-server binary. Default: PATH, then /usr/sbin/nats-server. */
  binary?: string;
  /** Address to listen on. Default 127.0.0.1. */
  host?: string;
  /** Client port. Default -1 (a random free port). */
  port?: number;
  /** JetStream store directory, kept by stop(). Default: inside the server's temp dir (removed by stop()). */
  storeDir?: string;
  /**
   * Run in its own process group: a Ctrl-C on the terminal does not reach it, and this process's
   * signal handlers leave it alone (its owner stops it). Default false.
   */
  detached?: boolean;
}

/** Time budgets, named so a slow machine is one edit away. */
export const START_TIMEOUT_MS = 10_000;
export const STOP_TIMEOUT_MS = 5_000;
const POLL_MS = 25;
/** Keep the tail of the server's log for error messages, not all of it. */
const LOG_LIMIT = 64 * 1024;
const FALLBACK_BINARIES = ['/usr/sbin/nats-server', '/usr/local/bin/nats-server', '/usr/bin/nats-server'];

/** A running private nats-server. */
export interface NatsServer {
  /** `nats://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** HTTP monitoring port, when started with `monitor: true`. */
  readonly monitorPort: number | undefined;
  /** The private temp dir holding config, ports file and store; removed by stop(). */
  readonly dir: string;
  /** JetStream store dir inside `dir`, when JetStream is enabled. */
  readonly storeDir: string | undefined;
  readonly configFile: string;
  /** Current process id (changes on restart). */
  readonly pid: number;
  /** What the server has logged so far (the last 64 KiB). */
  log(): string;
  /** Sends a signal (e.g. SIGKILL to simulate a crash); stop() still cleans up afterwards. */
  kill(signal?: NodeJS.Signals): void;
  /**
   * Stops the process and starts it again on the same ports with the same store, so JetStream data
   * survives and clients reconnect to the same URL.
   */
  restart(timeoutMs?: number): Promise<void>;
  /** Terminates (SIGTERM, then SIGKILL after STOP_TIMEOUT_MS) and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

/** Live server processes and their temp dirs, so the exit hook can clean up what a crashed test left. */
const liveChildren = new Set<ChildProcess>();
/** Detached servers: killed on exit, but not on this process's signals. */
const detachedChildren = new WeakSet<ChildProcess>();
const liveDirs = new Set<string>();

/** How to (re)write the config: the defaults merged with the caller's, ports pinned on restart. */
interface ConfigSource {
  readonly object: NatsConfig;
  readonly rawLines: readonly string[];
}

class ServerProcess implements NatsServer {
  readonly url: string;
  readonly port: number;
  readonly monitorPort: number | undefined;
  #launched: Launched;
  #stopped = false;

  constructor(
    launched: Launched,
    readonly dir: string,
    readonly storeDir: string | undefined,
    readonly configFile: string,
    private readonly binary: string,
    private readonly args: readonly string[],
    private readonly config: ConfigSource,
    private readonly detached: boolean,
  ) {
    this.#launched = launched;
    this.port = launched.port;
    this.monitorPort = launched.monitorPort;
    const host = String(config.object.host ?? '127.0.0.1');
    this.url = `nats://${host.includes(':') ? `[${host}]` : host}:${this.port}`;
  }

  get pid(): number {
    return this.#launched.child.pid ?? -1;
  }

  log(): string {
    return this.#launched.log();
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    const { child } = this.#launched;
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  }

  async restart(timeoutMs = START_TIMEOUT_MS): Promise<void> {
    if (this.#stopped) throw new Error(`nats-server ${this.url} was stopped; it cannot restart`);
    await this.#terminate();
    const pinned: Record<string, NatsConfigValue> = { port: this.port };
    if (this.monitorPort !== undefined) pinned.http = `127.0.0.1:${this.monitorPort}`;
    writeConfig(this.configFile, { ...this.config, object: { ...this.config.object, ...pinned } });
    this.#launched = await launch(
      this.binary,
      this.configFile,
      this.args,
      this.dir,
      timeoutMs,
      this.detached,
      this.log(),
    );
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#terminate();
    removeDir(this.dir);
  }

  async #terminate(): Promise<void> {
    this.kill('SIGTERM');
    if (!(await settlesWithin(this.#launched.exited, STOP_TIMEOUT_MS))) {
      this.kill('SIGKILL');
      await settlesWithin(this.#launched.exited, STOP_TIMEOUT_MS);
    }
  }
}

/**
 * Starts a nats-server on random ports in a fresh temp dir and resolves once it listens. Rejects with
 * the server's own log when it exits early (bad config), or when its ports never show up in time.
 */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const binary = findNatsServer(options.binary);
  installExitHook();
  const dir = mkdtempSync(join(tmpdir(), 'bertq-nats-'));
  liveDirs.add(dir);
  try {
    const jetstream = options.jetstream ?? true;
    const storeDir = jetstream ? (options.storeDir ?? join(dir, 'jetstream')) : undefined;
    const defaults: Record<string, NatsConfigValue> = {
      host: options.host ?? '127.0.0.1',
      port: options.port ?? -1,
      ports_file_dir: dir,
    };
    if (options.monitor) defaults.http = '127.0.0.1:-1';
    if (options.maxPayload !== undefined) defaults.max_payload = options.maxPayload;
    if (storeDir !== undefined) defaults.jetstream = { store_dir: storeDir };
    const extra = options.config;
    const config: ConfigSource = {
      object: isConfigObject(extra) ? deepMerge(defaults, extra) : defaults,
      rawLines: typeof extra === 'string' ? [extra] : Array.isArray(extra) ? (extra as readonly string[]) : [],
    };
    const configFile = join(dir, 'nats-server.conf');
    writeConfig(configFile, config);
    const args = options.args ?? [];
    const detached = options.detached ?? false;
    const launched = await launch(binary, configFile, args, dir, options.timeoutMs ?? START_TIMEOUT_MS, detached);
    return new ServerProcess(launched, dir, storeDir, configFile, binary, args, config, detached);
  } catch (err) {
    removeDir(dir);
    throw err;
  }
}

function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  liveDirs.delete(dir);
}

/**
 * The nats-server binary: `explicit` when given, else the first on PATH, else a usual install
 * location. Throws a clear error (with the install command) when there is none.
 */
export function findNatsServer(explicit?: string): string {
  const onPath = (process.env.PATH ?? '')
    .split(delimiter)
    .filter(Boolean)
    .map((d) => join(d, 'nats-server'));
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
    `nats-server not found ${where}; install it: apt-get install nats-server (or a release from https://github.com/nats-io/nats-server/releases), or point --server at a running NATS server`,
    [],
  );
}

function writeConfig(file: string, config: ConfigSource): void {
  writeFileSync(file, `${toNatsConfig(config.object)}\n${config.rawLines.join('\n')}\n`);
}

interface Launched {
  readonly child: ChildProcess;
  /** Resolves once the process has exited and its output pipes are drained. */
  readonly exited: Promise<void>;
  readonly port: number;
  readonly monitorPort: number | undefined;
  log(): string;
}

/** Spawns the server and waits for its ports file, racing against early exit and the deadline. */
const SETPRIV_CANDIDATES = ['/usr/bin/setpriv', '/bin/setpriv'];
let setpriv: string | null | undefined;

/** util-linux's setpriv, which can set the parent-death signal before exec; undefined where it is missing. */
function parentDeathGuard(): string | undefined {
  if (setpriv === undefined)
    setpriv = process.platform === 'linux' ? (SETPRIV_CANDIDATES.find((p) => existsSync(p)) ?? null) : null;
  return setpriv ?? undefined;
}

async function launch(
  binary: string,
  configFile: string,
  args: readonly string[],
  dir: string,
  timeoutMs: number,
  detached: boolean,
  previousLog = '',
): Promise<Launched> {
  // Under setpriv --pdeathsig the kernel sends the server SIGTERM when this process dies, even by
  // SIGKILL: an embedded or test server never outlives its owner (setpriv execs: same pid).
  const guard = parentDeathGuard();
  const command = guard === undefined ? binary : guard;
  const commandArgs = [
    ...(guard === undefined ? [] : ['--pdeathsig', 'TERM', '--', binary]),
    '-c',
    configFile,
    ...args,
  ];
  const child = spawn(command, commandArgs, { stdio: ['ignore', 'pipe', 'pipe'], detached });
  liveChildren.add(child);
  if (detached) detachedChildren.add(child);
  let log = previousLog;
  const collect = (data: Buffer) => {
    log = (log + data.toString('utf8')).slice(-LOG_LIMIT);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);

  let exitReason: string | undefined;
  const exited = new Promise<void>((resolve) => {
    // 'close' comes after 'exit' once stdout/stderr are drained, so the log holds the last words.
    child.once('close', (code, signal) => {
      exitReason ??= signal ? `was killed by ${signal}` : `exited with code ${code}`;
      liveChildren.delete(child);
      resolve();
    });
    child.once('error', (err) => {
      exitReason ??= `could not be spawned: ${err.message}`;
      liveChildren.delete(child);
      resolve();
    });
  });
  // A forgotten server must not keep the test process alive; the exit hook kills it instead.
  child.unref();
  for (const stream of [child.stdout, child.stderr]) (stream as { unref?: () => void } | null)?.unref?.();

  const describe = `nats-server (${binary} -c ${configFile}${args.length ? ` ${args.join(' ')}` : ''})`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exitReason !== undefined) {
      throw new Error(`${describe} ${exitReason} before it was ready:\n${log.trim()}`);
    }
    const ports = child.pid === undefined ? undefined : readPortsFile(dir, child.pid);
    if (ports) return { child, exited, ...ports, log: () => log };
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await settlesWithin(exited, STOP_TIMEOUT_MS);
      throw new Error(`${describe} did not report its ports within ${timeoutMs} ms:\n${log.trim()}`);
    }
    // Wake early when the process exits, so a config error is reported at once.
    await settlesWithin(exited, POLL_MS);
  }
}

/** Reads `<name>_<pid>.ports`, written once every listener is up; undefined until it is complete. */
function readPortsFile(dir: string, pid: number): { port: number; monitorPort: number | undefined } | undefined {
  const name = readdirSync(dir).find((f) => f.endsWith(`_${pid}.ports`));
  if (name === undefined) return undefined;
  try {
    const ports = JSON.parse(readFileSync(join(dir, name), 'utf8')) as { nats?: string[]; monitoring?: string[] };
    const port = portOf(ports.nats?.[0]);
    if (port === undefined) return undefined;
    return { port, monitorPort: portOf(ports.monitoring?.[0]) };
  } catch {
    return undefined; // caught mid-write; the next poll reads it whole
  }
}

function portOf(url: string | undefined): number | undefined {
  const match = url === undefined ? null : /:(\d+)$/.exec(url);
  return match ? Number(match[1]) : undefined;
}

let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Synchronous only: on 'exit' nothing asynchronous runs any more.
  const killAll = () => {
    // A detached (embedded) server gets SIGTERM, so it flushes its JetStream store on the way out.
    for (const child of liveChildren) child.kill(detachedChildren.has(child) ? 'SIGTERM' : 'SIGKILL');
    for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
    liveChildren.clear();
    liveDirs.clear();
  };
  process.once('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      // Alone on this signal, we must not swallow it: clean up everything (no 'exit' event follows a
      // re-raised signal), restore the default action and re-raise.
      if (process.listenerCount(signal) === 1) {
        killAll();
        process.removeListener(signal, onSignal);
        process.kill(process.pid, signal);
        return;
      }
      // The owner handles this signal. A detached server belongs to an owner that drains its
      // workers first, then stops it; the others go now.
      for (const child of liveChildren) if (!detachedChildren.has(child)) child.kill('SIGKILL');
    };
    process.on(signal, onSignal);
  }
}

function deepMerge(base: Record<string, NatsConfigValue>, extra: NatsConfig): Record<string, NatsConfigValue> {
  const out: Record<string, NatsConfigValue> = { ...base };
  for (const [key, value] of Object.entries(extra)) {
    const current = out[key];
    out[key] = isConfigObject(current) && isConfigObject(value) ? deepMerge({ ...current }, value) : value;
  }
  return out;
}

function isConfigObject(value: unknown): value is NatsConfig {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Serializes to nats-server's config syntax: `key: value`, blocks in braces, strings JSON-quoted. */
export function toNatsConfig(config: NatsConfig, indent = ''): string {
  return Object.entries(config)
    .map(([key, value]) => `${indent}${key}: ${configValue(value, indent)}`)
    .join('\n');
}

function configValue(value: NatsConfigValue, indent: string): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `[${value.map((v: NatsConfigValue) => configValue(v, indent)).join(', ')}]`;
  return `{\n${toNatsConfig(value as NatsConfig, `${indent}  `)}\n${indent}}`;
}
