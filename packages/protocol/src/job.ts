/**
 * Jobs: one chunk of a request, as a client publishes it and a worker reads it. `parseJob` is the
 * worker's gate: everything it returns is valid, everything it rejects gets a typed error whose
 * message names the problem (which header, which row, which limit).
 */
import { BadRequestError, TimeoutError, TooLargeError, InternalError, type BertqError } from './errors.js';
import { HEADERS, getHeader, dedupId, type HeaderMap } from './headers.js';
import { VALIDATORS, firstSchemaError, readablePath, jsonTypeOf, SCHEMAS } from './schemas.js';
import { isPublishSubject, isResultsSubject, resultsSubject } from './subjects.js';
import { decodeUtf8 } from './utf8.js';
import { validateTexts } from './texts.js';
import { REQUEST_KEY, sealOf } from './seal.js';
import type { ErrorObject } from 'ajv';

/** How result frames encode numbers: little-endian float32, little-endian float16, or JSON. */
export type OutputDtype = 'f32' | 'f16' | 'json';
export const OUTPUT_DTYPES: readonly OutputDtype[] = ['f32', 'f16', 'json'];

/** What a job asks for besides its texts. */
export interface JobOptions {
  /** Send each row's tokens back (bert-as-service's show_tokens). */
  showTokens: boolean;
  /** Refuse a row that max_seq_len would cut (TOO_LONG), instead of encoding what fits. */
  checkLength: boolean;
  /** Encoding of the result frames. */
  output: OutputDtype;
}

/** Where a job comes from and where its results go: the job headers. */
export interface JobContext {
  /** Request id (NUID-like), shared by every chunk of the request. */
  id: string;
  /** Index of this chunk's first row inside the request. */
  offset: number;
  /** Subject to publish result frames to. */
  reply: string;
  /** Epoch ms after which the job is worthless; undefined when the sender set none. */
  deadline: number | undefined;
  /**
   * The seal of the request's key (sealOf of Bertq-Key), when the sender set one: it goes on every
   * frame. The key itself is not kept: it is the request's one secret, and a job object is logged,
   * passed around and put into error details.
   */
  seal?: string;
}

/** A validated job. `texts` are strings, or token lists when `isTokenized`. */
export type Job = JobContext &
  JobOptions &
  ({ isTokenized: false; texts: string[] } | { isTokenized: true; texts: string[][] });

/** What a worker accepts; over a limit the job is refused with TOO_LARGE. */
export interface JobLimits {
  /** The service whose worker reads the job: its Bertq-Reply must be one of this service's results subjects. */
  service: string;
  /** Most rows in one job (the worker's max_batch_size). */
  maxRows: number;
  /** Most bytes in one job body (normally the server's max_payload). */
  maxBytes: number;
}

/** Input of `encodeJob`. */
export interface JobInput {
  id: string;
  offset: number;
  reply: string;
  /** Epoch ms; omitted → no Bertq-Deadline header. */
  deadline?: number;
  /** The request's secret key (newRequestKey); omitted → no Bertq-Key header, and frames carry no seal. */
  key?: string;
  texts: readonly string[] | readonly (readonly string[])[];
  isTokenized?: boolean;
  showTokens?: boolean;
  checkLength?: boolean;
  output?: OutputDtype;
}

/** The JSON job body as it travels. */
export interface JobBody {
  texts: string[] | string[][];
  is_tokenized?: boolean;
  show_tokens?: boolean;
  check_length?: boolean;
  output?: OutputDtype;
}

const REQUEST_ID = /^[A-Za-z0-9_-]{1,64}$/;
const encoder = new TextEncoder();

/**
 * The headers and JSON body of one job. Its rows are not validated again here: a client validates
 * a request's rows once, with validateTexts, before it cuts them into jobs.
 */
