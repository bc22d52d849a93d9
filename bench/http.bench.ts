/**
 * The HTTP gateway against the NATS client, on the same fleet, in one run: rows/s of 256-row requests
 * through `POST /v1/embeddings` (float JSON and base64, as OpenAI SDKs ask by default) and through
 * bert-as-service's `POST /encode`, beside `BertClient.encode` straight over NATS. The deployment is
 * the real one: a private nats-server, the worker fleet in its own process (`startFleet`), the gateway
 * in its own process; this process only sends requests (the same number in flight on every path).
 * Two models: the tiny test model (hidden 32: inference is nearly free, so the table shows the pure
 * transport overhead) and a MiniLM-L6-shaped one (6 layers, hidden 384: a small production model).
 *
 *   npm run build && node bench/dist/http.bench.js [--quick]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BertClient } from '@bertq/client';
import { syntheticBertWeights, syntheticVocab, tinyBertConfig, writeHuggingFaceFolder } from '@bertq/model';
import type { BertConfig } from '@bertq/model';
import { startNatsServer } from '@bertq/testing';
import { startFleet } from '@bertq/worker';
import { randomSentences, systemLine, table } from './system.js';

const ROWS_PER_REQUEST = 256;
/** Requests in flight at once, on every path. */
const IN_FLIGHT = 4;
const quick = process.argv.includes('--quick');
/**
 * Each round sends every path the same number of requests (enough for about ROUND_SECONDS on the NATS
 * client), in alternating order, so a busy neighbour on the machine hits all paths alike; the table
 * shows each path's median round.
 */
const ROUND_SECONDS = quick ? 2 : 4;
const ROUNDS = quick ? 1 : 5;
const REPO = fileURLToPath(new URL('../../', import.meta.url));
const SHARED_VOCAB = join(REPO, '..', 'shared', 'models', 'bert-base-uncased-vocab.txt');
const GATEWAY_START_MS = 30_000;

interface Scenario {
  name: string;
  config: BertConfig;
}

const SCENARIOS: Scenario[] = [
  { name: 'tiny (4 layers, hidden 32)', config: tinyBertConfig({ maxPositionEmbeddings: 512 }) },
  {
    name: 'MiniLM-L6 shape (6 layers, hidden 384)',
    config: tinyBertConfig({
      hiddenSize: 384,
      numHiddenLayers: 6,
      numAttentionHeads: 12,
      intermediateSize: 1536,
      maxPositionEmbeddings: 512,
    }),
  },
];

/** Starts `startGateway` in a child process and resolves with its URL. */
async function startGatewayProcess(servers: string, service: string): Promise<{ url: string; child: ChildProcess }> {
  const script = `
    import { startGateway } from '@bertq/gateway';
    const g = await startGateway({ host: '127.0.0.1', port: 0, client: { servers: ${JSON.stringify(servers)}, service: ${JSON.stringify(service)} } });
    console.log('URL ' + g.url);
    process.on('SIGTERM', () => g.close().then(() => process.exit(0)));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the gateway process did not start within ${GATEWAY_START_MS} ms`)),
      GATEWAY_START_MS,
    );
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = /URL (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code) => reject(new Error(`the gateway process exited with ${code} before it listened`)));
  });
  return { url, child };
}

type Path = { name: string; send: (texts: string[]) => Promise<number> };

