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
