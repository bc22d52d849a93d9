/**
 * The HTTP plumbing every route shares: request ids, CORS, bearer-token checks, and errors as JSON in the two shapes clients expect (bertq's `{error: {code, message}}`, OpenAI's
 * `{error: {message, type, param, code}}`), each with the HTTP status of its code.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BertqError, newRequestId, toBertqError } from '@bertq/protocol';
import type { CorsPolicy } from './options.js';

/** Error codes the gateway answers that are HTTP matters, not protocol ones (no worker is involved). */
export const GATEWAY_ERROR_CODES = {
  UNAUTHORIZED: 401,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  UNSUPPORTED_MEDIA_TYPE: 415,
  /** A `Host` the gateway does not answer to without a token (DNS rebinding guard). */
  MISDIRECTED_REQUEST: 421,
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

/** Constant-time check of `Authorization: Bearer <token>`. */
export class BearerCheck {
  private readonly digest: Buffer;
  constructor(token: string) {
    this.digest = sha256(token);
  }
  /** True when the header carries the token. */
  ok(header: string | undefined): boolean {
    const m = header === undefined ? null : /^Bearer[ ]+(\S+)\s*$/i.exec(header);
    return m !== null && timingSafeEqual(sha256(m[1]!), this.digest);
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
