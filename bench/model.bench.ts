/**
 * The model path on a BERT-base-shaped model (12 layers, hidden 768, random weights made on the fly)
 * at maxSeqLen 25: sentences/s and achieved GFLOP/s of bertq's full pipeline (tokenize → graph →
 * pooled vectors) and of the bare graph, beside a plain matrix multiply in the same ONNX Runtime (the
 * machine's practical ceiling); fused vs plain graphs; and the speed gained by pooling a shallow layer.
 *
 *   npm run build && node bench/dist/model.bench.js [--quick]
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Encoder,
  GraphBuilder,
  bertBaseConfig,
  createRuntime,
  syntheticBertWeights,
  syntheticVocab,
  writeHuggingFaceFolder,
} from '@bertq/model';
import type { BertConfig, EncoderOptions, Runtime } from '@bertq/model';
import { measure, systemLine, table } from './system.js';

const SEQ_LEN = 25;
const BATCHES = [1, 16, 64, 256];
const quick = process.argv.includes('--quick');
/** Seconds each measurement runs at least (after one warm-up run). */
const MIN_SECONDS = quick ? 1 : 4;
const SHARED_VOCAB = fileURLToPath(new URL('../../../shared/models/bert-base-uncased-vocab.txt', import.meta.url));

/** Multiply-adds ×2 of one forward pass: the four attention projections, the FFN, QKᵀ and PV. */
function forwardFlops(c: BertConfig, rows: number, seqLen: number, layers = c.numHiddenLayers): number {
  const perToken =
    2 * (4 * c.hiddenSize * c.hiddenSize + 2 * c.hiddenSize * c.intermediateSize) + 2 * 2 * seqLen * c.hiddenSize;
  return rows * seqLen * layers * perToken;
}

/** Sentences that tokenize to at least SEQ_LEN tokens, so every row is exactly SEQ_LEN after truncation. */
function sentences(n: number, vocab: string[]): string[] {
  const words = vocab.filter((w) => /^[a-z]{3,}$/.test(w));
  let s = 12345;
  const next = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0), s);
  return Array.from({ length: n }, () =>
    Array.from({ length: SEQ_LEN + 5 }, () => words[next() % words.length]).join(' '),
  );
}

/** GEMM pairs chained per measurement: enough work that the input/output copies do not count. */
const GEMM_CHAIN = 4;

/**
 * The ceiling: BERT's FFN GEMMs ([tokens, hidden]·[hidden, intermediate]·[intermediate, hidden]),
 * GEMM_CHAIN times in a row, and nothing else — what ONNX Runtime's matrix multiply reaches on this
 * machine for the same shapes.
 */
async function gemmRuntime(c: BertConfig, threads: number): Promise<Runtime> {
  const g = new GraphBuilder();
  let x = g.input('x', 1, ['m', c.hiddenSize]);
  const fill = (n: number) => new Float32Array(n).map((_, i) => (((i * 7919) % 1000) - 500) / 2e4);
  for (let k = 0; k < GEMM_CHAIN; k++) {
    const up = g.initializer('up', fill(c.hiddenSize * c.intermediateSize), [c.hiddenSize, c.intermediateSize]);
    const down = g.initializer('down', fill(c.intermediateSize * c.hiddenSize), [c.intermediateSize, c.hiddenSize]);
    x = g.op('MatMul', [g.op('MatMul', [x, up]), down]);
  }
  g.expose(x, 'y', 1, ['m', c.hiddenSize]);
  const bytes = g.build({ graphName: 'gemm', opsets: [{ domain: '', version: 17 }], producerVersion: 'bench' });
  return createRuntime(bytes, { threads });
}

