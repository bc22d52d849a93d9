/**
 * Test helpers: a minimal job publisher/collector built on the protocol package (encodeJob, decodeFrame,
 * RequestAssembler) and a real NATS client, plus engine wrappers. Not a test file itself.
 */
import { freePort, freshService, maxAbsDiff, sleep, slowModel, waitFor } from '@bertq/testing';
import { connect, nuid } from '@nats-io/transport-node';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import type { JetStreamClient } from '@nats-io/jetstream';
import { RequestAssembler, decodeFrame, encodeJob, jobSubject, newRequestId, resultsSubject } from '@bertq/protocol';
import type { AssembledResult, BertqError, DecodedFrame, HeaderMap, OutputDtype, Priority } from '@bertq/protocol';
import { Encoder } from '@bertq/model';
import type { EncoderOptions } from '@bertq/model';
import { tinyModel } from '@bertq/testing';
import type { EmbeddingEngine } from '../src/core/engine.js';
import { fromNatsHeaders, toNatsHeaders } from '@bertq/nats';

/** Loads the tiny model fixture as an Encoder (one thread: the machine is shared). */
export async function tinyEncoder(options: Partial<EncoderOptions> = {}): Promise<Encoder> {
  const tiny = await tinyModel();
  return Encoder.load({ model: tiny.huggingFaceDir, graphTmpDir: tiny.graphDir, threads: 1, ...options });
}

/** Wraps a real engine so each batch takes `delayMs` longer (slow-model tests), counting batches. */
export function slowEngine(
  engine: EmbeddingEngine,
  delayMs: number,
): EmbeddingEngine & { readonly batches: number; readonly running: number } {
  const slow = slowModel((rows: Parameters<EmbeddingEngine['run']>[0]) => engine.run(rows), delayMs);
  return {
    get batches() {
      return slow.batches;
    },
    get running() {
      return slow.running;
    },
    get info() {
      return engine.info;
    },
    tokenize: engine.tokenize.bind(engine),
    tokenLevelLength: engine.tokenLevelLength.bind(engine),
    close: () => Promise.resolve(), // the test closes the real engine itself
    run: (rows) => slow.run(rows),
  };
}

export interface RequestOptions {
  priority?: Priority;
  output?: OutputDtype;
  showTokens?: boolean;
  isTokenized?: boolean;
  /** Rows per job. Default 256. */
  chunk?: number;
  /** Epoch ms. Default now + timeoutMs. */
  deadline?: number;
  timeoutMs?: number;
}

interface Pending {
  assembler: RequestAssembler;
  timer: NodeJS.Timeout;
  resolve: (r: AssembledResult) => void;
  reject: (e: Error) => void;
  order: number;
}

const DEFAULT_REQUEST_TIMEOUT_MS = 20_000;

/** Publishes jobs like a client would and reassembles results from its results subject. */
export class TestClient {
  readonly identity = nuid.next();
  readonly resultsSubject: string;
  /** Request ids in the order their last row arrived. */
  readonly completed: string[] = [];
  /** Every frame received, decoded. */
  readonly frames: Array<{ headers: HeaderMap; frame: DecodedFrame }> = [];
  readonly #sub: Subscription;
  readonly #pending = new Map<string, Pending>();
  readonly #js: JetStreamClient;
  #order = 0;

