/**
 * `bertq encode`, `status`, `terminate` and `gateway` talk to a fleet; they must not pay for the model
 * path. This runs each command as a user would and reads, from the process's own memory map at exit,
 * which shared libraries it loaded: neither ONNX Runtime nor the tokenizers addon may be among them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../bin/run.js', import.meta.url));
const RUN_TIMEOUT_MS = 30_000;
/** The native libraries of the model path, as they appear in /proc/<pid>/maps. */
const HEAVY = /onnxruntime|tokenizers/;

/** Runs `node <argv>` and returns the paths of the shared objects its process had mapped at exit. */
function loadedLibraries(args: string[], argv: string[] = [BIN, ...args]): { libraries: string[]; stderr: string } {
  const dir = mkdtempSync(join(tmpdir(), 'bertq-light-'));
  try {
    const out = join(dir, 'maps.txt');
    const hook = join(dir, 'hook.mjs');
    writeFileSync(
      hook,
      `import { readFileSync, writeFileSync } from 'node:fs';\n` +
        `process.on('exit', () => writeFileSync(${JSON.stringify(out)}, readFileSync('/proc/self/maps')));\n`,
    );
    const res = spawnSync(process.execPath, ['--import', hook, ...argv], {
      encoding: 'utf8',
      timeout: RUN_TIMEOUT_MS,
      env: { ...process.env, BERTQ_LOG_LEVEL: 'silent', NO_COLOR: '1' },
    });
    assert.ok(existsSync(out), `bertq ${args.join(' ')} wrote no memory map (status ${res.status}): ${res.stderr}`);
    const libraries = [
      ...new Set(
        readFileSync(out, 'utf8')
          .split('\n')
          .map((l) => l.split(/\s+/)[5] ?? '')
          .filter((p) => /\.(so|node)\b/.test(p)),
      ),
    ];
    return { libraries, stderr: res.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const onLinux = existsSync('/proc/self/maps');
// Nothing listens on port 1: each command fails fast, after loading everything it imports.
const NOWHERE = ['--server', 'nats://127.0.0.1:1', '--timeout', '1000'];

for (const args of [
  ['encode', 'hello', ...NOWHERE],
  ['status', '--server', 'nats://127.0.0.1:1'],
  ['terminate', '--server', 'nats://127.0.0.1:1'],
  ['gateway', '--help'],
]) {
  test(`cli - bertq ${args[0]} loads neither onnxruntime nor tokenizers`, {
    skip: onLinux ? false : 'needs /proc/self/maps (Linux)',
  }, () => {
    const { libraries } = loadedLibraries(args);
    assert.ok(libraries.length > 0, 'the memory map lists shared objects');
    assert.deepEqual(
      libraries.filter((l) => HEAVY.test(l)),
      [],
    );
  });
}

test('cli - a process that does tokenize maps the tokenizers addon (the check above can see it)', {
  skip: onLinux ? false : 'needs /proc/self/maps (Linux)',
}, () => {
  // The control case: the same probe, on a process that loads a tokenizer through @bertq/model.
  const vocab = join(mkdtempSync(join(tmpdir(), 'bertq-vocab-')), 'vocab.txt');
  writeFileSync(vocab, '[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n');
  const script = `import { BertTokenizer } from '@bertq/model'; await BertTokenizer.fromVocabFile(${JSON.stringify(vocab)}, { maxPositionEmbeddings: 512 });`;
  const { libraries } = loadedLibraries([], ['--input-type=module', '-e', script]);
  rmSync(join(vocab, '..'), { recursive: true, force: true });
  assert.ok(
    libraries.some((l) => HEAVY.test(l)),
    `start --help mapped: ${libraries.join(', ')}`,
  );
});

test('help - commands that load models name the environment variables that are not a flag (BERTQ_CACHE, HF_*)', () => {
  for (const command of ['start', 'benchmark']) {
    const res = spawnSync(process.execPath, [BIN, command, '--help'], { encoding: 'utf8', timeout: RUN_TIMEOUT_MS });
    assert.equal(res.status, 0, res.stderr);
    for (const name of ['BERTQ_CACHE', 'HF_ENDPOINT', 'HF_TOKEN'])
      assert.match(res.stdout, new RegExp(`- ${name}: `), `bertq ${command} --help names ${name}`);
  }
});
