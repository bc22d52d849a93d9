/**
 * A fleet run the way an operator runs it: `bertq start` as its own process (the supervisor, which
 * forks the workers), so a chaos scenario can SIGKILL the supervisor itself and start it again, as a
 * restart policy (systemd, Kubernetes) would.
 */
import { livePid, startBertq, stopStarted, workerPidsOf, type Started } from '../cli-fixtures.js';

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
  #started: Started | undefined;

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
    return livePid(this.#started);
  }

  /** The worker processes the supervisor forked, from /proc. */
  get workers(): Array<{ pid: number }> {
    const pid = this.pid;
    return pid === undefined ? [] : workerPidsOf(pid).map((p) => ({ pid: p }));
  }

  /** Starts `bertq start` and waits for its ready line. */
  async launch(): Promise<void> {
    const o = this.options;
    this.#started = await startBertq(
      [
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
      { env: { ...process.env, BERTQ_LOG_LEVEL: 'warn' }, timeoutMs: READY_TIMEOUT_MS },
    );
  }

  /** SIGKILL the supervisor (its workers see their IPC channel close, drain and exit). */
  async kill(): Promise<void> {
    this.#started?.child.kill('SIGKILL');
    await this.#started?.exited;
  }

  /** Drains and stops the fleet (SIGTERM), SIGKILL past the deadline. */
  async stop(): Promise<void> {
    await stopStarted(this.#started, STOP_TIMEOUT_MS);
  }
}
