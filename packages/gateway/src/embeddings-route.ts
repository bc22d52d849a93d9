/**
 * `POST /v1/embeddings`: OpenAI's embeddings API, so OpenAI SDKs and the tools built on them
 * (LangChain, LlamaIndex, …) work against bertq by changing the base URL.
 *
 * Request: `input` (a string or a list of strings), `model` (accepted, not used to route: the gateway
 * serves one service, and the answer names the model it ran), `encoding_format` (`float` or `base64`:
 * little-endian float32 bytes, what the official SDKs ask for by default), `dimensions` (keep the
 * first N values, re-normalised when the service normalises; pooled strategies only), `user` (ignored).
 * Token-id input (lists of integers) is refused: bertq tokenizes text itself.
 */
import { BadRequestError, type ServerConfig } from '@bertq/protocol';
import type { NdArray } from '@bertq/client';
import { validateEmbeddingsBody } from './bodies.js';
import { floatsToBase64, floatsToJson, normalizeInPlace } from './vectors-json.js';

export type EncodingFormat = 'float' | 'base64';

export interface EmbeddingsRequest {
  texts: string[];
  encodingFormat: EncodingFormat;
  dimensions: number | undefined;
  model: string | undefined;
}

function bad(message: string, param: string | null, details: Record<string, unknown> = {}): BadRequestError {
  return new BadRequestError(message, { details: { ...details, ...(param === null ? {} : { param }) } });
}

/** Schema check and request in one, for callers outside the route (tests, other servers). */
export function checkEmbeddingsRequest(body: unknown): EmbeddingsRequest {
  return parseEmbeddingsRequest(validateEmbeddingsBody(body));
}

/**
 * An OpenAI embeddings request from a body already checked against EMBEDDINGS_BODY (fields and their
 * types; fastify runs it before the handler); `input` follows OpenAI's rules here. Errors name the
 * offending `param`, as OpenAI's do.
 */
export function parseEmbeddingsRequest(body: Record<string, unknown>): EmbeddingsRequest {
  const input = body.input;
  let texts: string[];
  if (input === undefined || input === null) throw bad("'input' is a required property", 'input');
  if (typeof input === 'string') {
    texts = [input];
  } else if (Array.isArray(input)) {
    if (input.length === 0) throw bad("'input' must not be an empty list: send at least one string", 'input');
    if (input.every((x) => typeof x === 'number') || input.some((x) => Array.isArray(x))) {
      throw bad(
        "'input' as token ids is not supported by bertq: send text (a string or a list of strings); the service tokenizes it",
        'input',
      );
    }
    texts = input as string[];
  } else {
    throw bad(`'input' must be a string or a list of strings, got ${typeof input}`, 'input');
  }
  for (let i = 0; i < texts.length; i++) {
    const t: unknown = texts[i];
    const where = typeof input === 'string' ? "'input'" : `'input[${i}]'`;
    if (typeof t !== 'string')
      throw bad(`${where} must be a string, got ${t === null ? 'null' : typeof t}`, 'input', { row: i });
    if (t.length === 0) throw bad(`${where} is an empty string; every input must contain text`, 'input', { row: i });
  }

  const dimensions = body.dimensions;
  const model = body.model;
  return {
    texts,
    encodingFormat: (body.encoding_format ?? 'float') as EncodingFormat,
    dimensions: typeof dimensions === 'number' ? dimensions : undefined,
    model: typeof model === 'string' ? model : undefined,
  };
}

/**
 * Checks what the service can give against the request: OpenAI embeddings are one vector per input,
 * so token-level services (pooling NONE) are refused, and `dimensions` must fit what the pooling makes.
 */
export function checkAgainstConfig(request: EmbeddingsRequest, config: ServerConfig): void {
  const pooling = config.pooling_strategy;
  refuseTokenLevel(config, '/v1/embeddings');
  if (request.dimensions === undefined) return;
  const dims = config.output_shape?.[0];
  if (pooling === 'REDUCE_MEAN_MAX') {
    throw bad(
      `'dimensions' cannot shorten REDUCE_MEAN_MAX vectors: they are a mean and a max half side by side, and cutting would drop the max half; leave dimensions out`,
      'dimensions',
    );
  }
  if (typeof dims === 'number' && request.dimensions > dims) {
    throw bad(
      `'dimensions' is ${request.dimensions}, but service "${config.service}" makes ${dims}-dimensional vectors`,
      'dimensions',
      { limit: dims },
    );
  }
}

/** The routes of one vector per input (OpenAI's, TEI's) refuse a token-level service (pooling NONE). */
export function refuseTokenLevel(config: ServerConfig, route: string): void {
  if (config.pooling_strategy !== 'NONE') return;
  throw bad(
    `service "${config.service}" returns token-level vectors (pooling_strategy NONE); ${route} returns one vector per input: use POST /encode, or a service with pooling`,
    null,
  );
}

/** The model name the answer carries: what the fleet was started with. */
export function servedModelName(config: ServerConfig): string {
  return typeof config.model_dir === 'string' && config.model_dir !== '' ? config.model_dir : config.service;
}

/** OpenAI's response JSON, written by hand: the vectors are most of it, and this is the hot path. */
export function embeddingsResponseJson(
  vectors: NdArray,
  request: EmbeddingsRequest,
  options: { model: string; normalize: boolean; promptTokens: number },
): string {
  const [rows, width] = vectors.shape as [number, number];
  const keep = request.dimensions ?? width;
  const data = vectors.data;
  const parts = new Array<string>(rows);
  for (let r = 0; r < rows; r++) {
    const start = r * width;
    // OpenAI's shortened embeddings stay unit-length: re-normalise when the service normalises.
    if (keep < width && options.normalize) normalizeInPlace(data, start, keep);
    const embedding =
      request.encodingFormat === 'base64' ? `"${floatsToBase64(data, start, keep)}"` : floatsToJson(data, start, keep);
    parts[r] = `{"object":"embedding","index":${r},"embedding":${embedding}}`;
  }
  const usage = `{"prompt_tokens":${options.promptTokens},"total_tokens":${options.promptTokens}}`;
  return `{"object":"list","data":[${parts.join(',')}],"model":${JSON.stringify(options.model)},"usage":${usage}}`;
}
