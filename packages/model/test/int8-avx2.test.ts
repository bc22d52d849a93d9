/**
 * int8 on an AVX2-only CPU, run for real on an x86 machine that has more: ONNX Runtime picks the AVX2
 * kernel whose 16-bit pair sums saturate (BERT fell to cosine 0.963 there with 8-bit weights) when
 * the CPU says it has AVX2 and no VNNI. Two ways to make it say so: qemu-x86_64 with `-cpu Haswell`
 * (any x86 host, 20-50x slower: the tiny model only), and scripts/avx2-only's CPUID mask (CPUs with
 * CPUID faulting, native speed: the BERT-base shape too). The bertq side must probe that kernel, choose
 * 7-bit weights, keep every pooling strategy at cosine ≥ 0.99 and refuse 8-bit weights. 8-bit weights
 * are also run, to show the kernel really saturates: without that the test would prove nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
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
const AVX2_ONLY = fileURLToPath(new URL('../../../../scripts/avx2-only/run.mjs', import.meta.url));
/** qemu translates every instruction: node, ONNX Runtime and 36 tiny graphs take ~10 s, not 1. */
const CHECK_DEADLINE_MS = 240_000;

interface CheckResult {
  kernel: { exact: boolean; weightBits: number };
  minCos: Record<string, number>;
  prepared: { bits: number; kernel: { exact: boolean } };
  refused?: string;
  bertBase?: Record<string, number>;
}

/** Runs int8-avx2-check.js under `launcher` (qemu, or the CPUID mask) and parses its answer. */
async function check(launcher: string[], extra: string[] = []): Promise<CheckResult> {
  const model = await tinyModel();
  const graphs = await mkdtemp(join(tmpdir(), 'bertq-avx2-graphs-'));
  try {
    const [cmd, ...args] = launcher;
    const { stdout } = await promisify(execFile)(
      cmd!,
      [...args, process.execPath, CHECK, model.huggingFaceDir, graphs, ...extra],
      { timeout: CHECK_DEADLINE_MS, maxBuffer: 1 << 20 },
    );
    return JSON.parse(stdout.trim().split('\n').at(-1)!) as CheckResult;
  } finally {
    await rm(graphs, { recursive: true, force: true });
  }
}

/** What every AVX2 run must show. */
function assertAvx2Path(got: CheckResult): void {
  assert.equal(got.kernel.exact, false, 'the probe must see the saturating AVX2 kernel');
  assert.equal(got.kernel.weightBits, 7);
  assert.ok(
    got.minCos['8']! < MIN_COSINE,
    `8-bit weights did not saturate (cosine ${got.minCos['8']}): is the kernel really AVX2's?`,
  );
  assert.ok(got.minCos['7']! >= MIN_COSINE, `7-bit weights: min cosine ${got.minCos['7']}`);
  assert.equal(got.prepared.bits, 7, 'prepareModel must choose 7-bit weights on this CPU');
  assert.equal(got.prepared.kernel.exact, false);
  assert.match(got.refused ?? '', /^BAD_REQUEST: .*saturate/, 'asking for 8-bit weights here must be refused');
}

const maskMissing = spawnSync(process.execPath, [AVX2_ONLY, '--check'], { encoding: 'utf8' });

test('int8 - on an emulated AVX2-only CPU (qemu): 7-bit weights chosen, every strategy within cosine 0.99, 8-bit refused', {
  timeout: CHECK_DEADLINE_MS + 30_000,
  skip:
    process.arch !== 'x64'
      ? 'x86-64 only: the saturating kernel is an x86 one'
      : QEMU
        ? false
        : 'needs qemu-x86_64 to emulate an AVX2-only CPU (apt-get install qemu-user; .ci/run does)',
}, async () => {
  const got = await check([QEMU!, '-cpu', 'Haswell']);
  console.log(`# qemu -cpu Haswell: ${JSON.stringify(got)}`);
  assertAvx2Path(got);
});

test('int8 - AVX2-only at native speed (CPUID masked): the same, and the BERT-base shape within cosine 0.99', {
  timeout: CHECK_DEADLINE_MS + 30_000,
  skip: maskMissing.status === 0 ? false : `the CPUID mask cannot run here: ${maskMissing.stderr.trim()}`,
}, async () => {
  const got = await check([process.execPath, AVX2_ONLY], ['--bert-base']);
  console.log(`# AVX2-only (CPUID masked): ${JSON.stringify(got)}`);
  assertAvx2Path(got);
  for (const [strategy, cos] of Object.entries(got.bertBase ?? {}))
    assert.ok(cos >= MIN_COSINE, `BERT-base ${strategy}: min cosine ${cos} with 7-bit weights`);
  assert.equal(Object.keys(got.bertBase ?? {}).length, 4);
});
