import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startNatsServer, type NatsServer } from '../src/index.js';

/** Per-test budget: starting and stopping a local server takes well under a second. */
const TEST_TIMEOUT_MS = 30_000;
/** How long a raw protocol exchange may take before the test fails instead of hanging. */
const IO_TIMEOUT_MS = 5_000;
/** The machine's shared server, which these tests must never touch. */
const SHARED_PORT = 4222;

/**
 * A minimal raw NATS protocol session over node:net: enough to read INFO and make one request,
 * without depending on a client library (the launcher must be testable on its own).
 */
class RawSession {
  #buffer = '';
  #waiters: (() => void)[] = [];
  #closed: Error | undefined;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.#buffer += chunk;
      this.#wake();
    });
    socket.on('error', (err) => {
      this.#closed = err;
      this.#wake();
    });
    socket.on('close', () => {
      this.#closed ??= new Error('connection closed');
      this.#wake();
    });
  }

  static open(port: number): Promise<RawSession> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.once('connect', () => resolve(new RawSession(socket)));
      socket.once('error', reject);
    });
  }

  #wake() {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Reads up to and including `\r\n`, failing after IO_TIMEOUT_MS. */
  async line(): Promise<string> {
    const deadline = Date.now() + IO_TIMEOUT_MS;
    for (;;) {
      const end = this.#buffer.indexOf('\r\n');
      if (end >= 0) {
        const line = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end + 2);
        return line;
      }
      if (this.#closed) throw this.#closed;
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`no protocol line within ${IO_TIMEOUT_MS} ms; got ${JSON.stringify(this.#buffer)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  write(text: string) {
    this.socket.write(text);
  }

  close() {
    this.socket.destroy();
  }

  /** Sends one request and returns the reply payload (skipping PING/+OK noise). */
  async request(subject: string, body: string): Promise<string> {
    const inbox = `_INBOX.${Math.random().toString(36).slice(2)}`;
    this.write(`SUB ${inbox} 1\r\nPUB ${subject} ${inbox} ${Buffer.byteLength(body)}\r\n${body}\r\n`);
    for (;;) {
      const line = await this.line();
      if (line === 'PING') this.write('PONG\r\n');
      if (!line.startsWith('MSG ')) continue;
      return this.line();
    }
  }
}

/** Connects with a raw socket and returns the server's INFO object. */
async function readInfo(port: number): Promise<Record<string, unknown>> {
  const session = await RawSession.open(port);
  try {
    const line = await session.line();
    assert.match(line, /^INFO \{/);
    return JSON.parse(line.slice('INFO '.length)) as Record<string, unknown>;
  } finally {
    session.close();
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitUntil(condition: () => boolean, what: string, ms = IO_TIMEOUT_MS) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

test('nats-server - starts two servers at once on different random ports', { timeout: TEST_TIMEOUT_MS }, async () => {
  const [a, b] = await Promise.all([startNatsServer(), startNatsServer()]);
  try {
    assert.notEqual(a.port, b.port);
    assert.notEqual(a.port, SHARED_PORT);
    assert.notEqual(b.port, SHARED_PORT);
    assert.notEqual(a.dir, b.dir);
    assert.equal(a.url, `nats://127.0.0.1:${a.port}`);
    const [infoA, infoB] = await Promise.all([readInfo(a.port), readInfo(b.port)]);
    assert.equal(infoA.port, a.port);
    assert.equal(infoB.port, b.port);
    assert.notEqual(infoA.server_id, infoB.server_id);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

test('nats-server - INFO reports jetstream when enabled and not when disabled', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const [withJs, withoutJs] = await Promise.all([startNatsServer(), startNatsServer({ jetstream: false })]);
  try {
    assert.equal((await readInfo(withJs.port)).jetstream, true);
    assert.equal((await readInfo(withoutJs.port)).jetstream, undefined);
    assert.ok(withJs.storeDir?.startsWith(withJs.dir), `store ${withJs.storeDir} lies outside ${withJs.dir}`);
    assert.equal(withoutJs.storeDir, undefined);
  } finally {
    await Promise.all([withJs.stop(), withoutJs.stop()]);
  }
});

test('nats-server - maxPayload shows up in INFO', { timeout: TEST_TIMEOUT_MS }, async () => {
  const server = await startNatsServer({ maxPayload: 4096 });
  try {
    assert.equal((await readInfo(server.port)).max_payload, 4096);
  } finally {
    await server.stop();
  }
});

test('nats-server - extra config merges over the defaults and keeps the private store', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const server = await startNatsServer({ monitor: true, config: { jetstream: { max_memory_store: 8 * 1024 * 1024 } } });
  try {
    assert.ok(server.monitorPort !== undefined && server.monitorPort !== server.port);
    const jsz = (await (await fetch(`http://127.0.0.1:${server.monitorPort}/jsz`)).json()) as {
      config: { max_memory: number; store_dir: string };
    };
    assert.equal(jsz.config.max_memory, 8 * 1024 * 1024);
    assert.ok(jsz.config.store_dir.startsWith(server.dir), `store_dir ${jsz.config.store_dir} is not private`);
  } finally {
    await server.stop();
  }
});

