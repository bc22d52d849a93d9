/** Shared bits of the benchmarks: the System line, timing loops, table printing. */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { runtimeVersions, syntheticVocab, type VocabSource } from '@bertq/model';
import { SHARED_VOCAB } from '@bertq/testing';

export function systemLine(): string {
  const cpu = cpus();
  return `System: ${cpu[0]?.model ?? 'unknown CPU'}, ${cpu.length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, onnxruntime-node ${runtimeVersions().onnxruntime}, ${process.platform}/${process.arch}`;
}

export interface Timing {
  iterations: number;
  /** Mean seconds per iteration. */
  seconds: number;
}

/** Rounds a measurement is split into; the fastest counts (other tenants of the machine only slow rounds down). */
const ROUNDS = 3;

/**
 * Runs `fn` once to warm up, then in ROUNDS rounds of at least `minIterations` runs and
 * `minSeconds / ROUNDS` seconds each; returns the fastest round's mean.
 */
export async function measure(fn: () => Promise<unknown>, minSeconds: number, minIterations = 1): Promise<Timing> {
  await fn();
  let best: Timing | undefined;
  for (let round = 0; round < ROUNDS; round++) {
    let iterations = 0;
    const start = performance.now();
    while (iterations < minIterations || performance.now() - start < (minSeconds * 1000) / ROUNDS) {
      await fn();
      iterations++;
    }
    const seconds = (performance.now() - start) / 1000 / iterations;
    if (best === undefined || seconds < best.seconds) best = { iterations, seconds };
  }
  return best!;
}

/** The value at quantile `q` (0-1) of ascending `sorted` values (nearest rank, the last for q = 1). */
export function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

export function table(headers: string[], rows: Array<Array<string | number>>): string {
  const cells = rows.map((r) => r.map((c) => String(c)));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    `| ${r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  return [
    line(headers),
    `|${widths.map((w, i) => (i === 0 ? `${'-'.repeat(w + 1)}-` : `${'-'.repeat(w + 1)}:`)).join('|')}|`,
    ...cells.map(line),
  ].join('\n');
}

/**
 * The vocabulary the benchmarks tokenize with: BERT-base's own from ../shared when it is there (real
 * wordpieces), else a synthetic one. `source` is how to write it into a model folder.
 */
export async function benchVocab(): Promise<{ tokens: string[]; source: VocabSource }> {
  if (!existsSync(SHARED_VOCAB)) {
    const tokens = syntheticVocab();
    return { tokens, source: { tokens } };
  }
  return { tokens: (await readFile(SHARED_VOCAB, 'utf8')).split('\n').filter(Boolean), source: { file: SHARED_VOCAB } };
}

/**
 * `n` sentences of `minWords`-`maxWords` whole words of the vocabulary, the same for the same seed: a
 * benchmark's rows are reproducible from run to run.
 */
export function randomSentences(
  n: number,
  vocab: readonly string[],
  seed: number,
  minWords = 6,
  maxWords = 19,
): string[] {
  const words = vocab.filter((w) => /^[a-z]{3,}$/.test(w));
  let s = seed;
  const next = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0), s);
  return Array.from({ length: n }, () =>
    Array.from({ length: minWords + (next() % (maxWords - minWords + 1)) }, () => words[next() % words.length]).join(
      ' ',
    ),
  );
}
