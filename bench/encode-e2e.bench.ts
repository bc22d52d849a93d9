import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { BertClient } from '@bertq/client';
import { Encoder, syntheticBertWeights, tinyBertConfig, writeHuggingFaceFolder } from '@bertq/model';
import type { EncoderOptions } from '@bertq/model';
import { startNatsServer } from '@bertq/testing';
import { startFleet } from '@bertq/worker';
import { CpuMeter, hottestFunctions, profilesIn } from './cpu.js';
import { benchVocab, measure, quantile, randomSentences, systemLine, table } from './system.js';

/** CPU seconds per 1000 rows of each process, and the share of the wall time they add up to. */
function cpuLine(label: string, used: Record<string, number | undefined>, rows: number, wallSeconds: number): string {
  const parts = Object.entries(used).map(([name, s]) =>
    s === undefined
      ? `${name} –`
      : `${name} ${((s * 1000) / rows).toFixed(3)} s (${((s / wallSeconds) * 100).toFixed(0)}% of a core)`,
  );
  return `CPU per 1000 rows, ${label}: ${parts.join(', ')}`;
}

const quick = process.argv.includes('--quick');
const cpuProf = process.argv.includes('--cpu-prof');
const MIN_SECONDS = quick ? 3 : 10;
const BIG_REQUEST_ROWS = 4096;
/** Rounds of bare and end-to-end 4096-row encoding, alternating. */
const ALTERNATING_ROUNDS = 3;
const CLIENTS = 32;

