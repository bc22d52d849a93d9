export { BertClient, CONFIG_MAX_AGE_MS, CONNECT_TIMEOUT_MS, LIVENESS_INTERVAL_MS, LIVENESS_MISSES } from './client.js';
export { ClientClosedError } from './errors.js';
export {
  DEFAULT_SERVER,
  SERVER_ENV,
  DEFAULT_TIMEOUT_MS,
  FALLBACK_CHUNK_ROWS,
  DEFAULT_MAX_IN_FLIGHT,
  DEFAULT_LISTEN_BUFFER,
  resolveClientOptions,
} from './options.js';
export { aggregateStatus, CONTROL_TIMEOUT_MS } from './control.js';
export { planChunks, prepareJobs, PUBLISH_HEADER_SLACK } from './chunks.js';
export { toNestedList } from './output.js';
export { PUBLISH_ACK_TIMEOUT_MS, PUBLISH_WINDOW } from './publish.js';
export { CLIENT_VERSION } from './version.js';
export {
  admissionError,
  batchRowsOf,
  depthMatters,
  estimateWait,
  ownRate,
  readingFromStatus,
  READING_MAX_AGE_MS,
  READING_STALE_MS,
} from './admission.js';
export type { AdmissionRequest, LoadReading, WaitEstimate } from './admission.js';

export type {
  ClientOptions,
  EncodeOptions,
  EncodeAsyncOptions,
  ListenOptions,
  ResolvedClientOptions,
} from './options.js';
export type { FleetStatus, TerminateResult } from './control.js';
export type { PreparedJob, PrepareInput } from './chunks.js';
export type {
  OutputFormat,
  NdArray,
  ListVectors,
  Vectors,
  VectorsWithTokens,
  Texts,
  Fetched,
  Delivery,
  ResultDelivery,
  ErrorDelivery,
  ClientStatus,
  FrameReport,
} from './types.js';
