/**
 * The one registry of bertq error codes. Every error that crosses a process boundary (the wire, the
 * HTTP gateway, the CLI's exit) carries one of these codes; the client turns it back into the same
 * typed class. `status` is the HTTP-style number the NATS services framework puts in
 * `Nats-Service-Error-Code`, and the gateway answers with.
 */
export const ERROR_CODES = {
  BAD_REQUEST: {
    status: 400,
    description:
      'The request is malformed: not JSON, wrong schema, an empty string, a wrong type, invalid UTF-8, or a job missing its headers.',
  },
  UNAUTHORIZED: {
    status: 401,
    description:
      'The NATS server (or the HTTP gateway) refused the credentials: wrong or missing user/password, token, NKey seed or credentials file. Not a fleet problem: fix the credentials.',
  },
  TOO_LARGE: {
    status: 413,
    description:
      'The request is larger than the service accepts: too many rows, or a payload over the size limit. Split it (the client library does this for you).',
  },
  TOO_LONG: {
    status: 422,
    description:
      'A sequence is longer than the model allows (max_position_embeddings), or max_seq_len is larger than the model supports.',
  },
  OVERLOADED: {
    status: 429,
    description: 'The service queue is over its bound; nothing was enqueued. Retry later or add workers.',
  },
  MODEL_ERROR: {
    status: 500,
    description:
      'The model could not be loaded or run: a missing or invalid model file (the message names it), an unsupported config, or a runtime failure.',
  },
  INTERNAL: {
    status: 500,
    description: 'An unexpected failure inside bertq. The message says where; please report it.',
  },
  NO_WORKERS: {
    status: 503,
    description:
      'No worker serves this service (no JetStream consumer, or no responder). Start one with `bertq start`.',
  },
  TIMEOUT: {
    status: 504,
    description: 'The request did not complete before its deadline (workers stopped or too slow).',
  },
} as const satisfies Record<string, { status: number; description: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);
}

export interface BertqErrorOptions {
  cause?: unknown;
  /** Extra, machine-readable facts (the missing file, the offending row, the limit). */
  details?: Record<string, unknown>;
}

/** Base class of every bertq error: `code` is one of ERROR_CODES, `status` its HTTP-style number. */
export class BertqError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: BertqErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = ERROR_CLASS_NAMES[code];
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.details = options.details;
  }

  /** The JSON body that carries this error on the wire and over HTTP. */
  toJSON(): { code: ErrorCode; message: string; details?: Record<string, unknown> } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

export class BadRequestError extends BertqError {
  constructor(message: string, options?: BertqErrorOptions) {
    super('BAD_REQUEST', message, options);
  }
}
export class UnauthorizedError extends BertqError {
  constructor(message: string, options?: BertqErrorOptions) {
    super('UNAUTHORIZED', message, options);
  }
}
export class TooLargeError extends BertqError {
  constructor(message: string, options?: BertqErrorOptions) {
    super('TOO_LARGE', message, options);
  }
}
export class TooLongError extends BertqError {
  constructor(message: string, options?: BertqErrorOptions) {
    super('TOO_LONG', message, options);
  }
}
export class OverloadedError extends BertqError {
  constructor(message: string, options?: BertqErrorOptions) {
    super('OVERLOADED', message, options);
  }
}
export class ModelError extends BertqError {
  constructor(message: string, options?: BertqErrorOptions) {
    super('MODEL_ERROR', message, options);
  }
}
export class InternalError extends BertqError {
  constructor(message: string, options?: BertqErrorOptions) {
    super('INTERNAL', message, options);
  }
}
export class NoWorkersError extends BertqError {
  constructor(message: string, options?: BertqErrorOptions) {
    super('NO_WORKERS', message, options);
  }
}
export class TimeoutError extends BertqError {
  constructor(message: string, options?: BertqErrorOptions) {
    super('TIMEOUT', message, options);
  }
}

const ERROR_CLASS_NAMES: Record<ErrorCode, string> = {
  BAD_REQUEST: 'BadRequestError',
  UNAUTHORIZED: 'UnauthorizedError',
  TOO_LARGE: 'TooLargeError',
  TOO_LONG: 'TooLongError',
  OVERLOADED: 'OverloadedError',
  MODEL_ERROR: 'ModelError',
  INTERNAL: 'InternalError',
  NO_WORKERS: 'NoWorkersError',
  TIMEOUT: 'TimeoutError',
};

const ERROR_CLASSES: Record<ErrorCode, new (message: string, options?: BertqErrorOptions) => BertqError> = {
  BAD_REQUEST: BadRequestError,
  UNAUTHORIZED: UnauthorizedError,
  TOO_LARGE: TooLargeError,
  TOO_LONG: TooLongError,
  OVERLOADED: OverloadedError,
  MODEL_ERROR: ModelError,
  INTERNAL: InternalError,
  NO_WORKERS: NoWorkersError,
  TIMEOUT: TimeoutError,
};

/** Rebuilds the typed error from its code (as read off the wire); unknown codes become INTERNAL. */
export function errorFromCode(code: string, message: string, options?: BertqErrorOptions): BertqError {
  const Cls = isErrorCode(code) ? ERROR_CLASSES[code] : InternalError;
  return new Cls(isErrorCode(code) ? message : `${code}: ${message}`, options);
}

/** Wraps anything thrown into a BertqError, keeping typed ones as they are. */
export function toBertqError(err: unknown, fallback: ErrorCode = 'INTERNAL'): BertqError {
  if (err instanceof BertqError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new ERROR_CLASSES[fallback](message, { cause: err });
}