async function main(): Promise<void> {
  // `--threads N` (default: every core): with fewer inference threads than cores, the client, the
  // broker and the worker's own thread get a core the model does not use.
  const threadsArg = process.argv.indexOf('--threads');
  const threads = threadsArg > 0 ? Number(process.argv[threadsArg + 1]) : cpus().length;
  if (!Number.isSafeInteger(threads) || threads < 1) throw new Error('--threads takes a positive integer');
  const root = await mkdtemp(join(tmpdir(), 'bertq-e2e-bench-'));
  const nats = await startNatsServer();
  try {
    const vocab = await benchVocab();
    const config = tinyBertConfig({
      vocabSize: vocab.tokens.length,
      hiddenSize: 384,
      numHiddenLayers: 6,
      numAttentionHeads: 12,
      intermediateSize: 1536,
      maxPositionEmbeddings: 512,
    });
    const dir = await writeHuggingFaceFolder(join(root, 'minilm'), syntheticBertWeights(config, 3), vocab.source);
    const encoderOptions: EncoderOptions = {
      model: dir,
      graphTmpDir: join(root, 'graphs'),
      poolingLayer: -1,
      maxSeqLen: 25,
    };
    const big = randomSentences(BIG_REQUEST_ROWS, vocab.tokens, 7);

    console.log(systemLine());
    console.log(
      `Model: all-MiniLM-L6-v2 shape (6 layers, hidden 384), random weights; maxSeqLen 25; sentences of 6-19 words; ${threads} inference threads\n`,
    );

    // 1. the bare model, in this process (kept open: its rounds alternate with the fleet's below)
    const enc = await Encoder.load({ ...encoderOptions, threads });
    // The most 32 one-row clients can give: the model itself on batches of 32 rows.
    const small = big.slice(0, CLIENTS);
    const bareSmall = await measure(() => enc.encode(small), MIN_SECONDS);
    const bareSmallRate = CLIENTS / bareSmall.seconds;
    const graphPath = enc.config.graphPath;

    // 2. the fleet: one worker process with every core (the same cached graph file)
    const profDir = join(root, 'profiles');
    const fleet = await startFleet({
      servers: nats.url,
      service: 'bench',
      numWorker: 1,
      threadsPerWorker: threads,
      encoder: encoderOptions,
      logLevel: 'silent',
      ...(cpuProf ? { execArgv: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] } : {}),
    });
    const cpuLines: string[] = [];
    const meter = () => new CpuMeter({ client: process.pid, worker: fleet.workers[0]!.pid, 'nats-server': nats.pid });
    try {
      const client = await BertClient.connect({ servers: nats.url, service: 'bench', timeout: 600_000 });
      // Bare and end to end in alternating rounds: this shared machine's speed drifts by more than the
      // gap being measured, so each round's ratio compares neighbours, and the median ratio is shown.
      let bigRows = 0;
      let bigSeconds = 0;
      const bigCpu: Record<string, number | undefined> = {};
      const bareRates: number[] = [];
      const e2eRates: number[] = [];
      for (let round = 0; round < ALTERNATING_ROUNDS; round++) {
        const bare = await measure(() => enc.encode(big), MIN_SECONDS / ALTERNATING_ROUNDS);
        bareRates.push(BIG_REQUEST_ROWS / bare.seconds);
        const bigMeter = meter();
        const bigStart = performance.now();
        const e2e = await measure(async () => {
          await client.encode(big);
          bigRows += BIG_REQUEST_ROWS;
        }, MIN_SECONDS / ALTERNATING_ROUNDS);
        bigSeconds += (performance.now() - bigStart) / 1000;
        for (const [name, used] of Object.entries(bigMeter.read()))
          bigCpu[name] = used === undefined ? undefined : (bigCpu[name] ?? 0) + used;
        e2eRates.push(BIG_REQUEST_ROWS / e2e.seconds);
      }
      cpuLines.push(cpuLine('1 client × 4096-row requests', bigCpu, bigRows, bigSeconds));
      await enc.close();
      const bareRate = Math.max(...bareRates);
      const e2eRate = Math.max(...e2eRates);
      const roundRatios = e2eRates.map((r, i) => r / bareRates[i]!);
      const medianRatio = [...roundRatios].sort((a, b) => a - b)[Math.floor(roundRatios.length / 2)]!;
      await client.close();

      // 3. 32 clients, each sending 1-row requests back to back
      const clients = await Promise.all(
        Array.from({ length: CLIENTS }, () =>
          BertClient.connect({ servers: nats.url, service: 'bench', timeout: 60_000 }),
        ),
      );
      const one = randomSentences(CLIENTS * 64, vocab.tokens, 11);
      let done = 0;
      const latencies: number[] = [];
      const runFor = async (seconds: number) => {
        const until = performance.now() + seconds * 1000;
        await Promise.all(
          clients.map(async (c, k) => {
            for (let i = 0; performance.now() < until; i++) {
              const t0 = performance.now();
              await c.encode([one[(k * 64 + i) % one.length]!]);
              latencies.push(performance.now() - t0);
              done++;
            }
          }),
        );
      };
      await runFor(1); // warm-up
      done = 0;
      latencies.length = 0;
      // How the worker batched the 1-row requests: what it could gather while clients wait on results.
      const batchCount = async () => {
        const b = (await clients[0]!.serverStatus()).workers[0]?.batches;
        return { batches: b?.num_batch ?? 0, rows: (b?.avg_rows ?? 0) * (b?.num_batch ?? 0) };
      };
      const batchesBefore = await batchCount();
      const smallMeter = meter();
      const t0 = performance.now();
      await runFor(MIN_SECONDS);
      const smallSeconds = (performance.now() - t0) / 1000;
      const batchesAfter = await batchCount();
      const batchRuns = batchesAfter.batches - batchesBefore.batches;
      const smallRate = done / smallSeconds;
      cpuLines.push(cpuLine(`${CLIENTS} clients × 1-row requests`, smallMeter.read(), done, smallSeconds));
      await Promise.all(clients.map((c) => c.close()));
      latencies.sort((a, b) => a - b);
      const pct = (p: number) => quantile(latencies, p).toFixed(1);

      console.log(`bare and fleet run the same cached graph file (${graphPath.split('/').pop()})`);
      console.log(
        table(
          ['scenario', 'rows/s', 'ratio', 'target'],
          [
            ['bare Encoder.encode, 4096-row calls (in-process)', bareRate.toFixed(0), '1.00', ''],
            [
              'bertq end to end, 1 client × 4096-row requests',
              e2eRate.toFixed(0),
              medianRatio.toFixed(2),
              '≥ 0.95 × bare',
            ],
            [
              `bertq end to end, ${CLIENTS} clients × 1-row requests`,
              smallRate.toFixed(0),
              (smallRate / e2eRate).toFixed(2),
              '≥ 0.80 × 4096-row',
            ],
            [
              `bare Encoder.encode, ${CLIENTS}-row calls (the ceiling of ${CLIENTS} 1-row clients)`,
              bareSmallRate.toFixed(0),
              (bareSmallRate / bareRate).toFixed(2),
              '',
            ],
          ],
        ),
      );
      console.log(
        `\nbertq ÷ bare, 4096-row requests, round by round (bare and end to end alternating): ${roundRatios
          .map((r) => r.toFixed(2))
          .join(', ')}; the table shows each side's best round and the median ratio`,
      );
      console.log(
        `1-row request latency with ${CLIENTS} clients: p50 ${pct(0.5)} ms, p95 ${pct(0.95)} ms, p99 ${pct(0.99)} ms`,
      );
      console.log(
        `The worker ran ${batchRuns} batches for them, ${((batchesAfter.rows - batchesBefore.rows) / Math.max(1, batchRuns)).toFixed(1)} rows each on average`,
      );
      console.log(`\n${cpuLines.join('\n')}`);
    } finally {
      await fleet.stop();
    }
    if (cpuProf) {
      for (const file of profilesIn(profDir)) {
        console.log(`\nworker profile (${file.split('/').pop()}), self time:`);
        for (const f of hottestFunctions(file)) console.log(`  ${(f.share * 100).toFixed(1).padStart(5)}%  ${f.name}`);
      }
    }
  } finally {
    await nats.stop();
    await rm(root, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
