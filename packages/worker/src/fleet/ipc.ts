/**
 * Messages between a fleet supervisor and its worker processes (Node IPC, JSON). The supervisor sends
 * one `start` with everything the worker needs; the worker answers `ready` or `failed`, and `closed`
 * before it exits. Everything here must survive JSON: no functions, no class instances.
 */
import type { OpenOptions, PreparedModel } from '@bertq/model';
import type { ErrorCode } from '@bertq/protocol';
import type { NatsConnectOptions } from '@bertq/nats';
import type { LogLevel } from '@bertq/nats';
import type { ModelDescription } from '../control/control.js';
import type { StreamOptions } from '../nats/stream.js';

/** Worker tuning a fleet passes through unchanged (see WorkerOptions for each). */
export interface WorkerTuning {
  maxBatchSize?: number;
  maxBatchTokens?: number;
  priorityBatchSize?: number;
  prefetch?: number;
  maxWaitMs?: number;
  pullExpiresMs?: number;
  drainTimeoutMs?: number;
  maxHoldMs?: number;
  showTokensToClient?: boolean;
}

/** Everything one worker process needs, sent in the `start` message. */
export interface WorkerProcessOptions {
  /** Position in the fleet (0-based), for logs. */
  index: number;
  connection: NatsConnectOptions;
  service: string;
  /** The model the supervisor prepared for this worker's device: the worker only opens it. */
  prepared: PreparedModel;
  /** Where it runs: device, deviceId and threads, set per worker by the fleet. */
  open: OpenOptions;
  /** Device label for the control plane (`cpu`, `cuda:1`). */
  deviceLabel: string;
  /** Run the null engine (zero vectors, no compute) in place of the model: benchmarks only. */
  nullModel?: boolean;
  tuning: WorkerTuning;
  /** The stream settings the worker restores when they are deleted or changed from outside. */
  guardStream: Omit<StreamOptions, 'service'>;
  model: ModelDescription;
  logLevel: LogLevel;
}

export type SupervisorMessage =
  | { type: 'start'; options: WorkerProcessOptions }
  /** Drain and exit (the same as SIGTERM, with a drain deadline). */
  | { type: 'stop'; drainTimeoutMs?: number };

export interface ReadyInfo {
  /** Worker id (services-framework instance id). */
  id: string;
  pid: number;
  model: string;
  dims: number;
  device: string;
}

export interface SerializedError {
  name: string;
  message: string;
  code?: ErrorCode;
}

export type WorkerMessage =
  | ({ type: 'ready' } & ReadyInfo)
  | { type: 'failed'; error: SerializedError }
  /** Sent just before exiting; `error` when the worker ended because of one (e.g. NATS gone for good). */
  | { type: 'closed'; error?: SerializedError };

export function serializeError(err: unknown): SerializedError {
  const e = err instanceof Error ? err : new Error(String(err));
  const code = (e as { code?: unknown }).code;
  const out: SerializedError = { name: e.name, message: e.message };
  if (typeof code === 'string' && /^[A-Z_]+$/.test(code)) out.code = code as ErrorCode;
  return out;
}

export function isWorkerMessage(value: unknown): value is WorkerMessage {
  const type = (value as { type?: unknown } | null)?.type;
  return type === 'ready' || type === 'failed' || type === 'closed';
}

export function isSupervisorMessage(value: unknown): value is SupervisorMessage {
  const type = (value as { type?: unknown } | null)?.type;
  return type === 'start' || type === 'stop';
}
