/**
 * The README promises a Node version; npm warns (EBADENGINE) on `npm ci` when any installed package
 * wants a newer one. This holds every package in the lockfile to the workspace's own `engines.node`,
 * so a dependency bump that needs Node 22 fails here instead of printing warnings at every install.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import semver from 'semver';

const root = new URL('../../../', import.meta.url);
const readJson = (name: string) => JSON.parse(readFileSync(new URL(name, root), 'utf8'));

test('engines - every locked package runs on the oldest Node the workspace claims, and the README says the same', () => {
  const claimed = readJson('package.json').engines.node as string;
  const oldest = semver.minVersion(claimed)!.version;
  const lock = readJson('package-lock.json') as {
    packages: Record<string, { engines?: { node?: string } | string[] }>;
  };
  const refusing = Object.entries(lock.packages)
    .map(([path, p]) => [path, Array.isArray(p.engines) ? undefined : p.engines?.node] as const)
    .filter(([, range]) => range !== undefined && !semver.satisfies(oldest, range))
    .map(([path, range]) => `${path} wants node ${range}`);
  assert.deepEqual(refusing, [], `packages that refuse Node ${oldest}`);
  const readme = readFileSync(new URL('README.md', root), 'utf8');
  assert.match(readme, new RegExp(`Node ≥ ${semver.major(oldest)}\\.${semver.minor(oldest)}\\b`));
});
