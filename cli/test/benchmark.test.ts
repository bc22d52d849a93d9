import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { joinListFlags } from '../src/compat.js';
import {
  BASE_SETTINGS,
  fleetsOf,
  parseExperimentNames,
  planExperiments,
  pointKey,
  serverKey,
} from '../src/benchmark/experiments.js';
import { lineChartSvg, niceAxis } from '../src/benchmark/plot.js';
import { experimentTable, reportFolder, writeReport } from '../src/benchmark/report.js';
import { makeSentences } from '../src/benchmark/runner.js';
import type { PointResult } from '../src/benchmark/runner.js';
import { poolingValues } from '../src/commands/benchmark.js';

test('benchmark plan - each experiment varies one setting; equal points and fleets are shared', () => {
  const plan = planExperiments(
    ['max_seq_len', 'num_client', 'pooling_layer'],
    BASE_SETTINGS,
    { max_seq_len: [20, 40], num_client: [1, 8] },
    false,
  );
  assert.deepEqual(
    plan.map((e) => e.points.length),
    [2, 2, 12],
  );
  assert.deepEqual(plan[0]!.points[0], { ...BASE_SETTINGS, maxSeqLen: 20 });
  // max_seq_len 40 and num_client 1 are both the base point: one measurement.
  const keys = new Set(plan.flatMap((e) => e.points.map(pointKey)));
  assert.equal(keys.size, 2 + 2 + 12 - 2, 'the base point is in all three experiments, measured once');
  // num_client is client-side: it needs no fleet beyond the base one.
  const fleets = fleetsOf(plan).map(serverKey);
  assert.equal(fleets.length, 1 + 1 + 11);
  assert.ok(fleets.includes(serverKey(BASE_SETTINGS)));
  // --quick takes the short lists.
  const quick = planExperiments(['client_batch_size'], BASE_SETTINGS, {}, true);
  assert.deepEqual(
    quick[0]!.points.map((p) => p.clientBatchSize),
    [1, 16, 256, 2048],
  );
});

test('benchmark plan - experiment names take dashes or underscores and "all"; an unknown one is named', () => {
  assert.deepEqual(parseExperimentNames('max-seq-len, num_client,num_client'), ['max_seq_len', 'num_client']);
  assert.equal(parseExperimentNames('all').length, 6);
  assert.throws(() => parseExperimentNames('max_seq_len,batch'), /unknown experiment batch: choose from max_seq_len/);
});

test('benchmark plan - pooling layers follow the model depth; layers it lacks are dropped with a note', () => {
  const notes: string[] = [];
  assert.deepEqual(poolingValues({}, 6, false, notes).pooling_layer, [-1, -2, -3, -4, -5, -6]);
  assert.deepEqual(poolingValues({}, 6, true, notes).pooling_layer, [-1, -3, -6]);
  assert.deepEqual(poolingValues({ pooling_layer: [-1, -7, 2, 6] }, 6, false, notes).pooling_layer, [-1, 2]);
  assert.deepEqual(notes, ['pooling_layer -7, 6 skipped: the model has 6 layers']);
  assert.deepEqual(poolingValues({ max_seq_len: [8] }, undefined, true, notes), { max_seq_len: [8] });
});

test('benchmark - sentences have as many words as asked, and differ', () => {
  const s = makeSentences(['a', 'b', 'c', 'd'], 50, 7);
  assert.equal(s.length, 50);
  assert.ok(s.every((t) => t.split(' ').length === 7));
  assert.ok(new Set(s).size > 40);
  assert.throws(() => makeSentences([], 1, 1), /no words/);
});

test('benchmark - bertq benchmark takes space-separated test lists', () => {
  assert.deepEqual(
    joinListFlags(['benchmark', '--test-max-seq-len', '20', '40', '--test-pooling-layer', '-1', '-12']),
    ['benchmark', '--test-max-seq-len=20,40', '--test-pooling-layer=-1,-12'],
  );
});

