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
export { connectNats, natsConnectionOptions, NatsConnectError } from './connect.js';
export { ensureNatsServer, findNatsServerBinary, parseNatsUrl, isLocalHost } from './embedded.js';
export {
  registerService,
  SERVICE_API_PREFIX,
  PING_RESPONSE_TYPE,
  INFO_RESPONSE_TYPE,
  STATS_RESPONSE_TYPE,
  DEFAULT_QUEUE_GROUP,
} from './services.js';
export { buildServerConfig, buildServerStatus, queueDepth, registerControlPlane, parseTerminateRequest } from './control.js';
export { LatencyWindow, RateMeter, ClientTracker, WorkerMetrics } from './metrics.js';
export { createLogger, silentLogger, LOG_LEVELS } from './logger.js';
export { WORKER_VERSION } from './version.js';

export type { BatcherOptions, BatcherInput, QueuedEntry, Batch, NextBatch, BatcherStats, ClassStats, Priority } from './batcher.js';
export type { EmbeddingEngine, EngineRunResult } from './engine.js';
export type { WorkerOptions, WorkerHandle, WorkerStats, WorkerState } from './worker.js';
export type { FleetOptions, FleetHandle, FleetWorker, FleetReadyInfo, RestartPolicy } from './fleet.js';
export type { WorkerProcessHooks } from './worker-process.js';
export type { WorkerTuning, WorkerProcessOptions } from './ipc.js';
export type { StreamOptions, EnsuredStream } from './stream.js';
export type { NatsConnectOptions } from './connect.js';
export type { EnsureNatsServerOptions, EnsuredNatsServer } from './embedded.js';
export type {
  ServiceDefinition,
  EndpointDefinition,
  ServiceRegistration,
  PingResponse,
  InfoResponse,
  StatsResponse,
  EndpointInfo,
  EndpointStats,
} from './services.js';
export type { ModelDescription, WorkerDescription, WorkerView } from './control.js';
export type { StageSummary, WorkerCounters } from './metrics.js';
export type { LogLevel } from './logger.js';