/** Sends `requests` requests, `IN_FLIGHT` at a time; rows per second and per-request latencies. */
async function drive(
  path: Path,
  batches: string[][],
  requests: number,
): Promise<{ rowsPerSecond: number; latencies: number[] }> {
  const latencies: number[] = [];
  let rows = 0;
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < requests) {
        const batch = batches[next++ % batches.length]!;
        const t0 = performance.now();
        const n = await path.send(batch); // not `rows += await …`: that reads rows before the await
        rows += n;
        latencies.push(performance.now() - t0);
      }
    }),
  );
  return { rowsPerSecond: rows / ((performance.now() - started) / 1000), latencies };
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function postJson(url: string, body: unknown): Promise<unknown> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status}: ${await res.text()}`);
  return res.json();
}

async function runScenario(
  scenario: Scenario,
  natsUrl: string,
  vocabTokens: string[] | undefined,
  root: string,
): Promise<Array<Array<string | number>>> {
  const vocab = vocabTokens === undefined ? syntheticVocab() : undefined;
  const weights = syntheticBertWeights(
    { ...scenario.config, vocabSize: vocab ? vocab.length : scenario.config.vocabSize },
    7,
  );
  const dir = await writeHuggingFaceFolder(
    join(root, scenario.config.hiddenSize.toString()),
    weights,
    vocab ? { tokens: vocab } : { file: SHARED_VOCAB },
  );
  const service = `bench-http-${scenario.config.hiddenSize}`;
  const fleet = await startFleet({
    servers: natsUrl,
    service,
    numWorker: 1,
    encoder: { model: dir, graphTmpDir: join(root, 'graphs') },
    threadsPerWorker: cpus().length,
    logLevel: 'warn',
  });
  const gateway = await startGatewayProcess(natsUrl, service);
  const client = await BertClient.connect({ servers: natsUrl, service, timeout: 300_000 });
  // Sentences of 6-20 real words (the max_seq_len of 25 cuts the longest).
  const texts = randomSentences(ROWS_PER_REQUEST * 8, vocabTokens ?? vocab!, 4242, 6, 20);
  const batches = Array.from({ length: 8 }, (_, i) => texts.slice(i * ROWS_PER_REQUEST, (i + 1) * ROWS_PER_REQUEST));
  const v1 = `${gateway.url}v1/embeddings`;
  const base64 = (url: string) => async (t: string[]) => {
    const body = (await postJson(url, { model: 'bench', input: t, encoding_format: 'base64' })) as {
      data: Array<{ embedding: string }>;
    };
    // Decode as an SDK does, so both paths end with Float32Arrays.
    for (const d of body.data) {
      const bytes = Buffer.from(d.embedding, 'base64');
      new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    }
    return body.data.length;
  };
  const paths: Path[] = [
    {
      name: 'NATS client (BertClient.encode)',
      send: async (t) => (await client.encode(t)).shape[0]!,
    },
    { name: 'HTTP /v1/embeddings, base64', send: base64(v1) },
    {
      name: 'HTTP /v1/embeddings, float',
      send: async (t) => ((await postJson(v1, { model: 'bench', input: t })) as { data: unknown[] }).data.length,
    },
    {
      name: 'HTTP /encode (bert-as-service)',
      send: async (t) =>
        ((await postJson(`${gateway.url}encode`, { id: 1, texts: t })) as { result: unknown[] }).result.length,
    },
  ];
  try {
    // Warm every path (graph, tokenizer, connections) before timing, then size the rounds.
    for (const p of paths) await p.send(batches[0]!);
    const probe = await drive(paths[0]!, batches, IN_FLIGHT * 2);
    const perRequestSeconds = ROWS_PER_REQUEST / probe.rowsPerSecond;
    const requests = IN_FLIGHT * Math.max(2, Math.round(ROUND_SECONDS / perRequestSeconds / IN_FLIGHT));
    const results = new Map<string, { rows: number[]; latencies: number[] }>();
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? paths : [...paths].reverse();
      for (const p of order) {
        const r = await drive(p, batches, requests);
        const entry = results.get(p.name) ?? { rows: [], latencies: [] };
        entry.rows.push(r.rowsPerSecond);
        entry.latencies.push(...r.latencies);
        results.set(p.name, entry);
      }
    }
    const base = median(results.get(paths[0]!.name)!.rows);
    return paths.map((p) => {
      const r = results.get(p.name)!;
      const rate = median(r.rows);
      return [
        scenario.name,
        p.name,
        rate.toFixed(0),
        (rate / base).toFixed(2),
        median(r.latencies).toFixed(0),
        `${requests} × ${ROUNDS}`,
      ];
    });
  } finally {
    await client.close();
    for (const g of [gateway]) {
      g.child.kill('SIGTERM');
      await new Promise((resolve) => g.child.once('exit', resolve));
    }
    await fleet.stop();
  }
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'bertq-http-bench-'));
  const nats = await startNatsServer();
  const vocabTokens = existsSync(SHARED_VOCAB)
    ? (await readFile(SHARED_VOCAB, 'utf8')).split('\n').filter(Boolean)
    : undefined;
  try {
    const rows: Array<Array<string | number>> = [];
    for (const scenario of SCENARIOS) rows.push(...(await runScenario(scenario, nats.url, vocabTokens, root)));
    console.log(
      `${ROWS_PER_REQUEST}-row requests, ${IN_FLIGHT} in flight per path, max_seq_len 25, 1 worker process, gateway in its own process; rows/s is each path's median round\n`,
    );
    console.log(table(['model', 'path', 'rows/s', '× NATS client', 'p50 ms/request', 'requests × rounds'], rows));
    console.log(`\n${systemLine()}`);
  } finally {
    await nats.stop();
    await rm(root, { recursive: true, force: true });
  }
}

await main();
