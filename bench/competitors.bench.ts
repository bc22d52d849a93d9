/**
 * bertq against what a user would pick instead, on the same machine, weights and token ids, in one
 * run: bertq's Encoder (float32 and int8), transformers.js (`@huggingface/transformers`
 * feature-extraction over the same weights as an ONNX file, mean pooling) and PyTorch eager (float32
 * and `quantize_dynamic` int8, bench/torch_bert.py) when a python with torch is found.
 *
 * The contenders take turns: each case is measured in ROUNDS rounds, and in every round each contender
 * runs one window, so a burst of load from another tenant of the machine falls on all of them alike
 * rather than on whoever ran at that minute. A contender's figure is its best round (other tenants only
 * slow rounds down); the ratios are also given round by round.
 *
 * Every contender's vectors are compared with bertq float32's (cosine): a fast wrong model is
 * reported as wrong, not as fast. BERT-base shape, random weights, REDUCE_MEAN of the last layer,
 * sentences of exactly `seq` tokens (no truncation anywhere), batch 1 and 64.
 *
 *   npm run build && node bench/dist/competitors.bench.js [--quick]
 *   BERTQ_TORCH_PYTHON=/path/to/python3 picks the python (default: /usr/bin/python3, then python3)
 */
import { type ChildProcessByStdio, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import {
  Encoder,
  bertBaseConfig,
  buildBertGraph,
  detectInt8Kernel,
  syntheticBertWeights,
  writeHuggingFaceFolder,
} from '@bertq/model';
import type { BertWeights, EncoderOptions, Int8WeightBits } from '@bertq/model';
import { benchVocab, systemLine, table } from './system.js';

const quick = process.argv.includes('--quick');
/** Rounds per case, and each contender's window in a round. */
const ROUNDS = quick ? 2 : 3;
const WINDOW_SECONDS = quick ? 0.5 : 1;
const SHARED = fileURLToPath(new URL('../../../shared/models/', import.meta.url));
/** bert-base-uncased's tokenizer in Hugging Face's format (all-MiniLM-L6-v2 ships that very vocab). */
const TOKENIZER_JSON = join(SHARED, 'all-MiniLM-L6-v2-tokenizer');
const TORCH_SCRIPT = fileURLToPath(new URL('../torch_bert.py', import.meta.url));
/** Longest a torch request may take (loading and quantizing BERT-base, or one slow window). */
const TORCH_DEADLINE_MS = 10 * 60_000;
/**
 * Longest one call to a contender (opening a case, or one window) may take before the contender is
 * reported as too slow and dropped for the rest of the run: PyTorch's BLAS float32 ran at 0.4 sent/s
 * on an AVX2-only box, a 160-s window at batch 64, and the run stalled behind it.
 */
const CALL_CAP_MS = quick ? 30_000 : 60_000;
/** Contenders that went past CALL_CAP_MS once: not called again. */
const tooSlow = new Set<string>();

/** `call`, or undefined after CALL_CAP_MS, when the contender is marked too slow and disposed. */
async function capped<T>(k: Contender, call: Promise<T>): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const cap = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), CALL_CAP_MS);
  });
  try {
    const got = await Promise.race([call, cap]);
    if (got === undefined) {
      tooSlow.add(k.name);
      k.dispose?.();
      call.catch(() => undefined); // its process is gone; its answer no longer matters
      process.stderr.write(`${k.name}: one call took over ${CALL_CAP_MS / 1000} s: reported as too slow\n`);
    }
    return got;
  } finally {
    clearTimeout(timer);
  }
}

interface Case {
  name: string;
  seq: number;
  batch: number;
  texts: string[];
  /** Token ids of `texts` as bertq's tokenizer gives them, for the contenders that take ids. */
  ids: number[][];
}

