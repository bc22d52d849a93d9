/**
 * The control plane of one worker: the `config`, `status` and `terminate` endpoints (fleet-wide under
 * queue group `q`, and per worker under `.<worker_id>`), registered with the services framework
 * together with the metadata `nats micro ls` shows. Documents follow bert-as-service's server_config
 * and server_status field names (see docs/protocol.md).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { JetStreamManager } from '@nats-io/jetstream';
import {
  BadRequestError,
  PROTOCOL_ID,
  PRIORITIES,
  SERVICE_FRAMEWORK_NAME,
  serviceMetadata,
  serviceNames,
} from '@bertq/protocol';
import type {
  ConsumerDepth,
  Priority,
  ServerConfig,
  ServerStatus,
  TerminateReply,
  TerminateRequest,
} from '@bertq/protocol';
import type { EncoderInfo } from '@bertq/model';
import { registerService } from '@bertq/nats';
import type { ServiceRegistration } from '@bertq/nats';
import type { WorkerMetrics } from './metrics.js';
import { hostname } from 'node:os';
import { basename, isAbsolute } from 'node:path';
import { WORKER_VERSION } from '../version.js';

/** How the model was named at start, for the `config` document (bert-as-service's argument names). */
export interface ModelDescription {
  /** bert-as-service model_dir (or the `model` folder / `.onnx` / hub id). */
  modelDir?: string;
  tunedModelDir?: string;
  ckptName?: string;
  configName?: string;
  graphTmpDir?: string;
}

/** Fixed facts of one worker, from its start. */
export interface WorkerDescription {
  service: string;
  workerId: string;
  info: EncoderInfo;
  /** Device label: `cpu`, `cuda:0`… */
  device: string;
  maxBatchSize: number;
  priorityBatchSize: number;
  maxBatchTokens: number;
  prefetch: number;
  showTokensToClient: boolean;
  maxPayload: number;
  startedAt: Date;
  model?: ModelDescription;
  versions: Record<string, string>;
}

/** What the endpoints read from a live worker. */
export interface WorkerView {
  currentState(): 'starting' | 'ready' | 'draining';
  readonly metrics: WorkerMetrics;
  /** Rows pulled and not yet encoded. */
  localRows(): number;
  /** Most rows the worker holds before it stops pulling. */
  readonly localBound: number;
  heldJobs(): number;
  /** Starts draining after the reply has gone out. */
  terminate(request: TerminateRequest): TerminateReply;
}

const QUEUE_DEPTH_TIMEOUT_MS = 1_000;

const MODEL_FORMATS: Record<EncoderInfo['source'], NonNullable<ServerConfig['model_format']>> = {
  checkpoint: 'google-checkpoint',
  huggingface: 'huggingface',
  onnx: 'onnx',
};

/**
 * A path as the config shows it to every client: its last name only (`uncased_L-12_H-768_A-12`, not
 * `/srv/team/models/…`): where a worker keeps its files is the host's business. Hub ids and other
 * names that are not paths pass unchanged.
 */
function withoutHostPath<T extends string | null>(value: T): T {
  if (value === null || !(isAbsolute(value) || /^\.{1,2}[\\/]|^~/.test(value))) return value;
  return (basename(value.replace(/[\\/]+$/, '')) || value) as T;
}

