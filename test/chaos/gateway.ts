/**
 * The HTTP gateway in a chaos scenario, run as an operator runs it: `bertq gateway` in its own process
 * (so its memory is its own), some of the scenario's clients sending through it, and a probe reading
 * `/health` and `/ready` twice a second, to show what a load balancer or Kubernetes would have seen.
 */
import { freePort } from '@bertq/testing';
import { livePid, startBertqUntil, stopStarted, type Started } from '../cli-fixtures.js';

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;
const PROBE_EVERY_MS = 500;
const PROBE_TIMEOUT_MS = 1_000;

/** One reading of both probes: their HTTP status, 0 when nothing answered within a second. */
export interface ProbeSample {
  at: number;
  health: number;
  ready: number;
}

/** The answer to one `/encode` through the gateway: vectors, a typed error code, or nothing in time. */
export type HttpOutcome = { ok: true; data: Float32Array } | { ok: false; code: string } | { ok: 'lost' };

export class ChaosGateway {
  readonly samples: ProbeSample[] = [];
  #probing = true;
  #probe: Promise<void>;

  private constructor(
    private readonly started: Started,
    readonly url: string,
  ) {
    this.#probe = this.probeLoop();
  }

  /** Starts `bertq gateway` on a free loopback port with the scenario's deadline as its request timeout. */
  static async start(o: { servers: string[]; service: string; timeoutMs: number }): Promise<ChaosGateway> {
    const port = await freePort();
    const started = await startBertqUntil(
      [
        'gateway',
        '--server',
        o.servers.join(','),
        '--service',
        o.service,
        '--http-port',
        String(port),
        '--http-timeout',
        String(o.timeoutMs),
      ],
      'bertq gateway for service',
      { env: { ...process.env, BERTQ_LOG_LEVEL: 'warn' }, timeoutMs: READY_TIMEOUT_MS },
    );
    return new ChaosGateway(started, `http://127.0.0.1:${port}`);
  }

  get pid(): number | undefined {
    return livePid(this.started);
  }

  /** POST /encode; `lost` when no answer came by `waitMs` (the deadline plus slack). */
  async encode(texts: string[], waitMs: number): Promise<HttpOutcome> {
    let res: Response;
    try {
      res = await fetch(`${this.url}/encode`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ texts }),
        signal: AbortSignal.timeout(waitMs),
      });
    } catch (err) {
      if ((err as Error).name === 'TimeoutError') return { ok: 'lost' };
      return { ok: false, code: `HTTP connection failed (${(err as Error).message})` };
    }
    const body = (await res.json().catch(() => ({}))) as {
      result?: number[][];
      error?: { code?: string };
    };
    if (res.status === 200 && Array.isArray(body.result))
      return { ok: true, data: Float32Array.from(body.result.flat()) };
    return { ok: false, code: body.error?.code ?? `HTTP ${res.status}` };
  }

  /** Probe readings between two instants. */
  between(from: number, to: number): ProbeSample[] {
    return this.samples.filter((s) => s.at >= from && s.at <= to);
  }

  private async probeLoop(): Promise<void> {
    const status = async (path: string) => {
      try {
        const res = await fetch(`${this.url}${path}`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
        await res.arrayBuffer();
        return res.status;
      } catch {
        return 0;
      }
    };
    while (this.#probing) {
      const at = Date.now();
      const [health, ready] = await Promise.all([status('/health'), status('/ready')]);
      this.samples.push({ at, health, ready });
      await new Promise((r) => setTimeout(r, Math.max(0, at + PROBE_EVERY_MS - Date.now())));
    }
  }

  /** Stops probing and the gateway (SIGTERM: it lets requests in flight finish), SIGKILL past 15 s. */
  async stop(): Promise<void> {
    this.#probing = false;
    await this.#probe;
    await stopStarted(this.started, STOP_TIMEOUT_MS);
  }
}