/** One contender, prepared for one case at a time. */
interface Contender {
  readonly name: string;
  /** Loads what the case needs; returns the contender's vectors for the case's first 4 sentences. */
  open(c: Case): Promise<number[][]>;
  /** Sentences per second over one window of at least `seconds`. */
  rate(c: Case, seconds: number): Promise<number>;
  /** Releases what `open` loaded. */
  close(): Promise<void>;
  /** Ends what the contender keeps for the whole run (a child process). */
  dispose?(): void;
}

/** `n` sentences of `seq - 2` whole-word tokens each: with [CLS] and [SEP], exactly `seq` tokens. */
function sentences(n: number, seq: number, vocab: readonly string[]): string[] {
  const words = vocab.filter((w) => /^[a-z]{3,}$/.test(w));
  let s = 12345;
  const next = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0), s);
  return Array.from({ length: n }, () => Array.from({ length: seq - 2 }, () => words[next() % words.length]).join(' '));
}

function batchesOf(c: Case): string[][] {
  return Array.from({ length: Math.ceil(c.texts.length / c.batch) }, (_, i) =>
    c.texts.slice(i * c.batch, (i + 1) * c.batch),
  );
}

/** Processes whose CPU time settle() watches besides this one (the torch contender's python). */
const helperPids: number[] = [];

