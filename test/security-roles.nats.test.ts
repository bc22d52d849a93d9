/**
 * The shipped roles (deploy/nats/bertq-auth.conf) under attack, on a real nats-server started with
 * that file: a `client` tries what an attacker on the same NATS server would, and every attempt is
 * refused by the broker; `bertq start` as `worker`, `bertq encode` as `client` and `bertq terminate`
 * as `admin` work. Each test would fail if its permission line were removed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, Empty, type NatsConnection } from '@nats-io/transport-node';
import { HEADERS, newRequestId, serviceNames, UnauthorizedError, WORKER_INBOX_PREFIX } from '@bertq/protocol';
import { BertClient } from '@bertq/client';
import { connectNats, toNatsHeaders } from '@bertq/nats';
import {
  freshService,
  sleep,
  startNatsServer,
  tinyModel,
  waitFor,
  type NatsServer,
  type TinyModelFixture,
} from '@bertq/testing';

const AUTH_CONF = fileURLToPath(new URL('../../deploy/nats/bertq-auth.conf', import.meta.url));
const BIN = fileURLToPath(new URL('../../cli/bin/run.js', import.meta.url));
const TEST_TIMEOUT_MS = 120_000;
const START_TIMEOUT_MS = 60_000;
const COMMAND_TIMEOUT_MS = 30_000;
/** How long to wait for a refusal the broker sends asynchronously (a permissions violation). */
const VIOLATION_WAIT_MS = 2_000;

const PASSWORDS = {
  client: 'client-secret-for-the-test',
  worker: 'worker-secret-for-the-test',
  admin: 'admin-secret-for-the-test',
} as const;
type Role = keyof typeof PASSWORDS;

let server: NatsServer;
let tiny: TinyModelFixture;
let home: string;
let fleet: ChildProcess | undefined;
const service = freshService('roles');

before(async () => {
  tiny = await tinyModel();
  home = await mkdtemp(join(tmpdir(), 'bertq-roles-'));
  // nats-server substitutes $BERTQ_*_PASSWORD from its own environment, which it inherits from here.
  process.env.BERTQ_CLIENT_PASSWORD = PASSWORDS.client;
  process.env.BERTQ_WORKER_PASSWORD = PASSWORDS.worker;
  process.env.BERTQ_ADMIN_PASSWORD = PASSWORDS.admin;
  // The shipped file as it is (nats-server resolves `include` relative to the including file, so its
  // text goes in whole rather than by path).
  server = await startNatsServer({ config: await readFile(AUTH_CONF, 'utf8') });
});

after(async () => {
  fleet?.kill('SIGKILL');
  await server?.stop();
  await rm(home, { recursive: true, force: true });
});

function env(role: Role): NodeJS.ProcessEnv {
  return {
    ...process.env,
    BERTQ_CACHE: join(home, 'cache'),
    BERTQ_LOG_LEVEL: 'warn',
    BERTQ_NATS_URL: server.url,
    BERTQ_SERVICE: service,
    BERTQ_NATS_USER: role,
    BERTQ_NATS_PASSWORD: PASSWORDS[role],
  };
}

function bertq(
  role: Role,
  args: string[],
  environment: NodeJS.ProcessEnv = env(role),
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: environment, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`bertq ${args.join(' ')} did not finish\n${stderr}`));
    }, COMMAND_TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A connection as `role`, recording the permission violations the server reports to it. */
async function as(role: Role): Promise<{ nc: NatsConnection; violations: string[] }> {
  const nc = await connect({ servers: server.url, user: role, pass: PASSWORDS[role], maxReconnectAttempts: 0 });
  const violations: string[] = [];
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'error' && /permissions violation/i.test(String((s as { error?: Error }).error ?? ''))) {
        violations.push(String((s as { error?: Error }).error));
      }
    }
  })();
  return { nc, violations };
}

/** oclif wraps long messages: the lines joined. */
function oneLine(text: string): string {
  return text.replace(/\s*\n\s*›?\s*/g, ' ');
}

async function fleetAnswers(): Promise<boolean> {
  const run = await bertq('client', ['encode', 'still serving?']);
  return run.code === 0 && run.stdout.trim().startsWith('[');
}

