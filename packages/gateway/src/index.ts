export {
  startGateway,
  HANDLER_GRACE_MS,
  CONTROL_ROUTE_TIMEOUT_MS,
  CONFIG_CACHE_MS,
  RECEIVE_TIMEOUT_MS,
} from './gateway.js';
export {
  resolveGatewayOptions,
  parseCors,
  parseByteSize,
  DEFAULT_HTTP_PORT,
  DEFAULT_HTTP_HOST,
  DEFAULT_CORS,
  DEFAULT_BODY_LIMIT,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_STATUS_CACHE_MS,
  DEFAULT_DRAIN_TIMEOUT_MS,
  DEFAULT_HISTORY_POINTS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_CLIENT_BATCH_SIZE,
  DEFAULT_MAX_EVENT_STREAMS,
} from './options.js';
export { GatewayMetrics, LATENCY_BUCKETS, ROWS_BUCKETS } from './metrics.js';
export { GatewayHttpError, GATEWAY_ERROR_CODES, BearerCheck, errorAnswer, openAIErrorType } from './http.js';
export { parseEncodeRequest, encodeResponseJson } from './encode-route.js';
export {
  parseEmbeddingsRequest,
  checkAgainstConfig,
  embeddingsResponseJson,
  servedModelName,
} from './embeddings-route.js';
export { floatsToJson, floatsToBase64, arrayToJson } from './vectors-json.js';
export { History, quantile, LATENCY_WINDOW_MS } from './history.js';
export { CachedReading } from './fleet-cache.js';
export { ASSETS_DIR, summarizeFleet } from './dashboard.js';
export { GATEWAY_VERSION } from './version.js';

export type { GatewayHandle } from './gateway.js';
export type { GatewayOptions, ResolvedGatewayOptions, CorsPolicy } from './options.js';
export type { GatewayErrorCode, ErrorAnswer } from './http.js';
export type { EncodeRequest } from './encode-route.js';
export type { EmbeddingsRequest, EncodingFormat } from './embeddings-route.js';
export type { HistoryPoint } from './history.js';
export type { Reading } from './fleet-cache.js';
export type { FleetSummary, WorkerSummary, DashboardSnapshot, DashboardTick } from './dashboard.js';
