/**
 * Broker faults with 20 clients in flight, against a real nats-server (restarted on the same port and
 * store) and a real fleet: every request completes with the right vectors or fails with a typed error
 * by its deadline; none is lost, none reaches its caller twice. `npm run chaos` runs more (SIGSTOP, a
 * 30 s outage, worker faults) with a table; these are its cheap cases.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Encoder } from '@bertq/model';
import { loadEncoder } from './client-fixtures.js';
import { runScenario, type Fault, type ScenarioReport } from './chaos/harness.js';

const CLIENTS = 20;
const TEST_TIMEOUT_MS = 180_000;

let encoder: Encoder;
before(async () => {
  encoder = await loadEncoder();
});
after(async () => {
  await encoder?.close();
});

function assertNothingLost(r: ScenarioReport): void {
  const summary = JSON.stringify(r);
  assert.ok(r.sent >= CLIENTS * 2, `requests before and after the fault: ${summary}`);
  assert.equal(r.lost, 0, `lost requests: ${summary}`);
  assert.equal(r.duplicated, 0, `results delivered twice: ${summary}`);
  assert.equal(r.wrong, 0, `wrong vectors: ${summary}`);
  assert.equal(r.late, 0, `errors after the deadline: ${summary}`);
  assert.equal(r.completed + Object.values(r.errors).reduce((a, b) => a + b, 0), r.sent, summary);
}

for (const fault of [{ kind: 'broker-sigterm' }, { kind: 'broker-sigkill' }] satisfies Fault[]) {
  test(`broker fault - ${fault.kind} and restart with ${CLIENTS} clients in flight: nothing lost, nothing twice`, {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const report = await runScenario({
      name: fault.kind,
      fault,
      clients: CLIENTS,
      runAfterFaultMs: 2_000,
      rows: 16,
      timeoutMs: 30_000,
      encoder,
    });
    assertNothingLost(report);
    // The broker came back within seconds, far inside every deadline: every request must complete.
    assert.equal(report.completed, report.sent, JSON.stringify(report));
    assert.ok(report.reconnects >= CLIENTS, `every client reconnected: ${report.reconnects}`);
  });
}

test('broker fault - down 8 s with clients on the library and on the gateway: /health says so, /ready and serving come back by themselves', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const report = await runScenario({
    name: 'broker-outage',
    fault: { kind: 'broker-outage', seconds: 8 },
    clients: CLIENTS,
    httpClients: 2,
    runAfterFaultMs: 2_000,
    rows: 16,
    timeoutMs: 30_000,
    encoder,
  });
  assertNothingLost(report);
  assert.equal(report.completed, report.sent, JSON.stringify(report));
  assert.equal(report.clientsServedAfterFault, CLIENTS, `every client served again: ${JSON.stringify(report)}`);
  const g = report.gateway!;
  assert.ok(g.healthProbesInFault >= 5, JSON.stringify(g));
  assert.equal(
    g.health503InFault,
    g.healthProbesInFault,
    `/health said 503 all through the outage: ${JSON.stringify(g)}`,
  );
  assert.ok(g.readyAgainMs !== undefined && g.readyAgainMs < 15_000, `/ready came back: ${JSON.stringify(g)}`);
  assert.ok(report.rssMiB.after.gateway! > 0, 'the gateway ran in its own process throughout');
});

test('broker fault - a 3-node cluster (stream R3) loses the node leading the stream under load: nothing lost, nothing twice', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const report = await runScenario({
    name: 'cluster-leader-sigkill',
    rows: 16,
    fault: { kind: 'cluster-leader-sigkill', downSeconds: 3 },
    cluster: true,
    clients: CLIENTS,
    runAfterFaultMs: 2_000,
    timeoutMs: 30_000,
    encoder,
  });
  assertNothingLost(report);
  assert.equal(report.completed, report.sent, JSON.stringify(report));
});

test('supervisor fault - bertq start SIGKILLed under load and started again: its workers drain, nothing is lost or burnt', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  // The killed supervisor's workers drain and hand back what they pulled; a job they hand back must
  // reach the new fleet, not bounce inside the draining worker's own pull until max_deliver.
  const report = await runScenario({
    name: 'supervisor-sigkill',
    rows: 16,
    fault: { kind: 'supervisor-sigkill', restartAfterMs: 500 },
    numWorker: 2,
    clients: CLIENTS,
    runAfterFaultMs: 2_000,
    timeoutMs: 30_000,
    encoder,
  });
  assertNothingLost(report);
  assert.equal(report.completed, report.sent, JSON.stringify(report));
});

test('overload - open loop at 5× capacity with 5 s deadlines: what cannot be served is refused at once, nothing is lost or late', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const report = await runScenario({
    name: 'overload-5x',
    // Big requests: 5x the fleet in rows, with few enough requests that this one test process (under
    // coverage, beside other suites) still keeps its own timers on time.
    rows: 128,
    fault: { kind: 'none' },
    load: { kind: 'open', multiple: 5 },
    clients: CLIENTS,
    // Long enough for the readings to catch up with the burst even on a slow (coverage) run.
    runAfterFaultMs: 4_000,
    timeoutMs: 5_000,
    encoder,
  });
  assertNothingLost(report);
  assert.ok(report.completed > 0, JSON.stringify(report));
  // The excess is refused at once (OVERLOADED) rather than only queued to time out: without shedding,
  // every request past capacity waits its 5 s and fails TIMEOUT. How much is shed rather than timed
  // out depends on how fresh this one busy process's readings are; `npm run chaos` prints both.
  assert.ok((report.errors.OVERLOADED ?? 0) > 0, `the excess is shed: ${JSON.stringify(report)}`);
});

test('fuzz - 2,000 fuzzed jobs beside 20 clients: the clients lose nothing, no worker crashes, the stream drains', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const report = await runScenario({
    name: 'fuzz',
    rows: 16,
    fault: { kind: 'none' },
    fuzzJobs: 2_000,
    clients: CLIENTS,
    runAfterFaultMs: 2_000,
    timeoutMs: 30_000,
    encoder,
  });
  assertNothingLost(report);
  assert.equal(report.completed, report.sent, JSON.stringify(report));
  assert.ok(report.fuzz, 'the fuzzed jobs were published');
  assert.equal(report.fuzz.published + report.fuzz.refusedByStream, 2_000);
  assert.ok(report.fuzz.answered > 0, 'answerable fuzzed jobs got error frames');
  assert.equal(report.fuzz.workerRestarts, 0, JSON.stringify(report.fuzz));
  assert.ok(report.fuzz.streamDrained, 'no fuzzed job is stuck in the stream');
});
