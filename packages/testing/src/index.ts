export {
  startNatsServer,
  findNatsServer,
  toNatsConfig,
  START_TIMEOUT_MS,
  STOP_TIMEOUT_MS,
} from '@bertq/nats';
export type { NatsServer, NatsServerOptions, NatsConfig, NatsConfigValue } from '@bertq/nats';
export { tinyModel, SHARED_MODELS_DIR, SHARED_VOCAB } from './tiny-model.js';
export type { TinyModelFixture } from './tiny-model.js';
export { sleep, waitFor, maxAbsDiff, freshService } from './wait.js';
export { freePort, processAlive } from './processes.js';
export { slowModel } from './slow-model.js';
export type { SlowModel } from './slow-model.js';
