import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostAllowed, hostName, parseAllowedHosts } from '../src/options.js';

test('hosts - a Host header is read without its port or IPv6 brackets, in any case', () => {
  assert.equal(hostName('LocalHost:8125'), 'localhost');
  assert.equal(hostName('[::1]:8125'), '::1');
  assert.equal(hostName('::1'), '::1');
  assert.equal(hostName('embeddings.internal'), 'embeddings.internal');
});

test('hosts - loopback names and the listen address are always allowed; others only when named, or with *', () => {
  const loopback = parseAllowedHosts(undefined, '127.0.0.1');
  for (const h of ['localhost:1', '127.0.0.1:2', '[::1]:3']) assert.ok(hostAllowed(loopback, h), h);
  assert.equal(hostAllowed(loopback, 'attacker.example:8125'), false);
  assert.equal(hostAllowed(loopback, '127.0.0.1.attacker.example'), false);
  assert.ok(hostAllowed(loopback, undefined), 'no Host header: not a browser');
  const bound = parseAllowedHosts('a.example, B.example', '10.1.2.3');
  for (const h of ['10.1.2.3:80', 'a.example', 'b.example:9']) assert.ok(hostAllowed(bound, h), h);
  assert.equal(hostAllowed(parseAllowedHosts(undefined, '0.0.0.0'), '0.0.0.0'), false, 'a wildcard is no name');
  assert.equal(parseAllowedHosts(['*'], '127.0.0.1'), 'any');
  assert.throws(() => parseAllowedHosts('bad host!', '127.0.0.1'), /is not a host name or address/);
});
