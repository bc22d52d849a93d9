export {
  connectNats,
  connectError,
  natsConnectionOptions,
  credentialsGiven,
  serverList,
  redactUrl,
  isAuthFailure,
  isPermissionViolation,
  NatsConnectError,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_MAX_RECONNECT_ATTEMPTS,
  RECONNECT_WAIT_MS,
} from './connect.js';
export { toNatsHeaders, fromNatsHeaders } from './headers.js';
export { LOOPBACK_HOSTS, isLoopbackHost } from './loopback.js';
export { startNatsServer, findNatsServer, toNatsConfig, START_TIMEOUT_MS, STOP_TIMEOUT_MS } from './server.js';
export {
  registerService,
  pingServices,
  DISCOVERY_MAX_WAIT_MS,
  DISCOVERY_STALL_MS,
  SERVICE_API_PREFIX,
  PING_RESPONSE_TYPE,
  INFO_RESPONSE_TYPE,
  STATS_RESPONSE_TYPE,
  DEFAULT_QUEUE_GROUP,
} from './services.js';
export { createLogger, silentLogger, defaultLogFormat, LOG_LEVELS, LOG_FORMATS } from './logger.js';

export type { NatsConnectOptions, TlsFiles } from './connect.js';
export type { NatsServer, NatsServerOptions, NatsConfig, NatsConfigValue } from './server.js';
export type {
  ServiceDefinition,
  EndpointDefinition,
  EndpointReply,
  ServiceRegistration,
  PingResponse,
  InfoResponse,
  StatsResponse,
  EndpointInfo,
  EndpointStats,
} from './services.js';
export type { LogLevel, LogFormat, LoggerOutput } from './logger.js';
