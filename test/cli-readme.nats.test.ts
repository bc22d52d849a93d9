/**
 * cli/README.md's "A session" block, run as written against a real fleet: the only changes are the
 * model (the tiny one instead of /models/…) and the NATS server (a test one, by BERTQ_NATS_URL).
 * Every command must succeed and print what the README says it prints.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNatsServer, tinyModel, type NatsServer, type TinyModelFixture } from '@bertq/testing';
import { BIN, startBertq } from './cli-fixtures.js';

const TEST_TIMEOUT_MS = 120_000;
const COMMAND_TIMEOUT_MS = 30_000;

let tiny: TinyModelFixture;
let home: string;
let server: NatsServer;

before(async () => {
  tiny = await tinyModel();
  home = await mkdtemp(join(tmpdir(), 'bertq-readme-'));
  server = await startNatsServer();
});
after(async () => {
  await server?.stop();
  await rm(home, { recursive: true, force: true });
});

/** The lines of the first ```sh block after a heading. */
async function sessionBlock(): Promise<string[]> {
  const text = await readFile(new URL('../../cli/README.md', import.meta.url), 'utf8');
  const block = /## A session\n\n```sh\n([\s\S]*?)```/.exec(text)?.[1];
  assert.ok(block, 'cli/README.md has the "A session" block');
  return block.trim().split('\n');
}

test('cli README - the "A session" block runs as written', { timeout: TEST_TIMEOUT_MS }, async () => {
  const env = {
    ...process.env,
    BERTQ_NATS_URL: server.url,
    BERTQ_CACHE: join(home, 'cache'),
    BERTQ_LOG_LEVEL: 'warn',
    NO_COLOR: '1',
  };
  await writeFile(
    join(home, 'sentences.txt'),
    Array.from({ length: 300 }, (_, i) => `sentence number ${i}`).join('\n'),
  );
  const lines = await sessionBlock();
  const [startLine, ...rest] = lines;
  assert.match(startLine!, /^bertq start --model-dir \S+ /);
  const startArgs = startLine!
    .replace(/\s+#.*$/, '')
    .replace(/^bertq start /, '')
    .replace(/--model-dir \S+/, `--model ${tiny.huggingFaceDir} --graph-tmp-dir ${tiny.graphDir}`)
    .split(/\s+/);
  const fleet = await startBertq(startArgs, { env, timeoutMs: 60_000 });
  try {
    const outputs: string[] = [];
    for (const line of rest) {
      const command = line.replace(/\s+#.*$/, '').replaceAll(/(^|\| )bertq /g, `$1${process.execPath} ${BIN} `);
      const run = spawnSync('bash', ['-c', command], { cwd: home, env, encoding: 'utf8', timeout: COMMAND_TIMEOUT_MS });
      assert.equal(run.status, 0, `${line}\n${run.stderr}`);
      outputs.push(run.stdout);
    }
    const [twoArgs, csv, , status] = outputs;
    assert.equal(twoArgs!.trim().split('\n').length, 2, 'one JSON array per line, for two sentences');
    assert.equal(JSON.parse(twoArgs!.split('\n')[0]!).length, 32);
    assert.equal(csv!.trim().split('\n').length, 2, 'stdin: one row per line');
    assert.ok(existsSync(join(home, 'vectors.npy')), 'the .npy file was written');
    assert.match(status!, /service default: 2 worker\(s\)/);
    assert.equal(await fleet.exited, 0, 'bertq terminate stopped the fleet');
  } finally {
    fleet.child.kill('SIGKILL');
  }
});
