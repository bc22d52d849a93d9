/**
 * The chaos harness: a real nats-server (JetStream on disk), a real fleet (startFleet forks worker
 * processes), N library clients each sending requests in a closed loop, and one fault in the middle.
 * Every request is accounted for: completed (and its vectors checked against the in-process encoder),
 * failed with a typed error by its deadline, or lost (neither, by deadline + slack). Used by
 * test/broker-faults.nats.test.ts (cheap scenarios) and `npm run chaos` (all of them, with a table).
 */
import { BertClient } from '@bertq/client';
import type { Encoder } from '@bertq/model';
import { BertqError, streamName } from '@bertq/protocol';
import { sleep, startNatsServer, tinyModel, type NatsServer } from '@bertq/testing';
import { startFleet, type FleetHandle } from '@bertq/worker';
import { readFileSync } from 'node:fs';
import { maxAbsDiff } from '../client-fixtures.js';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { CliFleet } from './cli-fleet.js';
import { publishFuzzedJobs, type FuzzReport } from './fuzz.js';
import { startCluster, type Cluster } from './cluster.js';
import { ChaosGateway, type HttpOutcome } from './gateway.js';

/** A fault, applied once while every client has requests in flight. */
export type Fault =
  | { kind: 'broker-sigterm' }
  | { kind: 'broker-sigkill' }
  | { kind: 'broker-sigstop'; seconds: number }
  | { kind: 'broker-outage'; seconds: number }
  | { kind: 'worker-sigkill' }
  | { kind: 'worker-sigstop'; seconds: number }
  | { kind: 'cluster-leader-sigkill'; downSeconds: number }
  | { kind: 'supervisor-sigkill'; restartAfterMs: number }
  | { kind: 'none' };

/** What the harness needs of a fleet: the in-process one (startFleet) or `bertq start` (CliFleet). */
type Fleet = Pick<FleetHandle, 'service' | 'stop'> & { readonly workers: ReadonlyArray<{ pid: number }> };

export interface ScenarioOptions {
  name: string;
  fault: Fault;
  clients: number;
  /** Each client sends requests one after the other until the fault is over and this long after. */
  runAfterFaultMs: number;
  /** Rows per request. */
  rows: number;
  /** Per-request timeout (the client's deadline). */
  timeoutMs: number;
  numWorker?: number;
  /**
   * Run on a 3-node cluster (stream replicas 3): the fleet connects to node 1, the clients to nodes 2
   * and 3 (each with every URL, to fail over). Default: one nats-server.
   */
  cluster?: boolean;
  /** When the fault strikes, after the first request went out. */
  faultAfterMs?: number;
  /**
   * How clients send: `closed` (default) each waits for its answer before the next request; `open`
   * sends at `multiple` × the rate the fleet served in a closed-loop second first, whatever comes
   * back (overload: requests the queue cannot serve by their deadline must be refused, not lost).
   */
  load?: { kind: 'closed' } | { kind: 'open'; multiple: number };
  /** Also publish this many fuzzed jobs (test/chaos/fuzz.ts) beside the traffic, at the fault's time. */
  fuzzJobs?: number;
  /**
   * This many of the clients send through `bertq gateway` (its own process, probed on /health and
   * /ready) instead of the library. Closed loop only. Default 0: no gateway.
   */
  httpClients?: number;
  encoder: Encoder;
  log?: (line: string) => void;
}

