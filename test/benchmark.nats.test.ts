/**
 * `bertq benchmark` and `bert-serving-benchmark` as a user runs them: real processes, a real
 * nats-server, the tiny model, fleets started per server-side setting; short points so it stays cheap.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { startNatsServer, tinyModel, type TinyModelFixture } from '@bertq/testing';
import { runBertq, startBertq } from './cli-fixtures.js';

const SERVING_BENCHMARK = fileURLToPath(new URL('../../cli/bin/bert-serving-benchmark.js', import.meta.url));
const RUN_TIMEOUT_MS = 150_000;
const TEST_TIMEOUT_MS = 240_000;

let tiny: TinyModelFixture;
let home: string;

before(async () => {
  tiny = await tinyModel();
  home = await mkdtemp(join(tmpdir(), 'bertq-benchmark-'));
});
after(async () => {
  await rm(home, { recursive: true, force: true });
});

function env(): NodeJS.ProcessEnv {
  return { ...process.env, BERTQ_CACHE: join(home, 'cache'), BERTQ_LOG_LEVEL: 'warn', NO_COLOR: '1' };
}

interface ResultsJson {
  notes: string[];
  load: [number, number];
  experiments: Array<{
    name: string;
    points: Array<{ settings: Record<string, number | string>; sentPerSec: number; rows: number; error?: string }>;
  }>;
}

async function streamNames(url: string): Promise<string[]> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await jetstreamManager(nc);
    return (await jsm.streams.names().next()) ?? [];
  } finally {
    await nc.close();
  }
}

test('benchmark - bert-serving-benchmark with the seed syntax starts a fleet per setting, prints tables, writes plots, and removes its streams', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const nats = await startNatsServer();
  const out = join(home, 'seed-syntax');
  try {
    const run = await runBertq(
      [
        '-model_dir',
        tiny.huggingFaceDir,
        '-max_seq_len',
        '16',
        '-test_max_seq_len',
        '8',
        '16',
        '-test_num_client',
        '1',
        '3',
        '-test_pooling_layer',
        '-1',
        '-4',
        '-9',
        '-num_repeat',
        '3',
        '-wait_till_ready',
        '30',
        '-port',
        '5555',
        '--experiments',
        'max_seq_len,num_client,pooling_layer',
        '--duration',
        '0.6',
        '--server',
        nats.url,
        '--output',
        out,
      ],
      { env: env(), timeoutMs: RUN_TIMEOUT_MS, bin: SERVING_BENCHMARK },
    );
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /-wait_till_ready is ignored/);
    assert.match(run.stderr, /-port is ignored/);
    for (const name of ['max_seq_len', 'num_client', 'pooling_layer'])
      assert.match(run.stdout, new RegExp(`Speed wrt\\. ${name} \\(`), `a table for ${name}`);
    assert.match(
      run.stderr,
      /benchmark done: 5 points/,
      'the base point (max_seq_len 16, num_client 1) is measured once',
    );

    const files = (await readdir(out)).sort();
    assert.deepEqual(files, ['README.md', 'max_seq_len.svg', 'num_client.svg', 'pooling_layer.svg', 'results.json']);
    const json = JSON.parse(await readFile(join(out, 'results.json'), 'utf8')) as ResultsJson;
    assert.ok(
      json.notes.some((n) => /pooling_layer -9 skipped: the model has 4 layers/.test(n)),
      json.notes.join('\n'),
    );
    const byName = new Map(json.experiments.map((e) => [e.name, e.points]));
    assert.deepEqual(
      byName.get('max_seq_len')!.map((p) => p.settings.maxSeqLen),
      [8, 16],
    );
    assert.deepEqual(
      byName.get('pooling_layer')!.map((p) => p.settings.poolingLayer),
      [-1, -4],
    );
    assert.deepEqual(
      byName.get('num_client')!.map((p) => p.settings.numClient),
      [1, 3],
    );
    for (const points of byName.values())
      for (const p of points) {
        assert.equal(p.error, undefined, JSON.stringify(p));
        assert.ok(p.sentPerSec > 0 && p.rows > 0, `a measured rate: ${JSON.stringify(p)}`);
      }
    // Deeper pooling layers run fewer layers: layer -4 (one layer) beats -1 (all four).
    const [last, first] = byName.get('pooling_layer')!.map((p) => p.sentPerSec);
    assert.ok(first! > last!, `layer -4 (${first}) faster than layer -1 (${last})`);

    const svg = await readFile(join(out, 'num_client.svg'), 'utf8');
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.equal(svg.match(/<circle /g)?.length, 2, 'one marker per measured point');
    assert.match(svg, /<polyline /);
    const page = await readFile(join(out, 'README.md'), 'utf8');
    assert.match(page, /!\[Speed wrt\. pooling_layer\]\(pooling_layer\.svg\)/);

    // Every fleet it started took its stream along when it stopped.
    assert.deepEqual(
      (await streamNames(nats.url)).filter((s) => s.startsWith('BERTQ_BERTQ_BENCHMARK')),
      [],
      'no benchmark stream left behind',
    );
  } finally {
    await nats.stop();
  }
});

test('benchmark - given only --server/--service, it runs the client-side experiments against the running fleet', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const nats = await startNatsServer();
  const out = join(home, 'live');
  const fleet = await startBertq(
    ['--model', tiny.huggingFaceDir, '--server', nats.url, '--service', 'live', '--max-seq-len', '12'],
    { env: env(), timeoutMs: 60_000 },
  );
  try {
    const run = await runBertq(
      [
        'benchmark',
        '--server',
        nats.url,
        '--service',
        'live',
        '--experiments',
        'client_batch_size,max_seq_len',
        '--test-client-batch-size',
        '1',
        '8',
        '--duration',
        '0.5',
        '--output',
        out,
      ],
      { env: env(), timeoutMs: RUN_TIMEOUT_MS },
    );
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /note: skipped max_seq_len: a server-side setting needs a fleet per value/);
    const json = JSON.parse(await readFile(join(out, 'results.json'), 'utf8')) as ResultsJson;
    const points = json.experiments.find((e) => e.name === 'client_batch_size')!.points;
    assert.deepEqual(
      points.map((p) => p.settings.clientBatchSize),
      [1, 8],
    );
    // The base settings are the fleet's own.
    assert.ok(points.every((p) => p.settings.maxSeqLen === 12 && p.sentPerSec > 0 && p.error === undefined));
    assert.equal(json.experiments.length, 1, 'the server-side experiment is not planned');

    // Nothing to run without a model: said at once, exit code 2.
    const none = await runBertq(
      ['benchmark', '--server', nats.url, '--service', 'live', '--experiments', 'pooling_layer'],
      { env: env(), timeoutMs: RUN_TIMEOUT_MS },
    );
    assert.equal(none.code, 2, none.stderr);
    assert.match(none.stderr, /pooling_layer need\(s\) --model-dir or --model/);
  } finally {
    fleet.child.kill('SIGTERM');
    await fleet.exited;
    await nats.stop();
  }
});
