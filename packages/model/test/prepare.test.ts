import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { BadRequestError } from '@bertq/protocol';
import { Encoder } from '../src/encoder.js';
import { graphCacheKey } from '../src/graph-cache.js';
import { detectInt8Kernel } from '../src/int8-kernel.js';
import { readOnnxMetadata } from '../src/onnx/metadata.js';
import { prepareModel, resolvePrecision } from '../src/prepare.js';
import type { GraphOptions } from '../src/types.js';
import { join } from 'node:path';
import { writeOnnxFolder } from '../src/export.js';
import { ONNX_OPTIONS, tinyModel } from './fixtures.js';
import type { TinyModel } from './fixtures.js';

const SAME_TOLERANCE = 1e-6;
const CHILD_TIMEOUT_MS = 60_000;

let tiny: TinyModel;
before(async () => {
  tiny = await tinyModel();
});
after(async () => {
  await tiny.cleanup();
});

const OPTIONS: GraphOptions = {
  poolingStrategy: 'REDUCE_MEAN',
  poolingLayer: [-2],
  precision: 'float32',
  normalize: false,
  fused: false,
};

test('graphCacheKey - derived from the whole options object: a new field makes a new key, key order does not', () => {
  const key = graphCacheKey('w', OPTIONS);
  const withField = { ...OPTIONS, someFutureOption: 1 } as unknown as GraphOptions;
  assert.notEqual(graphCacheKey('w', withField), key, 'a field nobody listed still changes the key');
  const reordered = Object.fromEntries(Object.entries(OPTIONS).reverse()) as unknown as GraphOptions;
  assert.equal(graphCacheKey('w', reordered), key);
  assert.notEqual(graphCacheKey('other weights', OPTIONS), key);
  for (const [field, value] of [
    ['precision', 'float16'],
    ['normalize', true],
    ['fused', true],
    ['poolingLayer', [-1]],
  ] as const) {
    assert.notEqual(graphCacheKey('w', { ...OPTIONS, [field]: value }), key, `${field} is part of the key`);
  }
});

test('prepareModel - builds the graph once, as plain JSON that a worker opens to the same vectors', async () => {
  const options = { model: tiny.huggingFaceDir, graphTmpDir: tiny.cacheDir, poolingLayer: -1 };
  const prepared = await prepareModel(options);
  assert.ok(existsSync(prepared.graphPath));
  const again = await prepareModel(options);
  assert.equal(again.graphCacheHit, true);
  assert.equal(again.graphPath, prepared.graphPath);

  const shipped = JSON.parse(JSON.stringify(prepared)) as typeof prepared; // as it crosses IPC
  const opened = await Encoder.open(shipped, { threads: 1 });
  const loaded = await Encoder.load({ ...options, threads: 1 });
  try {
    const texts = ['First do it', 'then do it right'];
    const [a, b] = [await opened.encode(texts), await loaded.encode(texts)];
    assert.deepEqual(a.shape, b.shape);
    for (let i = 0; i < a.data.length; i++) assert.ok(Math.abs(a.data[i]! - b.data[i]!) <= SAME_TOLERANCE);
    assert.equal(opened.info.fingerprint, prepared.fingerprint);
  } finally {
    await opened.close();
    await loaded.close();
  }
});

test('prepareModel - opens no ONNX Runtime session (the library is not even mapped)', {
  skip: existsSync('/proc/self/maps') ? false : 'needs /proc/self/maps',
}, () => {
  const prepareUrl = new URL('../src/prepare.js', import.meta.url).href;
  const script =
    `const { prepareModel } = await import(${JSON.stringify(prepareUrl)});` +
    `const p = await prepareModel({ model: ${JSON.stringify(tiny.huggingFaceDir)}, graphTmpDir: ${JSON.stringify(tiny.cacheDir)}, poolingLayer: -3 });` +
    `const { readFileSync } = await import('node:fs');` +
    `console.log(JSON.stringify({ graph: p.graphPath, ort: /onnxruntime/.test(readFileSync('/proc/self/maps', 'utf8')) }));`;
  const res = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: CHILD_TIMEOUT_MS,
  });
  assert.equal(res.status, 0, res.stderr);
  const out = JSON.parse(res.stdout.trim()) as { graph: string; ort: boolean };
  assert.ok(readFileSync(out.graph).length > 0, 'the graph was built');
  assert.equal(out.ort, false, 'onnxruntime was loaded while preparing');
});

test('prepareModel - the fingerprint covers weights and what the model computes, not the device-only fused choice', async () => {
  const base = { model: tiny.huggingFaceDir, graphTmpDir: tiny.cacheDir };
  const cpu = await prepareModel(base);
  const cudaShaped = await prepareModel({ ...base, fused: true });
  assert.notEqual(cudaShaped.graphPath, cpu.graphPath, 'a fused graph is another graph');
  assert.equal(cudaShaped.fingerprint, cpu.fingerprint, 'but computes the same vectors');
  assert.notEqual((await prepareModel({ ...base, poolingLayer: -1 })).fingerprint, cpu.fingerprint);
  assert.notEqual((await prepareModel({ ...base, maxSeqLen: 16 })).fingerprint, cpu.fingerprint);
  assert.notEqual((await prepareModel({ ...base, precision: 'float16' })).fingerprint, cpu.fingerprint);
  const checkpoint = await prepareModel({ model: tiny.checkpointDir, graphTmpDir: tiny.cacheDir });
  assert.notEqual(checkpoint.weightsHash, cpu.weightsHash, 'other files, other hash');
});

