/**
 * bertq against what a user would pick instead, on the same machine, weights and token ids, in one
 * run: bertq's Encoder (float32 and int8), transformers.js (`@huggingface/transformers`
 * feature-extraction over the same weights as an ONNX file, mean pooling) and PyTorch eager (float32
 * and `quantize_dynamic` int8, bench/torch_bert.py) when a python with torch is found.
 *
 * Every contender's vectors are compared with bertq float32's (cosine): a fast wrong model is
 * reported as wrong, not as fast. BERT-base shape, random weights, REDUCE_MEAN of the last layer,
 * sentences of exactly `seq` tokens (no truncation anywhere), batch 1 and 64.
 *
 *   npm run build && node bench/dist/competitors.bench.js [--quick]
 *   BERTQ_TORCH_PYTHON=/path/to/python3 picks the python (default: /usr/bin/python3, then python3)
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Encoder,
  bertBaseConfig,
  buildBertGraph,
  syntheticBertWeights,
  syntheticVocab,
  writeHuggingFaceFolder,
} from '@bertq/model';
import type { BertWeights, EncoderOptions } from '@bertq/model';
import { measure, systemLine, table } from './system.js';

const quick = process.argv.includes('--quick');
const MIN_SECONDS = quick ? 1 : 3;
const SHARED = fileURLToPath(new URL('../../../shared/models/', import.meta.url));
const VOCAB = join(SHARED, 'bert-base-uncased-vocab.txt');
/** bert-base-uncased's tokenizer in Hugging Face's format (all-MiniLM-L6-v2 ships that very vocab). */
const TOKENIZER_JSON = join(SHARED, 'all-MiniLM-L6-v2-tokenizer');
const TORCH_SCRIPT = fileURLToPath(new URL('../torch_bert.py', import.meta.url));

interface Case {
  name: string;
  seq: number;
  batch: number;
  texts: string[];
}

/** `n` sentences of `seq - 2` whole-word tokens each: with [CLS] and [SEP], exactly `seq` tokens. */
function sentences(n: number, seq: number, vocab: readonly string[]): string[] {
  const words = vocab.filter((w) => /^[a-z]{3,}$/.test(w));
  let s = 12345;
  const next = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0), s);
  return Array.from({ length: n }, () => Array.from({ length: seq - 2 }, () => words[next() % words.length]).join(' '));
}

function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! ** 2;
    bb += b[i]! ** 2;
  }
  return ab / Math.sqrt(aa * bb);
}

/** The smallest cosine between the first rows of `got` and bertq float32's vectors. */
function minCosine(got: number[][], want: Float32Array, dim: number): number {
  return Math.min(...got.map((row, r) => cosine(row, want.subarray(r * dim, (r + 1) * dim))));
}

interface Result {
  contender: string;
  caseName: string;
  sentPerS: number;
  cosine: number;
}

const TORCH_LABELS: Record<string, string> = {
  float32: 'eager fp32 (BLAS)',
  'float32-onednn': 'eager fp32 (oneDNN)',
  int8: 'quantize_dynamic int8',
};

function findTorchPython(): string | undefined {
  const candidates = [process.env.BERTQ_TORCH_PYTHON, '/usr/bin/python3', 'python3'].filter(Boolean) as string[];
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import torch, numpy'], { encoding: 'utf8', timeout: 60_000 });
    if (r.status === 0) return py;
  }
  return undefined;
}

