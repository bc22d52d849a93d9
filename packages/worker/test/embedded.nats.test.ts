import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnauthorizedError } from '@bertq/protocol';
import { processAlive, startNatsServer } from '@bertq/testing';
import { ensureNatsServer, parseNatsUrl, startPrivateNatsServer } from '../src/nats/embedded.js';
import type { EnsuredNatsServer } from '../src/nats/embedded.js';
import { NatsConnectError, connectNats, credentialsGiven } from '@bertq/nats';
import { JetStreamNotEnabledError, ensureStream } from '../src/nats/stream.js';
import { freePort, freshService, waitFor } from './helpers.js';

const TEST_TIMEOUT_MS = 30_000;
const dirs: string[] = [];
const servers: EnsuredNatsServer[] = [];

after(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'bertq-embedded-'));
  dirs.push(dir);
  return dir;
}

test('ensureNatsServer - starts nats-server with JetStream on a free local port when none answers', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const port = await freePort();
  const url = `nats://127.0.0.1:${port}`;
  const server = await ensureNatsServer(url, { storeDir: tempDir() });
  servers.push(server);
  assert.equal(server.started, true);
  assert.equal(server.url, url);
  assert.ok(server.pid !== undefined && server.pid > 0);

  const nc = await connectNats({ servers: url });
  const ensured = await ensureStream(nc, { service: freshService() });
  assert.equal(ensured.created, true, 'the started server has JetStream');
  await nc.close();

  // A second call finds it answering and reuses it.
  const again = await ensureNatsServer(`127.0.0.1:${port}`);
  assert.equal(again.started, false);
  await again.stop(); // a no-op for a server this call did not start
  const still = await connectNats({ servers: url });
  await still.close();

  await server.stop();
  await assert.rejects(connectNats({ servers: url, connectTimeoutMs: 1_000 }), /no NATS server at/);
});

test('ensureNatsServer - says how to enable JetStream on a server that answers without it', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const plain = await startNatsServer({ jetstream: false });
  try {
    await assert.rejects(
      ensureNatsServer(plain.url),
      (err: Error) => err instanceof JetStreamNotEnabledError && /nats-server -js/.test(err.message),
    );
  } finally {
    await plain.stop();
  }
});

test('ensureNatsServer - never starts a server for a remote address', { timeout: TEST_TIMEOUT_MS }, async () => {
  // 192.0.2.0/24 is reserved for documentation: nothing answers there.
  await assert.rejects(
    ensureNatsServer('nats://192.0.2.1:4222'),
    (err: Error) =>
      err instanceof NatsConnectError &&
      /no NATS server at nats:\/\/192\.0\.2\.1:4222; bertq only starts one on this machine/.test(err.message),
  );
});

test('ensureNatsServer - names the install command when the nats-server binary is missing', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const port = await freePort();
  await assert.rejects(
    ensureNatsServer(`nats://localhost:${port}`, { binary: '/nonexistent/nats-server', storeDir: tempDir() }),
    /nats-server not found at \/nonexistent\/nats-server; install it: apt-get install nats-server/,
  );
});

test('parseNatsUrl - fills in the default port and keeps IPv6 hosts readable', () => {
  assert.deepEqual(parseNatsUrl('localhost'), { host: 'localhost', port: 4222, url: 'nats://localhost:4222' });
  assert.deepEqual(parseNatsUrl('nats://[::1]:5222'), { host: '::1', port: 5222, url: 'nats://[::1]:5222' });
  assert.throws(() => parseNatsUrl('nats://bad host'), /is not a NATS URL/);
});

test('ensureNatsServer - a server that refuses our credentials is reported, never replaced by an embedded one', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const guarded = await startNatsServer({ config: { authorization: { token: 'the-token' } } });
  try {
    await assert.rejects(
      ensureNatsServer(guarded.url, { storeDir: tempDir(), connection: { token: 'not-the-token' } }),
      (err: unknown) => {
        assert.ok(err instanceof UnauthorizedError, `got ${String(err)}`);
        assert.doesNotMatch(err.message, /address already in use/);
        return true;
      },
    );
    const reused = await ensureNatsServer(guarded.url, { storeDir: tempDir(), connection: { token: 'the-token' } });
    assert.equal(reused.started, false);
  } finally {
    await guarded.stop();
  }
});

