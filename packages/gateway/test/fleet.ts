/**
 * Shared pieces of the gateway's server-backed tests: a real nats-server, real workers running the
 * tiny model through ONNX Runtime, gateways in front of them, and small HTTP helpers. Not a test file.
 */
import { Encoder, type EncoderOptions } from '@bertq/model';
import { freshService, startNatsServer, tinyModel, type NatsServer } from '@bertq/testing';
import { startWorker, type EmbeddingEngine, type WorkerHandle, type WorkerOptions } from '@bertq/worker';
import { startGateway, type GatewayHandle, type GatewayOptions } from '../src/index.js';

/** Vectors through the gateway must equal in-process vectors to this (same graph; JSON keeps float32 exactly). */
export const TOLERANCE = 1e-6;

/** Short and long rows, a pair, accents, an unknown-ish word. */
export const SENTENCES = [
  'hello world',
  'First do it',
  'then do it right',
  'the quick brown fox jumps over the lazy dog near the river bank',
  'good day ||| nice weather',
  'Café naïve résumé',
  'xyzzyplugh',
];

/** An encoder on the tiny model (hidden 32, 64 positions), one inference thread: the machine is shared. */
export async function tinyEncoder(options: Partial<EncoderOptions> = {}): Promise<Encoder> {
  const tiny = await tinyModel();
  return Encoder.load({ model: tiny.huggingFaceDir, graphTmpDir: tiny.graphDir, threads: 1, ...options });
}

/** The real engine, each batch held back `delayMs` first (a slow model, for OVERLOADED and TIMEOUT). */
export function slowEngine(engine: EmbeddingEngine, delayMs: number): EmbeddingEngine {
  return {
    get info() {
      return engine.info;
    },
    tokenize: engine.tokenize.bind(engine),
    tokenLevelLength: engine.tokenLevelLength.bind(engine),
    close: () => Promise.resolve(), // the test closes the real engine
    async run(rows) {
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      return engine.run(rows);
    },
  };
}

/** A nats-server plus what each test starts on it; `stop()` tears everything down in order. */
export class TestFleet {
  readonly workers: WorkerHandle[] = [];
  readonly gateways: GatewayHandle[] = [];

  private constructor(readonly server: NatsServer) {}

  static async start(): Promise<TestFleet> {
    return new TestFleet(await startNatsServer());
  }

  /** A worker on a fresh service (unless one is named). */
  async worker(options: Partial<WorkerOptions> & Pick<WorkerOptions, 'engine'>): Promise<WorkerHandle> {
    const worker = await startWorker({
      servers: this.server.url,
      service: freshService('gw'),
      pullExpiresMs: 1_000,
      ...options,
    });
    this.workers.push(worker);
    return worker;
  }

  /** A gateway on 127.0.0.1, a random port, for `service`. */
  async gateway(service: string, options: Omit<GatewayOptions, 'client'> = {}): Promise<GatewayHandle> {
    const gateway = await startGateway({
      host: '127.0.0.1',
      port: 0,
      client: { servers: this.server.url, service },
      ...options,
    });
    this.gateways.push(gateway);
    return gateway;
  }

  async stop(): Promise<void> {
    await Promise.all(this.gateways.map((g) => g.close()));
    await Promise.all(this.workers.map((w) => w.stop({ drainTimeoutMs: 2_000 })));
    await this.server.stop();
  }
}

export interface JsonReply<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
}

/** POSTs a JSON body (an object, or raw text as is) and reads the JSON answer. */
export async function postJson<T = any>(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<JsonReply<T>> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as T };
}

export async function getJson<T = any>(url: string, headers: Record<string, string> = {}): Promise<JsonReply<T>> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(30_000) });
  return { status: res.status, headers: res.headers, body: (await res.json()) as T };
}

/** Float32 values from OpenAI's base64 embedding. */
export function decodeBase64Floats(text: string): Float32Array {
  const bytes = Buffer.from(text, 'base64');
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
}
