import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BadRequestError } from '@bertq/protocol';
import { natsConnectionOptions } from '@bertq/nats';
import {
  DEFAULT_SERVER,
  DEFAULT_TIMEOUT_MS,
  natsPart,
  resolveClientOptions,
  resolveEncodeOptions,
  resolveServers,
} from '../src/options.js';

test('options - fills in the bert-as-service defaults', () => {
  const o = resolveClientOptions({}, {});
  assert.deepEqual(o.servers, [DEFAULT_SERVER]);
  assert.equal(o.service, 'default');
  assert.equal(o.timeoutMs, DEFAULT_TIMEOUT_MS);
  assert.equal(o.outputFmt, 'ndarray');
  assert.equal(o.maxChunkRows, undefined);
  assert.equal(o.showServerConfig, false);
  assert.match(o.identity, /^[A-Za-z0-9_-]{1,128}$/);
});

test('options - gives every client a different identity unless one is shared on purpose', () => {
  const identities = new Set(Array.from({ length: 1000 }, () => resolveClientOptions({}, {}).identity));
  assert.equal(identities.size, 1000);
  assert.equal(resolveClientOptions({ identity: 'team-A_1' }, {}).identity, 'team-A_1');
});

test('options - reads the servers from BERTQ_NATS_URL, comma-separated', () => {
  assert.deepEqual(resolveServers(undefined, { BERTQ_NATS_URL: 'nats://a:4222, nats://b:4222' }), [
    'nats://a:4222',
    'nats://b:4222',
  ]);
  assert.deepEqual(resolveServers('nats://c:1', { BERTQ_NATS_URL: 'nats://a:4222' }), ['nats://c:1']);
  assert.throws(() => resolveServers([], {}), BadRequestError);
  assert.throws(() => resolveServers(['nats://x', ''], {}), /servers must be one or more NATS URLs/);
});

test('options - canonicalizes the service name and refuses bad ones', () => {
  assert.equal(resolveClientOptions({ service: 'My_Svc' }, {}).service, 'my-svc');
  assert.throws(
    () => resolveClientOptions({ service: 'a.b' }, {}),
    (e: unknown) => e instanceof BadRequestError && /service name "a.b" is invalid/.test(e.message),
  );
});

test('options - refuses an identity that is not one subject token', () => {
  for (const identity of ['', 'a.b', 'a b', 'a*', 'x'.repeat(129)]) {
    assert.throws(
      () => resolveClientOptions({ identity }, {}),
      (e: unknown) => e instanceof BadRequestError && /client identity/.test(e.message),
      identity,
    );
  }
});

test('options - a tenant is one subject token, and goes to the NATS connection as its inbox prefix', async () => {
  assert.equal(resolveClientOptions({ tenant: 'acme' }, {}).tenant, 'acme');
  assert.equal(resolveClientOptions({}, {}).tenant, undefined);
  assert.throws(() => resolveClientOptions({ tenant: 'a.b' }, {}), /tenant "a\.b" is invalid/);
  assert.equal(natsPart({ tenant: 'acme' }).tenant, 'acme');
  const nats = await natsConnectionOptions({ servers: 'nats://127.0.0.1:1', tenant: 'acme' });
  assert.equal(nats.inboxPrefix, '_INBOX.acme');
  assert.equal((await natsConnectionOptions({ servers: 'nats://127.0.0.1:1' })).inboxPrefix, undefined);
});

test('options - timeouts are finite and positive, or -1 for as long as it takes (the longest timer)', () => {
  for (const timeout of [0, -2, -1.5, Infinity, NaN, 2 ** 31]) {
    assert.throws(
      () => resolveClientOptions({ timeout }, {}),
      (e: unknown) => e instanceof BadRequestError && /timeout must be a number of milliseconds/.test(e.message),
      String(timeout),
    );
  }
  assert.equal(resolveClientOptions({ timeout: 1.2 }, {}).timeoutMs, 2);
  assert.equal(resolveClientOptions({ timeout: -1 }, {}).timeoutMs, 2 ** 31 - 1);
});

test('options - refuses an unknown output format and a bad maxChunkRows', () => {
  assert.throws(
    () => resolveClientOptions({ outputFmt: 'numpy' as 'list' }, {}),
    /outputFmt must be "ndarray" or "list", got "numpy"/,
  );
  for (const maxChunkRows of [0, 1.5, -3]) {
    assert.throws(() => resolveClientOptions({ maxChunkRows }, {}), /maxChunkRows must be a positive integer/);
  }
});

test('options - checks per-call options and falls back to the client timeout', () => {
  const o = resolveEncodeOptions(undefined, 5000);
  assert.deepEqual(
    { ...o, signal: undefined },
    {
      isTokenized: false,
      showTokens: false,
      blocking: true,
      checkLength: 'warn',
      output: 'f32',
      timeoutMs: 5000,
      signal: undefined,
      onFrame: undefined,
    },
  );
  assert.equal(resolveEncodeOptions({ timeout: 10, blocking: false }, 5000).timeoutMs, 10);
  assert.equal(resolveEncodeOptions({ blocking: false }, 5000).blocking, false);
  assert.throws(
    () => resolveEncodeOptions({ output: 'f64' as 'f32' }, 1),
    /output must be one of "f32", "f16", "json", got "f64"/,
  );
  assert.throws(
    () => resolveEncodeOptions({ showTokens: 'yes' as unknown as boolean }, 1),
    /showTokens must be true or false/,
  );
  assert.throws(() => resolveEncodeOptions({ timeout: 0 }, 1), /timeout must be/);
  assert.throws(
    () => resolveEncodeOptions({ onFrame: 'log' as unknown as () => void }, 1),
    /onFrame must be a function, got string/,
  );
});

test("options - bert-as-service's ip/port/port_out are refused with the NATS URL to use, typos are named", () => {
  assert.throws(
    () => resolveClientOptions({ ip: '10.0.0.7', port: 5555 } as never),
    (e: unknown) =>
      e instanceof BadRequestError &&
      /ip, port are bert-as-service's ZeroMQ options; .*servers: 'nats:\/\/10\.0\.0\.7:4222'/.test(e.message),
  );
  assert.throws(() => resolveClientOptions({ sever: 'nats://x:4222' } as never), /unknown client option "sever"/);
});
