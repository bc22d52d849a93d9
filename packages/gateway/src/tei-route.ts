/**
 * Text Embeddings Inference's API (`POST /embed`, `GET /info`) and OpenAI's model list
 * (`GET /v1/models`, `GET /v1/models/{id}`), so TEI clients and OpenAI tooling that lists models first
 * can point at bertq unchanged.
 *
 * `POST /embed` takes `{"inputs": "text" | ["a", "b"], "truncate"?, "normalize"?}` and answers a bare
 * array of vectors (`[[…], […]]`), one per input, as TEI does. TEI's `truncate` defaults to the
 * server's `auto_truncate`, which bertq reports as true (bert-as-service's rule: what max_seq_len
 * cannot hold is cut); `"truncate": false` refuses a longer input instead (TOO_LONG). TEI's
 * `normalize` defaults to true: the vectors are scaled to unit length here when the service does not
 * already; `"normalize": false` is refused on a service that normalizes (its vectors cannot be
 * un-scaled). Errors are TEI's `{"error", "error_type"}`.
 */
import { BadRequestError, type ServerConfig } from '@bertq/protocol';
import type { NdArray } from '@bertq/client';
import type { ErrorAnswer } from './http.js';
import { floatsToJson, normalizeInPlace } from './vectors-json.js';
import { refuseTokenLevel, servedModelName } from './embeddings-route.js';

export interface TeiEmbedRequest {
  texts: string[];
  /** Cut what max_seq_len cannot hold (TEI `truncate`; default: the server's auto_truncate, true). */
  truncate: boolean;
  /** Unit-length vectors (TEI `normalize`, default true). */
  normalize: boolean;
}

/** The request in a body already checked against TEI_EMBED_BODY; `inputs` follows TEI's rules here. */
export function parseTeiEmbedRequest(body: Record<string, unknown>): TeiEmbedRequest {
  const inputs = body.inputs;
  let texts: string[];
  if (typeof inputs === 'string') texts = [inputs];
  else if (Array.isArray(inputs) && inputs.length > 0 && inputs.every((x) => typeof x === 'string')) texts = inputs;
  else if (Array.isArray(inputs) && inputs.length === 0) throw new BadRequestError('`inputs` cannot be empty');
  else
    throw new BadRequestError(
      '`inputs` must be a string or a list of strings (token ids are not supported: bertq tokenizes text itself)',
    );
  texts.forEach((t, row) => {
    if (t.trim() === '') throw new BadRequestError(`\`inputs[${row}]\` is empty`, { details: { row } });
  });
  return { texts, truncate: body.truncate !== false, normalize: body.normalize !== false };
}

/** Refuses what the service cannot give: token-level vectors, or raw vectors from a normalizing service. */
export function checkTeiAgainstConfig(request: TeiEmbedRequest, config: ServerConfig): void {
  refuseTokenLevel(config, '/embed');
  if (!request.normalize && config.normalize === true) {
    throw new BadRequestError(
      `service "${config.service}" normalizes its vectors (started with --normalize): "normalize": false cannot be honoured`,
    );
  }
}

/** TEI's answer: one array of floats per input, unit-length when asked. */
export function teiEmbedResponseJson(vectors: NdArray, normalize: boolean): string {
  const [rows, width] = vectors.shape as [number, number];
  const parts = new Array<string>(rows);
  for (let r = 0; r < rows; r++) {
    if (normalize) normalizeInPlace(vectors.data, r * width, width);
    parts[r] = floatsToJson(vectors.data, r * width, width);
  }
  return `[${parts.join(',')}]`;
}

/** TEI's `GET /info`, from the service's config and the gateway's own limits. */
export function teiInfo(config: ServerConfig, limits: { maxClientBatchSize: number; version: string }) {
  return {
    model_id: servedModelName(config),
    model_sha: null,
    model_dtype: config.precision ?? (config.fp16 ? 'float16' : 'float32'),
    model_type: { embedding: { pooling: TEI_POOLING[config.pooling_strategy] ?? config.pooling_strategy } },
    max_concurrent_requests: null,
    max_input_length: config.max_seq_len ?? config.model?.max_position_embeddings ?? null,
    max_batch_tokens: config.max_batch_tokens ?? null,
    max_batch_requests: null,
    max_client_batch_size: limits.maxClientBatchSize,
    auto_truncate: true,
    tokenization_workers: null,
    version: limits.version,
    sha: null,
    docker_label: null,
    bertq: { service: config.service, protocol: config.protocol },
  };
}

/** bert-as-service's pooling names in TEI's words, where TEI has one. */
const TEI_POOLING: Record<string, string> = { REDUCE_MEAN: 'mean', CLS_TOKEN: 'cls', REDUCE_MAX: 'max' };

/** TEI's error body: `{"error": message, "error_type": Validation | Overloaded | Unhealthy | Backend}`. */
export function teiErrorBody(a: ErrorAnswer): string {
  const type =
    a.code === 'BAD_REQUEST' || a.code === 'TOO_LARGE' || a.code === 'TOO_LONG'
      ? 'Validation'
      : a.code === 'OVERLOADED'
        ? 'Overloaded'
        : a.code === 'NO_WORKERS'
          ? 'Unhealthy'
          : a.code === 'UNAUTHORIZED'
            ? 'Unauthorized'
            : 'Backend';
  return JSON.stringify({ error: `${a.code}: ${a.message}`, error_type: type });
}

/** OpenAI's model object for the one model a gateway serves. */
export function openAIModel(config: ServerConfig) {
  return {
    id: servedModelName(config),
    object: 'model',
    created: Math.floor(Date.parse(config.server_start_time) / 1000) || 0,
    owned_by: 'bertq',
  };
}