export function encodeJob(input: JobInput): { headers: HeaderMap; body: Uint8Array } {
  checkId(input.id);
  checkOffset(input.offset);
  if (!isPublishSubject(input.reply)) {
    throw new BadRequestError(`reply subject ${JSON.stringify(input.reply)} is not a subject one can publish to`);
  }
  if (input.deadline !== undefined && !(Number.isSafeInteger(input.deadline) && input.deadline >= 0)) {
    throw new BadRequestError(
      `deadline must be epoch milliseconds (a non-negative integer), got ${String(input.deadline)}`,
    );
  }
  const body: JobBody = { texts: input.texts as string[] | string[][] };
  if (input.isTokenized) body.is_tokenized = true;
  if (input.showTokens) body.show_tokens = true;
  if (input.checkLength) body.check_length = true;
  if (input.output !== undefined && input.output !== 'f32') body.output = input.output;

  const headers: HeaderMap = {
    [HEADERS.id]: input.id,
    [HEADERS.offset]: String(input.offset),
    [HEADERS.reply]: input.reply,
    [HEADERS.msgId]: dedupId(input.id, input.offset),
  };
  if (input.deadline !== undefined) headers[HEADERS.deadline] = String(input.deadline);
  if (input.key !== undefined) {
    if (!REQUEST_KEY.test(input.key))
      throw new BadRequestError('a request key must be 16-64 letters, digits, "-" or "_"');
    headers[HEADERS.key] = input.key;
  }
  return { headers, body: encoder.encode(JSON.stringify(body)) };
}

/**
 * Reads whatever addressing a job carries, never throwing: a worker uses it to send an error frame
 * for a job that failed to parse (when id and reply are present and valid). A reply that is not one
 * of `service`'s results subjects is left out, so nothing is ever published there.
 */
export function peekJobContext(headers: HeaderMap, service: string): Partial<JobContext> {
  const out: Partial<JobContext> = {};
  const id = getHeader(headers, HEADERS.id);
  if (id !== undefined && REQUEST_ID.test(id)) out.id = id;
  const offset = parseNonNegativeInt(getHeader(headers, HEADERS.offset));
  if (offset !== undefined) out.offset = offset;
  const reply = getHeader(headers, HEADERS.reply);
  if (reply !== undefined && isResultsSubject(service, reply)) out.reply = reply;
  const deadline = parseNonNegativeInt(getHeader(headers, HEADERS.deadline));
  if (deadline !== undefined) out.deadline = deadline;
  const key = getHeader(headers, HEADERS.key);
  if (key !== undefined && REQUEST_KEY.test(key)) out.seal = sealOf(key);
  return out;
}

/**
 * Validates a job's headers and body. Checks run cheapest-first: headers, size, UTF-8, JSON, row
 * count, then the schema. Every error carries `details` with the id/offset/reply that were readable,
 * so the caller can still address an error frame.
 */
