/**
 * A fleet run the way an operator runs it: `bertq start` as its own process (the supervisor, which
 * forks the workers), so a chaos scenario can SIGKILL the supervisor itself and start it again, as a
 * restart policy (systemd, Kubernetes) would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { waitFor } from '@bertq/testing';

const BIN = fileURLToPath(new URL('../../../cli/bin/run.js', import.meta.url));
const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;

export interface CliFleetOptions {
  servers: string[];
  service: string;
  numWorker: number;
  model: string;
  graphDir: string;
}

export class CliFleet {
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();

  private constructor(
    private readonly options: CliFleetOptions,
    readonly service: string,
  ) {}

  static async start(options: CliFleetOptions): Promise<CliFleet> {
    const fleet = new CliFleet(options, options.service);
    await fleet.launch();
    return fleet;
  }

  /** The supervisor's pid (undefined once it is gone). */
  get pid(): number | undefined {
    const c = this.#child;
    return c && c.exitCode === null && c.signalCode === null ? c.pid : undefined;
  }

  /** The worker processes the supervisor forked, from /proc. */
  get workers(): Array<{ pid: number }> {
    const pid = this.pid;
    if (pid === undefined) return [];
    try {
      return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(Number)
        .filter((p) => {
          try {
            return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('worker-main');
          } catch {
            return false;
          }
        })
        .map((p) => ({ pid: p }));
    } catch {
      return [];
    }
  }

  /** Starts `bertq start` and waits for its ready line. */
  async launch(): Promise<void> {
    const o = this.options;
    const child = spawn(
      process.execPath,
      [
        BIN,
        'start',
        '--model',
        o.model,
        '--graph-tmp-dir',
        o.graphDir,
        '--server',
        o.servers.join(','),
        '--service',
        o.service,
        '--num-worker',
        String(o.numWorker),
        '--threads',
        '1',
      ],
      {
        env: { ...process.env, BERTQ_LOG_LEVEL: process.env.CHAOS_FLEET_LOG_LEVEL ?? 'warn' },
        stdio: ['ignore', process.env.CHAOS_FLEET_LOG_LEVEL ? 'inherit' : 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
    await waitFor(
      'bertq start to be ready',
      () => {
        if (child.exitCode !== null) throw new Error(`bertq start exited with ${child.exitCode}: ${stderr}`);
        return stderr.includes('bertq ready');
      },
      READY_TIMEOUT_MS,
      100,
    );
  }

  /** SIGKILL the supervisor (its workers see their IPC channel close, drain and exit). */
  async kill(): Promise<void> {
    this.#child?.kill('SIGKILL');
    await this.#exited;
  }

  /** Drains and stops the fleet (SIGTERM), SIGKILL past the deadline. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await this.#exited;
    clearTimeout(timer);
  }
}
