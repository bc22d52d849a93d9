/**
 * `npm run chaos`: every fault scenario of the harness, one after the other, each on its own
 * nats-server and fleet, then one table (markdown) of what happened to every request. Loopback only,
 * bounded: each scenario ends a few seconds after its fault, and no request outlives its deadline by
 * more than the harness's slack.
 *
 *   npm run build && npm run chaos [-- --only broker-outage]
 */
import { loadavg } from 'node:os';
import { loadEncoder } from '../client-fixtures.js';
import {
  REPORT_HEADERS,
  reportRow,
  runScenario,
  type Fault,
  type ScenarioOptions,
  type ScenarioReport,
} from './harness.js';

const CLIENTS = 20;
/** Of the clients, these send through `bertq gateway` (its own process, probed on /health and /ready). */
const HTTP_CLIENTS = 2;

const SCENARIOS: Array<{
  name: string;
  fault: Fault;
  timeoutMs: number;
  numWorker?: number;
  cluster?: boolean;
  load?: ScenarioOptions['load'];
  rows?: number;
  fuzzJobs?: number;
}> = [
  { name: 'no fault (baseline)', fault: { kind: 'none' }, timeoutMs: 30_000 },
  { name: 'broker SIGTERM + restart', fault: { kind: 'broker-sigterm' }, timeoutMs: 30_000 },
  { name: 'broker SIGKILL + restart', fault: { kind: 'broker-sigkill' }, timeoutMs: 30_000 },
  { name: 'broker SIGSTOP 10 s', fault: { kind: 'broker-sigstop', seconds: 10 }, timeoutMs: 30_000 },
  { name: 'broker down 30 s', fault: { kind: 'broker-outage', seconds: 30 }, timeoutMs: 60_000 },
  { name: 'broker down 30 s, 10 s deadlines', fault: { kind: 'broker-outage', seconds: 30 }, timeoutMs: 10_000 },
  // NATS's own advice for services is to reconnect forever: after 2 minutes everything serves again.
  { name: 'broker down 2 min', fault: { kind: 'broker-outage', seconds: 120 }, timeoutMs: 60_000 },
  { name: 'worker SIGKILL (1 of 2)', fault: { kind: 'worker-sigkill' }, timeoutMs: 30_000, numWorker: 2 },
  {
    name: 'worker SIGSTOP 10 s (1 of 2)',
    fault: { kind: 'worker-sigstop', seconds: 10 },
    timeoutMs: 30_000,
    numWorker: 2,
  },
  {
    name: '3-node cluster, R3: SIGKILL the stream leader',
    fault: { kind: 'cluster-leader-sigkill', downSeconds: 5 },
    timeoutMs: 30_000,
    cluster: true,
  },
  {
    name: 'supervisor SIGKILL + restart (bertq start, 2 workers)',
    fault: { kind: 'supervisor-sigkill', restartAfterMs: 1_000 },
    timeoutMs: 30_000,
    numWorker: 2,
  },
  {
    name: 'open-loop overload at 5× capacity, 5 s deadlines',
    fault: { kind: 'none' },
    timeoutMs: 5_000,
    load: { kind: 'open', multiple: 5 },
    // Bigger requests (the bulk lane): the fleet, not this one process of clients, is what overloads.
    rows: 64,
  },
  {
    name: '10,000 fuzzed jobs beside the traffic',
    fault: { kind: 'none' },
    timeoutMs: 30_000,
    fuzzJobs: 10_000,
  },
];

async function main(): Promise<void> {
  const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;
  const encoder = await loadEncoder();
  const reports: ScenarioReport[] = [];
  console.log(
    `chaos: ${CLIENTS} clients (${HTTP_CLIENTS} of them through bertq gateway), 16-row requests in a closed loop, tiny model; load average ${loadavg()[0]!.toFixed(2)}`,
  );
  try {
    for (const s of SCENARIOS) {
      if (only !== undefined && !s.name.includes(only) && s.fault.kind !== only) continue;
      process.stderr.write(`\n▶ ${s.name}\n`);
      const report = await runScenario({
        name: s.name,
        fault: s.fault,
        clients: CLIENTS,
        rows: s.rows ?? 16,
        httpClients: HTTP_CLIENTS,
        timeoutMs: s.timeoutMs,
        runAfterFaultMs: 3_000,
        numWorker: s.numWorker ?? 1,
        cluster: s.cluster ?? false,
        ...(s.load ? { load: s.load } : {}),
        ...(s.fuzzJobs ? { fuzzJobs: s.fuzzJobs } : {}),
        encoder,
        log: (line) => process.stderr.write(`  ${line}\n`),
      });
      process.stderr.write(`  ${JSON.stringify(report)}\n`);
      reports.push(report);
    }
  } finally {
    await encoder.close();
  }
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  console.log(`\n${line(REPORT_HEADERS)}\n${line(REPORT_HEADERS.map(() => '---'))}`);
  for (const r of reports) console.log(line(reportRow(r)));
  console.log(`\nload average at end: ${loadavg()[0]!.toFixed(2)}`);
  for (const r of reports.filter((x) => x.fuzz))
    console.log(
      `\n${r.name}: ${r.fuzz!.published} fuzzed jobs stored (${r.fuzz!.refusedByStream} refused by the stream), ${r.fuzz!.answered} frames answered to the fuzz subject, stream ${r.fuzz!.streamDrained ? 'drained' : 'NOT drained'}, worker restarts ${r.fuzz!.workerRestarts}`,
    );
  const bad = reports.filter(
    (r) =>
      // Every closed-loop client, library or HTTP, is served again after the fault, without a restart.
      (SCENARIOS.find((x) => x.name === r.name)?.load === undefined && r.clientsServedAfterFault < CLIENTS) ||
      (r.gateway !== undefined && r.gateway.readyAgainMs === undefined) ||
      r.lost > 0 ||
      r.duplicated > 0 ||
      r.wrong > 0 ||
      r.late > 0 ||
      (r.fuzz !== undefined && (!r.fuzz.streamDrained || r.fuzz.workerRestarts > 0)),
  );
  if (bad.length > 0) {
    console.error(
      `\nFAILED: ${bad.map((r) => r.name).join(', ')} lost, duplicated, mixed or kept a request past its deadline, or did not serve again after the fault`,
    );
    process.exit(1);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
