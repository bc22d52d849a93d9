/**
 * The HTTP plumbing every route shares: request ids, bounded body reading, CORS, bearer-token checks,
 * and errors as JSON in the two shapes clients expect (bertq's `{error: {code, message}}`, OpenAI's
 * `{error: {message, type, param, code}}`), each with the HTTP status of its code.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BadRequestError, BertqError, TooLargeError, newRequestId, toBertqError } from '@bertq/protocol';
import type { CorsPolicy } from './options.js';

/** Error codes the gateway answers that are HTTP matters, not protocol ones (no worker is involved). */
export const GATEWAY_ERROR_CODES = {
  UNAUTHORIZED: 401,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  UNSUPPORTED_MEDIA_TYPE: 415,
} as const;
export type GatewayErrorCode = keyof typeof GATEWAY_ERROR_CODES;

/** An HTTP-level refusal: a wrong token, an unknown route, a wrong method. */
export class GatewayHttpError extends Error {
  readonly status: number;
  constructor(
    readonly code: GatewayErrorCode,
    message: string,
    /** Extra response headers (`Allow`, `WWW-Authenticate`). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'GatewayHttpError';
    this.status = GATEWAY_ERROR_CODES[code];
  }
}

/** Any error a handler throws, as what the client is told: status, code, message, details. */
export interface ErrorAnswer {
  status: number;
  code: string;
  message: string;
  details?: Record<string, unknown>;
  headers: Record<string, string>;
  /** The OpenAI `param` the error is about, when there is one. */
  param?: string | null;
}

/** Detail keys that are internal plumbing (NATS subjects), not useful to an HTTP caller. */
const HIDDEN_DETAILS = new Set(['reply', 'subject']);

export function errorAnswer(err: unknown): ErrorAnswer {
  if (err instanceof GatewayHttpError)
    return { status: err.status, code: err.code, message: err.message, headers: err.headers };
  const e: BertqError = err instanceof BertqError ? err : toBertqError(err);
  const answer: ErrorAnswer = { status: e.status, code: e.code, message: e.message, headers: {} };
  if (e.details !== undefined) {
    const kept = Object.entries(e.details).filter(([k]) => !HIDDEN_DETAILS.has(k));
    if (kept.length > 0) answer.details = Object.fromEntries(kept);
    if (typeof e.details.param === 'string') answer.param = e.details.param;
  }
  // OVERLOADED is transient: tell well-behaved clients when to come back.
  if (e.code === 'OVERLOADED') answer.headers['Retry-After'] = '1';
  return answer;
}

/** bertq's error body: `{"error": {"code", "message", "details"?}}`. */
export function bertqErrorBody(a: ErrorAnswer): string {
  return JSON.stringify({
    error:
      a.details === undefined
        ? { code: a.code, message: a.message }
        : { code: a.code, message: a.message, details: a.details },
  });
}

/** OpenAI's error `type` for a status (their SDKs pick the exception class from the status itself). */
export function openAIErrorType(status: number): string {
  if (status === 429) return 'rate_limit_error';
  if (status === 503) return 'service_unavailable_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`; `code` is bertq's code. */
export function openAIErrorBody(a: ErrorAnswer): string {
  // OpenAI answers a bad key with code invalid_api_key; their clients and docs look for it.
  const code = a.code === 'UNAUTHORIZED' ? 'invalid_api_key' : a.code;
  return JSON.stringify({
    error: { message: a.message, type: openAIErrorType(a.status), param: a.param ?? null, code },
  });
}

/** A client's own X-Request-Id when it is a sane token, else a fresh one (sent back either way). */
export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  if (typeof given === 'string' && /^[A-Za-z0-9._:-]{1,128}$/.test(given)) return given;
  return newRequestId();
}

/**
 * Reads the body, refusing more than `limit` bytes: at once from Content-Length, or as soon as the
 * stream passes it (a chunked upload has no length up front). Rejects with TOO_LARGE naming the limit.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    return Promise.reject(tooLarge(`${declared} bytes`, limit));
  }
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (err: Error | undefined, body?: Buffer): void => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
      if (err) reject(err);
      else resolve(body!);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        finish(tooLarge(`more than ${limit} bytes`, limit));
        // Stop reading: the rest is not wanted, and the answer goes out with Connection: close.
        req.pause();
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => finish(undefined, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    const onError = (err: Error): void =>
      finish(new BadRequestError(`reading the request body failed: ${err.message}`, { cause: err }));
    const onAborted = (): void =>
      finish(new BadRequestError('the client closed the connection before sending the whole body'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

function tooLarge(size: string, limit: number): TooLargeError {
  return new TooLargeError(
    `request body of ${size} is over the gateway's limit of ${limit} bytes (--http-body-limit); split the request`,
    {
      details: { limit },
    },
  );
}

/** Parses a JSON request body; BAD_REQUEST saying what is wrong (empty, not JSON, not an object). */
export function parseJsonObject(body: Buffer): Record<string, unknown> {
  const text = body.toString('utf8');
  if (text.trim() === '') throw new BadRequestError('request body is empty: send a JSON object');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new BadRequestError(`request body is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new BadRequestError(
      `request body must be a JSON object, got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`,
    );
  }
  return value as Record<string, unknown>;
}

/** A body that is declared as something other than JSON is refused before it is parsed. */
export function checkJsonContentType(req: IncomingMessage): void {
  const type = req.headers['content-type'];
  if (type === undefined) return;
  const media = type.split(';')[0]!.trim().toLowerCase();
  // `curl -d '{…}'` without -H labels JSON as a form; the body is still read as JSON.
  if (
    media === 'application/json' ||
    media.endsWith('+json') ||
    media === 'text/plain' ||
    media === 'application/x-www-form-urlencoded'
  )
    return;
  throw new GatewayHttpError(
    'UNSUPPORTED_MEDIA_TYPE',
    `request body must be application/json, got Content-Type ${type}`,
  );
}

/** Constant-time check of `Authorization: Bearer <token>`. */
export class BearerCheck {
  private readonly digest: Buffer;
  constructor(token: string) {
    this.digest = sha256(token);
  }
  /** Throws UNAUTHORIZED unless the header carries the token. */
  check(header: string | undefined): void {
    const m = header === undefined ? null : /^Bearer[ ]+(\S+)\s*$/i.exec(header);
    // Hashing both sides gives equal-length buffers, so timingSafeEqual's time never depends on the guess.
    if (m === null || !timingSafeEqual(sha256(m[1]!), this.digest)) {
      throw new GatewayHttpError(
        'UNAUTHORIZED',
        m === null
          ? 'this gateway needs a bearer token: send Authorization: Bearer <token>'
          : "the bearer token is not the gateway's (--http-token)",
        { 'WWW-Authenticate': 'Bearer realm="bertq"' },
      );
    }
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** Headers allowed on cross-origin calls (preflight answer). */
const ALLOWED_HEADERS = 'Authorization, Content-Type, X-Request-Id';
/** Response headers a cross-origin page may read. */
const EXPOSED_HEADERS = 'X-Request-Id, Retry-After';

/** Sets the CORS response headers for this request's Origin, per the policy. */
export function applyCors(policy: CorsPolicy, req: IncomingMessage, res: ServerResponse): void {
  if (policy.kind === 'none') return;
  if (policy.kind === 'any') {
    res.setHeader('Access-Control-Allow-Origin', '*');
  } else {
    res.setHeader('Vary', 'Origin');
    const origin = req.headers.origin;
    if (origin === undefined || !policy.origins.has(origin)) return;
    res.setHeader('Access-Control-Allow-Origin', origin);
  }
  res.setHeader('Access-Control-Expose-Headers', EXPOSED_HEADERS);
}

/** Answers a CORS preflight (OPTIONS): which methods and headers a cross-origin call may use. */
export function answerPreflight(
  policy: CorsPolicy,
  req: IncomingMessage,
  res: ServerResponse,
  allow: readonly string[],
): void {
  applyCors(policy, req, res);
  if (policy.kind !== 'none') {
    res.setHeader('Access-Control-Allow-Methods', [...allow, 'OPTIONS'].join(', '));
    res.setHeader('Access-Control-Allow-Headers', ALLOWED_HEADERS);
    res.setHeader('Access-Control-Max-Age', '600');
  }
  res.setHeader('Allow', [...allow, 'OPTIONS'].join(', '));
  res.writeHead(204).end();
}

/** Writes a JSON answer (text already serialised). */
export function sendJson(
  res: ServerResponse,
  status: number,
  text: string,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent || res.destroyed) return;
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.writeHead(status).end(text);
}
