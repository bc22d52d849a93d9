/**
 * Graphs with their weights in a data file beside them (ONNX external data), as the graph cache
 * writes them, and workers computing from those weights mapped in place (`sharedWeights`). Real
 * ONNX Runtime sessions; the mapping is read from this process's own /proc/self/maps (the runtime
 * thread lives in this process).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { maxAbsDiff } from './fixtures.js';
import { GraphCache } from '../src/graph-cache.js';
import { buildBertGraph, buildBertGraphFiles } from '../src/graph.js';
import { EXTERNAL_DATA_ALIGNMENT } from '../src/onnx/proto.js';
import { createRuntime, type RuntimeFeeds } from '../src/runtime.js';
import { syntheticBertWeights, tinyBertConfig } from '../src/synthetic.js';
import type { Precision } from '../src/devices.js';
import type { GraphOptions } from '../src/types.js';

// Hidden 128: even int8 weight matrices (128 × 128 bytes) are large enough to leave the model file.
const weights = syntheticBertWeights(tinyBertConfig({ hiddenSize: 128, intermediateSize: 256 }), 5);
const LAYERS = weights.config.numHiddenLayers;

function optionsFor(precision: Precision): GraphOptions {
  return { poolingStrategy: 'REDUCE_MEAN', poolingLayer: [-1], precision, normalize: false, fused: false };
}

function feeds(rows = 3, seq = 7): RuntimeFeeds {
  const ids = new BigInt64Array(rows * seq).map((_, i) => BigInt(1000 + ((i * 7919) % 20_000)));
  const mask = new BigInt64Array(rows * seq).fill(1n);
  const dims = [rows, seq];
  return {
    input_ids: { data: ids, dims },
    attention_mask: { data: mask, dims },
    token_type_ids: { data: new BigInt64Array(rows * seq), dims },
  };
}

/** Regions of this process's address space mapped from `file`. */
function mappedRegions(file: string): number {
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((line) => line.endsWith(file)).length;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bertq-graph-files-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('graph files - weights leave the model file for a data file, each at an aligned offset', () => {
  const files = buildBertGraphFiles(weights, optionsFor('float32'), 'g.onnx.data');
  const oneFile = buildBertGraph(weights, optionsFor('float32'));
  assert.ok(files.model.length < oneFile.length / 20, `model file ${files.model.length} B of ${oneFile.length}`);
  let offset = 0;
  let tensors = 0;
  for (const chunk of files.data) {
    // Padding chunks are ours and all zeros; every other chunk is a tensor and must start aligned.
    if (chunk.every((b) => b === 0) && offset % EXTERNAL_DATA_ALIGNMENT !== 0) {
      offset += chunk.length;
      continue;
    }
    assert.equal(offset % EXTERNAL_DATA_ALIGNMENT, 0, `tensor ${tensors} at offset ${offset}`);
    offset += chunk.length;
    tensors++;
  }
  // Word and position embeddings, and per layer at least the four weight matrices.
  assert.ok(tensors >= 2 + 4 * LAYERS, `${tensors} tensors in the data file`);
});

for (const precision of ['float32', 'int8'] as const) {
  test(`graph files - ${precision}: the graph with a data file computes exactly what the one-file graph does`, async () => {
    await withDir(async (dir) => {
      const files = buildBertGraphFiles(weights, optionsFor(precision), 'g.onnx.data');
      await writeFile(join(dir, 'g.onnx.data'), files.data);
      await writeFile(join(dir, 'g.onnx'), files.model);
      const split = await createRuntime(join(dir, 'g.onnx'), { threads: 1 });
      const whole = await createRuntime(buildBertGraph(weights, optionsFor(precision)), { threads: 1 });
      try {
        const a = await split.run(feeds());
        const b = await whole.run(feeds());
        assert.deepEqual(a.dims, b.dims);
        assert.equal(maxAbsDiff(a.data, b.data), 0);
      } finally {
        await split.close();
        await whole.close();
      }
    });
  });

  test(`shared weights - ${precision}: the session computes from the mapped data file, to the same vectors`, async () => {
    await withDir(async (dir) => {
      const files = buildBertGraphFiles(weights, optionsFor(precision), `${precision}.onnx.data`);
      await writeFile(join(dir, `${precision}.onnx.data`), files.data);
      await writeFile(join(dir, `${precision}.onnx`), files.model);
      const dataFile = join(dir, `${precision}.onnx.data`);
      const own = await createRuntime(join(dir, `${precision}.onnx`), { threads: 1 });
      // Without sharing, the GEMM weights are repacked into private memory: only lookups stay mapped.
      const privately = mappedRegions(dataFile);
      const shared = await createRuntime(join(dir, `${precision}.onnx`), { threads: 1, sharedWeights: true });
      try {
        const mapped = mappedRegions(dataFile) - privately;
        assert.ok(privately <= 3, `${privately} regions mapped by a session with its own weights`);
        assert.ok(mapped >= 4 * LAYERS, `${mapped} regions mapped by a session sharing the weights`);
        const a = await shared.run(feeds());
        const b = await own.run(feeds());
        assert.ok(maxAbsDiff(a.data, b.data) < 1e-4, `max |Δ| ${maxAbsDiff(a.data, b.data)}`);
      } finally {
        await shared.close();
        await own.close();
      }
    });
  });
}

test('graph cache - writes the data file, then the model file; a model file without its data is a miss', async () => {
  await withDir(async (dir) => {
    const cache = new GraphCache(dir);
    const key = 'k1';
    assert.equal(await cache.get(key), undefined);
    const files = buildBertGraphFiles(weights, optionsFor('int8'), cache.dataLocationFor(key));
    const path = await cache.put(key, files);
    assert.equal(path, cache.pathFor(key));
    assert.equal(await cache.get(key), path);
    assert.deepEqual((await readdir(dir)).sort(), [`${key}.onnx`, `${key}.onnx.data`], 'no temporary file is left');
    await unlink(join(dir, cache.dataLocationFor(key)));
    assert.equal(await cache.get(key), undefined, 'its data is gone: build it again rather than fail to open it');
    assert.ok(existsSync(path));
  });
});
