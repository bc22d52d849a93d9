/**
 * Run by int8-avx2.test.ts inside `qemu-x86_64 -cpu Haswell`, an x86 CPU with AVX2 and no VNNI, so
 * ONNX Runtime dispatches its saturating AVX2 int8 kernel: prints one JSON line with what the kernel
 * probe found, the smallest cosine to the float32 reference per weight width, and what prepareModel
 * chose and refused. Not a test file itself: node --test runs only *.test.js.
 */
import { prepareModel } from '../src/prepare.js';
import { detectInt8Kernel } from '../src/int8-kernel.js';
import { referenceEncode } from '../src/reference.js';
import { syntheticBertWeights, tinyBertConfig } from '../src/synthetic.js';
import { POOLING_STRATEGIES } from '../src/types.js';
import type { GraphOptions } from '../src/types.js';
import { batchOf, minCosine, runGraph } from './int8-fixtures.js';

const [modelDir, graphTmpDir] = process.argv.slice(2);
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
process.stdout.write(
  `${JSON.stringify({ kernel, minCos, prepared: { bits: prepared.graphOptions.int8WeightBits, kernel: prepared.int8Kernel }, refused })}\n`,
);
