/**
 * `POST /encode`: bert-as-service's HTTP API. Body `{"id": 123, "texts": [...], "is_tokenized": false}`
 * (plus `show_tokens`), answer `{"id": 123, "result": [[...]], "results": [[...]], "status": 200}`.
 * bert-as-service's server sent `result`, its README documented `results`: both are sent, so a client
 * written from either works.
 */
import type { NdArray, Texts } from '@bertq/client';
import { validateEncodeBody } from './bodies.js';
import { arrayToJson } from './vectors-json.js';

export interface EncodeRequest {
  /** Echoed back as is (any JSON value; null when absent). */
  id: unknown;
  texts: Texts;
  isTokenized: boolean;
  showTokens: boolean;
}

/**
 * The request in a body already checked against ENCODE_BODY (fastify runs the schema before the
 * handler). The rows are validated once, by the client.
 */
/** Schema check and request in one, for callers outside the route (tests, other servers). */
export function checkEncodeRequest(body: unknown): EncodeRequest {
  return parseEncodeRequest(validateEncodeBody(body));
}

export function parseEncodeRequest(checked: Record<string, unknown>): EncodeRequest {
  return {
    id: checked.id === undefined ? null : checked.id,
    texts: checked.texts as Texts,
    isTokenized: checked.is_tokenized === true,
    showTokens: checked.show_tokens === true,
  };
}

/** The answer's JSON text; the vectors are serialised once and written under both names. */
export function encodeResponseJson(id: unknown, vectors: NdArray, tokens: string[][] | undefined): string {
  const result = arrayToJson(vectors.data, vectors.shape);
  const tokensPart = tokens === undefined ? '' : `,"tokens":${JSON.stringify(tokens)}`;
  return `{"id":${JSON.stringify(id)},"result":${result},"results":${result}${tokensPart},"status":200}`;
}
