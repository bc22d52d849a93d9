/**
 * Error frames: how an error crosses the wire, on a results subject (for one request) or as the
 * reply of a control endpoint. The NATS services framework's own headers carry the status and
 * message, `Bertq-Error-Code` the symbolic code, and the JSON body `{code, message, details?}`.
 */
import { errorFromCode, isErrorCode, toBertqError, type BertqError, type ErrorCode } from './errors.js';
import { HEADERS, asciiHeaderValue, getHeader, messageWireSize, type HeaderMap } from './headers.js';
import { VALIDATORS } from './schemas.js';
import { decodeUtf8 } from './utf8.js';
import type { Frame } from './frames.js';

const MAX_ERROR_HEADER_CHARS = 1024;
const encoder = new TextEncoder();

/** Addressing of an error frame; all optional because a job that failed to parse may lack some. */
export interface ErrorContext {
  /** Request id; required on a results subject (clients route by it), absent on control replies. */
  id?: string;
  /** First row of the chunk that failed. */
  offset?: number;
  /** Rows of the chunk that failed. */
  rows?: number;
  worker?: string;
  /** The seal of the job's key (sealOf), when it carried one. */
  seal?: string;
}

/**
 * An error frame (or an error reply of a control endpoint): the services-framework headers
 * `Nats-Service-Error-Code` / `Nats-Service-Error`, `Bertq-Error-Code`, and the JSON body
 * `{code, message, details?}`. With maxPayload, details and then message are cut to fit.
 */
export function encodeErrorFrame(
  context: ErrorContext,
  error: BertqError,
  options: { maxPayload?: number } = {},
): Frame {
  const err = toBertqError(error);
  const headers: HeaderMap = {};
  if (context.id !== undefined) headers[HEADERS.id] = context.id;
  if (context.offset !== undefined) headers[HEADERS.offset] = String(context.offset);
  if (context.rows !== undefined) headers[HEADERS.rows] = String(context.rows);
  if (context.worker !== undefined) headers[HEADERS.worker] = asciiHeaderValue(context.worker);
  if (context.seal !== undefined) headers[HEADERS.seal] = context.seal;
  headers[HEADERS.serviceErrorCode] = String(err.status);
  headers[HEADERS.serviceError] = asciiHeaderValue(truncate(err.message, MAX_ERROR_HEADER_CHARS));
  headers[HEADERS.errorCode] = err.code;

  let body = encodeErrorBody(err.code, err.message, err.details);
  const limit = options.maxPayload;
  if (limit !== undefined && messageWireSize(headers, body) > limit) {
    // Too big for the server: drop details first, then shorten the message until it fits.
    body = encodeErrorBody(err.code, err.message, undefined);
    for (let keep = err.message.length; messageWireSize(headers, body) > limit && keep > 0; ) {
      keep = Math.floor(keep / 2);
      body = encodeErrorBody(err.code, truncate(err.message, keep), undefined);
    }
  }
  return { headers, body };
}

function encodeErrorBody(code: ErrorCode, message: string, details: Record<string, unknown> | undefined): Uint8Array {
  if (details !== undefined) {
    try {
      return encoder.encode(JSON.stringify({ code, message, details }));
    } catch {
      // details that cannot be serialised (a BigInt, a cycle) are dropped rather than losing the error
    }
  }
  return encoder.encode(JSON.stringify({ code, message }));
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, Math.max(0, max - 1))}…`;
}

/** True when a message carries an error (either services-framework or bertq error header). */
export function isErrorMessage(headers: HeaderMap): boolean {
  return (
    getHeader(headers, HEADERS.serviceErrorCode) !== undefined || getHeader(headers, HEADERS.errorCode) !== undefined
  );
}

const CODE_BY_STATUS: ReadonlyMap<number, ErrorCode> = new Map([
  [400, 'BAD_REQUEST'],
  [413, 'TOO_LARGE'],
  [422, 'TOO_LONG'],
  [429, 'OVERLOADED'],
  [500, 'INTERNAL'],
  [503, 'NO_WORKERS'],
  [504, 'TIMEOUT'],
]);

/**
 * The typed error an error message carries, or undefined when it carries none. The JSON body wins
 * when it is a valid error.v1 document; otherwise the headers are used (a plain services-framework
 * error from another implementation has only `Nats-Service-Error-Code` / `Nats-Service-Error`).
 */
export function decodeErrorReply(headers: HeaderMap, body: Uint8Array): BertqError | undefined {
  if (!isErrorMessage(headers)) return undefined;
  const decoded = decodeUtf8(body);
  if (decoded.ok && decoded.text.length > 0) {
    try {
      const doc: unknown = JSON.parse(decoded.text);
      if (VALIDATORS.error(doc)) {
        const { code, message, details } = doc as { code: string; message: string; details?: Record<string, unknown> };
        return errorFromCode(code, message, details === undefined ? undefined : { details });
      }
    } catch {
      // not JSON: fall back to the headers
    }
  }
  const symbolic = getHeader(headers, HEADERS.errorCode);
  const status = Number(getHeader(headers, HEADERS.serviceErrorCode));
  const code = symbolic !== undefined && isErrorCode(symbolic) ? symbolic : CODE_BY_STATUS.get(status);
  const message =
    getHeader(headers, HEADERS.serviceError) ?? `error status ${Number.isFinite(status) ? status : 'unknown'}`;
  if (code !== undefined) return errorFromCode(code, message);
  return errorFromCode(symbolic ?? `STATUS_${status}`, message);
}

/** Numeric status → symbolic code, for errors that arrive with only a status. */
export function codeForStatus(status: number): ErrorCode | undefined {
  return CODE_BY_STATUS.get(status);
}