export interface ScenarioReport {
  name: string;
  sent: number;
  completed: number;
  /** Completed with vectors that differ from the in-process encoder's. */
  wrong: number;
  /** Neither completed nor failed by deadline + LOST_SLACK_MS. */
  lost: number;
  /** Requests whose result reached the caller more than once. */
  duplicated: number;
  /** Failed with a typed error, by code. */
  errors: Record<string, number>;
  /** The first message seen for each error code, to tell what went wrong without a rerun. */
  errorMessages: Record<string, string>;
  /** Failed later than their deadline + LATE_SLACK_MS. */
  late: number;
  maxLatencyMs: number;
  /** Jobs the clients published again after reconnecting (work done twice is allowed). */
  reasked: number;
  reconnects: number;
  /** Requests sent after the fault was over that completed: the fleet serves again. */
  servedAfterFault: number;
  /** Clients (library and HTTP) with a request sent after the fault that completed. */
  clientsServedAfterFault: number;
  /** With httpClients: what the gateway's probes said during the fault, and when it was ready again. */
  gateway?: GatewayReport;
  rssMiB: { before: Record<string, number>; after: Record<string, number> };
  seconds: number;
  /** With fuzzJobs: what became of them, whether the stream emptied, and whether a worker crashed. */
  fuzz?: FuzzReport & { streamDrained: boolean; workerRestarts: number };
}

export interface GatewayReport {
  /** /health readings from 3 s into the fault to its end (a client needs a moment to notice). */
  healthProbesInFault: number;
  /** Of those, how many answered 503 (the truth while the broker is gone). */
  health503InFault: number;
  /** From the fault's end to the first /ready 200; undefined when it never came. */
  readyAgainMs: number | undefined;
}

/** A request still unsettled this long after its deadline is counted lost. */
export const LOST_SLACK_MS = 5_000;
/** A typed error later than deadline + this is counted late (a deadline not kept). */
export const LATE_SLACK_MS = 2_000;

/** Resident memory of a process, MiB (0 when it is gone). */
export function rssMiB(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : 0;
  } catch {
    return 0;
  }
}

function memory(server: NatsServer, fleet: Fleet, gateway: ChaosGateway | undefined): Record<string, number> {
  const out: Record<string, number> = { 'nats-server': rssMiB(server.pid), 'this process': rssMiB(process.pid) };
  if (gateway) out.gateway = rssMiB(gateway.pid);
  fleet.workers.forEach((w, i) => {
    out[`worker ${i}`] = rssMiB(w.pid);
  });
  return out;
}

/** `rows` distinct sentences for request `n` of client `c`, so a row from another request shows. */
function textsFor(c: number, n: number, rows: number): string[] {
  const words = ['river', 'stone', 'cloud', 'ember', 'maple', 'north', 'quiet', 'swift'];
  return Array.from({ length: rows }, (_, r) => `${c} ${n} ${r} ${words[(c + n + r) % words.length]} ${words[r % 8]}`);
}

async function applyFault(
  fault: Fault,
  server: NatsServer,
  fleet: Fleet,
  log: (l: string) => void,
  cluster: Cluster | undefined,
) {
  switch (fault.kind) {
    case 'cluster-leader-sigkill': {
      if (cluster === undefined) throw new Error('cluster-leader-sigkill needs cluster: true');
      const leader = await cluster.leaderOf(streamName(fleet.service));
      const node = cluster.nodes[leader]!;
      log(`fault: SIGKILL node n${leader + 1}, the stream's leader; back after ${fault.downSeconds} s`);
      node.kill('SIGKILL');
      await sleep(fault.downSeconds * 1000);
      await node.restart(20_000);
      return;
    }
    case 'supervisor-sigkill': {
      if (!(fleet instanceof CliFleet)) throw new Error('supervisor-sigkill needs the fleet in its own process');
      log(
        `fault: SIGKILL the supervisor (bertq start, pid ${fleet.pid}); start it again after ${fault.restartAfterMs} ms`,
      );
      await fleet.kill();
      await sleep(fault.restartAfterMs);
      await fleet.launch();
      return;
    }
    case 'none':
      return;
    case 'broker-sigterm':
      log('fault: SIGTERM the nats-server, start it again on the same port and store');
      await server.restart();
      return;
    case 'broker-sigkill':
      log('fault: SIGKILL the nats-server, start it again on the same port and store');
      server.kill('SIGKILL');
      await server.restart();
      return;
    case 'broker-sigstop':
      log(`fault: SIGSTOP the nats-server for ${fault.seconds} s`);
      server.kill('SIGSTOP');
      await sleep(fault.seconds * 1000);
      server.kill('SIGCONT');
      return;
    case 'broker-outage':
      log(`fault: the nats-server is down for ${fault.seconds} s`);
      server.kill('SIGKILL');
      await sleep(fault.seconds * 1000);
      await server.restart();
      return;
    case 'worker-sigkill': {
      const pid = fleet.workers[0]?.pid;
      log(`fault: SIGKILL worker pid ${pid}`);
      if (pid !== undefined) process.kill(pid, 'SIGKILL');
      return;
    }
    case 'worker-sigstop': {
      const pid = fleet.workers[0]?.pid;
      log(`fault: SIGSTOP worker pid ${pid} for ${fault.seconds} s`);
      if (pid === undefined) return;
      process.kill(pid, 'SIGSTOP');
      await sleep(fault.seconds * 1000);
      process.kill(pid, 'SIGCONT');
      return;
    }
  }
}

