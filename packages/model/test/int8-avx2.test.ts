/**
 * int8 on an AVX2-only CPU, run for real on any x86 machine: qemu-x86_64 with `-cpu Haswell` reports
 * AVX2 and no VNNI, so ONNX Runtime picks the AVX2 kernel whose 16-bit pair sums saturate (BERT fell
 * to cosine 0.963 there with 8-bit weights). The bertq side must probe that kernel, choose 7-bit
 * weights, keep every pooling strategy at cosine ≥ 0.99 and refuse 8-bit weights. 8-bit weights are
 * also run, to show the emulated kernel really saturates: without that the test would prove nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { MIN_COSINE } from './int8-fixtures.js';
import { tinyModel } from './fixtures.js';

const QEMU = ['/usr/bin/qemu-x86_64', '/usr/local/bin/qemu-x86_64'].find((p) => existsSync(p));
const CHECK = fileURLToPath(new URL('./int8-avx2-check.js', import.meta.url));
/** qemu translates every instruction: node, ONNX Runtime and 36 tiny graphs take ~10 s, not 1. */
const CHECK_DEADLINE_MS = 240_000;

test('int8 - on an emulated AVX2-only CPU: 7-bit weights chosen, every strategy within cosine 0.99, 8-bit refused', {
  timeout: CHECK_DEADLINE_MS + 30_000,
  skip:
    process.arch !== 'x64'
      ? 'x86-64 only: the saturating kernel is an x86 one'
      : QEMU
        ? false
        : 'needs qemu-x86_64 to emulate an AVX2-only CPU (apt-get install qemu-user; .ci/run does)',
}, async () => {
  const model = await tinyModel();
  const graphs = await mkdtemp(join(tmpdir(), 'bertq-avx2-graphs-'));
  try {
    const { stdout } = await promisify(execFile)(
      QEMU!,
      ['-cpu', 'Haswell', process.execPath, CHECK, model.huggingFaceDir, graphs],
      { timeout: CHECK_DEADLINE_MS, maxBuffer: 1 << 20 },
    );
    const got = JSON.parse(stdout.trim().split('\n').at(-1)!);
    console.log(`# emulated AVX2: ${JSON.stringify(got)}`);
    assert.equal(got.kernel.exact, false, 'the probe must see the saturating AVX2 kernel');
    assert.equal(got.kernel.weightBits, 7);
    assert.ok(
      got.minCos['8'] < MIN_COSINE,
      `8-bit weights did not saturate (cosine ${got.minCos['8']}): is the kernel really AVX2's?`,
    );
    assert.ok(got.minCos['7'] >= MIN_COSINE, `7-bit weights: min cosine ${got.minCos['7']}`);
    assert.equal(got.prepared.bits, 7, 'prepareModel must choose 7-bit weights on this CPU');
    assert.equal(got.prepared.kernel.exact, false);
    assert.match(got.refused ?? '', /^BAD_REQUEST: .*saturate/, 'asking for 8-bit weights here must be refused');
  } finally {
    await rm(graphs, { recursive: true, force: true });
  }
});
