import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ModelError } from '@bertq/protocol';
import { crc32c, crc32cExtend, maskCrc32c, unmaskCrc32c } from '../src/tensorbundle/crc32c.js';
import { buildTable, readTable } from '../src/tensorbundle/sstable.js';
import type { TableEntry } from '../src/tensorbundle/sstable.js';
import { DT, decodeBundleEntry, encodeBundleEntry, encodeBundleHeader } from '../src/tensorbundle/bundle-proto.js';
import { checkpointDataPath, listCheckpointVariables, openCheckpoint } from '../src/tensorbundle/reader.js';
import { writeCheckpoint } from '../src/tensorbundle/writer.js';
import { float32ToBfloat16Bytes, float32ToFloat16Bytes } from '../src/tensorbundle/dtypes.js';
import type { Tensor } from '../src/types.js';

const MODELS = fileURLToPath(new URL('../../../../../shared/models/', import.meta.url));
const REAL = [
  {
    dir: 'google-bert-L4-H256-index',
    variables: 78,
    parameters: 11_267_900,
    shardBytes: 45_071_600,
    hidden: 256,
    layers: 4,
  },
  {
    dir: 'google-bert-L8-H512-index',
    variables: 142,
    parameters: 41_668_412,
    shardBytes: 166_673_648,
    hidden: 512,
    layers: 8,
  },
];

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bertq-tensorbundle-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function randomTensor(shape: number[], seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    data[i] = ((s >>> 0) / 0xffffffff - 0.5) * 2;
  }
  return { shape, data };
}

