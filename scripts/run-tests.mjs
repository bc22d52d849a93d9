#!/usr/bin/env node
// Runs the compiled tests with node's own runner. Two suites, so a machine without nats-server can
// still run the first:
//   unit  — everything that needs neither a nats-server nor a spawned fleet (`*.test.js`)
//   nats  — tests that start their own nats-server (`*.nats.test.js`) and the end-to-end tests in test/
// Extra arguments are passed to `node --test` (e.g. --test-name-pattern=batcher).
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync, existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const [suite = 'unit', ...rest] = process.argv.slice(2);
if (!['unit', 'nats', 'all'].includes(suite)) {
  console.error(`usage: run-tests.mjs unit|nats|all [node --test options]`);
  process.exit(2);
}

function walk(dir, out = []) {
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const dirs = [
  ...readdirSync(join(root, 'packages')).map((p) => join(root, 'packages', p, 'dist', 'test')),
  join(root, 'cli', 'dist', 'test'),
  join(root, 'test', 'dist'),
];
const files = dirs.flatMap((d) => walk(d)).sort();
const isNats = (f) => f.endsWith('.nats.test.js') || f.startsWith(join(root, 'test', 'dist'));
const picked = files.filter((f) => suite === 'all' || (suite === 'nats') === isNats(f));
if (picked.length === 0) {
  console.error(`no ${suite} test files found: run \`npm run build\` first`);
  process.exit(1);
}
console.log(`${suite}: ${picked.length} test files`);
const res = spawnSync(
  process.execPath,
  ['--test', '--test-timeout=300000', ...rest, ...picked.map((f) => relative(root, f))],
  { cwd: root, stdio: 'inherit' },
);
process.exit(res.status ?? 1);