test('roles - bertq start as worker finds no stream it may create; bertq setup as admin makes it; then the fleet serves', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const args = ['start', '--model', tiny.huggingFaceDir, '--threads', '1', '--graph-tmp-dir', tiny.graphDir];
  // The worker role may not create (or change) streams: a fresh server has none, so start says so.
  const refused = await bertq('worker', args);
  assert.equal(refused.code, 1, refused.stderr);
  assert.match(
    oneLine(refused.stderr),
    /UNAUTHORIZED: stream BERTQ_\S+ does not exist, and this NATS credential may not create/,
  );
  assert.match(oneLine(refused.stderr), /run `bertq setup` once with the admin credential/);
  // The worker cannot do what setup does either.
  const workerSetup = await bertq('worker', ['setup']);
  assert.equal(workerSetup.code, 1, workerSetup.stdout);
  const setup = await bertq('admin', ['setup']);
  assert.equal(setup.code, 0, setup.stderr);
  assert.match(setup.stdout, /created stream BERTQ_/);

  const child = spawn(process.execPath, [BIN, ...args], { env: env('worker'), stdio: ['ignore', 'ignore', 'pipe'] });
  fleet = child;
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  await waitFor(
    'bertq start (as worker) to be ready',
    () => {
      if (child.exitCode !== null) throw new Error(`bertq start exited ${child.exitCode}:\n${stderr}`);
      return stderr.includes('bertq ready');
    },
    START_TIMEOUT_MS,
    100,
  );
  assert.equal(await fleetAnswers(), true);
});

test("attack - a client on _INBOX.> sees no job a worker pulls, and may not read the workers' inbox", {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const { nc, violations } = await as('client');
  const heard: string[] = [];
  try {
    nc.subscribe('_INBOX.>', { callback: (_err, msg) => void heard.push(new TextDecoder().decode(msg.data)) });
    nc.subscribe(`${WORKER_INBOX_PREFIX}.>`);
    await nc.flush();
    await waitFor("the broker to refuse the workers' inbox", () => violations.length > 0, VIOLATION_WAIT_MS, 50);
    assert.match(violations.join('\n'), /subscription to "_BERTQ_WORKER_INBOX\.>"/i);
    const secret = `victim text ${newRequestId()}`;
    const run = await bertq('client', ['encode', secret]);
    assert.equal(run.code, 0, run.stderr);
    await nc.flush();
    assert.deepEqual(
      heard.filter((m) => m.includes(secret)),
      [],
      'the job crossed a subject the client could read',
    );
  } finally {
    await nc.close();
  }
});

test("attack - jobs published under another client's request id are computed but never reach it", {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const names = serviceNames(service);
  const victim = await BertClient.connect({ servers: server.url, user: 'client', pass: PASSWORDS.client, service });
  const attacker = await as('client');
  const texts = Array.from({ length: 4096 }, (_, i) => `victim sentence ${i} about rivers`);
  const forged = new Set<string>();
  let attacked = 0;
  try {
    // The attacker reads every results subject (the shared role may) and learns the victim's id.
    attacker.nc.subscribe(names.results('x').replace(/x$/, '*'), {
      callback: (_err, msg) => {
        const id = msg.headers?.get(HEADERS.id);
        if (!id || forged.has(id) || msg.subject !== victim.resultsSubject) return;
        forged.add(id);
        const job = (offset: number, body: string, lane: 'high' | 'bulk') =>
          attacker.nc.publish(names.jobs[lane], new TextEncoder().encode(body), {
            headers: toNatsHeaders({
              [HEADERS.id]: id,
              [HEADERS.offset]: String(offset),
              [HEADERS.reply]: victim.resultsSubject,
            }),
          });
        // Sabotage: a bad job whose error frame would fail the whole request…
        job(0, '{"texts":[""]}', 'high');
        // …and forgery: the attacker's rows, computed first, at the victim's later offsets.
        for (const offset of [1024, 2048, 3072]) {
          job(offset, JSON.stringify({ texts: Array.from({ length: 16 }, () => 'attacker text') }), 'high');
        }
        job(256, JSON.stringify({ texts: Array.from({ length: 256 }, () => 'attacker text') }), 'bulk');
        attacked++;
      },
    });
    await attacker.nc.flush();
    const attackedRun = await victim.encode(texts, { timeout: 60_000 });
    assert.equal(attacked, 1, 'the attack ran');
    const clean = await victim.encode(texts, { timeout: 60_000 });
    const rows = attackedRun as unknown as { data: Float32Array; shape: number[] };
    const reference = clean as unknown as { data: Float32Array; shape: number[] };
    assert.deepEqual(rows.shape, reference.shape);
    let worst = 0;
    for (let i = 0; i < rows.data.length; i++) worst = Math.max(worst, Math.abs(rows.data[i]! - reference.data[i]!));
    assert.ok(worst < 1e-4, `every row is the victim's own (largest difference ${worst})`);
    await waitFor('the forged frames to arrive', () => victim.status.forgedFrames >= 2, 10_000, 50);
  } finally {
    await attacker.nc.close();
    await victim.close();
  }
});

