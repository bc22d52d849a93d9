export { Batcher } from './batcher.js';
export { startWorker, WORKER_DEFAULTS } from './worker.js';
export { startFleet, FleetError } from './fleet.js';
export { runWorkerProcess } from './worker-process.js';
export {
  ensureStream,
  readConsumerLimits,
  openJetStreamManager,
  isJetStreamNotEnabled,
  JetStreamNotEnabledError,
  STREAM_DEFAULTS,
} from './stream.js';
export { ensureNatsServer, parseNatsUrl, isLocalHost } from './embedded.js';
export {
  buildServerConfig,
  buildServerStatus,
  queueDepth,
  registerControlPlane,
  parseTerminateRequest,
} from './control.js';
export { LatencyWindow, RateMeter, ClientTracker, WorkerMetrics } from './metrics.js';
export { WORKER_VERSION } from './version.js';

export type {
  BatcherOptions,
  BatcherInput,
  QueuedEntry,
  Batch,
  NextBatch,
  BatcherStats,
  ClassStats,
  Priority,
} from './batcher.js';
export type { EmbeddingEngine, EngineRunResult } from './engine.js';
export type { WorkerOptions, WorkerHandle, WorkerStats, WorkerState } from './worker.js';
export type { FleetOptions, FleetHandle, FleetWorker, FleetReadyInfo, RestartPolicy } from './fleet.js';
export type { WorkerProcessHooks } from './worker-process.js';
export type { WorkerTuning, WorkerProcessOptions } from './ipc.js';
export type { StreamOptions, EnsuredStream } from './stream.js';
export type { EnsureNatsServerOptions, EnsuredNatsServer } from './embedded.js';
export type { ModelDescription, WorkerDescription, WorkerView } from './control.js';
export type { StageSummary, WorkerCounters } from './metrics.js';