/** Runs one scenario on its own nats-server and fleet, and accounts for every request. */
export async function runScenario(o: ScenarioOptions): Promise<ScenarioReport> {
  const log = o.log ?? (() => {});
  const started = Date.now();
  const tiny = await tinyModel();
  const cluster = o.cluster ? await startCluster() : undefined;
  const server = cluster?.nodes[0] ?? (await startNatsServer());
  const urls = cluster?.urls ?? [server.url];
  // Clients on other nodes than the fleet when there are several, every URL to fail over to.
  const clientServers = (c: number) =>
    urls.length === 1
      ? urls
      : [urls[1 + (c % (urls.length - 1))]!, ...urls.filter((_, i) => i !== 1 + (c % (urls.length - 1)))];
  const service = `chaos-${o.fault.kind}-${process.pid}`;
  const fleet: Fleet =
    o.fault.kind === 'supervisor-sigkill'
      ? await CliFleet.start({
          servers: urls,
          service,
          numWorker: o.numWorker ?? 1,
          model: tiny.huggingFaceDir,
          graphDir: tiny.graphDir,
        })
      : await startFleet({
          servers: urls,
          service,
          numWorker: o.numWorker ?? 1,
          threadsPerWorker: 1,
          encoder: { model: tiny.huggingFaceDir, graphTmpDir: tiny.graphDir },
          logLevel: 'silent',
          ...(cluster ? { stream: { replicas: 3 } } : {}),
        });
  const httpClients = o.load?.kind === 'open' ? 0 : (o.httpClients ?? 0);
  const gateway =
    httpClients > 0
      ? await ChaosGateway.start({ servers: urls, service, timeoutMs: o.timeoutMs }).catch(async (err) => {
          await fleet.stop();
          throw err;
        })
      : undefined;
  const clients: BertClient[] = [];
  const report: ScenarioReport = {
    name: o.name,
    sent: 0,
    completed: 0,
    wrong: 0,
    lost: 0,
    duplicated: 0,
    errors: {},
    errorMessages: {},
    late: 0,
    maxLatencyMs: 0,
    reasked: 0,
    reconnects: 0,
    servedAfterFault: 0,
    clientsServedAfterFault: 0,
    rssMiB: { before: memory(server, fleet, gateway), after: {} },
    seconds: 0,
  };
  try {
    for (let c = 0; c < o.clients - httpClients; c++)
      clients.push(await BertClient.connect({ servers: clientServers(c), service, timeout: o.timeoutMs }));
    const settledIds = new Map<string, number>();
    let faultEnd = Number.POSITIVE_INFINITY;
    const servedAgain = new Set<number>();
    /** When each client last sent a request: a closed-loop client goes on until one went out after the fault. */
    const lastSent: number[] = [];
    // Clients past the library ones send through the gateway; both answer in the same terms.
    const send = (c: number, texts: string[]): Promise<HttpOutcome | { ok: false; error: unknown }> =>
      c >= clients.length
        ? gateway!.encode(texts, o.timeoutMs + LOST_SLACK_MS)
        : Promise.race([
            clients[c]!.encode(texts).then(
              (v) => ({ ok: true as const, data: v.data }),
              (error: unknown) => ({ ok: false as const, error }),
            ),
            sleep(o.timeoutMs + LOST_SLACK_MS).then(() => ({ ok: 'lost' as const })),
          ]);
    const one = async (c: number, n: number): Promise<void> => {
      const texts = textsFor(c, n, o.rows);
      const t0 = Date.now();
      lastSent[c] = t0;
      report.sent++;
      const deadline = t0 + o.timeoutMs;
      const key = `${c}:${n}`;
      const outcome = await send(c, texts);
      const latency = Date.now() - t0;
      report.maxLatencyMs = Math.max(report.maxLatencyMs, latency);
      if (outcome.ok === 'lost') {
        report.lost++;
        return;
      }
      settledIds.set(key, (settledIds.get(key) ?? 0) + 1);
      if (outcome.ok) {
        report.completed++;
        if (t0 > faultEnd) {
          report.servedAfterFault++;
          servedAgain.add(c);
        }
        // The reference is computed after the answer, so checking does not slow the sending down.
        const want = await o.encoder.encode(texts);
        if (maxAbsDiff(outcome.data, want.data) > 1e-5) report.wrong++;
      } else {
        const code =
          'code' in outcome
            ? outcome.code
            : outcome.error instanceof BertqError
              ? outcome.error.code
              : `untyped ${String(outcome.error)}`;
        report.errors[code] = (report.errors[code] ?? 0) + 1;
        report.errorMessages[code] ??=
          'error' in outcome ? String((outcome.error as Error)?.message ?? outcome.error) : code;
        if (Date.now() > deadline + LATE_SLACK_MS) report.late++;
      }
    };
    let stopAt = Number.POSITIVE_INFINITY;
    let loops: Array<Promise<void>>;
    if (o.load?.kind === 'open') {
      // Two closed-loop seconds (the first warms up; not counted) to learn the fleet's rate, and its
      // capacity as the workers measure it; then multiple × the larger, open loop.
      const warmUntil = Date.now() + 1_000;
      const probeUntil = warmUntil + 1_000;
      let served = 0;
      await Promise.all(
        clients.map(async (c, k) => {
          for (let n = 0; Date.now() < probeUntil; n++) {
            await c.encode(textsFor(k, -1 - n, o.rows));
            if (Date.now() > warmUntil) served++;
          }
        }),
      );
      const capacity = (await clients[0]!.serverStatus()).statistic.capacity_seq_per_second / o.rows;
      const perSecond = Math.max(1, Math.max(served, capacity) * o.load.multiple);
      log(
        `open loop: ${served} requests/s closed-loop, capacity ${capacity.toFixed(0)}/s; sending ${perSecond.toFixed(0)}/s`,
      );
      const inFlight: Array<Promise<void>> = [];
      loops = [
        (async () => {
          // Sent in ticks of 10 ms (a timer cannot fire every 0.2 ms), the same rate on average.
          const start = Date.now();
          let n = 0;
          while (Date.now() < stopAt) {
            const due = Math.floor(((Date.now() - start) / 1000) * perSecond);
            for (; n < due; n++) inFlight.push(one(n % clients.length, n));
            await sleep(10);
          }
          await Promise.all(inFlight);
        })(),
      ];
    } else {
      loops = Array.from({ length: o.clients }, async (_, c) => {
        // After a long outage a client may be waiting out a deadline when stopAt passes: it still
        // sends once more, so every client shows whether it is served again.
        for (let n = 0; Date.now() < stopAt || (lastSent[c] ?? 0) <= faultEnd; n++) await one(c, n);
      });
    }
    await sleep(o.faultAfterMs ?? 500);
    const fuzzing =
      o.fuzzJobs === undefined
        ? undefined
        : (async () => {
            const nc = await connect({ servers: urls });
            try {
              return await publishFuzzedJobs(nc, service, o.fuzzJobs!);
            } finally {
              await nc.drain();
            }
          })();
    const faultStart = Date.now();
    await applyFault(o.fault, server, fleet, log, cluster);
    faultEnd = Date.now();
    if (fuzzing) log(`fuzz: ${JSON.stringify(await fuzzing)}`);
    stopAt = Date.now() + o.runAfterFaultMs;
    await Promise.all(loops);
    if (fuzzing) {
      const fuzz = await fuzzing;
      const nc = await connect({ servers: urls });
      try {
        const jsm = await jetstreamManager(nc);
        const stream = streamName(service);
        let drained = false;
        for (const until = Date.now() + 30_000; !drained && Date.now() < until; await sleep(250))
          drained = (await jsm.streams.info(stream)).state.messages === 0;
        const restarts =
          'restarts' in (fleet.workers[0] ?? {})
            ? (fleet as FleetHandle).workers.reduce((a, w) => a + w.restarts, 0)
            : 0;
        report.fuzz = { ...fuzz, streamDrained: drained, workerRestarts: restarts };
      } finally {
        await nc.close();
      }
    }
    report.duplicated = [...settledIds.values()].filter((n) => n > 1).length;
    report.clientsServedAfterFault = servedAgain.size;
    for (const c of clients) {
      report.reasked += c.status.reaskedJobs;
      report.reconnects += c.status.reconnects;
    }
    report.rssMiB.after = memory(server, fleet, gateway);
    if (gateway) {
      const inFault = gateway.between(faultStart + 3_000, faultEnd);
      const readyAgain = gateway.samples.find((x) => x.at >= faultEnd && x.ready === 200);
      report.gateway = {
        healthProbesInFault: inFault.length,
        health503InFault: inFault.filter((x) => x.health === 503).length,
        readyAgainMs: readyAgain === undefined ? undefined : readyAgain.at - faultEnd,
      };
    }
  } finally {
    await gateway?.stop();
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await fleet.stop();
    if (cluster) await cluster.stop();
    else await server.stop();
  }
  report.seconds = Math.round((Date.now() - started) / 100) / 10;
  return report;
}

