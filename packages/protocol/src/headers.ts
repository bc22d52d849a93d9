/**
 * Header names of wire protocol v1 and the tiny helpers around them. Headers here are plain
 * `Record<string, string>` (one value per name): worker and client convert to and from NATS headers,
 * so this package stays free of I/O and of any NATS library.
 */
import { utf8Length } from './utf8.js';
import { getRandomValues } from 'node:crypto';

/** Message headers as this package reads and writes them: one value per name. */
export type HeaderMap = Record<string, string>;

export const HEADERS = {
  // ---- job (client → stream → worker) ----
  /** Request id: NUID-like, globally unique. Every chunk of one request carries the same id. */
  id: 'Bertq-Id',
  /** Index of the chunk's (or frame's) first row inside the request. */
  offset: 'Bertq-Offset',
  /** Subject the worker publishes result frames to (normally `bertq.v1.<svc>.results.<identity>`). */
  reply: 'Bertq-Reply',
  /** Epoch milliseconds after which the job is worthless; workers drop it with a TIMEOUT frame. */
  deadline: 'Bertq-Deadline',
  /**
   * The request's secret key (optional): the worker answers every frame of the job with its seal, so
   * the client can tell its own frames from frames of jobs somebody else published under its id.
   */
  key: 'Bertq-Key',
  /** JetStream de-duplication id: `<id>:<offset>`, or `<id>:<offset>:<n>` for the n-th re-ask after a reconnect. */
  msgId: 'Nats-Msg-Id',

  // ---- result frame (worker → results subject) ----
  /** Rows in this frame. */
  rows: 'Bertq-Rows',
  /** Shape of this frame's rows, comma-separated, row axis first: `3,768` or `3,25,768`. */
  shape: 'Bertq-Shape',
  /** `f32` | `f16` (little-endian) | `json`. */
  dtype: 'Bertq-Dtype',
  /** `i/n` when one row was split by bytes into n parts (1-based i); absent otherwise. */
  part: 'Bertq-Part',
  /** JSON array, one token list per row of the frame (only when `show_tokens` was asked). ASCII-only. */
  tokens: 'Bertq-Tokens',
  /**
   * Tokens each row of the frame was encoded as, comma-separated (`5,7,3`; [CLS]/[SEP] included):
   * what usage accounting (OpenAI's prompt_tokens) needs, without asking for the tokens themselves.
   */
  tokenCounts: 'Bertq-Token-Counts',
  /** The seal of the job's Bertq-Key (sealOf), on every frame of a job that carried one. */
  seal: 'Bertq-Seal',
  /** Id of the worker that computed the frame (its services-framework instance id). */
  worker: 'Bertq-Worker',
  /** Milliseconds spent tokenizing the job (TEI's x-tokenization-time). */
  tokenizationTime: 'Bertq-Tokenization-Time',
  /** Milliseconds between the worker taking the job and its batch starting (TEI's x-queue-time). */
  queueTime: 'Bertq-Queue-Time',
  /** Milliseconds the model ran for the batch(es) holding these rows (TEI's x-inference-time). */
  inferenceTime: 'Bertq-Inference-Time',
  /** Milliseconds from the worker taking the job to this frame (TEI's x-total-time). */
  totalTime: 'Bertq-Total-Time',

  // ---- error frame / error reply ----
  /** Numeric status of the error (ERROR_CODES[code].status), as the NATS services framework sends it. */
  serviceErrorCode: 'Nats-Service-Error-Code',
  /** Error message, as the NATS services framework sends it (ASCII, one line). */
  serviceError: 'Nats-Service-Error',
  /** The symbolic error code (`BAD_REQUEST`, `TIMEOUT`, …). */
  errorCode: 'Bertq-Error-Code',
} as const;

export type HeaderName = (typeof HEADERS)[keyof typeof HEADERS];

/**
 * Reads a header. NATS header names are case-sensitive and bertq always writes the canonical
 * spelling, but readers accept any case: a hand-typed `nats pub -H bertq-id:…` should still work.
 */
export function getHeader(headers: HeaderMap, name: string): string | undefined {
  const exact = headers[name];
  if (exact !== undefined) return exact;
  const lower = name.toLowerCase();
  for (const key of Object.keys(headers)) {
    if (key.toLowerCase() === lower) return headers[key];
  }
  return undefined;
}

/** The `Nats-Msg-Id` of a chunk: JetStream drops a re-published chunk with the same id within its duplicate window. */
export function dedupId(id: string, offset: number, attempt = 0): string {
  // A re-ask (after the client reconnected) is a new message on purpose: attempt n > 0 gets its own id.
  return attempt === 0 ? `${id}:${offset}` : `${id}:${offset}:${attempt}`;
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const REQUEST_ID_LENGTH = 22;

/**
 * A new request id: 22 random base-62 characters (~131 bits, like a NUID). Globally unique without
 * coordination, so clones sharing a results subject never take each other's frames.
 */
export function newRequestId(): string {
  let out = '';
  while (out.length < REQUEST_ID_LENGTH) {
    const b = randomByte();
    // 248 = 4 × 62: rejecting larger bytes keeps every character equally likely.
    if (b < 248) out += BASE62[b % 62];
  }
  return out;
}

/**
 * Cryptographic random bytes drawn from a pool filled 4 KiB at a time: one getRandomValues call per
 * id cost 5% of a client's CPU with 1-row requests (profiled); the bytes are as random either way.
 */
const randomPool = new Uint8Array(4096);
let randomAt = randomPool.length;
function randomByte(): number {
  if (randomAt === randomPool.length) {
    getRandomValues(randomPool);
    randomAt = 0;
  }
  return randomPool[randomAt++]!;
}

/**
 * Makes a string safe as a header value: one line of printable ASCII. Non-ASCII characters become
 * `\uXXXX` escapes (the same escapes JSON uses), control characters become spaces.
 */
export function asciiHeaderValue(value: string): string {
  // eslint-disable-next-line no-control-regex
  return value
    .replace(/[\u0000-\u001f\u007f]/g, ' ')
    .replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * JSON text with every non-ASCII character and every space escaped (`\uXXXX`), so it can travel in a
 * header and parse back as is. Spaces too: a header value cut into fragments must not begin or end
 * with whitespace, which header parsers trim.
 */
export function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u0020\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/**
 * Bytes a header block takes on the wire: `NATS/1.0\r\n`, then `Name: value\r\n` per header, then
 * `\r\n`. NATS counts these against max_payload together with the body.
 */
export function headerWireSize(headers: HeaderMap): number {
  let size = 'NATS/1.0\r\n'.length + 2;
  for (const [name, value] of Object.entries(headers)) size += utf8Length(name) + 2 + utf8Length(value) + 2;
  return size;
}

/** Total bytes of a message against max_payload: header block plus body. */
export function messageWireSize(headers: HeaderMap, body: Uint8Array): number {
  return headerWireSize(headers) + body.length;
}