test('attack - a big job on the high lane is refused, not run ahead of everyone', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const names = serviceNames(service);
  const { nc } = await as('client');
  try {
    const reply = names.results(`lane${newRequestId()}`);
    const answer = new Promise<string>((resolve) =>
      nc.subscribe(reply, { max: 1, callback: (_err, msg) => resolve(msg.headers?.get(HEADERS.errorCode) ?? 'rows') }),
    );
    nc.publish(names.jobs.high, new TextEncoder().encode(JSON.stringify({ texts: Array(200).fill('flood') })), {
      headers: toNatsHeaders({ [HEADERS.id]: newRequestId(), [HEADERS.offset]: '0', [HEADERS.reply]: reply }),
    });
    const code = await Promise.race([answer, sleep(20_000).then(() => 'no answer')]);
    assert.equal(code, 'BAD_REQUEST');
  } finally {
    await nc.close();
  }
});

test('attack - a worker cannot change, purge, delete or redirect the stream or its consumers', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const names = serviceNames(service);
  const { nc, violations } = await as('worker');
  const attempts = [
    `$JS.API.STREAM.UPDATE.${names.stream}`,
    `$JS.API.STREAM.PURGE.${names.stream}`,
    `$JS.API.STREAM.DELETE.${names.stream}`,
    `$JS.API.STREAM.CREATE.${names.stream}`,
    `$JS.API.CONSUMER.CREATE.${names.stream}.${names.consumers.high}`,
    `$JS.API.CONSUMER.DURABLE.CREATE.${names.stream}.${names.consumers.bulk}`,
    `$JS.API.CONSUMER.DELETE.${names.stream}.${names.consumers.high}`,
  ];
  try {
    const config = {
      name: names.stream,
      subjects: ['jobs.nowhere'],
      max_msgs: 1,
      discard: 'old',
      retention: 'workqueue',
      storage: 'file',
    };
    for (const subject of attempts) nc.publish(subject, new TextEncoder().encode(JSON.stringify(config)));
    await nc.flush();
    await waitFor('every call refused', () => violations.length >= attempts.length, VIOLATION_WAIT_MS, 50);
  } finally {
    await nc.close();
  }
  const admin = await as('admin');
  try {
    const info = await admin.nc.request(`$JS.API.STREAM.INFO.${names.stream}`, Empty, { timeout: 5_000 });
    const stream = JSON.parse(new TextDecoder().decode(info.data)) as {
      config: { subjects: string[]; max_msgs: number };
    };
    assert.deepEqual(stream.config.subjects, [names.jobs.high, names.jobs.bulk]);
    assert.equal(stream.config.max_msgs, 20_000);
  } finally {
    await admin.nc.close();
  }
  assert.equal(await fleetAnswers(), true, 'and the queue still works');
});

test('attack - a client cannot terminate the fleet, directly or through a job reply subject', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const names = serviceNames(service);
  const { nc, violations } = await as('client');
  try {
    nc.publish(names.control.terminate, Empty);
    await nc.request(names.control.terminate, Empty, { timeout: 1_000 }).catch(() => undefined);
    // The same through a job whose error frame would go to terminate (the worker checks the reply too).
    nc.publish(names.jobs.high, new TextEncoder().encode('not json'), {
      headers: toNatsHeaders({
        [HEADERS.id]: newRequestId(),
        [HEADERS.offset]: '0',
        [HEADERS.reply]: names.control.terminate,
      }),
    });
    await nc.flush();
    await waitFor('the broker to refuse the terminate publish', () => violations.length > 0, VIOLATION_WAIT_MS, 50);
    assert.match(violations.join('\n'), /publish to "bertq\.v1\.[\w-]+\.terminate"/i);
  } finally {
    await nc.close();
  }
  assert.equal(await fleetAnswers(), true, 'the fleet still serves');
});

test("attack - a client cannot read anybody's jobs, or publish results", { timeout: TEST_TIMEOUT_MS }, async () => {
  const names = serviceNames(service);
  const { nc, violations } = await as('client');
  try {
    nc.subscribe('bertq.v1.*.jobs.>');
    nc.subscribe(names.jobs.all);
    nc.publish(names.results('victim'), new TextEncoder().encode('forged'));
    await nc.flush();
    await waitFor('three refusals', () => violations.length >= 3, VIOLATION_WAIT_MS, 50);
    const text = violations.join('\n');
    assert.match(text, /subscription to "bertq\.v1\.\*\.jobs\.>"/i);
    assert.match(text, /publish to "bertq\.v1\.[\w-]+\.results\.victim"/i);
  } finally {
    await nc.close();
  }
});