async function main(): Promise<void> {
  const threads = cpus().length;
  const config = bertBaseConfig();
  const root = await mkdtemp(join(tmpdir(), 'bertq-competitors-'));
  const load0 = loadavg()[0]!;
  try {
    const sharedVocab = existsSync(VOCAB);
    const vocab = sharedVocab ? (await readFile(VOCAB, 'utf8')).split('\n').filter(Boolean) : syntheticVocab();
    const weights = syntheticBertWeights({ ...config, vocabSize: vocab.length }, 1);
    const dir = await writeHuggingFaceFolder(
      join(root, 'bert-base'),
      weights,
      sharedVocab ? { file: VOCAB } : { tokens: vocab },
    );

    const seqs = quick ? [25] : [25, 128];
    const cases: Case[] = seqs.flatMap((seq) => [
      { name: `seq ${seq}, batch 1`, seq, batch: 1, texts: sentences(quick ? 4 : 8, seq, vocab) },
      { name: `seq ${seq}, batch 64`, seq, batch: 64, texts: sentences(64, seq, vocab) },
    ]);
    console.log(systemLine());
    console.log(
      `Model: BERT-base shape (12 layers, hidden 768), random weights, REDUCE_MEAN of the last layer; ${threads} threads each; load average ${load0.toFixed(2)} at start\n`,
    );

    const results: Result[] = [];
    const base: EncoderOptions = {
      model: dir,
      graphTmpDir: join(root, 'graphs'),
      threads,
      poolingLayer: -1,
      poolingStrategy: 'REDUCE_MEAN',
    };
    // bertq float32 first: its vectors are the yardstick for everyone else.
    const reference = new Map<string, Float32Array>();
    const idsByCase = new Map<string, number[][]>();
    for (const precision of ['float32', 'int8'] as const) {
      for (const c of cases) {
        const enc = await Encoder.load({ ...base, precision, maxSeqLen: c.seq });
        const batches = Array.from({ length: Math.ceil(c.texts.length / c.batch) }, (_, i) =>
          c.texts.slice(i * c.batch, (i + 1) * c.batch),
        );
        const vectors = (await enc.encode(c.texts.slice(0, 4))).data;
        if (precision === 'float32') {
          reference.set(c.name, vectors);
          const tokenized = await enc.tokenize(c.texts);
          const collated = enc.tokenizer.collate(tokenized);
          assert(collated.seqLen === c.seq, `${c.name}: sentences tokenize to ${collated.seqLen} tokens, not ${c.seq}`);
          idsByCase.set(
            c.name,
            Array.from({ length: collated.rows }, (_, r) =>
              Array.from(collated.inputIds.subarray(r * c.seq, (r + 1) * c.seq), Number),
            ),
          );
        }
        const t = await measure(async () => {
          for (const b of batches) await enc.encode(b);
        }, MIN_SECONDS);
        await enc.close();
        const dim = config.hiddenSize;
        const rows = Array.from({ length: 4 }, (_, r) => Array.from(vectors.subarray(r * dim, (r + 1) * dim)));
        results.push({
          contender: `bertq ${precision}`,
          caseName: c.name,
          sentPerS: c.texts.length / t.seconds,
          cosine: minCosine(rows, reference.get(c.name)!, dim),
        });
        process.stderr.write(`bertq ${precision} ${c.name}: ${(c.texts.length / t.seconds).toFixed(1)} sent/s\n`);
      }
    }

    await transformersJs(weights, dir, root, cases, reference, results);
    torch(dir, threads, cases, idsByCase, reference, results);

    const contenders = [...new Set(results.map((r) => r.contender))];
    for (const c of cases) {
      const rows = results.filter((r) => r.caseName === c.name);
      const bertqBest = Math.max(...rows.filter((r) => r.contender.startsWith('bertq')).map((r) => r.sentPerS));
      console.log(`\n${c.name} (${c.texts.length} sentences)`);
      console.log(
        table(
          ['contender', 'sent/s', 'bertq best ÷ it', 'min cosine to bertq float32'],
          contenders.flatMap((name) => {
            const r = rows.find((x) => x.contender === name);
            return r ? [[name, r.sentPerS.toFixed(1), (bertqBest / r.sentPerS).toFixed(2), r.cosine.toFixed(4)]] : [];
          }),
        ),
      );
      const others = rows.filter((r) => !r.contender.startsWith('bertq'));
      if (others.length > 0) {
        const best = others.reduce((a, b) => (b.sentPerS > a.sentPerS ? b : a));
        const int8 = rows.find((r) => r.contender === 'bertq int8')!;
        const fp32 = rows.find((r) => r.contender === 'bertq float32')!;
        console.log(
          `bertq best ÷ best competitor (${best.contender}): ${(bertqBest / best.sentPerS).toFixed(2)}× · bertq int8 ÷ bertq float32: ${(int8.sentPerS / fp32.sentPerS).toFixed(2)}×`,
        );
      }
    }
    console.log(`\nload average at end: ${loadavg()[0]!.toFixed(2)}`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

function assert(ok: boolean, message: string): asserts ok {
  if (!ok) throw new Error(message);
}

/** transformers.js over the same weights: bertq's graph exported bare (last_hidden_state), as an HF ONNX export is. */
async function transformersJs(
  weights: BertWeights,
  dir: string,
  root: string,
  cases: Case[],
  reference: Map<string, Float32Array>,
  results: Result[],
): Promise<void> {
  if (!existsSync(join(TOKENIZER_JSON, 'tokenizer.json'))) {
    console.log(`transformers.js: skipped: no tokenizer.json at ${TOKENIZER_JSON}`);
    return;
  }
  let tjs: typeof import('@huggingface/transformers');
  try {
    tjs = await import('@huggingface/transformers');
  } catch (err) {
    console.log(`transformers.js: skipped: @huggingface/transformers does not load (${(err as Error).message})`);
    return;
  }
  const modelDir = join(root, 'tjs', 'bert-base');
  await mkdir(join(modelDir, 'onnx'), { recursive: true });
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'])
    await copyFile(join(TOKENIZER_JSON, f), join(modelDir, f));
  await copyFile(join(dir, 'config.json'), join(modelDir, 'config.json'));
  // The same graph maths as bertq's float32, with the encoder's last hidden state as output.
  await writeFile(
    join(modelDir, 'onnx', 'model.onnx'),
    buildBertGraph(
      weights,
      { poolingStrategy: 'NONE', poolingLayer: [-1], precision: 'float32', normalize: false, fused: false },
      { outputName: 'last_hidden_state', bare: true },
    ),
  );
  tjs.env.allowRemoteModels = false;
  tjs.env.localModelPath = join(root, 'tjs');
  const extractor = await tjs.pipeline('feature-extraction', 'bert-base', { dtype: 'fp32', device: 'cpu' });
  for (const c of cases) {
    const batches = Array.from({ length: Math.ceil(c.texts.length / c.batch) }, (_, i) =>
      c.texts.slice(i * c.batch, (i + 1) * c.batch),
    );
    const first = await extractor(c.texts.slice(0, 4), { pooling: 'mean', normalize: false });
    const t = await measure(async () => {
      for (const b of batches) await extractor(b, { pooling: 'mean', normalize: false });
    }, MIN_SECONDS);
    results.push({
      contender: 'transformers.js fp32',
      caseName: c.name,
      sentPerS: c.texts.length / t.seconds,
      cosine: minCosine(first.tolist() as number[][], reference.get(c.name)!, 768),
    });
    process.stderr.write(`transformers.js ${c.name}: ${(c.texts.length / t.seconds).toFixed(1)} sent/s\n`);
  }
  await extractor.dispose();
}

function torch(
  dir: string,
  threads: number,
  cases: Case[],
  idsByCase: Map<string, number[][]>,
  reference: Map<string, Float32Array>,
  results: Result[],
): void {
  const python = findTorchPython();
  if (!python) {
    console.log(
      'PyTorch: skipped: no torch (tried $BERTQ_TORCH_PYTHON, /usr/bin/python3, python3; on Debian: apt-get install python3-torch)',
    );
    return;
  }
  const request = {
    model: dir,
    threads,
    min_seconds: MIN_SECONDS / 2,
    cases: cases.map((c) => ({ name: c.name, batch: c.batch, ids: idsByCase.get(c.name) })),
  };
  const run = spawnSync(python, [TORCH_SCRIPT], {
    input: JSON.stringify(request),
    encoding: 'utf8',
    maxBuffer: 64 * 2 ** 20,
    timeout: 20 * 60_000,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  if (run.status !== 0) throw new Error(`${python} ${TORCH_SCRIPT} failed (exit ${run.status}, ${run.signal ?? ''})`);
  const out = JSON.parse(run.stdout) as
    | { skipped: string }
    | {
        torch: string;
        backend: string;
        results: Array<{ name: string; precision: string; sent_per_s: number; vectors: number[][] }>;
      };
  if ('skipped' in out) {
    console.log(`PyTorch: skipped: ${out.skipped}`);
    return;
  }
  console.log(`PyTorch ${out.torch} (${python}), quantized engine ${out.backend}`);
  for (const r of out.results) {
    results.push({
      contender: `PyTorch ${TORCH_LABELS[r.precision] ?? r.precision}`,
      caseName: r.name,
      sentPerS: r.sent_per_s,
      cosine: minCosine(r.vectors, reference.get(r.name)!, 768),
    });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