export function buildServerConfig(d: WorkerDescription, now = new Date()): ServerConfig {
  const { info } = d;
  const tokenLength =
    info.maxSeqLen !== null ? info.maxSeqLen : info.fixedEmbedLength ? info.maxPositionEmbeddings : null;
  return {
    protocol: PROTOCOL_ID,
    service: serviceNames(d.service).service,
    worker_id: d.workerId,
    server_version: WORKER_VERSION,
    server_start_time: d.startedAt.toISOString(),
    server_current_time: now.toISOString(),
    model_dir: withoutHostPath(d.model?.modelDir ?? info.model),
    tuned_model_dir: withoutHostPath(d.model?.tunedModelDir ?? null),
    ckpt_name: withoutHostPath(d.model?.ckptName ?? null),
    config_name: withoutHostPath(d.model?.configName ?? null),
    graph_tmp_dir: withoutHostPath(d.model?.graphTmpDir ?? null),
    model_format: MODEL_FORMATS[info.source],
    model: {
      hidden_size: info.hiddenSize,
      num_hidden_layers: info.numHiddenLayers,
      layers_computed: info.layersComputed,
      max_position_embeddings: info.maxPositionEmbeddings,
      vocab_size: info.vocabSize,
      dims: info.dims,
      graph: withoutHostPath(info.graphPath),
    },
    max_seq_len: info.maxSeqLen,
    cased_tokenization: info.casedTokenization ?? false,
    mask_cls_sep: info.maskClsSep,
    no_special_token: info.noSpecialToken,
    fixed_embed_length: info.fixedEmbedLength,
    max_batch_size: d.maxBatchSize,
    priority_batch_size: d.priorityBatchSize,
    max_batch_tokens: d.maxBatchTokens,
    prefetch: d.prefetch,
    pooling_strategy: info.poolingStrategy,
    pooling_layer: [...info.poolingLayer],
    normalize: info.normalize,
    text_cut:
      info.textCut === undefined
        ? null
        : {
            handle_chinese_chars: info.textCut.handleChineseChars,
            max_input_chars_per_word: info.textCut.maxInputCharsPerWord,
          },
    fp16: info.fp16,
    precision: info.precision,
    ...(info.int8Kernel && {
      int8_kernel: {
        exact: info.int8Kernel.exact,
        weight_bits: info.int8Kernel.weightBits,
        isa: info.int8Kernel.isa,
        path: info.int8Kernel.path,
      },
    }),
    device: d.device,
    show_tokens_to_client: d.showTokensToClient,
    max_payload: d.maxPayload,
    output_shape: info.tokenLevel ? [tokenLength, info.dims] : [info.dims],
    versions: d.versions,
  };
}

export async function buildServerStatus(
  d: WorkerDescription,
  view: WorkerView,
  jsm: JetStreamManager,
  sysRequests: number,
  now = new Date(),
): Promise<ServerStatus> {
  const m = view.metrics;
  const c = m.counters;
  const queue = await queueDepth(jsm, d.service);
  const timings = {
    tokenization: m.timings.tokenization.summary(),
    queue: m.timings.queue.summary(),
    inference: m.timings.inference.summary(),
    total: m.timings.total.summary(),
  };
  return {
    protocol: PROTOCOL_ID,
    service: serviceNames(d.service).service,
    worker_id: d.workerId,
    server_current_time: now.toISOString(),
    uptime_s: Math.max(0, (now.getTime() - d.startedAt.getTime()) / 1000),
    host: hostname(),
    pid: process.pid,
    state: view.currentState(),
    config: buildServerConfig(d, now),
    statistic: {
      num_data_request: c.jobsDone,
      num_total_seq: c.rows,
      num_sys_request: sysRequests,
      num_total_request: c.jobsDone + sysRequests,
      num_exception: c.jobsFailed + c.jobsUnanswerable,
      num_timeout: c.jobsTimedOut,
      num_redelivered: c.jobsRedelivered,
      num_returned: c.jobsReturned,
      num_received: c.jobsReceived,
      num_unanswerable: c.jobsUnanswerable,
      num_active_client: m.clients.active(),
      num_total_client: m.clients.total,
      request_per_second: m.jobRate.perSecond(),
      seq_per_second: m.rowRate.perSecond(),
      capacity_seq_per_second: m.capacityPerSecond(),
      capacity_by_batch_rows: m.capacityByBatch.perSecond(),
      errors_by_code: { ...c.errors },
    },
    queue: {
      ...queue,
      local_rows: view.localRows(),
      local_bound: view.localBound,
      held_jobs: view.heldJobs(),
    },
    timings,
    batches: {
      num_batch: c.batches,
      avg_rows: c.batches === 0 ? 0 : round3(c.batchRows / c.batches),
      avg_padded_tokens: c.batches === 0 ? 0 : round3(c.batchPaddedTokens / c.batches),
      padding_ratio: c.batchRealTokens === 0 ? 1 : round3(c.batchPaddedTokens / c.batchRealTokens),
    },
  };
}

