#!/usr/bin/env node
// Runs the compiled tests with node's own runner, in two suites:
//   unit  — everything that needs neither a nats-server nor a spawned fleet (`*.test.js`)
//   nats  — tests that start their own nats-server (`*.nats.test.js`) and the end-to-end tests in test/
// `run-tests.mjs unit nats` runs both, each whatever the other did, then prints one summary: each
// suite's passed, failed and skipped tests and its duration, and every skip with its reason. The exit
// status is non-zero when any test failed. With CI set, a skip for something CI provides (the shared
// model files, nats-server, Chromium, qemu) counts as a failure: a green CI never hides tests that
// could not run. Extra arguments after `--` go to `node --test` (e.g. -- --test-name-pattern=batcher).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const SUITES = ['unit', 'nats', 'all'];
const args = process.argv.slice(2);
const dash = args.indexOf('--');
const suites = (dash === -1 ? args.filter((a) => SUITES.includes(a)) : args.slice(0, dash)).flatMap((s) =>
  s === 'all' ? ['unit', 'nats'] : [s],
);
// Arguments that are not suite names go to node --test (the old form: run-tests.mjs unit --test-name-pattern=x).
const rest = dash === -1 ? args.filter((a) => !SUITES.includes(a)) : args.slice(dash + 1);
if (suites.length === 0 || suites.some((s) => !SUITES.includes(s))) {
  console.error('usage: run-tests.mjs unit|nats|all [unit|nats …] [-- node --test options]');
  process.exit(2);
}

/** What .ci/run installs or lays beside the checkout, and how a skip reason names it. */
const CI_PROVIDES = [
  { what: 'the shared model files (../shared)', pattern: /\/shared\/|shared model files/ },
  { what: 'nats-server', pattern: /nats-server/ },
  { what: 'Chromium', pattern: /chromium/i },
  { what: 'qemu-x86_64', pattern: /qemu/ },
];

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
const scratch = mkdtempSync(join(tmpdir(), 'bertq-test-summary-'));
const reporter = new URL('./test-summary-reporter.mjs', import.meta.url).href;

function runSuite(suite) {
  const picked = files.filter((f) => (suite === 'nats') === isNats(f));
  if (picked.length === 0) {
    console.error(`no ${suite} test files found: run \`npm run build\` first`);
    return { suite, status: 1, seconds: 0, summary: undefined };
  }
  console.log(`${suite}: ${picked.length} test files`);
  const summaryFile = join(scratch, `${suite}.json`);
  const started = Date.now();
  const res = spawnSync(
    process.execPath,
    [
      '--test',
      '--test-timeout=300000',
      `--test-reporter=${process.stdout.isTTY ? 'spec' : 'tap'}`,
      '--test-reporter-destination=stdout',
      `--test-reporter=${reporter}`,
      `--test-reporter-destination=${summaryFile}`,
      ...rest,
      ...picked.map((f) => relative(root, f)),
    ],
    { cwd: root, stdio: 'inherit' },
  );
  const seconds = (Date.now() - started) / 1000;
  let summary;
  try {
    summary = JSON.parse(readFileSync(summaryFile, 'utf8'));
  } catch {
    summary = undefined; // the runner died before its reporters finished: said below
  }
  return { suite, status: res.status ?? 1, signal: res.signal, seconds, summary };
}

const results = suites.map(runSuite);
rmSync(scratch, { recursive: true, force: true });

const ci = Boolean(process.env.CI);
let failed = false;
const lines = ['', '── test summary ──'];
const total = { passed: 0, failed: 0, skipped: 0 };
for (const r of results) {
  const s = r.summary;
  if (!s) {
    failed = true;
    lines.push(
      `${r.suite}: the runner ended (${r.signal ?? `exit ${r.status}`}) without a summary, ${r.seconds.toFixed(0)} s`,
    );
    continue;
  }
  lines.push(
    `${r.suite}: ${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped${s.todo ? `, ${s.todo} todo` : ''} in ${r.seconds.toFixed(0)} s`,
  );
  total.passed += s.passed;
  total.failed += s.failed;
  total.skipped += s.skipped;
  if (r.status !== 0 || s.failed > 0) failed = true;
  for (const f of s.failures) lines.push(`  failed: ${f.name} (${f.file ?? '?'}): ${f.error}`);
  for (const k of s.skips) {
    const provided = CI_PROVIDES.find((p) => p.pattern.test(k.reason));
    const refused = ci && provided !== undefined;
    if (refused) {
      failed = true;
      total.failed += 1;
      total.skipped -= 1;
    }
    lines.push(
      `  ${refused ? `FAILED under CI (CI must provide ${provided.what})` : 'skipped'}: ${k.name} (${k.file ?? '?'}): ${k.reason}`,
    );
  }
}
// One closing line in the plain form CI reads.
lines.push(`tests: ${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`);
console.log(lines.join('\n'));
process.exit(failed ? 1 : 0);
