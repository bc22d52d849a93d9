/**
 * The control plane of protocol v1: the documents the `config`, `status` and `terminate` endpoints
 * answer with, and the metadata a worker registers in the NATS services framework. Field names follow
 * bert-as-service's server_config / server_status (snake_case), so its dashboards map over directly.
 */
import { InternalError, type BertqError } from './errors.js';
import { decodeErrorReply } from './error-frames.js';
import type { HeaderMap } from './headers.js';
import { VALIDATORS, describeSchemaError, firstSchemaError, type SchemaName } from './schemas.js';
import { decodeUtf8 } from './utf8.js';
import type { ConsumerDepth, ServerConfigDocument, ServerStatusDocument, StageTiming } from './generated/types.js';
import { normalizeServiceName } from './subjects.js';

/** The protocol tag every control document carries. */
export const PROTOCOL_ID = 'bertq.v1';

/** Timing of one stage over a recent window, in milliseconds. */
export type StageTimingStats = StageTiming;
export type { ConsumerDepth };

/** Reply of `bertq.v1.<svc>.config` (schemas/server-config.v1.json; type generated from it). */
export type ServerConfig = ServerConfigDocument;

/** Reply of `bertq.v1.<svc>.status` (schemas/server-status.v1.json; type generated from it). */
export type ServerStatus = ServerStatusDocument;

/** Body of a `terminate` request (may be empty). */
export interface TerminateRequest {
  /** Logged by the worker. */
  reason?: string;
  /** How long the worker may take to finish the jobs it holds before it exits anyway. */
  drain_timeout_ms?: number;
}

/** Reply of `terminate`, sent before the worker starts draining. */
export interface TerminateReply {
  protocol: typeof PROTOCOL_ID;
  service: string;
  worker_id: string;
  state: 'draining';
  /** Jobs the worker still holds and will finish (or let redeliver) before exiting. */
  in_flight_jobs: number;
}

/** Checks a config document; throws InternalError naming the first bad field. */
export function validateServerConfig(doc: unknown): ServerConfig {
  return validateDocument<ServerConfig>('serverConfig', doc, 'server config');
}

/** Checks a status document; throws InternalError naming the first bad field. */
export function validateServerStatus(doc: unknown): ServerStatus {
  return validateDocument<ServerStatus>('serverStatus', doc, 'server status');
}

function validateDocument<T>(schema: SchemaName, doc: unknown, what: string): T {
  const validate = VALIDATORS[schema];
  if (validate(doc)) return doc as T;
  const error = firstSchemaError(validate.errors);
  throw new InternalError(`invalid ${what}: ${error ? describeSchemaError(error, what) : 'rejected by its schema'}`, {
    details: error ? { path: error.instancePath, keyword: error.keyword } : {},
  });
}

/**
 * Reads a control endpoint's reply: an error reply becomes its typed error (thrown); anything else
 * must be JSON, and for `config`/`status` valid against its schema.
 */
export function decodeControlReply(op: 'config', headers: HeaderMap, body: Uint8Array): ServerConfig;
export function decodeControlReply(op: 'status', headers: HeaderMap, body: Uint8Array): ServerStatus;
export function decodeControlReply(op: 'terminate', headers: HeaderMap, body: Uint8Array): TerminateReply;
export function decodeControlReply(op: 'metrics', headers: HeaderMap, body: Uint8Array): unknown[];
export function decodeControlReply(
  op: 'config' | 'status' | 'terminate' | 'metrics',
  headers: HeaderMap,
  body: Uint8Array,
): unknown {
  const error: BertqError | undefined = decodeErrorReply(headers, body);
  if (error !== undefined) throw error;
  const text = decodeUtf8(body);
  if (!text.ok) throw new InternalError(`${op} reply is not valid UTF-8 at byte ${text.invalidAt}`);
  let doc: unknown;
  try {
    doc = JSON.parse(text.text);
  } catch (err) {
    throw new InternalError(`${op} reply is not JSON: ${(err as Error).message}`, { cause: err });
  }
  if (op === 'config') return validateServerConfig(doc);
  if (op === 'status') return validateServerStatus(doc);
  // A worker's metric registry, as prom-client's getMetricsAsJSON() writes it (one object a metric).
  if (op === 'metrics') {
    if (!Array.isArray(doc) || doc.some((m) => m === null || typeof m !== 'object' || typeof m.name !== 'string')) {
      throw new InternalError('metrics reply must be a list of metric objects with a name');
    }
    return doc;
  }
  const reply = doc as Partial<TerminateReply> | null;
  if (
    reply === null ||
    typeof reply !== 'object' ||
    typeof reply.worker_id !== 'string' ||
    reply.state !== 'draining'
  ) {
    throw new InternalError('terminate reply must be an object with worker_id and state "draining"');
  }
  return reply;
}

/** Metadata every worker registers with the services framework (values are strings there). */
export interface ServiceMetadata {
  protocol: string;
  service: string;
  model: string;
  device: string;
  pooling: string;
  max_seq_len: string;
  /** What the model computes (weights, graph options, tokenization): workers of one service share it. */
  fingerprint?: string;
  /** Length of one output vector. */
  dims?: string;
}

/** Metadata for the services-framework registration; `max_seq_len` null is written `NONE`. */
export function serviceMetadata(fields: {
  service: string;
  model: string;
  device: string;
  pooling: string;
  maxSeqLen: number | null;
  fingerprint?: string;
  dims?: number;
}): ServiceMetadata {
  const metadata: ServiceMetadata = {
    protocol: PROTOCOL_ID,
    service: normalizeServiceName(fields.service),
    model: fields.model,
    device: fields.device,
    pooling: fields.pooling,
    max_seq_len: fields.maxSeqLen === null ? 'NONE' : String(fields.maxSeqLen),
  };
  if (fields.fingerprint !== undefined) metadata.fingerprint = fields.fingerprint;
  if (fields.dims !== undefined) metadata.dims = String(fields.dims);
  return metadata;
}