test('ensureNatsServer - fails closed: given credentials and nothing answering, it starts no open server', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  for (const connection of [{ user: 'worker', pass: 'secret' }, { token: 't0ken' }, { tls: true as const }]) {
    const port = await freePort();
    await assert.rejects(
      ensureNatsServer(`nats://127.0.0.1:${port}`, { connection }),
      (err: Error) =>
        err instanceof NatsConnectError &&
        /will not start an open one there because/.test(err.message) &&
        !/secret|t0ken/.test(err.message),
    );
    // Nothing was started on the port: it is still free.
    const probe = createServer();
    await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(port, '127.0.0.1', resolve));
    await new Promise((resolve) => probe.close(resolve));
  }
  assert.deepEqual(credentialsGiven({ user: 'u', pass: 'p', credsFile: '/x' }), [
    'a user',
    'a password',
    'a credentials file',
  ]);
  assert.deepEqual(credentialsGiven({ name: 'no secrets' }), []);
});

test('startPrivateNatsServer - a server of its own on a port it picks, its store gone at stop; never an open one given credentials', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const own = await startPrivateNatsServer();
  try {
    assert.equal(own.started, true);
    assert.match(own.url, /^nats:\/\/127\.0\.0\.1:\d+$/);
    assert.ok(own.storeDir !== undefined && existsSync(own.storeDir), 'JetStream has a store while it runs');
    const nc = await connectNats({ servers: own.url });
    await ensureStream(nc, { service: freshService('private'), storage: 'memory' });
    await nc.close();
  } finally {
    await own.stop();
  }
  assert.equal(existsSync(own.storeDir!), false, 'nothing is left behind');
  await assert.rejects(
    startPrivateNatsServer({ connection: { user: 'worker', pass: 'secret' } }),
    (err: Error) => err instanceof NatsConnectError && /will not start an open nats-server/.test(err.message),
  );
});

test('ensureNatsServer - a program that is not NATS on the port is named, never raced by an embedded server', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  // Accepts connections and says nothing, as an HTTP server does to a client that sends nothing.
  const sockets = new Set<Socket>();
  const silent = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const port = (silent.address() as AddressInfo).port;
  try {
    await assert.rejects(ensureNatsServer(`nats://127.0.0.1:${port}`, { storeDir: tempDir() }), (err: unknown) => {
      assert.ok(err instanceof NatsConnectError, `got ${String(err)}`);
      assert.match(err.message, /not a NATS server listens at nats:\/\/127\.0\.0\.1:\d+/);
      assert.doesNotMatch(err.message, /address already in use/);
      return true;
    });
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  }
});

test('ensureNatsServer - the embedded server does not outlive its owner, even one killed with SIGKILL', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const port = await freePort();
  const store = tempDir();
  const embedded = new URL('../src/nats/embedded.js', import.meta.url).href;
  // The owner: a separate process (as `bertq start` is) that starts the server and then waits.
  const owner = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const { ensureNatsServer } = await import(${JSON.stringify(embedded)});
       const s = await ensureNatsServer('nats://127.0.0.1:${port}', { storeDir: ${JSON.stringify(store)} });
       console.log(s.pid); setInterval(() => {}, 1000);`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const pid = await new Promise<number>((resolve, reject) => {
    owner.stdout.once('data', (d) => resolve(Number(String(d).trim())));
    owner.once('exit', (code) => reject(new Error(`the owner exited (${code}) before starting the server`)));
  });
  assert.ok(pid > 0 && processAlive(pid), 'the server runs');
  owner.kill('SIGKILL');
  await waitFor('the orphaned server to exit', () => !processAlive(pid), 10_000, 50);
  // And its port is free again: a new server can start there.
  const again = await ensureNatsServer(`nats://127.0.0.1:${port}`, { storeDir: store });
  servers.push(again);
  assert.equal(again.started, true);
});