test('crc32c - matches the RFC 3720 test vectors, aligned or not', () => {
  assert.equal(crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  const ascending = Uint8Array.from({ length: 32 }, (_, i) => i);
  assert.equal(crc32c(ascending), 0x46dd794e);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
  // An odd byte offset forces the byte-wise path; the result must not change.
  const shifted = new Uint8Array(33);
  shifted.set(ascending, 1);
  assert.equal(crc32c(shifted.subarray(1)), 0x46dd794e);
  assert.equal(crc32cExtend(crc32c(ascending.subarray(0, 13)), ascending.subarray(13)), 0x46dd794e);
});

test('crc32c - masking round-trips and changes the value', () => {
  for (const v of [0, 1, 0xe3069283, 0xffffffff]) {
    assert.notEqual(maskCrc32c(v), v);
    assert.equal(unmaskCrc32c(maskCrc32c(v)), v);
  }
});

for (const real of REAL) {
  const prefix = join(MODELS, real.dir, 'bert_model.ckpt');

  test(`tensorbundle - lists TensorFlow's ${real.dir} index: ${real.variables} variables, ${real.parameters} parameters`, async (t) => {
    if (!existsSync(`${prefix}.index`)) return t.skip(`${prefix}.index is absent (shared model files not mounted)`);
    const list = await listCheckpointVariables(prefix);
    assert.equal(list.variableCount, real.variables);
    assert.equal(list.parameterCount, real.parameters);
    assert.deepEqual(list.shardBytes, [real.shardBytes]);
    assert.deepEqual(list.nonFloatVariables, []);
    const shapes = new Map(list.variables.map((v) => [v.name, v.shape]));
    const h = real.hidden;
    assert.deepEqual(shapes.get('bert/encoder/layer_0/attention/self/query/kernel'), [h, h]);
    assert.deepEqual(shapes.get(`bert/encoder/layer_${real.layers - 1}/intermediate/dense/kernel`), [h, 4 * h]);
    assert.deepEqual(shapes.get(`bert/encoder/layer_${real.layers - 1}/output/dense/kernel`), [4 * h, h]);
    assert.deepEqual(shapes.get('bert/embeddings/word_embeddings'), [30522, h]);
    assert.deepEqual(shapes.get('bert/embeddings/position_embeddings'), [512, h]);
    assert.deepEqual(shapes.get('bert/embeddings/LayerNorm/gamma'), [h]);
    assert.deepEqual(shapes.get('bert/pooler/dense/kernel'), [h, h]);
    assert.equal(shapes.has(`bert/encoder/layer_${real.layers}/output/dense/kernel`), false);
    assert.ok(list.variables.every((v) => v.dtype === 'float32'));
  });

  test(`tensorbundle - ${real.dir} entries tile the data shard with no gap or overlap`, async (t) => {
    if (!existsSync(`${prefix}.index`)) return t.skip(`${prefix}.index is absent (shared model files not mounted)`);
    const ckpt = await openCheckpoint(prefix);
    assert.equal(ckpt.header.numShards, 1);
    assert.equal(ckpt.header.endianness, 'little');
    const entries = [...ckpt.entries.values()].sort((a, b) => a.offset - b.offset);
    let end = 0;
    for (const e of entries) {
      assert.equal(e.offset, end, `${e.name} starts where the previous tensor ends`);
      assert.equal(e.size, 4 * e.shape.reduce((a, b) => a * b, 1), `${e.name} holds 4 bytes per element`);
      end += e.size;
    }
    assert.equal(end, real.shardBytes);
  });

  test(`tensorbundle - reading ${real.dir} without its data shard names the missing file`, async (t) => {
    if (!existsSync(`${prefix}.index`)) return t.skip(`${prefix}.index is absent (shared model files not mounted)`);
    const ckpt = await openCheckpoint(prefix);
    const dataPath = checkpointDataPath(prefix, 0, 1);
    assert.deepEqual(ckpt.dataFiles, [dataPath]);
    const missing = (err: unknown): boolean =>
      err instanceof ModelError && err.message.includes(dataPath) && err.message.includes('missing');
    await assert.rejects(ckpt.readTensor('bert/encoder/layer_0/attention/self/query/kernel'), missing);
    await assert.rejects(ckpt.verifyDataFiles(), missing);
    await ckpt.close();
  });

  test(`tensorbundle - the writer's table is byte-identical to TensorFlow's ${real.dir} index`, async (t) => {
    if (!existsSync(`${prefix}.index`)) return t.skip(`${prefix}.index is absent (shared model files not mounted)`);
    const original = await readFile(`${prefix}.index`);
    const entries = readTable(original, `${prefix}.index`);
    const rebuilt: TableEntry[] = [
      { key: new Uint8Array(0), value: encodeBundleHeader({ numShards: 1, producer: 1 }) },
    ];
    for (const e of entries.slice(1)) {
      const decoded = decodeBundleEntry(e.value);
      rebuilt.push({ key: e.key, value: encodeBundleEntry({ ...decoded, dtypeCode: DT.float32 }) });
    }
    assert.deepEqual(Buffer.from(buildTable(rebuilt)), original);
  });
}

test('tensorbundle - write then read returns the same tensors across many small blocks', async (t) => {
  const dir = await tempDir(t);
  const vars = new Map<string, Tensor>();
  for (let i = 0; i < 40; i++) vars.set(`bert/encoder/layer_${i}/output/dense/kernel`, randomTensor([3, 5], i + 1));
  vars.set('bert/embeddings/word_embeddings', randomTensor([7, 4], 99));
  vars.set('scalar', { shape: [], data: Float32Array.of(3.5) });
  const written = await writeCheckpoint(join(dir, 'sub', 'model.ckpt'), vars, { blockSize: 128 });
  assert.equal(written.dataPath, join(dir, 'sub', 'model.ckpt.data-00000-of-00001'));

  // Small blocks mean many data blocks (each with a trailer and an index entry): a larger index.
  const indexBytes = await readFile(written.indexPath);
  const table = readTable(indexBytes, written.indexPath);
  assert.equal(table.length, vars.size + 1);
  assert.ok(
    indexBytes.length > buildTable(table).length + 10 * 5,
    'the 128-byte-block index holds more than ten blocks',
  );

  const ckpt = await openCheckpoint(`${written.prefix}.index`);
  assert.equal(ckpt.entries.size, vars.size);
  for (const [name, tensor] of vars) {
    assert.deepEqual(ckpt.entries.get(name)!.shape, tensor.shape);
    assert.deepEqual(await ckpt.readTensor(name), tensor.data, name);
  }
  await ckpt.verifyDataFiles();
  await ckpt.close();
});

test('tensorbundle - float16, bfloat16 and float64 variables read as float32; int64 is listed but refused', async (t) => {
  const dir = await tempDir(t);
  const exact = Float32Array.of(1, -2, 0.5, 0.25, 1024, -0.125);
  const vars = new Map<
    string,
    Tensor | { dtype: 'float16' | 'bfloat16' | 'float64' | 'int64'; shape: number[]; bytes: Uint8Array }
  >([
    ['half', { dtype: 'float16', shape: [2, 3], bytes: float32ToFloat16Bytes(exact) }],
    ['brain', { dtype: 'bfloat16', shape: [6], bytes: float32ToBfloat16Bytes(exact) }],
    ['double', { dtype: 'float64', shape: [6], bytes: new Uint8Array(Float64Array.from(exact).buffer) }],
    ['global_step', { dtype: 'int64', shape: [], bytes: new Uint8Array(new BigInt64Array([1234n]).buffer) }],
  ]);
  const { prefix } = await writeCheckpoint(join(dir, 'm.ckpt'), vars);
  const ckpt = await openCheckpoint(prefix);
  assert.deepEqual(await ckpt.readTensor('half'), exact);
  assert.deepEqual(await ckpt.readTensor('brain'), exact);
  assert.deepEqual(await ckpt.readTensor('double'), exact);
  assert.equal(ckpt.entries.get('global_step')!.dtype, 'int64');
  const summary = ckpt.summary();
  assert.deepEqual(summary.nonFloatVariables, ['global_step']);
  assert.equal(summary.parameterCount, 18);
  await assert.rejects(
    ckpt.readTensor('global_step'),
    (e: unknown) => e instanceof ModelError && /global_step.*int64/.test(e.message),
  );
  await assert.rejects(ckpt.readTensor('nope'), (e: unknown) => e instanceof ModelError && e.message.includes('nope'));
  await ckpt.close();
});

test('tensorbundle - a corrupted data byte fails the CRC naming the variable and the file', async (t) => {
  const dir = await tempDir(t);
  const vars = new Map([
    ['a', randomTensor([16], 1)],
    ['b', randomTensor([16], 2)],
  ]);
  const { prefix, dataPath } = await writeCheckpoint(join(dir, 'm.ckpt'), vars);
  const bytes = await readFile(dataPath);
  bytes[64 + 5] ^= 0x01; // inside 'b' (names are written in order; 'a' takes bytes 0..63)
  await writeFile(dataPath, bytes);
  const ckpt = await openCheckpoint(prefix);
  assert.deepEqual(await ckpt.readTensor('a'), vars.get('a')!.data);
  await assert.rejects(
    ckpt.readTensor('b'),
    (e: unknown) =>
      e instanceof ModelError &&
      e.message.includes('variable b') &&
      e.message.includes(dataPath) &&
      /CRC/.test(e.message),
  );
  await ckpt.close();
});

test('tensorbundle - a corrupted or truncated index names the index file', async (t) => {
  const dir = await tempDir(t);
  const { prefix, indexPath } = await writeCheckpoint(join(dir, 'm.ckpt'), new Map([['a', randomTensor([4], 3)]]));
  const good = await readFile(indexPath);
  const flipped = Buffer.from(good);
  flipped[3] ^= 0x40;
  await writeFile(indexPath, flipped);
  await assert.rejects(
    openCheckpoint(prefix),
    (e: unknown) => e instanceof ModelError && e.message.includes(indexPath) && /CRC/.test(e.message),
  );
  await writeFile(indexPath, good.subarray(0, good.length - 10));
  await assert.rejects(
    openCheckpoint(prefix),
    (e: unknown) => e instanceof ModelError && e.message.includes(indexPath),
  );
  await writeFile(indexPath, 'this is not a table');
  await assert.rejects(
    openCheckpoint(prefix),
    (e: unknown) => e instanceof ModelError && e.message.includes(indexPath),
  );
  await assert.rejects(
    openCheckpoint(join(dir, 'absent.ckpt')),
    (e: unknown) =>
      e instanceof ModelError &&
      e.message.includes(join(dir, 'absent.ckpt.index')) &&
      e.message.includes('does not exist'),
  );
});

test('tensorbundle - a truncated data shard is reported with its path and sizes', async (t) => {
  const dir = await tempDir(t);
  const { prefix, dataPath } = await writeCheckpoint(
    join(dir, 'm.ckpt'),
    new Map([
      ['a', randomTensor([8], 4)],
      ['b', randomTensor([8], 5)],
    ]),
  );
  await truncate(dataPath, 40);
  const ckpt = await openCheckpoint(prefix);
  await assert.rejects(
    ckpt.verifyDataFiles(),
    (e: unknown) => e instanceof ModelError && e.message.includes(dataPath) && /truncated.*40 bytes/.test(e.message),
  );
  await assert.rejects(
    ckpt.readTensor('b'),
    (e: unknown) => e instanceof ModelError && e.message.includes(dataPath) && e.message.includes('variable b'),
  );
  await ckpt.close();
});
