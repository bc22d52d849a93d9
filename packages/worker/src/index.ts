export { Batcher } from './batcher.js';
export type { BatcherOptions, BatcherInput, QueuedEntry, Batch, NextBatch, BatcherStats, ClassStats, Priority } from './batcher.js';