async function main(): Promise<void> {
  const threads = cpus().length;
  const config = bertBaseConfig();
  const root = await mkdtemp(join(tmpdir(), 'bertq-bench-'));
  try {
    const vocab = existsSync(SHARED_VOCAB) ? undefined : syntheticVocab();
    const vocabTokens =
      vocab ?? (await import('node:fs/promises')).readFile(SHARED_VOCAB, 'utf8').then((t) => t.split('\n'));
    const weights = syntheticBertWeights({ ...config, vocabSize: vocab ? vocab.length : config.vocabSize }, 1);
    const dir = await writeHuggingFaceFolder(
      join(root, 'bert-base'),
      weights,
      vocab ? { tokens: vocab } : { file: SHARED_VOCAB },
    );
    const texts = sentences(Math.max(...BATCHES), await vocabTokens);
    const base: EncoderOptions = {
      model: dir,
      graphTmpDir: join(root, 'graphs'),
      maxSeqLen: SEQ_LEN,
      threads,
      poolingLayer: -1,
      fused: true,
    };

    console.log(systemLine());
    console.log(
      `Model: BERT-base shape (12 layers, hidden 768, intermediate 3072), random weights; maxSeqLen ${SEQ_LEN}; ${threads} inference threads\n`,
    );

    // Ceiling: one GEMM of the FFN's shape.
    const gemm = await gemmRuntime(config, threads);
    const gemmRate = new Map<number, number>();
    for (const b of BATCHES) {
      const m = b * SEQ_LEN;
      const x = new Float32Array(m * config.hiddenSize).fill(0.01);
      const t = await measure(() => gemm.run({ x: { data: x, dims: [m, config.hiddenSize] } }), MIN_SECONDS / 2);
      gemmRate.set(b, (GEMM_CHAIN * 2 * 2 * m * config.hiddenSize * config.intermediateSize) / t.seconds / 1e9);
    }
    await gemm.close();

    const rows: Array<Array<string | number>> = [];
    const enc = await Encoder.load(base);
    // The same cached graph file, opened in ONNX Runtime directly: bertq's overhead is the difference.
    const rt = await createRuntime(enc.config.graphPath, { threads });
    for (const b of BATCHES) {
      const batch = texts.slice(0, b);
      const pipeline = await measure(() => enc.encode(batch), MIN_SECONDS);
      const tokenized = await enc.tokenize(batch);
      const collated = enc.tokenizer.collate(tokenized);
      const dims = [collated.rows, collated.seqLen];
      const feeds = {
        input_ids: { data: collated.inputIds, dims },
        attention_mask: { data: collated.attentionMask, dims },
        token_type_ids: { data: collated.tokenTypeIds, dims },
      };
      const bare = await measure(() => rt.run(feeds), MIN_SECONDS);
      const flops = forwardFlops(config, b, SEQ_LEN);
      const pipeGflops = flops / pipeline.seconds / 1e9;
      rows.push([
        b,
        (b / pipeline.seconds).toFixed(1),
        pipeGflops.toFixed(1),
        (b / bare.seconds).toFixed(1),
        (flops / bare.seconds / 1e9).toFixed(1),
        gemmRate.get(b)!.toFixed(1),
        `${((100 * pipeGflops) / gemmRate.get(b)!).toFixed(0)}%`,
      ]);
    }
    await Promise.all([enc.close(), rt.close()]);
    console.log(
      'bertq pipeline (Encoder.encode: tokenize + graph + pooling) vs bare graph vs plain GEMM, REDUCE_MEAN layer -1, fused ops',
    );
    console.log(
      table(
        [
          'batch',
          'pipeline sent/s',
          'pipeline GFLOP/s',
          'graph sent/s',
          'graph GFLOP/s',
          'GEMM GFLOP/s',
          'pipeline / GEMM',
        ],
        rows,
      ),
    );

    // Fused transformer operators vs the plain-ONNX graph, and shallow vs deep pooling, at batch 64.
    const b = 64;
    const batch = texts.slice(0, b);
    const variants: Array<[string, EncoderOptions, number]> = [
      ['fused ops, layer -1', { ...base, fused: true }, 12],
      ['plain ONNX ops, layer -1', { ...base, fused: false }, 12],
      ['fused ops, layer -12', { ...base, fused: true, poolingLayer: -12 }, 1],
      ['fused ops, layer -2 (default)', { ...base, fused: true, poolingLayer: -2 }, 11],
      ['fused ops, float16, layer -1', { ...base, fused: true, precision: 'float16' }, 12],
      ['plain ONNX ops, int8, layer -1', { ...base, fused: false, precision: 'int8' }, 12],
      ['fused ops, int8, layer -1', { ...base, fused: true, precision: 'int8' }, 12],
      ['plain ONNX ops, int8, layer -2 (default)', { ...base, fused: false, precision: 'int8', poolingLayer: -2 }, 11],
    ];
    const vrows: Array<Array<string | number>> = [];
    const rate = new Map<string, number>();
    for (const [name, opts, layers] of variants) {
      const e = await Encoder.load(opts);
      const t = await measure(() => e.encode(batch), MIN_SECONDS);
      await e.close();
      rate.set(name, b / t.seconds);
      vrows.push([
        name,
        layers,
        (b / t.seconds).toFixed(1),
        (forwardFlops(config, b, SEQ_LEN, layers) / t.seconds / 1e9).toFixed(1),
      ]);
    }
    console.log(`\nGraph variants at batch ${b}`);
    console.log(table(['graph', 'layers run', 'sent/s', 'GFLOP/s'], vrows));
    // Where the fused operators pay: ONNX Runtime fuses the plain graph itself at level 'all' (slowly,
    // and only where its patterns match); at 'basic' (or in a runtime without those passes) it cannot.
    const graphs = new Map<string, string>();
    for (const fused of [true, false]) {
      const e = await Encoder.load({ ...base, fused });
      graphs.set(fused ? 'fused ops' : 'plain ONNX ops', e.config.graphPath);
      await e.close();
    }
    const tokEnc = await Encoder.load(base);
    const collated = tokEnc.tokenizer.collate(await tokEnc.tokenize(batch));
    await tokEnc.close();
    const dims = [collated.rows, collated.seqLen];
    const feeds = {
      input_ids: { data: collated.inputIds, dims },
      attention_mask: { data: collated.attentionMask, dims },
      token_type_ids: { data: collated.tokenTypeIds, dims },
    };
    const orows: Array<Array<string | number>> = [];
    for (const [name, path] of graphs) {
      for (const optimization of ['all', 'basic'] as const) {
        const t0 = performance.now();
        const r = await createRuntime(path, { threads, optimization });
        const loadSeconds = (performance.now() - t0) / 1000;
        const t = await measure(() => r.run(feeds), MIN_SECONDS);
        await r.close();
        orows.push([name, optimization, loadSeconds.toFixed(2), (b / t.seconds).toFixed(1)]);
      }
    }
    console.log(`\nFused vs plain graph under ONNX Runtime's optimisation levels, batch ${b} (bare graph)`);
    console.log(table(['graph', 'ORT optimisation', 'session create s', 'sent/s'], orows));

    // Long sequences, where attention (S² work) weighs: fused vs plain at maxSeqLen 256.
    const LONG = 256;
    const longTexts = sentences(16, await vocabTokens).map((t) => `${t} ${t} ${t} ${t} ${t} ${t} ${t} ${t} ${t} ${t}`);
    const lrows: Array<Array<string | number>> = [];
    const longRate = new Map<boolean, number>();
    for (const fused of [true, false]) {
      const e = await Encoder.load({ ...base, maxSeqLen: LONG, fused });
      const t = await measure(() => e.encode(longTexts), MIN_SECONDS);
      await e.close();
      longRate.set(fused, longTexts.length / t.seconds);
      lrows.push([
        fused ? 'fused ops' : 'plain ONNX ops',
        (longTexts.length / t.seconds).toFixed(2),
        (forwardFlops(config, longTexts.length, LONG) / t.seconds / 1e9).toFixed(1),
      ]);
    }
    console.log(`\nLong sequences: ${longTexts.length} sentences of ${LONG} tokens, layer -1`);
    console.log(table(['graph', 'sent/s', 'GFLOP/s'], lrows));
    console.log(`fused / plain speed at ${LONG} tokens: ${(longRate.get(true)! / longRate.get(false)!).toFixed(2)}×`);

    console.log(
      `\nfused / plain speed: ${(rate.get('fused ops, layer -1')! / rate.get('plain ONNX ops, layer -1')!).toFixed(2)}×`,
    );
    console.log(
      `poolingLayer -12 / -1 speed: ${(rate.get('fused ops, layer -12')! / rate.get('fused ops, layer -1')!).toFixed(2)}×`,
    );
    console.log(
      `int8 / float32 speed (plain graph, layer -1): ${(rate.get('plain ONNX ops, int8, layer -1')! / rate.get('plain ONNX ops, layer -1')!).toFixed(2)}×`,
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
