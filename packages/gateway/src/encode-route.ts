/**
 * `POST /encode`: bert-as-service's HTTP API. Body `{"id": 123, "texts": [...], "is_tokenized": false}`
 * (plus `show_tokens`), answer `{"id": 123, "result": [[...]], "results": [[...]], "status": 200}`.
 * bert-as-service's server sent `result`, its README documented `results`: both are sent, so a client
 * written from either works.
 */
import { BadRequestError } from '@bertq/protocol';
import type { NdArray, Texts } from '@bertq/client';
import { arrayToJson } from './vectors-json.js';

export interface EncodeRequest {
  /** Echoed back as is (any JSON value; null when absent). */
  id: unknown;
  texts: Texts;
  isTokenized: boolean;
  showTokens: boolean;
}

const FIELDS = new Set(['id', 'texts', 'is_tokenized', 'show_tokens']);

/** Checks the body's fields (rows themselves are checked by the client against the job schema). */
export function parseEncodeRequest(body: Record<string, unknown>): EncodeRequest {
  const unknown = Object.keys(body).filter((k) => !FIELDS.has(k));
  if (unknown.length > 0) {
    throw new BadRequestError(
      `unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')} in the /encode body; it takes id, texts, is_tokenized, show_tokens`,
    );
  }
  const isTokenized = flag(body, 'is_tokenized');
  const showTokens = flag(body, 'show_tokens');
  const texts = body.texts;
  if (texts === undefined)
    throw new BadRequestError('texts is missing: send {"texts": ["first sentence", "second sentence"]}');
  // The rows themselves are validated once, by the client, before anything is sent.
  return { id: body.id === undefined ? null : body.id, texts: texts as Texts, isTokenized, showTokens };
}

function flag(body: Record<string, unknown>, name: string): boolean {
  const v = body[name];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw new BadRequestError(`${name} must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

/** The answer's JSON text; the vectors are serialised once and written under both names. */
export function encodeResponseJson(id: unknown, vectors: NdArray, tokens: string[][] | undefined): string {
  const result = arrayToJson(vectors.data, vectors.shape);
  const tokensPart = tokens === undefined ? '' : `,"tokens":${JSON.stringify(tokens)}`;
  return `{"id":${JSON.stringify(id)},"result":${result},"results":${result}${tokensPart},"status":200}`;
}
