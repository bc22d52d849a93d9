/**
 * bert-as-service's Python client, unchanged: `bert-serving-start -model_dir DIR -num_worker 1` with
 * its defaults, then bert-as-service's README examples through clients/python (`from
 * bert_serving.client import BertClient; BertClient()`: localhost:5555), run by Debian's python3 with
 * numpy. The vectors the Python client gets equal an in-process encoder's; the fleet started a broker
 * of its own (it joined none that was running), and `bert-serving-terminate` stops it by its port.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Encoder } from '@bertq/model';
import { tinyModel, waitFor, type TinyModelFixture } from '@bertq/testing';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const START = join(ROOT, 'cli/bin/bert-serving-start.js');
const TERMINATE = join(ROOT, 'cli/bin/bert-serving-terminate.js');
const TEST_TIMEOUT_MS = 240_000;
const START_TIMEOUT_MS = 90_000;
/** bert-as-service's default port, which its clients use when given none. */
const DEFAULT_PORT = 5555;

let tiny: TinyModelFixture;
let home: string;
let fleet: ChildProcess | undefined;
let stderr = '';

/** Debian's python3 with python3-numpy (what CI installs), else whichever python3 has numpy. */
function python(): string {
  for (const candidate of ['/usr/bin/python3', 'python3']) {
    const probe = spawnSync(candidate, ['-c', 'import numpy'], { encoding: 'utf8' });
    if (probe.status === 0) return candidate;
  }
  throw new Error("no python3 with numpy here: install Debian's python3 and python3-numpy (.ci/run does)");
}

function env(): NodeJS.ProcessEnv {
  const { BERTQ_NATS_URL: _url, BERTQ_SERVICE: _service, ...rest } = process.env;
  return { ...rest, BERTQ_CACHE: join(home, 'cache'), BERTQ_LOG_LEVEL: 'warn' };
}

before(async () => {
  tiny = await tinyModel();
  home = await mkdtemp(join(tmpdir(), 'bertq-python-'));
});

after(async () => {
  fleet?.kill('SIGKILL');
  await rm(home, { recursive: true, force: true });
});

test('python client - bert-serving-start with its defaults serves BertClient() on localhost:5555, on a broker of its own', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  fleet = spawn(
    process.execPath,
    [
      START,
      '-model_dir',
      tiny.checkpointDir,
      '-num_worker',
      '1',
      '-show_tokens_to_client',
      '-graph_tmp_dir',
      tiny.graphDir,
    ],
    { env: env(), stdio: ['ignore', 'ignore', 'pipe'] },
  );
  fleet.stderr!.on('data', (d) => (stderr += d));
  await waitFor(
    `bert-serving-start to serve port ${DEFAULT_PORT}`,
    () => {
      if (fleet!.exitCode !== null) throw new Error(`bert-serving-start exited ${fleet!.exitCode}:\n${stderr}`);
      return stderr.includes(`BertClient(port=${DEFAULT_PORT})`);
    },
    START_TIMEOUT_MS,
    100,
  );
  // One line says which broker, and that this command started it: not one found on 4222.
  const line = /started an embedded nats-server -js at nats:\/\/127\.0\.0\.1:(\d+) .*its own, on a free port/.exec(
    stderr,
  );
  assert.ok(line, `the broker line:\n${stderr}`);
  assert.notEqual(Number(line[1]), 4222);
});

test("python client - bert-as-service's README examples run unchanged, with the same vectors as an in-process encoder", {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const vectorsFile = join(home, 'vectors.json');
  const run = spawnSync(python(), ['-m', 'unittest', 'discover', '-s', join(ROOT, 'clients/python/tests'), '-v'], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 180_000,
    env: { ...env(), PYTHONPATH: join(ROOT, 'clients/python'), BERTQ_TEST_VECTORS: vectorsFile },
  });
  const report = `${run.stdout}\n${run.stderr}`;
  assert.equal(run.status, 0, report);
  const ran = /Ran (\d+) tests/.exec(run.stderr);
  assert.ok(ran && Number(ran[1]) >= 18, `the Python suite ran (${ran?.[1]} tests):\n${report}`);
  assert.match(run.stderr, /\nOK\n/);
  assert.doesNotMatch(run.stderr, /ResourceWarning/, 'every connection is closed');

  const { texts, vectors } = JSON.parse(await readFile(vectorsFile, 'utf8')) as {
    texts: string[];
    vectors: number[][];
  };
  const encoder = await Encoder.load({ model: tiny.checkpointDir, graphTmpDir: tiny.graphDir, threads: 1 });
  try {
    const reference = await encoder.encode(texts);
    let worst = 0;
    for (let r = 0; r < texts.length; r++)
      for (let c = 0; c < reference.shape[1]!; c++)
        worst = Math.max(worst, Math.abs(vectors[r]![c]! - reference.data[r * reference.shape[1]! + c]!));
    assert.ok(worst < 1e-5, `the Python client's vectors are the encoder's (largest difference ${worst})`);
  } finally {
    await encoder.close();
  }
});

test('python client - bert-serving-terminate finds the fleet by its port and stops it; nothing is left in the cache', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const run = spawnSync(process.execPath, [TERMINATE], { encoding: 'utf8', timeout: 60_000, env: env() });
  assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
  const code = await new Promise<number | null>((resolve) => {
    if (fleet!.exitCode !== null) resolve(fleet!.exitCode);
    fleet!.once('exit', (c) => resolve(c));
  });
  assert.equal(code, 0, stderr);
  const cache = join(home, 'cache');
  const left = existsSync(cache) ? readdirSync(cache).filter((f) => f.startsWith('nats-')) : [];
  assert.deepEqual(left, [], 'no embedded store folder piles up');
  assert.equal(existsSync(join(cache, 'ports', `${DEFAULT_PORT}.json`)), false, 'the port file is gone');
});
