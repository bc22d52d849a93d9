/**
 * The public shapes of what a BertClient returns. bert-as-service returned numpy arrays or nested
 * Python lists (`output_fmt`); here `ndarray` is a flat Float32Array plus its shape (row-major, the
 * layout numpy and ONNX Runtime use), and `list` is nested number arrays.
 */
import type { LoadReading } from './admission.js';
import type { BertqError, StageTimings } from '@bertq/protocol';

/** `ndarray`: `{ data: Float32Array, shape }`; `list`: nested `number[][]` (or `number[][][]` token-level). */
export type OutputFormat = 'ndarray' | 'list';

/** A dense row-major array: `data.length` is the product of `shape`. */
export interface NdArray {
  /** Values, row-major (the last axis fastest). */
  data: Float32Array;
  /** `[rows, hidden]` for pooled output, `[rows, tokens, hidden]` for `pooling_strategy NONE`. */
  shape: number[];
}

/**
 * Rows as nested arrays: `number[][]` for pooled output, `number[][][]` for token-level output
 * (`pooling_strategy NONE`). Which one depends on the server, so narrow with `Array.isArray(v[0][0])`.
 */
export type ListVectors = number[][] | number[][][];

/** What one request encodes to, in the client's output format. */
export type Vectors<F extends OutputFormat> = F extends 'list' ? ListVectors : NdArray;

/** A request asked with `showTokens`: the vectors plus each row's tokens as the server saw them. */
export interface VectorsWithTokens<V> {
  vectors: V;
  /** Per row, its tokens (`[CLS]`, word pieces, `[SEP]`, `[UNK]` for unknown pre-tokenized words). */
  tokens: string[][];
}

/** Input of one request: sentences (`"A ||| B"` is a pair), or token lists with `isTokenized`. */
export type Texts = readonly string[] | readonly (readonly string[])[];

/** One finished non-blocking request, as `fetch()` and `fetchAll()` return it. */
export interface Fetched<F extends OutputFormat> {
  /** The request id `encode(…, { blocking: false })` returned. */
  id: string;
  vectors: Vectors<F>;
  /** Present when the request asked for `showTokens`. */
  tokens?: string[][];
}

/**
 * One result frame seen on this identity's results subject, as `listen()` yields it. Frames carry a
 * chunk of a request (consecutive rows from `offset`), not necessarily the whole request: the
 * protocol does not tell a listener how many rows a request sent by another clone has.
 */
export interface ResultDelivery<F extends OutputFormat> {
  kind: 'result';
  /** Request id (shared by every chunk of a request). */
  id: string;
  /** Request-relative index of the first row. */
  offset: number;
  rows: number;
  vectors: Vectors<F>;
  tokens?: string[][];
  /** Id of the worker that computed the rows, when it said. */
  worker?: string;
  timings: StageTimings;
  /** True when this client sent the request (false: a clone sharing the identity did). */
  own: boolean;
}

/** An error frame seen on this identity's results subject. */
export interface ErrorDelivery {
  kind: 'error';
  id?: string;
  offset?: number;
  rows?: number;
  worker?: string;
  error: BertqError;
  own: boolean;
}

export type Delivery<F extends OutputFormat> = ResultDelivery<F> | ErrorDelivery;

/**
 * One result frame that brought new rows of a request, as `EncodeOptions.onFrame` reports it: which
 * rows, which worker, and the worker's stage timings (for metrics, e.g. the gateway's histograms).
 */
export interface FrameReport {
  /** Request id. */
  id: string;
  /** Request-relative index of the frame's first row. */
  offset: number;
  rows: number;
  /** Id of the worker that computed the rows, when it said. */
  worker?: string;
  timings: StageTimings;
  /** Per row of the frame, the tokens it was encoded as ([CLS]/[SEP] included), as the worker counted. */
  tokenCounts?: number[];
  /** On a byte part of a split row: its 1-based index and the part count. */
  part?: { index: number; count: number };
}

/** Client-side statistics (bert-as-service's `BertClient.status`). */
export interface ClientStatus {
  identity: string;
  /** Canonical service name. */
  service: string;
  /** Subject this client (and its clones) receive results on. */
  resultsSubject: string;
  /** The NATS server this client is connected to, as `host:port`, or '' when closed. */
  server: string;
  clientVersion: string;
  /** `server_version` of the last config read, when any. */
  serverVersion: string | undefined;
  outputFmt: OutputFormat;
  timeoutMs: number;
  /** Rows per chunk currently in use; undefined until the server config has been read. */
  maxChunkRows: number | undefined;
  /** Requests sent (blocking and not). */
  numRequest: number;
  /** Rows sent over all requests. */
  numTotalSeq: number;
  /** Chunks (jobs) published. */
  numChunks: number;
  /** Requests finished with all rows. */
  numCompleted: number;
  /** Requests failed (error frame, timeout, publish refused, closed). */
  numFailed: number;
  numTimeout: number;
  /** Requests in flight now. */
  pending: number;
  /** Non-blocking requests sent and not yet fetched. */
  unfetched: number;
  /** Open listen() iterators. */
  listeners: number;
  framesReceived: number;
  /** Frames that repeated rows already held (redelivered jobs). */
  duplicateFrames: number;
  /** Frames of requests this client did not send (clones sharing the identity) or no longer waits for. */
  foreignFrames: number;
  /** Frames that broke the protocol. */
  malformedFrames: number;
  /**
   * Frames of this client's requests without the request's seal: computed from jobs somebody else
   * published under its ids (an attack, or a worker from before seals). Dropped.
   */
  forgedFrames: number;
  /** Publishes repeated after a lost ack. */
  publishRetries: number;
  /** Jobs published again after a reconnect, because their frames may have been lost meanwhile. */
  reaskedJobs: number;
  /** Recoveries after a reconnect that have run to their end (one per reconnect). */
  recoveries: number;
  /** Requests given up (failed, aborted, closed) whose queued jobs the workers were told to skip. */
  cancelled: number;
  /** Requests refused at once with OVERLOADED: the queue ahead could not be served by their deadline. */
  shed: number;
  /** The fleet's load as last read for admission (queue ahead, capacity), once a request was sent. */
  load?: LoadReading;
  /** Reconnects to the NATS server since the client started. */
  reconnects: number;
  closed: boolean;
  /** Connected to a NATS server now (false while reconnecting, and once closed). */
  connected: boolean;
  /** While reconnecting: since when (ISO 8601). */
  disconnectedSince?: string;
}