test('attack - a client cannot touch the JetStream API beyond publishing jobs and reading the work consumers', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const names = serviceNames(service);
  const { nc, violations } = await as('client');
  const attempts = [
    `$JS.API.STREAM.UPDATE.${names.stream}`,
    `$JS.API.STREAM.PURGE.${names.stream}`,
    `$JS.API.STREAM.DELETE.${names.stream}`,
    `$JS.API.CONSUMER.DELETE.${names.stream}.${names.consumers.high}`,
    `$JS.API.CONSUMER.MSG.NEXT.${names.stream}.${names.consumers.bulk}`,
    `$JS.API.CONSUMER.INFO.${names.stream}.someone-elses`,
    `$JS.API.CONSUMER.CREATE.${names.stream}.spy`,
  ];
  try {
    for (const subject of attempts) nc.publish(subject, new TextEncoder().encode('{"config":{"max_msgs":1}}'));
    await nc.flush();
    await waitFor('every API call refused', () => violations.length >= attempts.length, VIOLATION_WAIT_MS, 50);
    // What it may do: read where the work consumers are (recovery after a reconnect needs that).
    const position = await nc.request(`$JS.API.CONSUMER.INFO.${names.stream}.${names.consumers.high}`, Empty, {
      timeout: 5_000,
    });
    assert.match(new TextDecoder().decode(position.data), /"delivered"/);
  } finally {
    await nc.close();
  }
  const admin = await as('admin');
  try {
    const info = await admin.nc.request(`$JS.API.CONSUMER.INFO.${names.stream}.${names.consumers.high}`, Empty, {
      timeout: 5_000,
    });
    assert.doesNotMatch(new TextDecoder().decode(info.data), /consumer not found/, 'the consumer is still there');
  } finally {
    await admin.nc.close();
  }
  assert.equal(await fleetAnswers(), true, 'and the queue still works');
});

test('roles - bertq start --http-port as the worker says the gateway needs the client credential', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const run = await bertq('worker', [
    'start',
    '--model',
    tiny.huggingFaceDir,
    '--threads',
    '1',
    '--graph-tmp-dir',
    tiny.graphDir,
    '--http-port',
    '0',
  ]);
  assert.equal(run.code, 1, run.stderr);
  assert.match(
    oneLine(run.stderr),
    /UNAUTHORIZED: the HTTP gateway of bertq start .*run `bertq gateway` with the client credential/,
  );
  assert.equal(await fleetAnswers(), true, 'the fleet already running is untouched');
});

test('roles - a wrong password is UNAUTHORIZED, and names no secret', { timeout: TEST_TIMEOUT_MS }, async () => {
  await assert.rejects(
    connectNats({ servers: server.url, user: 'client', pass: 'guess', maxReconnectAttempts: 0 }),
    (err: unknown) => {
      assert.ok(err instanceof UnauthorizedError);
      assert.doesNotMatch(err.message, /guess|secret/);
      return true;
    },
  );
  const run = await bertq('client', ['status', '--password', 'wrong-one']);
  assert.equal(run.code, 1);
  assert.match(run.stderr, /UNAUTHORIZED/);
  assert.doesNotMatch(run.stderr, /wrong-one/);
});

test('roles - secrets from files: --password-file works, a password on the command line is warned about', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const file = join(home, 'client-password');
  await writeFile(file, `${PASSWORDS.client}\n`, { mode: 0o600 });
  const { BERTQ_NATS_PASSWORD: _, ...noPassword } = env('client');
  const fromFile = await bertq('client', ['status', '--json', '--password-file', file], noPassword);
  assert.equal(fromFile.code, 0, fromFile.stdout + fromFile.stderr);
  assert.equal((JSON.parse(fromFile.stdout) as { num_workers: number }).num_workers >= 1, true);
  assert.doesNotMatch(fromFile.stderr, /visible to every user/);

  const onArgv = await bertq('client', ['status', '--json', '--password', PASSWORDS.client], noPassword);
  assert.equal(onArgv.code, 0, onArgv.stderr);
  assert.match(onArgv.stderr, /--password on the command line is visible to every user/);
  assert.doesNotMatch(onArgv.stderr, new RegExp(PASSWORDS.client), 'the warning does not repeat the secret');
});

test('roles - a client cannot terminate with bertq terminate; an admin can', { timeout: TEST_TIMEOUT_MS }, async () => {
  const refused = await bertq('client', ['terminate']);
  assert.notEqual(refused.code, 0, refused.stdout);
  // oclif wraps long messages: join the lines before reading it.
  assert.match(
    refused.stderr.replace(/\s*\n\s*›?\s*/g, ' '),
    /UNAUTHORIZED: .*terminating a fleet takes the admin role/,
  );
  assert.equal(await fleetAnswers(), true, 'the fleet still serves after the client tried');
  const done = await bertq('admin', ['terminate']);
  assert.equal(done.code, 0, done.stderr);
  const exited = await new Promise<number | null | 'running'>((resolve) => {
    const timer = setTimeout(() => resolve('running'), COMMAND_TIMEOUT_MS);
    fleet!.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
    if (fleet!.exitCode !== null) resolve(fleet!.exitCode);
  });
  assert.equal(exited, 0, 'bertq start exited after the admin terminate');
});
