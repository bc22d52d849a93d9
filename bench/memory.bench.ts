/**
 * What a fleet costs in memory, and what sharing the weights costs in speed: BERT-base shape (random
 * weights), float32 and int8, fleets of 1 and 2 CPU workers, each fleet on its own, in one run.
 *
 * For each fleet: every worker's RSS and PSS (proportional set size: a page shared by two processes
 * counts half to each, so the PSS of the workers adds up to what the fleet really takes), and the
 * rate one client gets with 64-row requests. Rows:
 *  - "one-file graph": the graph as bertq cached it before, weights inside the .onnx file (given to
 *    the fleet as an .onnx model): ONNX Runtime reads the whole file and copies every tensor out of it;
 *  - "cached graph": today's cache, weights in a data file beside the graph (ONNX external data);
 *  - "--shared-weights": the same, with the workers computing from the mapped file instead of
 *    repacking private copies.
 *
 *   npm run build && node bench/dist/memory.bench.js [--quick]
 */
import { readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { BertClient } from '@bertq/client';
import {
  bertBaseConfig,
  buildBertGraph,
  syntheticBertWeights,
  prepareModel,
  writeHuggingFaceFolder,
  type EncoderOptions,
  type Precision,
} from '@bertq/model';
import { startNatsServer } from '@bertq/testing';
import { startFleet } from '@bertq/worker';
import { benchVocab, randomSentences, systemLine, table } from './system.js';

const quick = process.argv.includes('--quick');
const SECONDS = quick ? 3 : 8;
const ROWS = 64;

/** Resident and proportional set size of a process, MiB (Linux /proc). */
function memoryOf(pid: number): { rss: number; pss: number } {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(rollup)?.[1] ?? Number.NaN);
  return { rss: kib('Rss') / 1024, pss: kib('Pss') / 1024 };
}

interface Setup {
  precision: Precision;
  layout: 'one-file graph' | 'cached graph' | '--shared-weights';
  workers: number;
}

async function main(): Promise<void> {
  if (process.platform !== 'linux') {
    console.log('skipped: PSS is read from /proc/<pid>/smaps_rollup, which only Linux has');
    return;
  }
  const root = await mkdtemp(join(tmpdir(), 'bertq-memory-bench-'));
  const nats = await startNatsServer();
  try {
    const vocab = await benchVocab();
    const config = { ...bertBaseConfig(), vocabSize: vocab.tokens.length };
    const weights = syntheticBertWeights(config, 1);
    const dir = await writeHuggingFaceFolder(join(root, 'bert-base'), weights, vocab.source);
    const texts = randomSentences(ROWS, vocab.tokens, 17);
    const encoderOptions: EncoderOptions = {
      model: dir,
      graphTmpDir: join(root, 'graphs'),
      poolingLayer: -1,
      poolingStrategy: 'REDUCE_MEAN',
      maxSeqLen: 25,
    };
    const cores = cpus().length;
    console.log(systemLine());
    console.log(
      `Model: BERT-base shape (12 layers, hidden 768), random weights, REDUCE_MEAN of layer -1, maxSeqLen 25; a client sends ${ROWS}-row requests, two in flight per worker, for ${SECONDS} s; workers share the ${cores} cores; load average ${loadavg()[0]!.toFixed(2)} at start\n`,
    );

    const setups: Setup[] = [];
    for (const precision of ['int8', 'float32'] as const)
      for (const layout of ['one-file graph', 'cached graph', '--shared-weights'] as const)
        for (const workers of [1, 2]) setups.push({ precision, layout, workers });

    const oneFile = new Map<Precision, string>();
    const rows: Array<Array<string | number>> = [];
    for (const setup of setups) {
      let model = dir;
      if (setup.layout === 'one-file graph') {
        let path = oneFile.get(setup.precision);
        if (path === undefined) {
          // The very graph the cache builds for this precision, written as one file.
          const { graphOptions } = await prepareModel({ ...encoderOptions, precision: setup.precision });
          path = join(root, `${setup.precision}-one-file`);
          await mkdir(path);
          await writeFile(join(path, 'model.onnx'), buildBertGraph(weights, graphOptions));
          await copyFile(join(dir, 'vocab.txt'), join(path, 'vocab.txt'));
          oneFile.set(setup.precision, path);
        }
        model = path;
      }
      const service = `mem-${rows.length}`;
      const fleet = await startFleet({
        servers: nats.url,
        service,
        numWorker: setup.workers,
        encoder: { ...encoderOptions, model, precision: setup.precision },
        sharedWeights: setup.layout === '--shared-weights',
        logLevel: 'silent',
      });
      try {
        const client = await BertClient.connect({ servers: nats.url, service, timeout: 120_000 });
        try {
          // Every worker encodes before memory is read: a worker that has not run holds less.
          await Promise.all(Array.from({ length: setup.workers * 2 }, () => client.encode(texts)));
          const until = performance.now() + SECONDS * 1000;
          let done = 0;
          const started = performance.now();
          // Two requests in flight per worker: each worker always has its next request waiting.
          await Promise.all(
            Array.from({ length: 2 * setup.workers }, async () => {
              while (performance.now() < until) {
                await client.encode(texts);
                done += ROWS;
              }
            }),
          );
          const rate = done / ((performance.now() - started) / 1000);
          const mem = fleet.workers.map((w) => memoryOf(w.pid));
          const pss = mem.reduce((sum, m) => sum + m.pss, 0);
          rows.push([
            `${setup.precision}, ${setup.layout}, ${setup.workers} worker${setup.workers > 1 ? 's' : ''}`,
            mem.map((m) => m.rss.toFixed(0)).join(' + '),
            mem.map((m) => m.pss.toFixed(0)).join(' + '),
            pss.toFixed(0),
            rate.toFixed(1),
            loadavg()[0]!.toFixed(2),
          ]);
          process.stderr.write(`${rows.at(-1)!.join(' | ')}\n`);
        } finally {
          await client.close();
        }
      } finally {
        await fleet.stop();
      }
    }
    console.log(
      table(['fleet (BERT-base)', 'worker RSS MiB', 'worker PSS MiB', 'fleet PSS MiB', 'sent/s', 'load'], rows),
    );
    console.log(
      '\nPSS counts a page shared by n processes 1/n to each: the fleet PSS is the memory the workers take together.',
    );
  } finally {
    await nats.stop();
    await rm(root, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