export function parseJob(headers: HeaderMap, body: Uint8Array, limits: JobLimits): Job {
  // An error's details travel in its frame; the seal goes in its header, not in details.
  const { seal, ...context } = peekJobContext(headers, limits.service);
  // Once the body parses, its row count goes into every refusal (the error frame's Bertq-Rows).
  let rows: { rows?: number } = {};
  const badRequest = (message: string, extra: Record<string, unknown> = {}, cause?: unknown): BadRequestError =>
    new BadRequestError(message, { details: { ...context, ...rows, ...extra }, cause });
  const tooLarge = (message: string, extra: Record<string, unknown>): TooLargeError =>
    new TooLargeError(message, { details: { ...context, ...extra } });

  const id = getHeader(headers, HEADERS.id);
  if (id === undefined) throw badRequest(`job is missing header ${HEADERS.id} (the request id)`);
  if (!REQUEST_ID.test(id))
    throw badRequest(`header ${HEADERS.id} must be 1-64 letters, digits, "-" or "_", got ${JSON.stringify(id)}`);
  const offsetText = getHeader(headers, HEADERS.offset);
  if (offsetText === undefined)
    throw badRequest(`job is missing header ${HEADERS.offset} (index of its first row in the request)`);
  const offset = parseNonNegativeInt(offsetText);
  if (offset === undefined)
    throw badRequest(`header ${HEADERS.offset} must be a non-negative integer, got ${JSON.stringify(offsetText)}`);
  const reply = getHeader(headers, HEADERS.reply);
  if (reply === undefined) throw badRequest(`job is missing header ${HEADERS.reply} (the subject for its results)`);
  if (!isPublishSubject(reply)) {
    throw badRequest(
      `header ${HEADERS.reply} must be a subject without wildcards or spaces, got ${JSON.stringify(reply)}`,
    );
  }
  if (!isResultsSubject(limits.service, reply)) {
    throw badRequest(
      `header ${HEADERS.reply} must be a results subject of this service (${resultsSubject(limits.service, 'IDENTITY')} or ${resultsSubject(limits.service, 'IDENTITY', 'TENANT')}), got ${JSON.stringify(reply)}`,
    );
  }
  const deadlineText = getHeader(headers, HEADERS.deadline);
  const deadline = parseNonNegativeInt(deadlineText);
  if (deadlineText !== undefined && deadline === undefined) {
    throw badRequest(
      `header ${HEADERS.deadline} must be epoch milliseconds (an integer), got ${JSON.stringify(deadlineText)}`,
    );
  }

  // A key that is there but malformed (peek left the seal out); never echoed: it is the request's secret.
  if (seal === undefined && getHeader(headers, HEADERS.key) !== undefined)
    throw badRequest(`header ${HEADERS.key} must be 16-64 letters, digits, "-" or "_"`);

  if (body.length > limits.maxBytes) {
    throw tooLarge(`job body is ${body.length} bytes, over the limit of ${limits.maxBytes} bytes`, {
      bytes: body.length,
      limit: limits.maxBytes,
    });
  }
  const decoded = decodeUtf8(body);
  if (!decoded.ok)
    throw badRequest(`job body is not valid UTF-8 at byte ${decoded.invalidAt}`, { byte: decoded.invalidAt });
  if (decoded.text.trim() === '') throw badRequest('job body is empty: send {"texts": [...]}');
  let parsed: unknown;
  try {
    parsed = JSON.parse(decoded.text);
  } catch (err) {
    throw badRequest(`job body is not valid JSON: ${(err as Error).message}`, {}, err);
  }
  const texts = (parsed as { texts?: unknown } | null)?.texts;
  if (Array.isArray(texts)) rows = { rows: texts.length };
  if (Array.isArray(texts) && texts.length > limits.maxRows) {
    throw tooLarge(
      `job has ${texts.length} rows, over the limit of ${limits.maxRows} rows per job (max_batch_size); split the request into chunks of at most ${limits.maxRows}`,
      { rows: texts.length, limit: limits.maxRows },
    );
  }
  try {
    // The envelope against the schema; the rows against the same rules every entry point applies.
    validateJobBody(parsed, offset);
    validateTexts(parsed.texts, { isTokenized: parsed.is_tokenized === true, offset });
  } catch (err) {
    const e = err as BertqError;
    throw badRequest(e.message, e.details ?? {});
  }
  const common = {
    id,
    offset,
    reply,
    deadline,
    ...(seal === undefined ? {} : { seal }),
    showTokens: parsed.show_tokens === true,
    checkLength: parsed.check_length === true,
    output: parsed.output ?? 'f32',
  };
  return parsed.is_tokenized === true
    ? { ...common, isTokenized: true, texts: parsed.texts as string[][] }
    : { ...common, isTokenized: false, texts: parsed.texts as string[] };
}

/**
 * Checks a job body against job.v1.json; throws BadRequestError naming the first problem. Row indices
 * in the message are request-relative: `offset` is added to the index inside the job.
 */
