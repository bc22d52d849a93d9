export {
  startNatsServer,
  findNatsServer,
  toNatsConfig,
  START_TIMEOUT_MS,
  STOP_TIMEOUT_MS,
} from './nats-server.js';
export type { NatsServer, NatsServerOptions, NatsConfig, NatsConfigValue } from './nats-server.js';
export { tinyModel, SHARED_MODELS_DIR, SHARED_VOCAB } from './tiny-model.js';
export type { TinyModelFixture } from './tiny-model.js';
export { sleep, waitFor, maxAbsDiff, freshService } from './wait.js';
