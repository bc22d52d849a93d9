/**
 * Control documents for tests that need a server config or status without a worker: each is checked
 * against the protocol's own schema before use, so a test never runs on a document a worker could
 * not have sent.
 */
import {
  PROTOCOL_ID,
  validateServerConfig,
  validateServerStatus,
  type ServerConfig,
  type ServerStatus,
} from '@bertq/protocol';

export function sampleConfig(overrides: Partial<ServerConfig> = {}): ServerConfig {
  return validateServerConfig({
    protocol: PROTOCOL_ID,
    service: 'default',
    worker_id: 'W1',
    server_version: '0.1.0',
    server_start_time: new Date().toISOString(),
    max_seq_len: 25,
    max_batch_size: 256,
    priority_batch_size: 16,
    pooling_strategy: 'REDUCE_MEAN',
    pooling_layer: [-2],
    show_tokens_to_client: true,
    device: 'cpu',
    ...overrides,
  });
}

export function sampleStatus(
  workerId: string,
  fields: {
    requests?: number;
    rows?: number;
    localRows?: number;
    state?: ServerStatus['state'];
    at?: string;
    pending?: number;
  } = {},
): ServerStatus {
  const timing = { count: 0, avg_ms: 0, max_ms: 0 };
  return validateServerStatus({
    protocol: PROTOCOL_ID,
    service: 'default',
    worker_id: workerId,
    server_current_time: fields.at ?? new Date().toISOString(),
    state: fields.state ?? 'ready',
    config: sampleConfig({ worker_id: workerId }),
    statistic: {
      num_data_request: fields.requests ?? 0,
      num_total_seq: fields.rows ?? 0,
      num_sys_request: 1,
      num_total_request: (fields.requests ?? 0) + 1,
    },
    queue: {
      high: { pending: fields.pending ?? 0, ack_pending: 0 },
      bulk: { pending: fields.pending ?? 0, ack_pending: 0 },
      local_rows: fields.localRows ?? 0,
    },
    timings: { tokenization: timing, queue: timing, inference: timing, total: timing },
  });
}
