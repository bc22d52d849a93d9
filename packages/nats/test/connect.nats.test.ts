import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAccount, createUser } from '@nats-io/nkeys';
import { BadRequestError, UnauthorizedError } from '@bertq/protocol';
import { NatsConnectError, connectNats, redactUrl, startNatsServer } from '../src/index.js';

const TEST_TIMEOUT_MS = 30_000;

function tempFile(name: string, content: string): { path: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'bertq-connect-'));
  const path = join(dir, name);
  writeFileSync(path, content, { mode: 0o600 });
  return { path, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

test('connectNats - a refused token is UNAUTHORIZED, not NO_WORKERS', { timeout: TEST_TIMEOUT_MS }, async () => {
  const server = await startNatsServer({ jetstream: false, config: { authorization: { token: 'right-token' } } });
  try {
    await assert.rejects(
      connectNats({ servers: server.url, token: 'wrong-token', maxReconnectAttempts: 0 }),
      (err: unknown) => {
        assert.ok(err instanceof UnauthorizedError, `got ${String(err)}`);
        assert.equal(err.code, 'UNAUTHORIZED');
        assert.doesNotMatch(err.message, /wrong-token|right-token/);
        return true;
      },
    );
    const nc = await connectNats({ servers: server.url, token: 'right-token' });
    await nc.close();
  } finally {
    await server.stop();
  }
});

test('connectNats - a password in the server URL never shows in the error', { timeout: TEST_TIMEOUT_MS }, async () => {
  const server = await startNatsServer({
    jetstream: false,
    config: { authorization: { user: 'alice', password: 'good-pass' } },
  });
  try {
    const url = server.url.replace('nats://', 'nats://alice:s3cret-pass@');
    await assert.rejects(connectNats({ servers: url, maxReconnectAttempts: 0 }), (err: unknown) => {
      assert.ok(err instanceof UnauthorizedError, `got ${String(err)}`);
      assert.doesNotMatch(err.message, /s3cret-pass/);
      assert.doesNotMatch(JSON.stringify(err.details), /s3cret-pass/);
      assert.match(err.message, /nats:\/\/\*\*\*@127\.0\.0\.1/);
      return true;
    });
  } finally {
    await server.stop();
  }
});

test('connectNats - authenticates with an NKey seed read from a file', { timeout: TEST_TIMEOUT_MS }, async () => {
  const user = createUser();
  const seed = tempFile('user.nk', new TextDecoder().decode(user.getSeed()));
  const server = await startNatsServer({
    jetstream: false,
    config: { authorization: { users: [{ nkey: user.getPublicKey() }] } },
  });
  try {
    await assert.rejects(connectNats({ servers: server.url, maxReconnectAttempts: 0 }), UnauthorizedError);
    const nc = await connectNats({ servers: server.url, nkeySeedFile: seed.path });
    await nc.flush();
    await nc.close();
    await assert.rejects(
      connectNats({ servers: server.url, nkeySeedFile: join(tmpdir(), 'no-such-seed.nk') }),
      (err: unknown) =>
        err instanceof NatsConnectError &&
        /cannot read the NATS NKey seed file .*no-such-seed\.nk: ENOENT/.test(err.message),
    );
    // A malformed seed, or an account's: named with the file and the problem, while the server is up
    // (not NO_WORKERS "start one"), and the content never shown.
    const seedText = new TextDecoder().decode(user.getSeed());
    const broken = tempFile('broken.nk', `${seedText.slice(0, -3)}XYZ`);
    const account = tempFile('account.nk', new TextDecoder().decode(createAccount().getSeed()));
    try {
      await assert.rejects(connectNats({ servers: server.url, nkeySeedFile: broken.path }), (err: unknown) => {
        assert.ok(err instanceof BadRequestError, String(err));
        assert.match(err.message, /NKey seed file .*broken\.nk does not hold a valid NKey seed \(invalid checksum\)/);
        assert.ok(!err.message.includes(seedText.slice(4, 20)), 'no part of the seed in the message');
        return true;
      });
      await assert.rejects(
        connectNats({ servers: server.url, nkeySeedFile: account.path }),
        /account\.nk holds the seed of a NATS account, not of a user/,
      );
    } finally {
      broken.cleanup();
      account.cleanup();
    }
  } finally {
    await server.stop();
    seed.cleanup();
  }
});

test('redactUrl - hides userinfo and keeps the rest', () => {
  assert.equal(redactUrl('nats://u:p@host:4222'), 'nats://***@host:4222');
  assert.equal(redactUrl('tls://token@host'), 'tls://***@host');
  assert.equal(redactUrl('nats://host:4222'), 'nats://host:4222');
});

test('connectNats - an HTTP URL is refused at once, naming what --server wants', async () => {
  const started = Date.now();
  await assert.rejects(connectNats({ servers: 'http://user:pw@127.0.0.1:8125' }), (err: unknown) => {
    assert.ok(err instanceof BadRequestError);
    assert.match(err.message, /is not a NATS URL: the server is nats:\/\/host:4222/);
    assert.doesNotMatch(err.message, /pw/);
    return true;
  });
  assert.ok(Date.now() - started < 1_000, 'no connect attempt was made');
});