  constructor(
    readonly nc: NatsConnection,
    readonly service: string,
  ) {
    this.resultsSubject = resultsSubject(service, this.identity);
    this.#js = jetstream(nc);
    this.#sub = nc.subscribe(this.resultsSubject, {
      callback: (err, msg) => {
        if (err) return;
        const headers = fromNatsHeaders(msg.headers);
        let frame: DecodedFrame;
        try {
          // A copy into a fresh ArrayBuffer: msg.data is a Node Buffer view into a larger pooled buffer
          // (Buffer#slice does not copy), and decodeFrame reads `.buffer` for aligned float32 bodies.
          frame = decodeFrame(headers, new Uint8Array(msg.data));
        } catch (e) {
          this.frames.push({ headers, frame: { kind: 'error', error: e as BertqError } });
          return;
        }
        this.frames.push({ headers, frame });
        const pending = frame.id === undefined ? undefined : this.#pending.get(frame.id);
        if (pending === undefined) return;
        if (frame.kind === 'error') {
          this.#pending.delete(frame.id!);
          pending.reject(frame.error);
          return;
        }
        try {
          pending.assembler.add(frame);
        } catch (e) {
          this.#pending.delete(frame.id);
          pending.reject(e as Error);
          return;
        }
        if (pending.assembler.complete) {
          this.#pending.delete(frame.id);
          this.completed.push(frame.id);
          pending.resolve(pending.assembler.result());
        }
      },
    });
  }

  /** Publishes a request (split in jobs) and returns its id and a promise of the whole result. */
  async submit(
    texts: readonly string[] | readonly string[][],
    options: RequestOptions = {},
  ): Promise<{ id: string; result: Promise<AssembledResult> }> {
    const id = newRequestId();
    const timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    const chunk = options.chunk ?? 256;
    const result = new Promise<AssembledResult>((resolve, reject) => {
      const timer: NodeJS.Timeout = setTimeout(() => {
        const p = this.#pending.get(id);
        this.#pending.delete(id);
        reject(
          new Error(
            `request ${id} timed out after ${timeoutMs} ms; missing rows ${JSON.stringify(p?.assembler.missingRanges())}`,
          ),
        );
      }, timeoutMs);
      this.#pending.set(id, {
        assembler: new RequestAssembler({ id, rows: texts.length }),
        timer,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
        order: this.#order++,
      });
    });
    result.catch(() => undefined); // callers await it; avoid an unhandled rejection before they do
    const subject = jobSubject(this.service, options.priority ?? 'bulk');
    for (let offset = 0; offset < texts.length; offset += chunk) {
      const { headers, body } = encodeJob({
        id,
        offset,
        reply: this.resultsSubject,
        deadline: options.deadline ?? Date.now() + timeoutMs,
        texts: texts.slice(offset, offset + chunk) as string[] | string[][],
        ...(options.isTokenized ? { isTokenized: true } : {}),
        ...(options.showTokens ? { showTokens: true } : {}),
        ...(options.output ? { output: options.output } : {}),
      });
      await this.#js.publish(subject, body, { headers: toNatsHeaders(headers) });
    }
    return { id, result };
  }

  async encode(texts: readonly string[] | readonly string[][], options: RequestOptions = {}): Promise<AssembledResult> {
    return (await this.submit(texts, options)).result;
  }

  /** Publishes a hand-made job (any headers, any body bytes) to the stream; returns the publish ack. */
  async publishRaw(priority: Priority, body: Uint8Array | string, headers: HeaderMap) {
    const data = typeof body === 'string' ? new TextEncoder().encode(body) : body;
    return this.#js.publish(jobSubject(this.service, priority), data, { headers: toNatsHeaders(headers) });
  }

  /** Waits for the first error frame of request `id`. */
  async errorFor(id: string, timeoutMs = 10_000): Promise<{ headers: HeaderMap; error: BertqError }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.frames.find((f) => f.frame.kind === 'error' && f.frame.id === id);
      if (hit && hit.frame.kind === 'error') return { headers: hit.headers, error: hit.frame.error };
      if (Date.now() > deadline) throw new Error(`no error frame for request ${id} within ${timeoutMs} ms`);
      await sleep(20);
    }
  }

  /** Unsubscribes and fails whatever is still pending (so no request timer outlives the test). */
  close(): void {
    this.#sub.unsubscribe();
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      pending.reject(new Error(`request ${id} abandoned: the test client closed`));
    }
    this.#pending.clear();
  }
}

export async function connectTo(url: string): Promise<NatsConnection> {
  return connect({ servers: url, name: 'bertq-worker-test' });
}

/** Sentences of varied length, deterministic. */
export function sentences(n: number, seed = 1): string[] {
  const words = [
    'the',
    'quick',
    'brown',
    'fox',
    'jumps',
    'over',
    'lazy',
    'dog',
    'hello',
    'world',
    'good',
    'day',
    'nice',
    'weather',
    'embedding',
    'service',
  ];
  let x = seed;
  const next = () => (x = (x * 1103515245 + 12345) % 2147483648);
  return Array.from({ length: n }, () => {
    const len = 1 + (next() % 14);
    return Array.from({ length: len }, () => words[next() % words.length]).join(' ');
  });
}

export { freePort, freshService, maxAbsDiff, sleep, waitFor };