test('nats-server - stop() frees the port, ends the process and removes the temp dir', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const server = await startNatsServer();
  const { port, dir, pid } = server;
  assert.ok(existsSync(dir));
  assert.ok(await canConnect(port));
  await server.stop();
  assert.equal(await canConnect(port), false, `port ${port} still accepts connections`);
  assert.equal(existsSync(dir), false, `${dir} is still there`);
  assert.equal(processAlive(pid), false, `pid ${pid} is still alive`);
  await server.stop(); // idempotent
});

test('nats-server - stop() cleans up after the server was killed', { timeout: TEST_TIMEOUT_MS }, async () => {
  const server = await startNatsServer();
  server.kill('SIGKILL');
  await waitUntil(() => !processAlive(server.pid), 'the killed server is gone');
  await server.stop();
  assert.equal(existsSync(server.dir), false);
});

test("nats-server - a bogus config reports the server's own error message", { timeout: TEST_TIMEOUT_MS }, async () => {
  const err = await startNatsServer({ config: 'bogus_field_xyz: 1' }).then(
    (s: NatsServer) => s.stop().then(() => assert.fail('a bogus config started')),
    (e: unknown) => e as Error,
  );
  assert.match(err.message, /unknown field "bogus_field_xyz"/);
  assert.match(err.message, /exited with code \d+ before it was ready/);
  // the message names the config file; its temp dir is gone
  const configFile = /-c (\S+nats-server\.conf)/.exec(err.message)?.[1];
  assert.ok(configFile, `no config path in: ${err.message}`);
  assert.equal(existsSync(dirname(configFile)), false);
});

test('nats-server - a missing binary says how to install it', { timeout: TEST_TIMEOUT_MS }, async () => {
  await assert.rejects(
    startNatsServer({ binary: '/nonexistent/bin/nats-server' }),
    /nats-server not found at \/nonexistent\/bin\/nats-server; install it: apt-get install nats-server/,
  );
});

test('nats-server - a server that never reports its ports fails at the deadline', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  // A stand-in "server" that stays alive and silent: the launcher must give up, not wait forever.
  const scratch = mkdtempSync(join(tmpdir(), 'bertq-silent-'));
  try {
    const silent = join(scratch, 'nats-server');
    writeFileSync(silent, '#!/bin/sh\necho "pid $$"\nexec sleep 60\n');
    chmodSync(silent, 0o755);
    const started = Date.now();
    const err = await startNatsServer({ binary: silent, timeoutMs: 300 }).then(
      (s: NatsServer) => s.stop().then(() => assert.fail('the silent binary "started"')),
      (e: unknown) => e as Error,
    );
    assert.match(err.message, /did not report its ports within 300 ms/);
    const pid = Number(/pid (\d+)/.exec(err.message)?.[1]);
    assert.ok(pid > 0, `the error should carry the process output: ${err.message}`);
    assert.equal(processAlive(pid), false, 'the silent process was left running');
    assert.ok(Date.now() - started < 5_000);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
});

test('nats-server - restart() keeps the URL and the JetStream store', { timeout: TEST_TIMEOUT_MS }, async () => {
  const server = await startNatsServer();
  try {
    const before = await RawSession.open(server.port);
    await before.line(); // INFO
    before.write('CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n');
    const created = JSON.parse(
      await before.request(
        '$JS.API.STREAM.CREATE.RESTART',
        JSON.stringify({ name: 'RESTART', subjects: ['restart.>'], storage: 'file' }),
      ),
    ) as { error?: unknown; config?: { name: string } };
    before.close();
    assert.equal(created.error, undefined, JSON.stringify(created.error));
    const { port, url, pid } = server;

    await server.restart();
    assert.equal(server.port, port);
    assert.equal(server.url, url);
    assert.notEqual(server.pid, pid);
    assert.equal(processAlive(pid), false);

    const after = await RawSession.open(server.port);
    await after.line();
    after.write('CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n');
    const info = JSON.parse(await after.request('$JS.API.STREAM.INFO.RESTART', '')) as {
      error?: unknown;
      config?: { name: string };
    };
    after.close();
    assert.equal(info.error, undefined, `stream lost across restart: ${JSON.stringify(info.error)}`);
    assert.equal(info.config?.name, 'RESTART');
  } finally {
    await server.stop();
  }
});

test('nats-server - a crashing test process leaves no server behind', { timeout: TEST_TIMEOUT_MS }, async () => {
  const launcher = fileURLToPath(new URL('../src/server.js', import.meta.url));
  const script = `
    const { startNatsServer } = await import(${JSON.stringify(launcher)});
    const server = await startNatsServer();
    console.log(JSON.stringify({ pid: server.pid, dir: server.dir }));
    throw new Error('test runner crash');
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  assert.notEqual(code, 0, 'the crashing script should fail');
  assert.match(stderr, /test runner crash/);
  const { pid, dir } = JSON.parse(stdout.trim()) as { pid: number; dir: string };
  await waitUntil(() => !processAlive(pid), `nats-server pid ${pid} is gone`);
  assert.equal(existsSync(dir), false, `${dir} leaked`);
});
