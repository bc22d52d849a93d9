/**
 * The serving path by itself, against the box's own limits, in one run.
 *
 * The limits (no bertq code in the loop): the tokenizer alone; core NATS request-reply; JetStream
 * publish with ack; and a bare JetStream work-queue loop (publish a job with ack → a consumer pulls it
 * in batches of 64 → one core-NATS answer → ack), its far side in another process as a worker is.
 *
 * bertq: a real fleet (its worker in its own process) on the null engine (the real tokenizer, zero
 * vectors: core/null-engine.ts), fed by real BertClients: 1 client × 4096-row requests, 8 × 256-row,
 * 64 × 1-row. Each figure is printed with its ratio to the limit it is bounded by, and with the CPU
 * seconds per 1,000 requests of the client, nats-server and worker processes and the broker messages
 * (in + out, /varz) per request. Last, with the real model (MiniLM shape): sequential 1-row requests
 * against the bare Encoder on the same row, taking turns: the latency the serving path adds.
 *
 *   npm run build && node bench/dist/pipeline.bench.js [--quick] [--cpu-prof]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jetstream, jetstreamManager, RetentionPolicy, StorageType, AckPolicy } from '@nats-io/jetstream';
import { connect, createInbox, headers } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { BertClient } from '@bertq/client';
import { Encoder, syntheticBertWeights, tinyBertConfig, writeHuggingFaceFolder } from '@bertq/model';
import type { EncoderOptions } from '@bertq/model';
import { startNatsServer } from '@bertq/testing';
import type { NatsServer } from '@bertq/testing';
import { startFleet } from '@bertq/worker';
import type { FleetHandle } from '@bertq/worker';
import { CpuMeter, hottestFunctions, profilesIn } from './cpu.js';
import { benchVocab, quantile, randomSentences, systemLine, table } from './system.js';

const quick = process.argv.includes('--quick');
const cpuProf = process.argv.includes('--cpu-prof');
/** Length of one measured window. */
const WINDOW_S = quick ? 2 : 5;
/** Sequential 1-row requests per side in the latency comparison. */
const LATENCY_SAMPLES = quick ? 200 : 600;
const PEER = fileURLToPath(new URL('./pipeline-peer.js', import.meta.url));

interface Rate {
  /** Units (rows or requests) per second over the window. */
  perSecond: number;
  /** Requests completed in the window. */
  requests: number;
  seconds: number;
}

/** Runs `loops` concurrent loops of `once` (each resolving to the units it did) for WINDOW_S seconds. */
async function windowOf(loops: number, once: (loop: number) => Promise<number>): Promise<Rate> {
  const end = performance.now() + WINDOW_S * 1000;
  let units = 0;
  let requests = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: loops }, async (_, i) => {
      while (performance.now() < end) {
        // Not `units += await …`: that reads `units` before the await and loses the other loops' counts.
        const done = await once(i);
        units += done;
        requests++;
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  return { perSecond: units / seconds, requests, seconds };
}

/** A peer process (bench/pipeline-peer.ts), resolved once it says ready. */
async function startPeer(args: string[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, [PEER, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('pipeline-peer did not start within 10 s')), 10_000);
    child.stdout!.once('data', () => {
      clearTimeout(timer);
      resolve();
    });
    child.once('exit', (code) => reject(new Error(`pipeline-peer exited with ${code}`)));
  });
  return child;
}