test('precision - float16 on a CPU is said, once per process, to be bigger and no faster than float32 there', () => {
  // In a child of its own: the warning is once per process, and this file prepares float16 elsewhere.
  const prepareUrl = new URL('../src/prepare.js', import.meta.url).href;
  const run = (precision: string) =>
    spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const { prepareModel } = await import(${JSON.stringify(prepareUrl)});` +
          `const o = { model: ${JSON.stringify(tiny.huggingFaceDir)}, graphTmpDir: ${JSON.stringify(tiny.cacheDir)}, precision: ${JSON.stringify(precision)} };` +
          'await prepareModel(o); await prepareModel(o);',
      ],
      { encoding: 'utf8', timeout: CHILD_TIMEOUT_MS },
    );
  const half = run('float16');
  assert.equal(half.status, 0, half.stderr);
  assert.equal(half.stderr.match(/BertqPrecisionWarning/g)?.length, 1, half.stderr);
  assert.match(half.stderr, /computes it in float32 .*use precision int8/);
  const full = run('float32');
  assert.equal(full.status, 0, full.stderr);
  assert.doesNotMatch(full.stderr, /BertqPrecisionWarning/);
});

test('precision - one enum, fp16 kept as its alias, contradictions refused', () => {
  assert.equal(resolvePrecision({}), 'float32');
  assert.equal(resolvePrecision({ fp16: true }), 'float16');
  assert.equal(resolvePrecision({ precision: 'float16' }), 'float16');
  assert.throws(() => resolvePrecision({ fp16: true, precision: 'float32' }), BadRequestError);
  assert.throws(
    () => resolvePrecision({ precision: 'int4' as 'float32' }),
    /unknown precision "int4": use one of float32, float16, int8/,
  );
  assert.equal(resolvePrecision({ precision: 'int8' }), 'int8');
  assert.throws(() => resolvePrecision({ fp16: true, precision: 'int8' }), /fp16 contradicts precision int8/);
});

test('precision int8 - its own cached graph and fingerprint; refused on a GPU with the fix named', async () => {
  const base = { model: tiny.huggingFaceDir, graphTmpDir: tiny.cacheDir };
  const fp32 = await prepareModel(base);
  const int8 = await prepareModel({ ...base, precision: 'int8' });
  assert.notEqual(int8.graphPath, fp32.graphPath);
  assert.notEqual(int8.fingerprint, fp32.fingerprint, 'int8 vectors are not float32 vectors: one fleet, one precision');
  assert.equal(int8.graphOptions.precision, 'int8');
  const again = await prepareModel({ ...base, precision: 'int8' });
  assert.equal(again.graphCacheHit, true);
  assert.equal(again.graphPath, int8.graphPath);
  await assert.rejects(
    prepareModel({ ...base, precision: 'int8', device: 'cuda' }),
    (e: Error) => e instanceof BadRequestError && /int8 runs on CPUs only.*use precision float16/.test(e.message),
  );
});

test('precision int8 - the weight width this CPU sums exactly by default; 7 and 8 are cached and fingerprinted apart', async () => {
  const base = { model: tiny.huggingFaceDir, graphTmpDir: tiny.cacheDir, precision: 'int8' as const };
  const kernel = await detectInt8Kernel();
  const auto = await prepareModel(base);
  assert.equal(auto.graphOptions.int8WeightBits, kernel.weightBits);
  assert.deepEqual(auto.int8Kernel, kernel, 'the kernel is reported with the prepared model');
  const seven = await prepareModel({ ...base, int8WeightBits: 7 });
  assert.equal(seven.graphOptions.int8WeightBits, 7);
  assert.equal(JSON.parse(readOnnxMetadata(await readFile(seven.graphPath))['bertq.options']!).int8WeightBits, 7);
  if (kernel.exact) {
    assert.notEqual(seven.graphPath, auto.graphPath, 'a graph cached on one CPU kind is never taken for another');
    assert.notEqual(seven.fingerprint, auto.fingerprint, '7- and 8-bit weights compute different vectors');
  } else {
    await assert.rejects(prepareModel({ ...base, int8WeightBits: 8 }), /saturate/);
  }
  // A built int8 .onnx keeps its width: asking for the other one is refused, as any contradiction.
  const onnx = await writeOnnxFolder(join(tiny.root, 'int8-7bit'), tiny.weights, tiny.vocab, {
    ...ONNX_OPTIONS,
    precision: 'int8',
    int8WeightBits: 7,
  });
  await assert.rejects(
    prepareModel({ model: onnx, graphTmpDir: tiny.cacheDir, int8WeightBits: 8 }),
    (e: Error) => e instanceof BadRequestError && /built with 7-bit int8 weights, but 8/.test(e.message),
  );
  const reopened = await prepareModel({ model: onnx, graphTmpDir: tiny.cacheDir });
  assert.equal(reopened.graphOptions.int8WeightBits, 7);
  assert.equal(reopened.int8Kernel?.weightBits, kernel.weightBits);
  await assert.rejects(
    prepareModel({ model: tiny.huggingFaceDir, graphTmpDir: tiny.cacheDir, int8WeightBits: 7 }),
    (e: Error) => e instanceof BadRequestError && /int8WeightBits is for precision int8, not float32/.test(e.message),
  );
});
