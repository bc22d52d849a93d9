/**
 * `bertq auth init` as an operator uses it: the files it writes start a real nats-server, and under
 * them each role's NKey seed gives that role's rights and no more: a worker serves, a client encodes
 * but cannot terminate, the admin terminates; no key, no connection. With tenants, one tenant's user
 * can neither read another's results nor its replies.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectNats } from '@bertq/nats';
import { findNatsServer, freePort, startNatsServer, tinyModel, waitFor, type TinyModelFixture } from '@bertq/testing';
import { runBertq, startBertq } from './cli-fixtures.js';

const TEST_TIMEOUT_MS = 120_000;
const COMMAND_TIMEOUT_MS = 30_000;

let tiny: TinyModelFixture;
let home: string;

before(async () => {
  tiny = await tinyModel();
  home = await mkdtemp(join(tmpdir(), 'bertq-auth-init-'));
});
after(async () => {
  await rm(home, { recursive: true, force: true });
});

const env = (): NodeJS.ProcessEnv => ({ ...process.env, BERTQ_CACHE: join(home, 'cache'), BERTQ_LOG_LEVEL: 'warn' });
const bertq = (args: string[]) => runBertq(args, { env: env(), timeoutMs: COMMAND_TIMEOUT_MS });

test('auth init - writes a server config and one NKey seed per role, owner-only, and never overwrites them', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const dir = join(home, 'keys-a');
  const listen = `127.0.0.1:${await freePort()}`;
  const first = await bertq(['auth', 'init', '--output', dir, '--listen', listen]);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /bertq start --server nats:\/\/127\.0\.0\.1:\d+ --nkey .*worker\.nk/);
  assert.equal((await stat(dir)).mode & 0o777, 0o700);
  const seeds: Record<string, string> = {};
  for (const role of ['client', 'worker', 'admin']) {
    const file = join(dir, `${role}.nk`);
    assert.equal((await stat(file)).mode & 0o777, 0o600, `${role}.nk is readable by its owner only`);
    seeds[role] = (await readFile(file, 'utf8')).trim();
    assert.match(seeds[role]!, /^SU[A-Z2-7]{56}$/, `${role}.nk holds a user seed`);
  }
  assert.equal(new Set(Object.values(seeds)).size, 3, 'one key per role');
  const auth = await readFile(join(dir, 'bertq-auth.conf'), 'utf8');
  assert.equal(auth.match(/\{ nkey: U[A-Z2-7]{55}, permissions: \$(CLIENT|WORKER|ADMIN) \}/g)?.length, 3);
  for (const seed of Object.values(seeds)) assert.ok(!auth.includes(seed), 'no seed in the server config');
  // nats-server itself accepts the files.
  const check = spawnSync(findNatsServer(), ['-c', join(dir, 'nats-server.conf'), '-t'], { encoding: 'utf8' });
  assert.equal(check.status, 0, check.stderr + check.stdout);

  const again = await bertq(['auth', 'init', '--output', dir]);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /nats-server\.conf exists: its[\s›]+keys may be in use/);
  assert.equal((await readFile(join(dir, 'worker.nk'), 'utf8')).trim(), seeds.worker, 'the old key is kept');
});

test('auth init - under its config, each role can do what it must and no more', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const dir = join(home, 'keys-b');
  const init = await bertq(['auth', 'init', '--output', dir]);
  assert.equal(init.code, 0, init.stderr);
  // The generated roles, on a test server of its own port and store.
  const server = await startNatsServer({ config: await readFile(join(dir, 'bertq-auth.conf'), 'utf8') });
  const as = (role: string) => ['--server', server.url, '--service', 'keyed', '--nkey', join(dir, `${role}.nk`)];
  // The worker role may not create the stream: the admin sets it up first.
  const setup = await bertq(['setup', ...as('admin')]);
  assert.equal(setup.code, 0, setup.stderr);
  const fleet = await startBertq(
    [
      '--model',
      tiny.huggingFaceDir,
      '--graph-tmp-dir',
      tiny.graphDir,
      '--num-worker',
      '1',
      '--threads',
      '1',
      ...as('worker'),
    ],
    { env: env(), timeoutMs: 60_000 },
  );
  try {
    const encoded = await bertq(['encode', 'hello world', ...as('client')]);
    assert.equal(encoded.code, 0, encoded.stderr);
    assert.equal(JSON.parse(encoded.stdout.trim()).length, 32);

    const refused = await bertq(['terminate', ...as('client')]);
    assert.notEqual(refused.code, 0, 'a client cannot terminate');
    assert.match(refused.stderr, /permission|UNAUTHORIZED|not allowed/i);

    const anonymous = await bertq(['encode', 'hello', '--server', server.url, '--service', 'keyed']);
    assert.match(anonymous.stderr, /UNAUTHORIZED/, 'no key, no connection');

    const stopped = await bertq(['terminate', ...as('admin')]);
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.equal(await fleet.exited, 0, 'the fleet stopped on the admin’s terminate');
  } finally {
    fleet.child.kill('SIGKILL');
    await server.stop();
  }
});

test('auth init --tenant - each tenant encodes on its own subjects, and cannot read or hear another tenant', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const dir = join(home, 'keys-tenants');
  const init = await bertq(['auth', 'init', '--output', dir, '--tenant', 'acme', '--tenant', 'globex']);
  assert.equal(init.code, 0, init.stderr);
  assert.match(init.stdout, /--nkey .*tenant-acme\.nk --tenant acme/);
  assert.equal(existsSync(join(dir, 'client.nk')), false, 'no shared client key beside the tenants');
  for (const tenant of ['acme', 'globex'])
    assert.equal((await stat(join(dir, `tenant-${tenant}.nk`))).mode & 0o777, 0o600);
  const conf = await readFile(join(dir, 'bertq-auth.conf'), 'utf8');
  assert.doesNotMatch(conf, /permissions: \$CLIENT \}/, 'no user takes the shared client permissions');

  const server = await startNatsServer({ config: conf });
  const service = 'tenanted';
  const key = (file: string) => ['--server', server.url, '--service', service, '--nkey', join(dir, file)];
  const setup = await bertq(['setup', ...key('admin.nk')]);
  assert.equal(setup.code, 0, setup.stderr);
  const fleet = await startBertq(
    ['--model', tiny.huggingFaceDir, '--graph-tmp-dir', tiny.graphDir, '--threads', '1', ...key('worker.nk')],
    { env: env(), timeoutMs: 60_000 },
  );
  // globex, connected as its own tenant, listens where acme's texts and vectors would pass.
  const globex = await connectNats({
    servers: server.url,
    nkeySeedFile: join(dir, 'tenant-globex.nk'),
    tenant: 'globex',
    maxReconnectAttempts: 0,
  });
  const violations: string[] = [];
  void (async () => {
    for await (const s of globex.status()) {
      const error = String((s as { error?: unknown }).error ?? '');
      if (s.type === 'error' && /permissions violation/i.test(error)) violations.push(error);
    }
  })();
  try {
    const heard: string[] = [];
    const spy = (subject: string) =>
      globex.subscribe(subject, {
        callback: (e, m) => {
          // A refused subscription's callback gets the violation; only messages count as heard.
          if (e === null) heard.push(m.subject);
        },
      });
    spy(`bertq.v1.${service}.results.acme.*`);
    spy('bertq.v1.*.results.>');
    spy('_INBOX.>');
    spy('_INBOX.acme.>');
    const own = globex.subscribe(`bertq.v1.${service}.results.globex.*`);
    await globex.flush();
    await waitFor('the broker to refuse the four subscriptions', () => violations.length >= 4, 5_000, 50);
    const refused = violations.join('\n');
    for (const subject of ['results.acme.*', 'results.>', '_INBOX.>', '_INBOX.acme.>'])
      assert.ok(refused.includes(subject), `globex may not subscribe to ${subject}:\n${refused}`);

    const acme = await bertq(['encode', 'acme secret text', ...key('tenant-acme.nk'), '--tenant', 'acme']);
    assert.equal(acme.code, 0, acme.stderr);
    assert.equal(JSON.parse(acme.stdout.trim()).length, 32, 'acme got its vector');
    const globexOwn = await bertq(['encode', 'globex text', ...key('tenant-globex.nk'), '--tenant', 'globex']);
    assert.equal(globexOwn.code, 0, globexOwn.stderr);
    await globex.flush();
    assert.deepEqual(heard, [], 'globex heard nothing of acme');
    // The control: this connection does hear what is its tenant's (its own CLI's result frame).
    assert.ok(own.getReceived() >= 1, "globex hears its own tenant's results");

    // A tenant's key without its tenant: the broker refuses the results subscription, and the client
    // says so at once, naming the fix, instead of waiting for its deadline.
    const untold = await bertq(['encode', 'hello', ...key('tenant-acme.nk'), '--timeout', '20000']);
    assert.notEqual(untold.code, 0);
    assert.match(untold.stderr, /UNAUTHORIZED/);
    assert.match(untold.stderr, /--tenant/);
    // Posing as another tenant: refused the same way.
    const posing = await bertq(['encode', 'hello', ...key('tenant-globex.nk'), '--tenant', 'acme']);
    assert.match(posing.stderr, /UNAUTHORIZED/);
  } finally {
    await globex.close();
    fleet.child.kill('SIGKILL');
    await server.stop();
  }
});

test('auth init - an existing folder open to others is made owner-only before seeds go in', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const dir = join(home, 'keys-open');
  await mkdir(dir, { mode: 0o755 });
  await chmod(dir, 0o755);
  const init = await bertq(['auth', 'init', '--output', dir]);
  assert.equal(init.code, 0, init.stderr);
  assert.equal((await stat(dir)).mode & 0o777, 0o700);
  assert.match(init.stderr, /was mode 755; made it 700/);
});