async function stopPeer(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.stdin!.end();
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

/** Messages in + out of the broker so far (/varz). */
async function brokerMessages(server: NatsServer): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${server.monitorPort}/varz`, { signal: AbortSignal.timeout(5_000) });
  const v = (await res.json()) as { in_msgs: number; out_msgs: number };
  return v.in_msgs + v.out_msgs;
}

interface Limits {
  tokenizerBig: number;
  tokenizerOne: number;
  requestReply1: number;
  requestReply64: number;
  publishAck1: number;
  publishAck64: number;
  workQueue64: number;
  /** The same loop from 64 connections, one job in flight each (as 64 separate clients). */
  workQueue64Connections: number;
}

async function boxLimits(server: NatsServer, enc: Encoder, sentences: string[]): Promise<Limits> {
  // The tokenizer alone, as a worker calls it.
  const big = sentences.slice(0, 4096);
  const tokenizerBig = await windowOf(1, async () => (await enc.tokenize(big)).length);
  let i = 0;
  const tokenizerOne = await windowOf(1, async () => (await enc.tokenize([sentences[i++ % sentences.length]!])).length);

  const nc = await connect({ servers: server.url, name: 'pipeline-bench-limits' });
  const payload = new TextEncoder().encode(JSON.stringify({ texts: [sentences[0]] }));
  try {
    // Core request-reply, the answer from another process.
    const echo = await startPeer(['reply', server.url, 'limits']);
    const rr = (loops: number) => windowOf(loops, async () => (await nc.request('limits.echo', payload), 1));
    const requestReply1 = (await rr(1)).perSecond;
    const requestReply64 = (await rr(64)).perSecond;
    await stopPeer(echo);

    // JetStream publish with ack, and the bare work-queue loop, on a stream like bertq's.
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({
      name: 'PIPELINE_LIMITS',
      subjects: ['limits.jobs'],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
    });
    await jsm.consumers.add('PIPELINE_LIMITS', { durable_name: 'work', ack_policy: AckPolicy.Explicit });
    const js = jetstream(nc);
    const ack = (loops: number) => windowOf(loops, async () => (await js.publish('limits.publish', payload), 1));
    await jsm.streams.add({ name: 'PIPELINE_PUBLISH', subjects: ['limits.publish'], storage: StorageType.File });
    const publishAck1 = (await ack(1)).perSecond;
    const publishAck64 = (await ack(64)).perSecond;

    const worker = await startPeer(['work', server.url, 'limits', 'PIPELINE_LIMITS', 'work']);
    let n = 0;
    /** One job through the loop from connection `conn`, answered on its own inbox. */
    const loopOn = async (conns: NatsConnection[]) => {
      const ends = conns.map((c) => {
        const inbox = createInbox();
        const waiting = new Map<string, () => void>();
        c.subscribe(inbox, { callback: (_e, m) => waiting.get(m.headers?.get('Id') ?? '')?.() });
        return { js: jetstream(c), inbox, waiting };
      });
      return (
        await windowOf(64, async (i) => {
          const end = ends[i % ends.length]!;
          const id = String(n++);
          const answered = new Promise<void>((resolve) => end.waiting.set(id, resolve));
          const h = headers();
          h.set('Id', id);
          h.set('Reply', end.inbox);
          await end.js.publish('limits.jobs', payload, { headers: h, msgID: id });
          await answered;
          end.waiting.delete(id);
          return 1;
        })
      ).perSecond;
    };
    const workQueue64 = await loopOn([nc]);
    const many = await Promise.all(Array.from({ length: 64 }, () => connect({ servers: server.url })));
    const workQueue64Connections = await loopOn(many);
    await Promise.all(many.map((c) => c.close()));
    await stopPeer(worker);
    return {
      tokenizerBig: tokenizerBig.perSecond,
      tokenizerOne: tokenizerOne.perSecond,
      requestReply1,
      requestReply64,
      publishAck1,
      publishAck64,
      workQueue64,
      workQueue64Connections,
    };
  } finally {
    await nc.close();
  }
}

interface Traffic {
  name: string;
  clients: number;
  /** Requests each client keeps in flight. */
  inFlight: number;
  rows: number;
}

const TRAFFIC: Traffic[] = [
  { name: '1 client × 4096-row requests', clients: 1, inFlight: 1, rows: 4096 },
  { name: '8 clients × 256-row requests', clients: 8, inFlight: 1, rows: 256 },
  { name: '64 clients × 1-row requests', clients: 64, inFlight: 1, rows: 1 },
  { name: '1 client × 64 1-row requests in flight', clients: 1, inFlight: 64, rows: 1 },
];

interface Measured {
  traffic: Traffic;
  rate: Rate;
  cpu: Record<string, number | undefined>;
  messagesPerRequest: number;
}

async function serve(
  server: NatsServer,
  fleet: FleetHandle,
  service: string,
  traffic: Traffic,
  sentences: string[],
): Promise<Measured> {
  const clients = await Promise.all(
    Array.from({ length: traffic.clients }, () =>
      BertClient.connect({ servers: server.url, service, timeout: 60_000 }),
    ),
  );
  try {
    const texts = (i: number) => {
      const at = (i * traffic.rows) % (sentences.length - traffic.rows);
      return sentences.slice(at, at + traffic.rows);
    };
    // Warm-up: every client has its config and one answer.
    await Promise.all(clients.map((c, i) => c.encode(texts(i))));
    const meter = new CpuMeter({ client: process.pid, 'nats-server': server.pid, worker: fleet.workers[0]!.pid });
    const messages0 = await brokerMessages(server);
    let k = 0;
    const rate = await windowOf(
      traffic.clients * traffic.inFlight,
      async (i) => (await clients[i % traffic.clients]!.encode(texts(k++))).shape[0]!,
    );
    const cpu = meter.read();
    const messagesPerRequest = ((await brokerMessages(server)) - messages0) / rate.requests;
    return { traffic, rate, cpu, messagesPerRequest };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

/** Sequential 1-row requests through the fleet against the bare Encoder on the same rows, taking turns. */
async function addedLatency(server: NatsServer, service: string, enc: Encoder, sentences: string[]) {
  const client = await BertClient.connect({ servers: server.url, service, timeout: 30_000 });
  try {
    const bare: number[] = [];
    const e2e: number[] = [];
    for (let i = 0; i < 20; i++) await Promise.all([enc.encode([sentences[i]!]), client.encode([sentences[i]!])]);
    for (let i = 0; i < LATENCY_SAMPLES; i++) {
      const row = [sentences[i % sentences.length]!];
      const t0 = performance.now();
      await enc.encode(row);
      const t1 = performance.now();
      await client.encode(row);
      bare.push(t1 - t0);
      e2e.push(performance.now() - t1);
    }
    bare.sort((a, b) => a - b);
    e2e.sort((a, b) => a - b);
    return {
      bare: { p50: quantile(bare, 0.5), p99: quantile(bare, 0.99) },
      e2e: { p50: quantile(e2e, 0.5), p99: quantile(e2e, 0.99) },
    };
  } finally {
    await client.close();
  }
}

const f = (v: number, digits = 0) => v.toFixed(digits);

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'bertq-pipeline-bench-'));
  const server = await startNatsServer({ monitor: true });
  const load0 = loadavg();
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
    const sentences = randomSentences(8192, vocab.tokens, 7);
    console.log(systemLine());
    console.log(
      `Model: all-MiniLM-L6-v2 shape (6 layers, hidden 384), random weights, max_seq_len 25, sentences of 6-19 words; windows of ${WINDOW_S} s; load average ${load0.map((l) => l.toFixed(2)).join(' ')} at start\n`,
    );

    const enc = await Encoder.load({ ...encoderOptions, threads: cpus().length });
    const limits = await boxLimits(server, enc, sentences);
    console.log("What the box can do (plain nats.js and bertq's tokenizer, no other bertq code in the loop)\n");
    console.log(
      table(
        ['limit', 'rate'],
        [
          ['tokenizer alone, 4096-row calls', `${f(limits.tokenizerBig)} rows/s`],
          ['tokenizer alone, 1-row calls', `${f(limits.tokenizerOne)} rows/s`],
          [
            'core NATS request-reply, 1 / 64 in flight',
            `${f(limits.requestReply1)} / ${f(limits.requestReply64)} per s`,
          ],
          [
            'JetStream publish with ack, 1 / 64 in flight',
            `${f(limits.publishAck1)} / ${f(limits.publishAck64)} per s`,
          ],
          ['bare JetStream work-queue loop, 64 in flight on one connection', `${f(limits.workQueue64)} per s`],
          ['the same from 64 connections, 1 in flight each', `${f(limits.workQueue64Connections)} per s`],
        ],
      ),
    );

    // The serving path on the null engine: one worker process, every core.
    const profDir = join(root, 'profiles');
    const fleet = await startFleet({
      servers: server.url,
      service: 'pipeline',
      numWorker: 1,
      threadsPerWorker: cpus().length,
      encoder: encoderOptions,
      nullModel: true,
      logLevel: 'silent',
      removeStreamOnStop: true,
      ...(cpuProf ? { execArgv: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] } : {}),
    });
    const measured: Measured[] = [];
    try {
      for (const t of TRAFFIC) measured.push(await serve(server, fleet, 'pipeline', t, sentences));
    } finally {
      await fleet.stop();
    }
    // Each figure against the limit it is bounded by: big requests by the tokenizer; 1-row requests by
    // the bare loop with as many connections as they come from.
    const boundOf = (t: Traffic) =>
      t.rows > 1 ? limits.tokenizerBig : t.clients > 1 ? limits.workQueue64Connections : limits.workQueue64;
    const boundName = (t: Traffic) =>
      t.rows > 1
        ? 'the tokenizer alone'
        : t.clients > 1
          ? 'the bare loop from 64 connections'
          : 'the bare loop, 64 in flight on one';
    console.log('\nbertq on a model that costs nothing (one worker process, the real tokenizer, zero vectors)\n');
    console.log(
      table(
        [
          'traffic',
          'bertq',
          '÷ the box’s limit',
          'CPU s per 1000 requests: client / nats-server / worker',
          'broker msgs per request',
        ],
        measured.map((m) => {
          const perK = (s: number | undefined) => (s === undefined ? '–' : f((s * 1000) / m.rate.requests, 3));
          const unit = m.traffic.rows === 1 ? 'requests/s' : 'rows/s';
          return [
            m.traffic.name,
            `${f(m.rate.perSecond)} ${unit}`,
            `${f(m.rate.perSecond / boundOf(m.traffic), 2)} × ${boundName(m.traffic)}`,
            `${perK(m.cpu.client)} / ${perK(m.cpu['nats-server'])} / ${perK(m.cpu.worker)}`,
            f(m.messagesPerRequest, 1),
          ];
        }),
      ),
    );
    if (cpuProf) {
      for (const file of profilesIn(profDir)) {
        console.log(`\nworker profile ${file}:`);
        for (const h of hottestFunctions(file, 15)) console.log(`  ${(h.share * 100).toFixed(1)}%  ${h.name}`);
      }
    }

    // The real model: what the serving path adds to a 1-row query.
    const real = await startFleet({
      servers: server.url,
      service: 'pipeline-real',
      numWorker: 1,
      threadsPerWorker: cpus().length,
      encoder: encoderOptions,
      logLevel: 'silent',
      removeStreamOnStop: true,
    });
    try {
      const lat = await addedLatency(server, 'pipeline-real', enc, sentences);
      console.log(
        '\nThe real model, sequential 1-row requests, taking turns with the bare Encoder on the same row (ms)\n',
      );
      console.log(
        table(
          ['', 'p50', 'p99'],
          [
            ['bare Encoder.encode', f(lat.bare.p50, 2), f(lat.bare.p99, 2)],
            ['bertq end to end (client → broker → worker → client)', f(lat.e2e.p50, 2), f(lat.e2e.p99, 2)],
            ['added by the serving path', f(lat.e2e.p50 - lat.bare.p50, 2), f(lat.e2e.p99 - lat.bare.p99, 2)],
          ],
        ),
      );
    } finally {
      await real.stop();
    }
    await enc.close();
    console.log(
      `\nload average at end: ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
  } finally {
    await server.stop();
    await rm(root, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