test('plot - y axis rounds up to 1, 2 or 5 × 10^k; every point is drawn; a gap splits the line', () => {
  assert.deepEqual(niceAxis(1152), { top: 1500, step: 500 });
  assert.deepEqual(niceAxis(0.9), { top: 1, step: 0.2 });
  assert.deepEqual(niceAxis(0), { top: 1, step: 0.25 });
  const svg = lineChartSvg({
    title: 'Speed wrt. <max_seq_len>',
    xLabel: 'max_seq_len',
    yLabel: 'sent/s',
    x: ['20', '40', '80', '160'],
    series: [{ name: 'bertq', values: [900, 470, undefined, 120] }],
  });
  assert.equal(svg.match(/<circle /g)?.length, 3, 'three measured points');
  assert.equal(svg.match(/<polyline /g)?.length, 1, 'one line of two points; a lone point after the gap');
  assert.match(svg, /Speed wrt\. &#60;max_seq_len&#62;/, 'text is escaped');
  // The highest point sits below the top of the axis, the lowest above its zero.
  const ys = [...svg.matchAll(/<circle cx="[\d.]+" cy="([\d.]+)"/g)].map((m) => Number(m[1]));
  assert.ok(ys[0]! < ys[1]! && ys[1]! < ys[2]!, `higher rates drawn higher: ${ys}`);
});

test('report - tables and files: a plot per experiment with results, results.json and README.md, no temp files', async () => {
  const plan = planExperiments(['max_seq_len', 'precision'], BASE_SETTINGS, { max_seq_len: [20, 40] }, true);
  const results = new Map<string, PointResult>();
  const [p20, p40] = plan[0]!.points;
  results.set(pointKey(p20!), {
    settings: p20!,
    sentPerSec: 900,
    rows: 900,
    seconds: 1,
    requests: 3,
    p50Ms: 10,
    p99Ms: 12,
  });
  results.set(pointKey(p40!), {
    settings: p40!,
    sentPerSec: 0,
    rows: 0,
    seconds: 1,
    requests: 0,
    error: 'OVERLOADED: queue full',
  });
  const text = experimentTable(plan[0]!, results);
  assert.match(text, /^max_seq_len\s+sent\/s \(all clients\)/);
  assert.match(text, /\n20\s+900\.0\s+900\.0\s+10\s+12\s+3/);
  assert.match(text, /\n40\s+failed¹\s+–\s/, 'a word in the table');
  assert.match(text, /\n¹ max_seq_len 40: OVERLOADED: queue full$/, 'the whole message under it');
  // No request finished and no lower bound: no throughput.
  results.set(pointKey(p40!), { settings: p40!, sentPerSec: 3, rows: 3, seconds: 1, requests: 0 });
  assert.match(experimentTable(plan[0]!, results), /\n40\s+–\s+–/);
  // Fewer than two frames by the cap: a lower bound, said so.
  results.set(pointKey(p20!), {
    settings: p20!,
    sentPerSec: 12.5,
    rows: 256,
    seconds: 20,
    requests: 0,
    lowerBound: true,
  });
  assert.match(experimentTable(plan[0]!, results), /\n20\s+≥ 12\.5\s+≥ 12\.5\s+–/);
  results.set(pointKey(p20!), {
    settings: p20!,
    sentPerSec: 900,
    rows: 900,
    seconds: 1,
    requests: 3,
    p50Ms: 10,
    p99Ms: 12,
  });

  const dir = await mkdtemp(join(tmpdir(), 'bertq-report-'));
  try {
    const run = {
      system: 'test box',
      model: '/models/m',
      load: [0.5, 1] as [number, number],
      quick: true,
      startedAt: 'now',
    };
    await writeReport(dir, plan, results, run, ['a note']);
    // precision has a point in the plan (float32 = the base, measured above as max_seq_len 40),
    // so it gets its plot too; nothing else is written.
    assert.deepEqual((await readdir(dir)).sort(), ['README.md', 'max_seq_len.svg', 'precision.svg', 'results.json']);
    const page = await readFile(join(dir, 'README.md'), 'utf8');
    assert.match(page, /load average 0\.50 at start, 1\.00 at end/);
    assert.match(page, /- a note/);
    assert.match(page, /\| 20 \| 900\.0 \| 900\.0 \| 10 \| 12 \| 3 \|/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('report - never over an earlier run unasked: the default folder moves aside, an explicit one needs --force', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bertq-report-folder-'));
  const cwd = process.cwd();
  try {
    process.chdir(dir);
    assert.equal(reportFolder(undefined, false), 'bertq-benchmark');
    await mkdir('bertq-benchmark');
    await writeFile(join('bertq-benchmark', 'results.json'), '{}');
    assert.equal(reportFolder(undefined, false, new Date('2026-12-08T01:02:03Z')), 'bertq-benchmark-20261208-010203');
    assert.throws(() => reportFolder('bertq-benchmark', false), /holds an earlier benchmark run .*--force/);
    assert.equal(reportFolder('bertq-benchmark', true), 'bertq-benchmark');
  } finally {
    process.chdir(cwd);
    await rm(dir, { recursive: true, force: true });
  }
});
