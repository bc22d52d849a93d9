/**
 * Splitting a request into jobs. A job holds at most `maxChunkRows` rows (the workers' max_batch_size)
 * and must fit the server's max_payload with its headers; all jobs are built, and so validated,
 * before the first is published, so a bad row late in a request sends nothing.
 */
import {
  BadRequestError,
  TooLargeError,
  cutRow,
  textCutBudget,
  encodeJob,
  messageWireSize,
  type HeaderMap,
  type OutputDtype,
  type ServerConfig,
} from '@bertq/protocol';
import type { Texts } from './types.js';

/** Bytes kept free under max_payload for anything a NATS client library adds to a published message. */
export const PUBLISH_HEADER_SLACK = 64;

/** One job of a request, ready to publish. */
export interface PreparedJob {
  /** Index of the job's first row in the request. */
  offset: number;
  rows: number;
  headers: HeaderMap;
  body: Uint8Array;
}

export interface PrepareInput {
  id: string;
  /** The request's secret key (Bertq-Key), sent in every job; workers seal every frame with it. */
  key?: string;
  reply: string;
  /** Epoch ms, sent as Bertq-Deadline. */
  deadline: number;
  texts: Texts;
  isTokenized: boolean;
  showTokens: boolean;
  /** Ask workers to refuse rows max_seq_len would cut (TOO_LONG). */
  checkLength?: boolean;
  output: OutputDtype;
  maxChunkRows: number;
  /** The server's max_payload (headers + body). */
  maxPayload: number;
}

/** Consecutive [offset, rows] ranges of at most `maxChunkRows` rows covering `rowCount` rows. */
export function planChunks(rowCount: number, maxChunkRows: number): Array<{ offset: number; rows: number }> {
  if (!Number.isSafeInteger(maxChunkRows) || maxChunkRows < 1)
    throw new BadRequestError(`maxChunkRows must be a positive integer, got ${maxChunkRows}`);
  const chunks: Array<{ offset: number; rows: number }> = [];
  for (let offset = 0; offset < rowCount; offset += maxChunkRows)
    chunks.push({ offset, rows: Math.min(maxChunkRows, rowCount - offset) });
  return chunks;
}

/**
 * Every job of a request, validated (encodeJob checks rows against the job schema; row numbers in its
 * messages count from the start of the request). A job over max_payload is halved until it fits.
 */
export function prepareJobs(input: PrepareInput): PreparedJob[] {
  const budget = input.maxPayload - PUBLISH_HEADER_SLACK;
  const jobs: PreparedJob[] = [];
  const build = (offset: number, rows: number): void => {
    const { headers, body } = encodeJob({
      id: input.id,
      offset,
      reply: input.reply,
      deadline: input.deadline,
      ...(input.key === undefined ? {} : { key: input.key }),
      texts: input.texts.slice(offset, offset + rows) as Texts,
      isTokenized: input.isTokenized,
      showTokens: input.showTokens,
      checkLength: input.checkLength === true,
      output: input.output,
    });
    const size = messageWireSize(headers, body);
    if (size <= budget) {
      jobs.push({ offset, rows, headers, body });
      return;
    }
    if (rows === 1) {
      throw new TooLargeError(
        `texts[${offset}] makes a job of ${size} bytes, over the server's max_payload of ${input.maxPayload} bytes; shorten it`,
        { details: { row: offset, bytes: size, limit: input.maxPayload } },
      );
    }
    const half = Math.ceil(rows / 2);
    build(offset, half);
    build(offset + half, rows - half);
  };
  for (const chunk of planChunks(input.texts.length, input.maxChunkRows)) build(chunk.offset, chunk.rows);
  return jobs;
}

/**
 * The rows cut to what the workers can use (their config's `text_cut`, the same cut they make), so a
 * 1 MB line is sent as the few KB that hold its tokens instead of failing as TOO_LARGE, and is
 * encoded as it would have been whole (bert-as-service's and TEI's rule: truncate, don't fail).
 * Token lists and services that do not say how to cut are sent as they are.
 */
export function cutRows(texts: Texts, isTokenized: boolean, config: ServerConfig): Texts {
  const rule = config.text_cut;
  const positions = config.model?.max_position_embeddings;
  if (isTokenized || rule === undefined || rule === null) return texts;
  if (config.max_seq_len === null && typeof positions !== 'number') return texts;
  const budget = textCutBudget(config.max_seq_len, positions ?? 0);
  const cutRule = {
    handleChineseChars: rule.handle_chinese_chars,
    maxInputCharsPerWord: rule.max_input_chars_per_word,
  };
  let out: string[] | undefined;
  const rows = texts as readonly string[];
  for (let i = 0; i < rows.length; i++) {
    const cut = cutRow(rows[i]!, budget, cutRule);
    if (cut !== rows[i]) {
      out ??= rows.slice();
      out[i] = cut;
    }
  }
  return out ?? texts;
}
