/**
 * One client floods, another sends 1-row queries: how long do the queries wait? (docs/security.md,
 * "Fair lanes"; issue 22's attack.) A real fleet (one worker process, MiniLM shape, max_seq_len 25)
 * on a test nats-server; the victim is a BertClient sending sequential 1-row requests.
 *
 *   - unloaded: the victim alone;
 *   - the high-lane flood: 400 jobs of 256 rows published straight to `jobs.high` (a lane meant for
 *     requests of at most priority_batch_size rows), the issue's attack;
 *   - a flood within the rules: 400 requests of 16 rows (high lane), 32 in flight, from a BertClient.
 *
 * Prints the victim's p50/p99 in each, the flood's time to drain, the jobs the fleet refused, and the
 * ratio to the target (p99 ≤ 3 × unloaded p99 + one batch time, the batch time being the worker's p99
 * inference time during the flood: a row that arrives as a full batch starts waits for it).
 *
 *   npm run build && node bench/dist/flood.bench.js [--quick]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, headers } from '@nats-io/transport-node';
import { BertClient } from '@bertq/client';
import { syntheticBertWeights, tinyBertConfig, writeHuggingFaceFolder } from '@bertq/model';
import { newRequestId, serviceNames } from '@bertq/protocol';
import { startNatsServer } from '@bertq/testing';
import { startFleet } from '@bertq/worker';
import { benchVocab, quantile, randomSentences, systemLine, table } from './system.js';

const quick = process.argv.includes('--quick');
const QUERIES = quick ? 40 : 120;
const FLOOD_JOBS = 400;

interface Phase {
  name: string;
  p50: number;
  p99: number;
  drainS: number | undefined;
  refused: number;
}

async function queries(bc: BertClient, texts: string[], count: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    await bc.encode([texts[i % texts.length]!]);
    out.push(performance.now() - t0);
  }
  return out.sort((a, b) => a - b);
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'bertq-flood-bench-'));
  const server = await startNatsServer();
  const load0 = loadavg();
  const service = 'flood';
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
    const sentences = randomSentences(2048, vocab.tokens, 11);
    const fleet = await startFleet({
      servers: server.url,
      service,
      numWorker: 1,
      threadsPerWorker: 2,
      encoder: { model: dir, graphTmpDir: join(root, 'graphs'), poolingLayer: -1, maxSeqLen: 25 },
      logLevel: 'silent',
    });
    const victim = await BertClient.connect({ servers: server.url, service, timeout: 120_000 });
    const flooder = await BertClient.connect({ servers: server.url, service, timeout: 600_000 });
    const raw = await connect({ servers: server.url });
    const phases: Phase[] = [];
    const refusedSoFar = async () => {
      const s = await victim.serverStatus();
      return s.statistic.num_exception;
    };
    const idle = async () => {
      for (let i = 0; i < 600; i++) {
        const s = await victim.serverStatus();
        const q = s.queue;
        const left =
          (q.high.pending ?? 0) + (q.bulk.pending ?? 0) + (q.high.ack_pending ?? 0) + (q.bulk.ack_pending ?? 0);
        if (left === 0) return;
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    try {
      console.log(systemLine());
      console.log(
        `Model: all-MiniLM-L6-v2 shape, random weights, max_seq_len 25, 1 worker (2 threads); victim: ${QUERIES} sequential 1-row requests per phase; load average ${load0.map((l) => l.toFixed(2)).join(' ')} at start\n`,
      );
      await queries(victim, sentences, 20); // warm up
      const alone = await queries(victim, sentences, QUERIES);
      phases.push({
        name: 'unloaded',
        p50: quantile(alone, 0.5),
        p99: quantile(alone, 0.99),
        drainS: undefined,
        refused: 0,
      });

      // The attack: big jobs published straight to the high lane.
      const names = serviceNames(service);
      const before = await refusedSoFar();
      const reply = names.results(`flood${newRequestId()}`);
      const t0 = performance.now();
      for (let i = 0; i < FLOOD_JOBS; i++) {
        const h = headers();
        h.set('Bertq-Id', newRequestId());
        h.set('Bertq-Offset', '0');
        h.set('Bertq-Reply', reply);
        raw.publish(names.jobs.high, JSON.stringify({ texts: sentences.slice(0, 256) }), { headers: h });
      }
      await raw.flush();
      const during = await queries(victim, sentences, QUERIES);
      await idle();
      phases.push({
        name: `${FLOOD_JOBS} × 256-row jobs on jobs.high`,
        p50: quantile(during, 0.5),
        p99: quantile(during, 0.99),
        drainS: (performance.now() - t0) / 1000,
        refused: (await refusedSoFar()) - before,
      });

      // Within the rules: many 16-row requests, which the high lane takes.
      const t1 = performance.now();
      let next = 0;
      const flood = Promise.all(
        Array.from({ length: 32 }, async () => {
          while (next < FLOOD_JOBS) {
            next++;
            await flooder.encode(sentences.slice(0, 16));
          }
        }),
      );
      await new Promise((r) => setTimeout(r, 200));
      const legal = await queries(victim, sentences, QUERIES);
      await flood;
      phases.push({
        name: `${FLOOD_JOBS} × 16-row requests, 32 in flight`,
        p50: quantile(legal, 0.5),
        p99: quantile(legal, 0.99),
        drainS: (performance.now() - t1) / 1000,
        refused: 0,
      });
      // "One batch": the longest the model ran while the flood filled its batches (p99 over the
      // worker's recent window), which a row that arrives just after such a batch starts must wait.
      const status = await victim.serverStatus();
      const batchMs = status.workers[0]?.timings.inference.p99_ms ?? 0;
      const target = 3 * phases[0]!.p99 + batchMs;
      console.log(
        table(
          ['phase', 'victim p50 ms', 'victim p99 ms', 'p99 ÷ target', 'flood drained in s', 'jobs refused'],
          phases.map((p) => [
            p.name,
            p.p50.toFixed(1),
            p.p99.toFixed(1),
            (p.p99 / target).toFixed(2),
            p.drainS === undefined ? '–' : p.drainS.toFixed(1),
            p.refused,
          ]),
        ),
      );
      console.log(
        `\ntarget: p99 ≤ 3 × unloaded p99 + one batch (${batchMs.toFixed(1)} ms) = ${target.toFixed(1)} ms; load average ${loadavg()
          .map((l) => l.toFixed(2))
          .join(' ')} at end`,
      );
    } finally {
      await raw.close();
      await victim.close().catch(() => undefined);
      await flooder.close().catch(() => undefined);
      await fleet.stop();
    }
  } finally {
    await server.stop();
    await rm(root, { recursive: true, force: true });
  }
}

await main();
