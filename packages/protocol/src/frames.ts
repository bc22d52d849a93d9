/**
 * Result frames: how a worker sends one job's rows back, and how a client reads them. A frame never
 * exceeds the server's max_payload (headers included): rows are spread over as many frames as
 * needed, and a single row that is still too large (token-level output of a long sequence) is split
 * by bytes into parts marked `Bertq-Part: i/n`.
 */
import { InternalError, TooLargeError, type BertqError } from './errors.js';
import { decodeErrorReply, isErrorMessage } from './error-frames.js';
import {
  HEADERS,
  asciiHeaderValue,
  asciiJson,
  getHeader,
  headerWireSize,
  messageWireSize,
  type HeaderMap,
} from './headers.js';
import type { OutputDtype } from './job.js';
import {
  BYTES_PER_ELEMENT,
  bytesToFloat16AsFloat32,
  bytesToFloat32,
  elementCount,
  float16ToBytes,
  float32ToBytes,
  jsonRowsToFloat32,
  rowToJson,
} from './rows.js';
import { decodeUtf8 } from './utf8.js';

/** One message: headers plus body. */
export interface Frame {
  headers: HeaderMap;
  body: Uint8Array;
}

/**
 * The stages of a job, spelled one way everywhere: the `Bertq-<Stage>-Time` headers (TEI's
 * x-*-time), the `timings` of the status document, the `stage` label of the Prometheus metrics.
 *   tokenization  tokenizing the job's rows;
 *   queue         from the worker taking the job to its (first) batch starting;
 *   inference     model time of the batch(es) that held the rows;
 *   total         from the worker taking the job to the frames being made.
 */
export const STAGES = ['tokenization', 'queue', 'inference', 'total'] as const;
export type Stage = (typeof STAGES)[number];

/** Stage timings of a job, in milliseconds. */
export type StageTimings = Partial<Record<Stage, number>>;

/** The header that carries a stage's time: `Bertq-Tokenization-Time`, … */
export function stageHeader(stage: Stage): string {
  return `Bertq-${stage[0]!.toUpperCase()}${stage.slice(1)}-Time`;
}

/** What a worker computed for some consecutive rows of one request. */
export interface ResultInput {
  /** Request id (the job's Bertq-Id). */
  id: string;
  /** Request-relative index of the first row (the job's Bertq-Offset, plus any rows sent before). */
  offset: number;
  /** Number of rows in `data`. */
  rows: number;
  /** Shape of one row after the row axis: [768] for pooled output, [seqLen, 768] for token-level. */
  shape: readonly number[];
  /** Encoding of the frame bodies (the job's `output`). */
  dtype: OutputDtype;
  /**
   * rows × prod(shape) values, row-major. Float32Array for every dtype; with dtype f16 a Uint16Array
   * of ready binary16 bits is taken as is (a model that computes in float16 needs no round trip).
   */
  data: Float32Array | Uint16Array;
  /** Per row, its tokens (when the job asked for show_tokens). */
  tokens?: readonly (readonly string[])[];
  /** Per row, how many tokens it was encoded as (sent in Bertq-Token-Counts). */
  tokenCounts?: readonly number[];
  timings?: StageTimings;
  /** Id of the worker, sent in Bertq-Worker. */
  worker?: string;
  /** The seal of the job's key (sealOf), sent in Bertq-Seal on every frame. */
  seal?: string;
}

export interface FrameOptions {
  /** Largest message the NATS server accepts (its max_payload), headers and body together. */
  maxPayload: number;
  /**
   * Bytes kept free under maxPayload for headers a transport or middleware may add after encoding
   * (default 32). More slack costs a little frame capacity; none risks a rejected publish.
   */
  headerSlack?: number;
}

const DEFAULT_HEADER_SLACK = 32;
const encoder = new TextEncoder();

