import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModelError } from '@bertq/protocol';
import {
  openSafetensors,
  openSafetensorsIndex,
  openSafetensorsSet,
  writeSafetensors,
  writeShardedSafetensors,
} from '../src/safetensors.js';
import {
  float32ToBfloat16Bits,
  float32ToBfloat16Bytes,
  float32ToFloat16Bytes,
  float16BytesToFloat32,
} from '../src/tensorbundle/dtypes.js';
import type { Tensor } from '../src/types.js';
import { float32ToFloat16Bits } from '@bertq/protocol';

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bertq-safetensors-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function ramp(shape: number[], scale = 0.01): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, data: Float32Array.from({ length: n }, (_, i) => (i - n / 2) * scale) };
}

const isModelErrorWith =
  (...parts: string[]) =>
  (e: unknown): boolean =>
    e instanceof ModelError && parts.every((p) => e.message.includes(p));

test('safetensors - write then read returns the same float32 tensors and metadata', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'model.safetensors');
  const tensors = new Map([
    ['embeddings.word_embeddings.weight', ramp([5, 3])],
    ['pooler.dense.bias', ramp([3])],
    ['odd', ramp([7])],
  ]);
  await writeSafetensors(path, tensors, { format: 'pt', note: 'fixture' });
  const bytes = await readFile(path);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  assert.equal((8 + headerLength) % 8, 0, 'data starts 8-byte aligned');
  const f = await openSafetensors(path);
  assert.deepEqual(f.metadata, { format: 'pt', note: 'fixture' });
  assert.deepEqual([...f.tensors.keys()].sort(), [...tensors.keys()].sort());
  for (const [name, t0] of tensors) {
    assert.deepEqual(f.tensors.get(name)!.shape, t0.shape);
    assert.equal(f.tensors.get(name)!.dtype, 'F32');
    assert.deepEqual(await f.readTensor(name), t0.data);
  }
  await f.close();
});

test('safetensors - F16, BF16 and F64 tensors read as float32', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'half.safetensors');
  const exact = Float32Array.of(1, -2, 0.5, 3.25, 0, -0.0078125);
  await writeSafetensors(
    path,
    new Map([
      ['h', { dtype: 'F16', shape: [2, 3], bytes: float32ToFloat16Bytes(exact) }],
      ['b', { dtype: 'BF16', shape: [6], bytes: float32ToBfloat16Bytes(exact) }],
      ['d', { dtype: 'F64', shape: [6], bytes: new Uint8Array(Float64Array.from(exact).buffer) }],
      ['ids', { dtype: 'I64', shape: [1, 2], bytes: new Uint8Array(new BigInt64Array([0n, 1n]).buffer) }],
    ]),
  );
  const f = await openSafetensors(path);
  assert.deepEqual(await f.readTensor('h'), exact);
  assert.deepEqual(await f.readTensor('b'), exact);
  assert.deepEqual(await f.readTensor('d'), exact);
  await assert.rejects(f.readTensor('ids'), isModelErrorWith('ids', path, 'I64'));
  await assert.rejects(f.readTensor('absent'), isModelErrorWith('absent', path));
  await f.close();
});

test('dtypes - float16 and bfloat16 encodings match IEEE bit patterns, rounding to nearest even', () => {
  assert.equal(float32ToFloat16Bits(1), 0x3c00);
  assert.equal(float32ToFloat16Bits(-2), 0xc000);
  assert.equal(float32ToFloat16Bits(65504), 0x7bff);
  assert.equal(float32ToFloat16Bits(1e6), 0x7c00);
  assert.equal(float32ToFloat16Bits(2 ** -24), 0x0001);
  assert.equal(float32ToFloat16Bits(1 + 2 ** -11), 0x3c00, 'a tie rounds to the even mantissa');
  assert.equal(float32ToFloat16Bits(1 + 3 * 2 ** -11), 0x3c02, 'a tie rounds up to the even mantissa');
  assert.ok(
    Number.isNaN(float16BytesToFloat32(new Uint8Array(new Uint16Array([float32ToFloat16Bits(NaN)]).buffer))[0]),
  );
  assert.equal(float32ToBfloat16Bits(1), 0x3f80);
  assert.equal(float32ToBfloat16Bits(-2), 0xc000);
  assert.equal(float32ToBfloat16Bits(1 + 2 ** -8), 0x3f80, 'a tie rounds to the even mantissa');
  assert.deepEqual(
    float16BytesToFloat32(new Uint8Array(new Uint16Array([0x3555, 0x8001, 0xfc00]).buffer)),
    Float32Array.of(0.333251953125, -(2 ** -24), -Infinity),
  );
});

