export { Batcher } from './core/batcher.js';
export { startWorker, WORKER_DEFAULTS } from './worker.js';
export { startFleet, FleetError } from './fleet/fleet.js';
export { runWorkerProcess } from './fleet/worker-process.js';
export { nullEngine } from './core/null-engine.js';
export {
  ensureStream,
  readConsumerLimits,
  openJetStreamManager,
  isJetStreamNotEnabled,
  JetStreamNotEnabledError,
  StreamRightsError,
  checkStreamOptions,
  STREAM_DEFAULTS,
} from './nats/stream.js';
export { ensureNatsServer, startPrivateNatsServer, otherServicesOn, parseNatsUrl } from './nats/embedded.js';
export { isLoopbackHost as isLocalHost } from '@bertq/nats';
export {
  buildServerConfig,
  buildServerStatus,
  queueDepth,
  registerControlPlane,
  parseTerminateRequest,
} from './control/control.js';
export { LatencyWindow, RateMeter, ClientTracker, WorkerMetrics } from './control/metrics.js';
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
} from './core/batcher.js';
export type { EmbeddingEngine, EngineRunResult } from './core/engine.js';
export type { WorkerOptions, WorkerHandle, WorkerStats, WorkerState } from './worker.js';
export type { FleetOptions, FleetHandle, FleetWorker, FleetReadyInfo, RestartPolicy } from './fleet/fleet.js';
export type { WorkerProcessHooks } from './fleet/worker-process.js';
export type { WorkerTuning, WorkerProcessOptions } from './fleet/ipc.js';
export type { StreamOptions, EnsuredStream } from './nats/stream.js';
export type { EnsureNatsServerOptions, EnsuredNatsServer } from './nats/embedded.js';
export type { ModelDescription, WorkerDescription, WorkerView } from './control/control.js';
export type { StageSummary, WorkerCounters } from './control/metrics.js';