/** Splits a result into frames, each at most `maxPayload - headerSlack` bytes on the wire. */
export function encodeResultFrames(result: ResultInput, options: FrameOptions): Frame[] {
  checkResult(result);
  const budget = options.maxPayload - (options.headerSlack ?? DEFAULT_HEADER_SLACK);
  const { rows, shape, dtype } = result;
  const rowElements = elementCount(shape);

  // Each row's encoded body, computed once. Binary rows are views into one buffer.
  const rowBodies: Uint8Array[] = new Array(rows);
  let binary: Uint8Array | undefined; // all rows back to back (binary dtypes): frames are views into it
  if (dtype === 'json') {
    const values = result.data as Float32Array;
    for (let r = 0; r < rows; r++)
      rowBodies[r] = encoder.encode(rowToJson(values.subarray(r * rowElements, (r + 1) * rowElements), shape));
  } else {
    const all = dtype === 'f32' ? float32ToBytes(result.data as Float32Array) : float16ToBytes(result.data);
    const size = rowElements * BYTES_PER_ELEMENT[dtype];
    for (let r = 0; r < rows; r++) rowBodies[r] = all.subarray(r * size, (r + 1) * size);
    binary = all;
  }
  const rowTokens = result.tokens?.map((t) => asciiJson(t));

  // Upper bound of the headers every frame carries: the largest offset and row count that can occur.
  const common = commonHeaders(result);
  const probe = frameHeaders(common, result.offset + rows, rows, shape);
  const baseHeaderBytes = headerWireSize(probe);
  const tokensHeaderBytes = rowTokens ? HEADERS.tokens.length + 4 + 2 : 0; // "Name: [" … "]\r\n"
  const countsHeaderBytes = result.tokenCounts ? HEADERS.tokenCounts.length + 4 : 0; // "Name: " … "\r\n"
  const rowCounts = result.tokenCounts?.map(String);
  const jsonBrackets = dtype === 'json' ? 2 : 0;

  const frames: Frame[] = [];
  let start = 0;
  while (start < rows) {
    let size = baseHeaderBytes + tokensHeaderBytes + countsHeaderBytes + jsonBrackets;
    let end = start;
    while (end < rows) {
      const cost =
        rowBodies[end]!.length +
        (rowTokens ? rowTokens[end]!.length + 1 : 0) +
        (rowCounts ? rowCounts[end]!.length + 1 : 0) +
        (dtype === 'json' ? 1 : 0);
      if (size + cost > budget) break;
      size += cost;
      end++;
    }
    if (end === start) {
      frames.push(
        ...splitRow(result, common, start, rowBodies[start]!, rowTokens?.[start], budget, options.maxPayload),
      );
      start++;
      continue;
    }
    const headers = frameHeaders(common, result.offset + start, end - start, shape);
    if (rowTokens) headers[HEADERS.tokens] = `[${rowTokens.slice(start, end).join(',')}]`;
    if (rowCounts) headers[HEADERS.tokenCounts] = rowCounts.slice(start, end).join(',');
    const body =
      binary === undefined
        ? joinJsonRows(rowBodies.slice(start, end))
        : binary.subarray(start * rowBodies[0]!.length, end * rowBodies[0]!.length);
    assertFits(headers, body, budget);
    frames.push({ headers, body });
    start = end;
  }
  return frames;
}

/**
 * Splits one row by bytes into parts that each fit `budget`. The parts' bodies concatenate to the body
 * of a one-row frame; their Bertq-Tokens values (when tokens were asked) concatenate to the one-row
 * tokens JSON. Tokens fill the first parts, so a row whose tokens alone outgrow a frame still goes.
 */
function splitRow(
  result: ResultInput,
  common: HeaderMap,
  row: number,
  rowBody: Uint8Array,
  rowTokens: string | undefined,
  budget: number,
  maxPayload: number,
): Frame[] {
  const whole = result.dtype === 'json' ? joinJsonRows([rowBody]) : rowBody;
  const tokensText = rowTokens === undefined ? '' : `[${rowTokens}]`;
  const probe = frameHeaders(common, result.offset + row, 1, result.shape);
  const count = result.tokenCounts?.[row];
  if (count !== undefined) probe[HEADERS.tokenCounts] = String(count);
  const most = whole.length + tokensText.length; // no row splits into more parts than it has bytes
  probe[HEADERS.part] = `${most}/${most}`;
  const partHeaderBytes = headerWireSize(probe);
  const tokensHeaderBytes = HEADERS.tokens.length + 4; // "Name: " + "\r\n"
  const align = result.dtype === 'json' ? 1 : BYTES_PER_ELEMENT[result.dtype];
  const capacity = budget - partHeaderBytes;
  if (capacity < Math.max(align, tokensText.length > 0 ? tokensHeaderBytes + 1 : 1)) {
    throw new TooLargeError(
      `max_payload of ${maxPayload} bytes cannot hold one result frame: its headers alone take ${partHeaderBytes} bytes`,
      { details: { maxPayload, headerBytes: partHeaderBytes } },
    );
  }

  const pieces: Array<{ tokens: string; body: Uint8Array }> = [];
  let tokensAt = 0;
  let bodyAt = 0;
  while (tokensAt < tokensText.length || bodyAt < whole.length) {
    let room = capacity;
    let tokens = '';
    if (tokensAt < tokensText.length) {
      const take = Math.min(tokensText.length - tokensAt, room - tokensHeaderBytes);
      tokens = tokensText.slice(tokensAt, tokensAt + take);
      tokensAt += take;
      room -= tokensHeaderBytes + take;
    }
    // Binary parts hold whole elements, so each part is a clean slice of floats.
    const take = Math.min(whole.length - bodyAt, room - (room % align));
    const body = whole.subarray(bodyAt, bodyAt + take);
    bodyAt += take;
    pieces.push({ tokens, body });
  }
  return pieces.map((piece, i) => {
    const headers = frameHeaders(common, result.offset + row, 1, result.shape);
    headers[HEADERS.part] = `${i + 1}/${pieces.length}`;
    if (count !== undefined) headers[HEADERS.tokenCounts] = String(count);
    if (piece.tokens.length > 0) headers[HEADERS.tokens] = piece.tokens;
    assertFits(headers, piece.body, budget);
    return { headers, body: piece.body };
  });
}