export function validateJobBody(body: unknown, offset = 0): asserts body is JobBody {
  const validate = VALIDATORS.job;
  if (validate(body)) return;
  const error = firstSchemaError(validate.errors);
  if (error === undefined) throw new InternalError('job schema rejected the body without saying why');
  const { message, row } = describeJobError(error, body, offset);
  throw new BadRequestError(message, { details: row === undefined ? {} : { row } });
}

const JOB_FIELDS = Object.keys(SCHEMAS.job.properties as Record<string, unknown>);

/** Turns an ajv error on a job body into the sentence a person needs to fix it. */
function describeJobError(error: ErrorObject, body: unknown, offset: number): { message: string; row?: number } {
  // /texts/3 or /texts/3/1: shift the row index to count from the start of the request.
  const match = /^\/texts\/(\d+)(\/(\d+))?$/.exec(error.instancePath);
  const row = match ? offset + Number(match[1]) : undefined;
  const token = match?.[3] !== undefined ? Number(match[3]) : undefined;
  const where = match
    ? `texts[${row}]${token === undefined ? '' : `[${token}]`}`
    : readablePath(error.instancePath, 'job body');
  const tokenized = (body as { is_tokenized?: unknown } | null)?.is_tokenized === true;

  switch (error.keyword) {
    case 'required':
      return { message: `job body has no "${String(error.params.missingProperty)}" field: send {"texts": [...]}` };
    case 'additionalProperties':
      return {
        message: `job body has an unknown field "${String(error.params.additionalProperty)}" (allowed: ${JOB_FIELDS.join(', ')})`,
      };
    case 'minLength':
      return { message: token === undefined ? `${where} is an empty string` : `${where} is an empty token`, row };
    case 'minItems':
      return match
        ? { message: `${where} is an empty token list`, row }
        : { message: `${where} is empty: send at least one text` };
    case 'enum':
      return {
        message: `${where} must be one of ${(error.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}, got ${JSON.stringify(error.data)}`,
      };
    case 'type': {
      const got = jsonTypeOf(error.data);
      if (match && token === undefined) {
        const message = tokenized
          ? `${where} must be a list of tokens, got ${got} (is_tokenized is true)`
          : `${where} must be a string, got ${got}${got === 'array' ? ' (set "is_tokenized": true to send token lists)' : ''}`;
        return { message, row };
      }
      if (match) return { message: `${where} must be a string token, got ${got}`, row };
      const expected = error.params.type === 'object' ? 'a JSON object' : `${String(error.params.type)}`;
      return { message: `${where} must be ${expected}, got ${got}` };
    }
    default:
      return { message: `${where} ${error.message ?? 'is invalid'}`, row };
  }
}

/**
 * A TIMEOUT error when the job's deadline has passed at `now` (epoch ms), else undefined. Workers
 * check it when they take a job and again before a batch runs.
 */
export function deadlineError(
  job: Pick<JobContext, 'id' | 'offset' | 'deadline'>,
  now: number,
): TimeoutError | undefined {
  if (job.deadline === undefined || now <= job.deadline) return undefined;
  return new TimeoutError(
    `job ${job.id} at offset ${job.offset} passed its deadline ${new Date(job.deadline).toISOString()} by ${now - job.deadline} ms before it was encoded`,
    { details: { id: job.id, offset: job.offset, deadline: job.deadline } },
  );
}

function checkId(id: string): void {
  if (typeof id !== 'string' || !REQUEST_ID.test(id)) {
    throw new BadRequestError(`request id must be 1-64 letters, digits, "-" or "_", got ${JSON.stringify(id)}`);
  }
}

function checkOffset(offset: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new BadRequestError(`offset must be a non-negative integer, got ${String(offset)}`);
  }
}

function parseNonNegativeInt(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d{1,15}$/.test(text.trim())) return undefined;
  return Number(text.trim());
}
