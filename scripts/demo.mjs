#!/usr/bin/env node
// The main job on a fresh machine, with no model at hand: writes a small random BERT (BERT-mini
// shape: 4 layers, hidden 256, the real bert-base-uncased vocab when ../shared has it), then runs
// what a user runs — `bertq start` (with its embedded nats-server), `bertq encode`, `bertq status`,
// `bertq terminate` — and prints what they print. With a real model, run `bertq start --model-dir …`.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'cli', 'bin', 'run.js');
const modelDir = join(root, '.cache', 'demo-model');
const sharedVocab = join(root, '..', 'shared', 'models', 'bert-base-uncased-vocab.txt');
const START_DEADLINE_MS = 120_000;

const model = await import('@bertq/model');
if (!existsSync(join(modelDir, 'model.safetensors'))) {
  const tokens = existsSync(sharedVocab) ? undefined : model.syntheticVocab();
  const config = model.tinyBertConfig({
    vocabSize: tokens ? tokens.length : 30522,
    hiddenSize: 256,
    numHiddenLayers: 4,
    numAttentionHeads: 4,
    intermediateSize: 1024,
    maxPositionEmbeddings: 512,
  });
  await model.writeHuggingFaceFolder(
    modelDir,
    model.syntheticBertWeights(config, 1),
    tokens ? { tokens } : { file: sharedVocab },
  );
  console.log(`wrote a random BERT-mini-shaped model to ${modelDir}`);
}

const port = await new Promise((resolve) => {
  const srv = createServer().listen(0, '127.0.0.1', () => {
    const { port } = srv.address();
    srv.close(() => resolve(port));
  });
});
const server = `nats://127.0.0.1:${port}`;
const env = { ...process.env, BERTQ_CACHE: join(root, '.cache', 'bertq'), BERTQ_LOG_LEVEL: 'warn' };

console.log(`\n$ bertq start --model ${modelDir} --server ${server} --num-worker 2`);
const fleet = spawn(process.execPath, [bin, 'start', '--model', modelDir, '--server', server, '--num-worker', '2'], {
  env,
  stdio: ['ignore', 'inherit', 'pipe'],
});
let err = '';
fleet.stderr.on('data', (d) => {
  err += d;
  process.stderr.write(d);
});
const ready = await new Promise((resolve) => {
  const timer = setTimeout(() => resolve(false), START_DEADLINE_MS);
  fleet.stderr.on('data', () => err.includes('bertq ready') && (clearTimeout(timer), resolve(true)));
  fleet.on('exit', () => (clearTimeout(timer), resolve(false)));
});
if (!ready) {
  console.error('bertq start did not become ready');
  fleet.kill('SIGKILL');
  process.exit(1);
}

function run(args) {
  // Quoted as a shell needs them, so the line can be pasted.
  console.log(
    `\n$ bertq ${args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`)).join(' ')}`,
  );
  const res = spawnSync(process.execPath, [bin, ...args, '--server', server], { env, encoding: 'utf8' });
  const out = res.stdout
    .split('\n')
    .map((l) => (l.length > 160 ? `${l.slice(0, 157)}...` : l))
    .join('\n');
  process.stdout.write(out);
  process.stderr.write(res.stderr);
  return res.status;
}

let status = run(['encode', 'hello world', 'First do it ||| then do it right']);
status ||= run(['status']);
run(['terminate']);
await new Promise((resolve) => fleet.on('exit', resolve));
process.exit(status);
