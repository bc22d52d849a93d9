export {
  startNatsServer,
  findNatsServer,
  toNatsConfig,
  START_TIMEOUT_MS,
  STOP_TIMEOUT_MS,
} from './nats-server.js';
export type { NatsServer, NatsServerOptions, NatsConfig, NatsConfigValue } from './nats-server.js';