test('safetensors - sharded weights load through model.safetensors.index.json', async (t) => {
  const dir = await tempDir(t);
  const tensors = new Map([
    ['a', ramp([10])],
    ['b', ramp([10])],
    ['c', ramp([10])],
  ]);
  const { indexPath, shardPaths } = await writeShardedSafetensors(dir, tensors, 80);
  assert.equal(shardPaths.length, 2);
  assert.deepEqual(shardPaths, [
    join(dir, 'model-00001-of-00002.safetensors'),
    join(dir, 'model-00002-of-00002.safetensors'),
  ]);
  const set = await openSafetensorsIndex(indexPath);
  for (const [name, t0] of tensors) assert.deepEqual(await set.readTensor(name), t0.data);
  assert.equal(set.tensors.get('c')!.file, shardPaths[1]);
  await set.close();

  // An index that places a tensor in the wrong shard is refused, naming the index.
  const index = JSON.parse(await readFile(indexPath, 'utf8')) as { weight_map: Record<string, string> };
  index.weight_map.c = 'model-00001-of-00002.safetensors';
  await writeFile(indexPath, JSON.stringify(index));
  await assert.rejects(openSafetensorsIndex(indexPath), isModelErrorWith(indexPath, 'c'));

  // A missing shard is named by its path.
  index.weight_map.c = 'model-00002-of-00002.safetensors';
  await writeFile(indexPath, JSON.stringify(index));
  await unlink(shardPaths[1]!);
  await assert.rejects(openSafetensorsIndex(indexPath), isModelErrorWith(shardPaths[1]!, 'does not exist'));
});

test('safetensors - the same tensor in two files is refused', async (t) => {
  const dir = await tempDir(t);
  const p1 = join(dir, 'one.safetensors');
  const p2 = join(dir, 'two.safetensors');
  await writeSafetensors(p1, new Map([['x', ramp([2])]]));
  await writeSafetensors(p2, new Map([['x', ramp([2])]]));
  await assert.rejects(openSafetensorsSet([p1, p2]), isModelErrorWith('x', p1, p2));
});

test('safetensors - truncated and invalid files are reported by path', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'model.safetensors');
  await writeSafetensors(path, new Map([['w', ramp([64])]]));
  const good = await readFile(path);

  await truncate(path, good.length - 4);
  await assert.rejects(openSafetensors(path), isModelErrorWith(path, 'truncated', 'w'));

  await writeFile(path, good.subarray(0, 5));
  await assert.rejects(openSafetensors(path), isModelErrorWith(path, 'too short'));

  const hugeHeader = Buffer.from(good);
  hugeHeader.writeBigUInt64LE(1n << 40n, 0);
  await writeFile(path, hugeHeader);
  await assert.rejects(openSafetensors(path), isModelErrorWith(path, 'header'));

  const longHeader = Buffer.from(good);
  longHeader.writeBigUInt64LE(BigInt(good.length), 0);
  await writeFile(path, longHeader);
  await assert.rejects(openSafetensors(path), isModelErrorWith(path, 'truncated'));

  const notJson = Buffer.from(good);
  notJson[8] = 0x78; // '{' → 'x'
  await writeFile(path, notJson);
  await assert.rejects(openSafetensors(path), isModelErrorWith(path, 'not valid JSON'));

  const header = JSON.stringify({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } });
  const mismatch = Buffer.concat([Buffer.alloc(8), Buffer.from(header), Buffer.alloc(16)]);
  mismatch.writeBigUInt64LE(BigInt(header.length), 0);
  await writeFile(path, mismatch);
  await assert.rejects(openSafetensors(path), isModelErrorWith(path, 'w', '12 bytes'));

  await assert.rejects(
    openSafetensors(join(dir, 'absent.safetensors')),
    isModelErrorWith(join(dir, 'absent.safetensors'), 'does not exist'),
  );
});
