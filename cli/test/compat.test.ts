import { test } from 'node:test';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { closest } from '../src/base.js';
import { joinListFlags, translateBertServingArgs } from '../src/compat.js';

test("compat - bert-serving-start's single-dash snake_case flags become bertq's, lists joined", () => {
  const { args, notes } = translateBertServingArgs([
    '-model_dir',
    '/tmp/english_L-12_H-768_A-12/',
    '-num_worker',
    '4',
    '-pooling_layer',
    '-1',
    '-2',
    '-device_map',
    '0',
    '1',
    '-max_seq_len',
    'NONE',
    '-cased_tokenization',
    '-show_tokens_to_client',
  ]);
  assert.deepEqual(args, [
    '--model-dir',
    '/tmp/english_L-12_H-768_A-12/',
    '--num-worker',
    '4',
    '--pooling-layer=-1,-2',
    '--device-map=0,1',
    '--max-seq-len',
    'NONE',
    '--cased-tokenization',
    '--show-tokens-to-client',
    // bert-as-service's defaults: its clients' port, and a broker of its own.
    '--client-port',
    '5555',
    '--own-nats',
  ]);
  assert.deepEqual(notes, []);
});

test("compat - -port is the clients' port; with --server (or BERTQ_NATS_URL) the fleet joins that server", () => {
  assert.deepEqual(translateBertServingArgs(['-model_dir', '/m', '-port', '4000']).args, [
    '--model-dir',
    '/m',
    '--client-port',
    '4000',
    '--own-nats',
  ]);
  assert.deepEqual(translateBertServingArgs(['-model_dir', '/m', '-server', 'nats://10.0.0.1:4222']).args, [
    '--model-dir',
    '/m',
    '--server',
    'nats://10.0.0.1:4222',
  ]);
  assert.deepEqual(
    translateBertServingArgs(['-model_dir', '/m'], 'start', { BERTQ_NATS_URL: 'nats://10.0.0.1:4222' }).args,
    ['--model-dir', '/m'],
  );
  // bert-serving-terminate -port P reaches the fleet that port serves; -h is argparse's help.
  assert.deepEqual(translateBertServingArgs(['-port', '4000'], 'terminate').args, ['--client-port', '4000']);
  assert.deepEqual(translateBertServingArgs([], 'terminate').args, ['--client-port', '5555']);
  assert.deepEqual(translateBertServingArgs(['-h']).args, ['--help']);
});

test('compat - flags with no meaning here are dropped with a line saying what bertq does instead', () => {
  const { args, notes } = translateBertServingArgs(
    ['-port', '5555', '-port_out', '5556', '-gpu_memory_fraction', '0.5', '-xla', '-http_max_connect', '20', '-cpu'],
    'benchmark',
  );
  assert.deepEqual(args, ['--http-max-connections', '20', '--cpu']);
  assert.equal(notes.length, 5);
  assert.match(notes[0]!, /-port is ignored: .*NATS/);
  assert.match(notes[1]!, /-port_out is ignored: .*HTTP connection/);
  assert.match(notes[2]!, /-gpu_memory_fraction is ignored: ONNX Runtime/);
  assert.match(notes[3]!, /-xla is ignored/);
  assert.match(notes[4]!, /-http_max_connect is --http-max-connections/);
});

test('compat - bertq start takes the space-separated list form too', () => {
  assert.deepEqual(joinListFlags(['start', '--pooling-layer', '-1', '-2', '--num-worker', '2']), [
    'start',
    '--pooling-layer=-1,-2',
    '--num-worker',
    '2',
  ]);
  assert.deepEqual(joinListFlags(['start', '--pooling-layer', '-1,-2']), ['start', '--pooling-layer=-1,-2']);
  assert.deepEqual(joinListFlags(['start', '--pooling-layer=-1']), ['start', '--pooling-layer=-1']);
  assert.deepEqual(
    joinListFlags(['encode', 'a', '-1']),
    ['encode', 'a', '-1'],
    'other flags and arguments are left alone',
  );
});

test('compat - a mistyped flag names the nearest real one', () => {
  const known = ['model-dir', 'model', 'num-worker', 'max-seq-len', 'pooling-layer'];
  assert.equal(closest('modl-dir', known), 'model-dir');
  assert.equal(closest('num_workers', known), 'num-worker');
  assert.equal(closest('max-sequence-length', known), undefined, 'nothing plausible: no guess');
});

test('compat - -h shows the help of every command and every bert-serving-* alias', () => {
  const bin = (name: string) => fileURLToPath(new URL(`../../bin/${name}.js`, import.meta.url));
  const runs: Array<[string, string[]]> = [
    ...['start', 'encode', 'status', 'terminate', 'gateway', 'setup', 'benchmark', 'auth init'].map(
      (c): [string, string[]] => [bin('run'), [...c.split(' '), '-h']],
    ),
    ...['bert-serving-start', 'bert-serving-terminate', 'bert-serving-benchmark'].map((alias): [string, string[]] => [
      bin(alias),
      ['-h'],
    ]),
  ];
  for (const [script, args] of runs) {
    const run = spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(run.status, 0, `${script} ${args.join(' ')}: ${run.stderr}`);
    assert.match(run.stdout, /USAGE/, `${script} ${args.join(' ')} printed its help`);
  }
});