/** Depth of the service's consumers, read from JetStream; nulls where a consumer could not be read in time. */
export async function queueDepth(jsm: JetStreamManager, service: string): Promise<Record<Priority, ConsumerDepth>> {
  const names = serviceNames(service);
  const entries = await Promise.all(
    PRIORITIES.map(async (priority): Promise<[Priority, ConsumerDepth]> => {
      try {
        const info = await withTimeout(
          jsm.consumers.info(names.stream, names.consumers[priority]),
          QUEUE_DEPTH_TIMEOUT_MS,
        );
        return [
          priority,
          {
            pending: info.num_pending,
            ack_pending: info.num_ack_pending,
            redelivered: info.num_redelivered,
            waiting: info.num_waiting,
          },
        ];
      } catch {
        return [priority, { pending: null, ack_pending: null, redelivered: null, waiting: null }];
      }
    }),
  );
  return Object.fromEntries(entries) as Record<Priority, ConsumerDepth>;
}

/** Registers the worker with the services framework: discovery plus the control endpoints. */
export function registerControlPlane(
  nc: NatsConnection,
  jsm: JetStreamManager,
  d: WorkerDescription,
  view: WorkerView,
): ServiceRegistration {
  const names = serviceNames(d.service);
  let registration: ServiceRegistration | undefined;
  const config = () => buildServerConfig(d);
  const status = () => buildServerStatus(d, view, jsm, registration?.requestCount ?? 0);
  const terminate = ({ data }: { data: Uint8Array }) => view.terminate(parseTerminateRequest(data));
  // The worker's Prometheus registry as JSON; the gateway sums every worker's into its /metrics.
  const metrics = () => view.metrics.registry.getMetricsAsJSON();

  registration = registerService(nc, {
    name: SERVICE_FRAMEWORK_NAME,
    version: WORKER_VERSION,
    id: d.workerId,
    description: `bertq embedding worker of service ${names.service}`,
    metadata: {
      ...serviceMetadata({
        service: names.service,
        model: withoutHostPath(d.info.model),
        device: d.device,
        pooling: d.info.poolingStrategy,
        maxSeqLen: d.info.maxSeqLen,
        fingerprint: d.info.fingerprint,
        dims: d.info.dims,
      }),
    },
    endpoints: [
      { name: 'config', subject: names.control.config, handler: config },
      { name: 'status', subject: names.control.status, handler: status },
      { name: 'terminate', subject: names.control.terminate, handler: terminate },
      { name: 'worker-config', subject: names.workerControl('config', d.workerId), queueGroup: null, handler: config },
      { name: 'worker-status', subject: names.workerControl('status', d.workerId), queueGroup: null, handler: status },
      {
        name: 'worker-terminate',
        subject: names.workerControl('terminate', d.workerId),
        queueGroup: null,
        handler: terminate,
      },
      {
        name: 'worker-metrics',
        subject: names.workerControl('metrics', d.workerId),
        queueGroup: null,
        handler: metrics,
      },
    ],
  });
  return registration;
}

/** Reads a terminate request body: empty, or `{"reason"?: string, "drain_timeout_ms"?: number}`. */
const TERMINATE_FIELDS = new Set(['reason', 'drain_timeout_ms']);

/** A terminate request: empty, or a JSON object with only `reason` and `drain_timeout_ms`. */
export function parseTerminateRequest(data: Uint8Array): TerminateRequest {
  const text = new TextDecoder().decode(data).trim();
  if (text === '') return {};
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new BadRequestError(`terminate request is not JSON: ${(err as Error).message}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc))
    throw new BadRequestError('terminate request must be a JSON object');
  // Only the shape it asks for: an error frame ({code, message}) or any other document sent here by
  // mistake or malice is not a terminate request.
  const unknown = Object.keys(doc).filter((key) => !TERMINATE_FIELDS.has(key));
  if (unknown.length > 0) {
    throw new BadRequestError(
      `terminate request has unknown field(s) ${unknown.map((k) => JSON.stringify(k)).join(', ')}: it takes only "reason" and "drain_timeout_ms"`,
    );
  }
  const { reason, drain_timeout_ms: drain } = doc as Record<string, unknown>;
  const out: TerminateRequest = {};
  if (reason !== undefined) {
    if (typeof reason !== 'string') throw new BadRequestError('terminate request field "reason" must be a string');
    out.reason = reason;
  }
  if (drain !== undefined) {
    if (typeof drain !== 'number' || !Number.isFinite(drain) || drain < 0) {
      throw new BadRequestError('terminate request field "drain_timeout_ms" must be a non-negative number');
    }
    out.drain_timeout_ms = drain;
  }
  return out;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]);
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