function commonHeaders(result: ResultInput): HeaderMap {
  const headers: HeaderMap = { [HEADERS.id]: result.id, [HEADERS.dtype]: result.dtype };
  if (result.worker !== undefined) headers[HEADERS.worker] = asciiHeaderValue(result.worker);
  if (result.seal !== undefined) headers[HEADERS.seal] = result.seal;
  for (const stage of STAGES) {
    const ms = result.timings?.[stage];
    if (ms !== undefined && Number.isFinite(ms) && ms >= 0) headers[stageHeader(stage)] = formatMs(ms);
  }
  return headers;
}

function frameHeaders(common: HeaderMap, offset: number, rows: number, shape: readonly number[]): HeaderMap {
  return {
    ...common,
    [HEADERS.offset]: String(offset),
    [HEADERS.rows]: String(rows),
    [HEADERS.shape]: [rows, ...shape].join(','),
  };
}

/** Milliseconds with at most 3 decimals (microseconds), without trailing zeros. */
function formatMs(ms: number): string {
  return String(Math.round(ms * 1000) / 1000);
}

function assertFits(headers: HeaderMap, body: Uint8Array, budget: number): void {
  const size = messageWireSize(headers, body);
  if (size > budget)
    throw new InternalError(`result frame of ${size} bytes exceeds its budget of ${budget} bytes (frame sizing bug)`);
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const OPEN = encoder.encode('[');
const COMMA = encoder.encode(',');
const CLOSE = encoder.encode(']');

function joinJsonRows(rows: readonly Uint8Array[]): Uint8Array {
  const parts: Uint8Array[] = [OPEN];
  rows.forEach((row, i) => {
    if (i > 0) parts.push(COMMA);
    parts.push(row);
  });
  parts.push(CLOSE);
  return concat(parts);
}

function checkResult(result: ResultInput): void {
  const bad = (message: string): never => {
    throw new InternalError(`cannot encode result of request ${result.id}: ${message}`);
  };
  if (typeof result.id !== 'string' || result.id.length === 0) bad('no request id');
  if (!Number.isSafeInteger(result.offset) || result.offset < 0)
    bad(`offset ${result.offset} is not a non-negative integer`);
  if (!Number.isSafeInteger(result.rows) || result.rows < 1) bad(`rows ${result.rows} is not a positive integer`);
  if (!result.shape.every((d) => Number.isSafeInteger(d) && d >= 1))
    bad(`shape [${result.shape.join(',')}] has a dimension that is not a positive integer`);
  if (result.dtype !== 'f32' && result.dtype !== 'f16' && result.dtype !== 'json')
    bad(`unknown dtype ${JSON.stringify(result.dtype)}`);
  if (result.data instanceof Uint16Array && result.dtype !== 'f16')
    bad('binary16 data (Uint16Array) can only be sent as dtype f16');
  const expected = result.rows * elementCount(result.shape);
  if (result.data.length !== expected) {
    bad(
      `data has ${result.data.length} values, expected ${expected} (${result.rows} rows × [${result.shape.join(',')}])`,
    );
  }
  if (result.tokens !== undefined && result.tokens.length !== result.rows)
    bad(`tokens has ${result.tokens.length} rows, expected ${result.rows}`);
  if (result.tokenCounts !== undefined) {
    if (result.tokenCounts.length !== result.rows)
      bad(`tokenCounts has ${result.tokenCounts.length} rows, expected ${result.rows}`);
    if (!result.tokenCounts.every((n) => Number.isSafeInteger(n) && n >= 0))
      bad('tokenCounts must be non-negative integers');
  }
}

// ---------------------------------------------------------------------------------------------------
// Decoding

/** A decoded result frame: whole rows (`data`), or one byte part of a row (`part`). */
export interface ResultFrame {
  kind: 'result';
  id: string;
  /** Request-relative index of the frame's first row. */
  offset: number;
  rows: number;
  /** Per-row shape (after the row axis). */
  shape: number[];
  dtype: OutputDtype;
  /** rows × prod(shape) values; absent on a byte part. */
  data?: Float32Array;
  /**
   * One byte part of a single row: `index` is 1-based, of `count`. `tokensText` is this part's
   * fragment of the row's tokens JSON (empty when none); fragments join in index order.
   */
  part?: { index: number; count: number; bytes: Uint8Array; tokensText: string };
  /** Per row of the frame, when asked (never on a byte part: see part.tokensText). */
  tokens?: string[][];
  /** Per row of the frame, its token count (from Bertq-Token-Counts; on a byte part, the row's count). */
  tokenCounts?: number[];
  timings: StageTimings;
  worker?: string;
  /** Bertq-Seal: which key the job that made this frame carried (see seal.ts). */
  seal?: string;
}

/** A decoded error frame. */
export interface ErrorFrame {
  kind: 'error';
  id?: string;
  offset?: number;
  rows?: number;
  worker?: string;
  seal?: string;
  error: BertqError;
}

export type DecodedFrame = ResultFrame | ErrorFrame;

/**
 * Reads one message from a results subject. Throws InternalError (with `details.id` when readable)
 * for a frame that breaks the protocol: that is a broken worker, never the caller's fault.
 */
export function decodeFrame(headers: HeaderMap, received: Uint8Array): DecodedFrame {
  // One copy, here: a NATS client hands out views into its socket buffer, which it reuses for the
  // next message, while an assembler keeps rows until their request completes. Everything below may
  // then take views of `body` safely.
  const body = new Uint8Array(received);
  const id = getHeader(headers, HEADERS.id);
  const worker = getHeader(headers, HEADERS.worker);
  const seal = getHeader(headers, HEADERS.seal);
  if (isErrorMessage(headers)) {
    const frame: ErrorFrame = { kind: 'error', error: decodeErrorReply(headers, body)! };
    if (id !== undefined) frame.id = id;
    if (seal !== undefined) frame.seal = seal;
    const offset = parseIntHeader(headers, HEADERS.offset);
    if (offset !== undefined) frame.offset = offset;
    const rows = parseIntHeader(headers, HEADERS.rows);
    if (rows !== undefined) frame.rows = rows;
    if (worker !== undefined) frame.worker = worker;
    return frame;
  }

  const bad = (message: string, cause?: unknown): InternalError =>
    new InternalError(`malformed result frame${id === undefined ? '' : ` of request ${id}`}: ${message}`, {
      details: id === undefined ? {} : { id },
      cause,
    });
  if (id === undefined) throw bad(`no ${HEADERS.id} header`);
  const offset = parseIntHeader(headers, HEADERS.offset);
  if (offset === undefined) throw bad(`${HEADERS.offset} is missing or not a non-negative integer`);
  const rows = parseIntHeader(headers, HEADERS.rows);
  if (rows === undefined || rows < 1) throw bad(`${HEADERS.rows} is missing or not a positive integer`);
  const dtype = getHeader(headers, HEADERS.dtype);
  if (dtype !== 'f32' && dtype !== 'f16' && dtype !== 'json')
    throw bad(`${HEADERS.dtype} must be f32, f16 or json, got ${JSON.stringify(dtype)}`);
  const shapeText = getHeader(headers, HEADERS.shape) ?? '';
  const fullShape = /^\d+(,\d+)*$/.test(shapeText) ? shapeText.split(',').map(Number) : undefined;
  if (fullShape === undefined || fullShape.slice(1).some((d) => d < 1))
    throw bad(`${HEADERS.shape} must be comma-separated positive integers, got ${JSON.stringify(shapeText)}`);
  if (fullShape[0] !== rows) throw bad(`${HEADERS.shape} ${shapeText} does not start with the row count ${rows}`);
  const shape = fullShape.slice(1);

  const frame: ResultFrame = { kind: 'result', id, offset, rows, shape, dtype, timings: readTimings(headers) };
  if (worker !== undefined) frame.worker = worker;
  if (seal !== undefined) frame.seal = seal;

  const tokensText = getHeader(headers, HEADERS.tokens);
  const countsText = getHeader(headers, HEADERS.tokenCounts);
  if (countsText !== undefined) {
    const counts = countsText.split(',').map((c) => Number(c.trim()));
    if (counts.length !== rows || !counts.every((n) => Number.isSafeInteger(n) && n >= 0)) {
      throw bad(`${HEADERS.tokenCounts} must list ${rows} non-negative integers, got ${JSON.stringify(countsText)}`);
    }
    frame.tokenCounts = counts;
  }
  const partText = getHeader(headers, HEADERS.part);
  if (partText !== undefined) {
    const m = /^(\d+)\/(\d+)$/.exec(partText.trim());
    const index = m ? Number(m[1]) : NaN;
    const count = m ? Number(m[2]) : NaN;
    if (!m || index < 1 || index > count)
      throw bad(`${HEADERS.part} must be i/n with 1 <= i <= n, got ${JSON.stringify(partText)}`);
    if (rows !== 1) throw bad(`a ${HEADERS.part} frame must hold exactly 1 row, got ${rows}`);
    // On a part, Bertq-Tokens is a fragment of the row's tokens JSON: only the joined text parses.
    frame.part = { index, count, bytes: body, tokensText: tokensText ?? '' };
    return frame;
  }

  if (tokensText !== undefined) {
    let tokens: unknown;
    try {
      tokens = JSON.parse(tokensText);
    } catch (err) {
      throw bad(`${HEADERS.tokens} is not JSON`, err);
    }
    if (
      !Array.isArray(tokens) ||
      tokens.length !== rows ||
      !tokens.every((t) => Array.isArray(t) && t.every((s) => typeof s === 'string'))
    ) {
      throw bad(`${HEADERS.tokens} must be a JSON array of ${rows} token lists`);
    }
    frame.tokens = tokens as string[][];
  }

  if (dtype === 'json') {
    const text = decodeUtf8(body);
    if (!text.ok) throw bad(`json body is not valid UTF-8 at byte ${text.invalidAt}`);
    let value: unknown;
    try {
      value = JSON.parse(text.text);
    } catch (err) {
      throw bad(`json body does not parse: ${(err as Error).message}`, err);
    }
    try {
      frame.data = jsonRowsToFloat32(value, rows, shape);
    } catch (err) {
      throw bad((err as Error).message, err);
    }
  } else {
    const expected = rows * elementCount(shape) * BYTES_PER_ELEMENT[dtype];
    if (body.length !== expected)
      throw bad(`body is ${body.length} bytes, expected ${expected} for shape ${shapeText} in ${dtype}`);
    frame.data = dtype === 'f32' ? bytesToFloat32(body) : bytesToFloat16AsFloat32(body);
  }
  return frame;
}

/**
 * Decodes the whole body of a split row once its parts are joined (the same layout as a one-row frame).
 * Used by the assembler.
 */
export function decodeRowBytes(bytes: Uint8Array, dtype: OutputDtype, shape: readonly number[]): Float32Array {
  if (dtype === 'json') {
    const text = decodeUtf8(bytes);
    if (!text.ok) throw new InternalError(`joined json row is not valid UTF-8 at byte ${text.invalidAt}`);
    let value: unknown;
    try {
      value = JSON.parse(text.text);
    } catch (err) {
      throw new InternalError(`joined json row does not parse: ${(err as Error).message}`, { cause: err });
    }
    return jsonRowsToFloat32(value, 1, shape);
  }
  const expected = elementCount(shape) * BYTES_PER_ELEMENT[dtype];
  if (bytes.length !== expected)
    throw new InternalError(
      `joined row is ${bytes.length} bytes, expected ${expected} for shape [${shape.join(',')}] in ${dtype}`,
    );
  return dtype === 'f32' ? bytesToFloat32(bytes) : bytesToFloat16AsFloat32(bytes);
}

function readTimings(headers: HeaderMap): StageTimings {
  const timings: StageTimings = {};
  for (const stage of STAGES) {
    const text = getHeader(headers, stageHeader(stage));
    if (text === undefined) continue;
    const ms = Number(text);
    // Timings are diagnostics: a malformed one is left out rather than failing the rows it rides on.
    if (text.trim() !== '' && Number.isFinite(ms) && ms >= 0) timings[stage] = ms;
  }
  return timings;
}

function parseIntHeader(headers: HeaderMap, name: string): number | undefined {
  const text = getHeader(headers, name);
  if (text === undefined || !/^\d{1,15}$/.test(text.trim())) return undefined;
  return Number(text.trim());
}