/** The report as one table row: sent, completed, wrong, lost, duplicated, late, errors, max latency. */
export function reportRow(r: ScenarioReport): string[] {
  const errors = Object.entries(r.errors)
    .map(([code, n]) => `${code} ${n}`)
    .join(', ');
  return [
    r.name,
    String(r.sent),
    String(r.completed),
    String(r.wrong),
    String(r.lost),
    String(r.duplicated),
    String(r.late),
    errors || '—',
    `${(r.maxLatencyMs / 1000).toFixed(1)} s`,
    String(r.reasked),
    `${r.servedAfterFault} (${r.clientsServedAfterFault} clients)`,
    r.gateway === undefined
      ? '—'
      : `${r.gateway.health503InFault}/${r.gateway.healthProbesInFault} · ${
          r.gateway.readyAgainMs === undefined ? 'never' : `${(r.gateway.readyAgainMs / 1000).toFixed(1)} s`
        }`,
    `${Object.values(r.rssMiB.before).join('/')} → ${Object.values(r.rssMiB.after).join('/')}`,
    `${r.seconds} s`,
  ];
}

export const REPORT_HEADERS = [
  'scenario',
  'sent',
  'completed',
  'wrong',
  'lost',
  'duplicated',
  'late',
  'errors',
  'max latency',
  're-asked jobs',
  'served after the fault',
  'gateway /health 503 in fault · /ready again after',
  'RSS MiB before → after (broker/this/gateway/workers)',
  'took',
];
