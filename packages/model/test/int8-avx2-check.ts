/**
 * Run by int8-avx2.test.ts on an AVX2-only x86 CPU (under `qemu-x86_64 -cpu Haswell`, or natively
 * with scripts/avx2-only's CPUID mask), so ONNX Runtime dispatches its saturating AVX2 int8 kernel:
 * prints one JSON line with what the kernel probe found, the smallest cosine to the float32 reference
 * per weight width, and what prepareModel chose and refused; with --bert-base also the smallest
 * cosine of the 7-bit graph to the float32 graph at BERT-base size. Not a test file itself: node
 * --test runs only *.test.js.
 */
import { prepareModel } from '../src/prepare.js';
import { detectInt8Kernel } from '../src/int8-kernel.js';
import { referenceEncode } from '../src/reference.js';
import { bertBaseConfig, syntheticBertWeights, tinyBertConfig } from '../src/synthetic.js';
import { POOLING_STRATEGIES } from '../src/types.js';
import type { GraphOptions } from '../src/types.js';
import { batchOf, minCosine, runGraph } from './int8-fixtures.js';

const [modelDir, graphTmpDir] = process.argv.slice(2);
const bertBase = process.argv.includes('--bert-base');
const kernel = await detectInt8Kernel();
const config = tinyBertConfig();
const weights = syntheticBertWeights(config, 7);
const batch = batchOf(6, 20, config.vocabSize);
const minCos: Record<string, number> = { 7: 1, 8: 1 };
for (const int8WeightBits of [7, 8] as const) {
  for (const poolingStrategy of POOLING_STRATEGIES) {
    const options: GraphOptions = {
      poolingStrategy,
      poolingLayer: [-1],
      precision: 'int8',
      normalize: false,
      fused: false,
      int8WeightBits,
    };
    const got = await runGraph(weights, options, batch);
    const want = referenceEncode(weights, batch, { poolingStrategy, poolingLayer: [-1] });
    minCos[int8WeightBits] = Math.min(minCos[int8WeightBits]!, minCosine(got.data, want.data, got.dims.at(-1)!));
  }
}
const prepared = await prepareModel({ model: modelDir!, graphTmpDir: graphTmpDir!, precision: 'int8' });
const refused = await prepareModel({
  model: modelDir!,
  graphTmpDir: graphTmpDir!,
  precision: 'int8',
  int8WeightBits: 8,
})
  .then(() => undefined)
  .catch((err: { code?: string; message: string }) => `${err.code}: ${err.message}`);
/** BERT-base size, a small vocabulary: the 7-bit graph against the float32 graph, the worst row. */
async function bertBaseMinCosine(): Promise<Record<string, number>> {
  const base = { ...bertBaseConfig(), vocabSize: 2000 };
  const w = syntheticBertWeights(base, 11);
  const b = batchOf(8, 25, base.vocabSize);
  const out: Record<string, number> = {};
  for (const poolingStrategy of ['NONE', 'REDUCE_MEAN', 'REDUCE_MAX', 'CLS_POOLED'] as const) {
    const options: GraphOptions = {
      poolingStrategy,
      poolingLayer: [-1],
      precision: 'float32',
      normalize: false,
      fused: false,
    };
    const f32 = await runGraph(w, options, b);
    const int8 = await runGraph(w, { ...options, precision: 'int8', int8WeightBits: 7 }, b);
    out[poolingStrategy] = minCosine(f32.data, int8.data, f32.dims.at(-1)!);
  }
  return out;
}

const prepareSummary = { bits: prepared.graphOptions.int8WeightBits, kernel: prepared.int8Kernel };
const base = bertBase ? { bertBase: await bertBaseMinCosine() } : {};
process.stdout.write(`${JSON.stringify({ kernel, minCos, prepared: prepareSummary, refused, ...base })}\n`);