/** CPU seconds this process and the helpers have used so far (/proc: linux only; elsewhere 0 for the helpers). */
function cpuSeconds(): number {
  const self = process.cpuUsage();
  let total = (self.user + self.system) / 1e6;
  for (const pid of helperPids) {
    try {
      // utime and stime are fields 14 and 15 of /proc/<pid>/stat, in clock ticks (100 per second here)
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      total += (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {
      // gone, or not linux
    }
  }
  return total;
}

/**
 * Waits until no contender is still burning CPU after its window: runtimes that spin their threads
 * awhile after each run (transformers.js's ONNX Runtime session, torch's OpenMP) would otherwise take
 * cores from whoever runs next. Bounded: at most 5 s.
 */
async function settle(): Promise<void> {
  const deadline = performance.now() + 5000;
  let before = cpuSeconds();
  while (performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    const now = cpuSeconds();
    if (now - before < 0.01) return;
    before = now;
  }
}

/** Runs `pass` (one pass over the case's sentences) for at least `seconds`; sentences per second. */
async function windowRate(c: Case, seconds: number, pass: () => Promise<unknown>): Promise<number> {
  let passes = 0;
  const start = performance.now();
  do {
    await pass();
    passes++;
  } while (performance.now() - start < seconds * 1000);
  return (c.texts.length * passes * 1000) / (performance.now() - start);
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

function minCosine(got: number[][], want: number[][]): number {
  return Math.min(...got.map((row, r) => cosine(row, want[r]!)));
}

function rowsOf(data: Float32Array, dim: number, n: number): number[][] {
  return Array.from({ length: n }, (_, r) => Array.from(data.subarray(r * dim, (r + 1) * dim)));
}

function bertq(base: EncoderOptions, precision: 'float32' | 'int8', int8WeightBits?: Int8WeightBits): Contender {
  let enc: Encoder | undefined;
  return {
    name: `bertq ${precision}${int8WeightBits ? ` ${int8WeightBits}-bit` : ''}`,
    async open(c) {
      enc = await Encoder.load({ ...base, precision, maxSeqLen: c.seq, ...(int8WeightBits && { int8WeightBits }) });
      const first = await enc.encode(c.texts.slice(0, 4));
      for (const b of batchesOf(c)) await enc.encode(b); // warm-up
      return rowsOf(first.data, first.shape.at(-1)!, 4);
    },
    rate: (c, seconds) =>
      windowRate(c, seconds, async () => {
        for (const b of batchesOf(c)) await enc!.encode(b);
      }),
    async close() {
      await enc?.close();
      enc = undefined;
    },
  };
}

async function main(): Promise<void> {
  const threads = cpus().length;
  const config = bertBaseConfig();
  const root = await mkdtemp(join(tmpdir(), 'bertq-competitors-'));
  const load0 = loadavg()[0]!;
  const contenders: Contender[] = [];
  try {
    const { tokens: vocab, source } = await benchVocab();
    const weights = syntheticBertWeights({ ...config, vocabSize: vocab.length }, 1);
    const dir = await writeHuggingFaceFolder(join(root, 'bert-base'), weights, source);
    const base: EncoderOptions = {
      model: dir,
      graphTmpDir: join(root, 'graphs'),
      threads,
      poolingLayer: -1,
      poolingStrategy: 'REDUCE_MEAN',
    };

    const seqs = quick ? [25] : [25, 128];
    const tokenizer = await Encoder.load({ ...base, maxSeqLen: Math.max(...seqs) });
    const cases: Case[] = [];
    for (const seq of seqs) {
      for (const batch of [1, 64]) {
        const texts = sentences(batch === 1 ? (quick ? 4 : 8) : 64, seq, vocab);
        const collated = tokenizer.tokenizer.collate(await tokenizer.tokenize(texts));
        assert(collated.seqLen === seq, `seq ${seq}: sentences tokenize to ${collated.seqLen} tokens, not ${seq}`);
        const ids = Array.from({ length: collated.rows }, (_, r) =>
          Array.from(collated.inputIds.subarray(r * seq, (r + 1) * seq), Number),
        );
        cases.push({ name: `seq ${seq}, batch ${batch}`, seq, batch, texts, ids });
      }
    }
    await tokenizer.close();

    console.log(systemLine());
    console.log(
      `Model: BERT-base shape (12 layers, hidden 768), random weights, REDUCE_MEAN of the last layer; ${threads} threads each; load average ${load0.toFixed(2)} at start`,
    );
    console.log(
      `Each case: ${ROUNDS} rounds, each contender one window of at least ${WINDOW_SECONDS} s per round, taking turns; a contender's figure is its best round.\n`,
    );

    // int8 with the weights this CPU sums exactly; where that is 8-bit, 7-bit too (what AVX2 CPUs run).
    const kernel = await detectInt8Kernel();
    console.log(`int8 kernel: ${kernel.path}`);
    contenders.push(bertq(base, 'float32'), bertq(base, 'int8'));
    if (kernel.weightBits === 8) contenders.push(bertq(base, 'int8', 7));
    contenders.push(...(await transformersJs(weights, dir, root)));
    contenders.push(...(await torch(dir, threads)));

    for (const c of cases) await runCase(c, contenders);
    console.log(`\nload average at end: ${loadavg()[0]!.toFixed(2)}`);
  } finally {
    for (const k of contenders) {
      await k.close().catch(() => {});
      k.dispose?.();
    }
    await rm(root, { recursive: true, force: true });
  }
}

/** Opens every contender for `c`, measures them in turns, prints the table, closes them. */
async function runCase(c: Case, contenders: Contender[]): Promise<void> {
  const vectors = new Map<string, number[][]>();
  for (const k of contenders) {
    if (tooSlow.has(k.name)) continue;
    const got = await capped(k, k.open(c));
    if (got) vectors.set(k.name, got);
  }
  const reference = vectors.get('bertq float32')!;
  const rates = new Map<string, number[]>(contenders.map((k) => [k.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate the order, so that no contender always runs right after the same one.
    const order = round % 2 === 0 ? contenders : [...contenders].reverse();
    for (const k of order) {
      if (tooSlow.has(k.name)) continue;
      await settle();
      const r = await capped(k, k.rate(c, WINDOW_SECONDS));
      if (r === undefined) continue;
      rates.get(k.name)!.push(r);
      process.stderr.write(`${c.name}, round ${round + 1}: ${k.name} ${r.toFixed(1)} sent/s\n`);
    }
  }
  // Closed before the next case loads its own models: BERT-base weights are ~0.4 GiB a copy.
  for (const k of contenders) if (!tooSlow.has(k.name)) await k.close();

  const best = (name: string) => Math.max(...rates.get(name)!);
  const slow = contenders.filter((k) => tooSlow.has(k.name)).map((k) => k.name);
  const names = contenders.map((k) => k.name).filter((n) => !tooSlow.has(n));
  const ours = names.filter((n) => n.startsWith('bertq'));
  const others = names.filter((n) => !n.startsWith('bertq'));
  const bertqBest = Math.max(...ours.map(best));
  console.log(`\n${c.name} (${c.texts.length} sentences)`);
  console.log(
    table(
      ['contender', 'sent/s (best round)', 'rounds', 'bertq best ÷ it', 'min cosine to bertq float32'],
      names.map((n) => [
        n,
        best(n).toFixed(1),
        rates
          .get(n)!
          .map((r) => r.toFixed(0))
          .join(' / '),
        (bertqBest / best(n)).toFixed(2),
        minCosine(vectors.get(n)!, reference).toFixed(4),
      ]),
    ),
  );
  for (const n of slow) console.log(`${n}: too slow (one call over ${CALL_CAP_MS / 1000} s), not measured`);
  if (others.length > 0) {
    const strongest = others.reduce((a, b) => (best(b) > best(a) ? b : a));
    const perRound = Array.from({ length: ROUNDS }, (_, r) => {
      const oursR = Math.max(...ours.map((n) => rates.get(n)![r]!));
      const theirsR = Math.max(...others.map((n) => rates.get(n)![r]!));
      return (oursR / theirsR).toFixed(2);
    });
    console.log(
      `bertq best ÷ best competitor (${strongest}): ${(bertqBest / best(strongest)).toFixed(2)}× (round by round: ${perRound.join(' / ')}) · bertq int8 ÷ bertq float32: ${(best('bertq int8') / best('bertq float32')).toFixed(2)}×`,
    );
  }
}

function assert(ok: boolean, message: string): asserts ok {
  if (!ok) throw new Error(message);
}

/** transformers.js over the same weights: bertq's graph exported bare (last_hidden_state), as an HF ONNX export is. */
async function transformersJs(weights: BertWeights, dir: string, root: string): Promise<Contender[]> {
  if (!existsSync(join(TOKENIZER_JSON, 'tokenizer.json'))) {
    console.log(`transformers.js: skipped: no tokenizer.json at ${TOKENIZER_JSON}`);
    return [];
  }
  let tjs: typeof import('@huggingface/transformers');
  try {
    tjs = await import('@huggingface/transformers');
  } catch (err) {
    console.log(`transformers.js: skipped: @huggingface/transformers does not load (${(err as Error).message})`);
    return [];
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
  type Extractor = Awaited<ReturnType<typeof tjs.pipeline<'feature-extraction'>>>;
  let extractor: Extractor | undefined;
  const options = { pooling: 'mean', normalize: false } as const;
  return [
    {
      name: 'transformers.js fp32',
      async open(c) {
        extractor ??= await tjs.pipeline('feature-extraction', 'bert-base', { dtype: 'fp32', device: 'cpu' });
        const first = await extractor(c.texts.slice(0, 4), options);
        for (const b of batchesOf(c)) await extractor(b, options); // warm-up
        return first.tolist() as number[][];
      },
      rate: (c, seconds) =>
        windowRate(c, seconds, async () => {
          for (const b of batchesOf(c)) await extractor!(b, options);
        }),
      async close() {
        await extractor?.dispose();
        extractor = undefined;
      },
    },
  ];
}

const TORCH_LABELS = {
  float32: 'eager fp32 (BLAS)',
  'float32-onednn': 'eager fp32 (oneDNN)',
  int8: 'quantize_dynamic int8',
} as const;

function findTorchPython(): string | undefined {
  const candidates = [process.env.BERTQ_TORCH_PYTHON, '/usr/bin/python3', 'python3'].filter(Boolean) as string[];
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import torch, numpy'], { encoding: 'utf8', timeout: 60_000 });
    if (r.status === 0) return py;
  }
  return undefined;
}

/**
 * torch's CPU tensors come from glibc malloc, which maps each large block afresh and unmaps it on
 * free; the page faults that follow made torch up to 2.3× slower here, a quarter of its CPU time in
 * the kernel (int8 72-164 sent/s from run to run, oneDNN float32 27-35). PyTorch's CPU tuning guides
 * answer this with a caching allocator (jemalloc, tcmalloc); glibc keeps its blocks too when told so,
 * which gives torch its best and steadiest figures (int8 145-168, oneDNN float32 51-60). bertq
 * measured the same either way (ONNX Runtime reuses its own arena).
 */
const TORCH_MALLOC = { MALLOC_MMAP_THRESHOLD_: String(32 * 2 ** 20), MALLOC_TRIM_THRESHOLD_: String(2 ** 32) };

/** bench/torch_bert.py, kept running: one JSON line per request and per answer, each with a deadline. */
class TorchProcess {
  readonly #child: ChildProcessByStdio<Writable, Readable, null>;
  readonly #lines: AsyncIterator<string>;

  constructor(python: string) {
    this.#child = spawn(python, [TORCH_SCRIPT], {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, ...TORCH_MALLOC },
    });
    if (this.#child.pid !== undefined) helperPids.push(this.#child.pid);
    this.#lines = createInterface({ input: this.#child.stdout })[Symbol.asyncIterator]();
  }

  async request<T>(body: object): Promise<T> {
    this.#child.stdin.write(`${JSON.stringify(body)}\n`);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`torch_bert.py gave no answer in ${TORCH_DEADLINE_MS} ms`)),
        TORCH_DEADLINE_MS,
      );
    });
    try {
      const next = await Promise.race([this.#lines.next(), deadline]);
      if (next.done) throw new Error(`torch_bert.py exited (code ${this.#child.exitCode})`);
      const answer = JSON.parse(next.value) as T & { error?: string };
      if (answer.error) throw new Error(`torch_bert.py: ${answer.error}`);
      return answer;
    } finally {
      clearTimeout(timer);
    }
  }

  stop(): void {
    this.#child.kill();
  }
}

/** PyTorch eager fp32 (two backends) and quantize_dynamic int8: a python process each (see torch_bert.py). */
async function torch(dir: string, threads: number): Promise<Contender[]> {
  const python = findTorchPython();
  if (!python) {
    console.log(
      'PyTorch: skipped: no torch (tried $BERTQ_TORCH_PYTHON, /usr/bin/python3, python3; on Debian: apt-get install python3-torch)',
    );
    return [];
  }
  const contenders: Contender[] = [];
  for (const precision of Object.keys(TORCH_LABELS) as Array<keyof typeof TORCH_LABELS>) {
    const proc = new TorchProcess(python);
    const hello = await proc.request<{ skipped?: string; torch?: string; backend?: string }>({
      model: dir,
      threads,
      precisions: [precision],
    });
    if (hello.skipped) {
      proc.stop();
      for (const k of contenders) k.dispose?.();
      console.log(`PyTorch: skipped: ${hello.skipped}`);
      return [];
    }
    if (contenders.length === 0) console.log(`PyTorch ${hello.torch} (${python}), quantized engine ${hello.backend}`);
    const registered = new Set<string>();
    contenders.push({
      name: `PyTorch ${TORCH_LABELS[precision]}`,
      async open(c) {
        if (!registered.has(c.name)) {
          await proc.request({ case: c.name, ids: c.ids, batch: c.batch });
          registered.add(c.name);
        }
        return (await proc.request<{ vectors: number[][] }>({ vectors: precision, case: c.name })).vectors;
      },
      async rate(c, seconds) {
        return (await proc.request<{ sent_per_s: number }>({ measure: precision, case: c.name, seconds })).sent_per_s;
      },
      // The python process keeps its model across cases; it ends with the run.
      async close() {},
      dispose: () => proc.stop(),
    });
  }
  return contenders;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
