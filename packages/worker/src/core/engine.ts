/**
 * What the worker needs from a model: the five members `@bertq/model`'s `Encoder` already has. The
 * worker talks only to this interface, so it never loads ONNX Runtime itself, and a test can wrap the
 * real encoder (to make inference slow, say) without touching the worker.
 *
 * Only types are imported from @bertq/model here: a type import loads nothing at run time.
 */
import type { EncodeOptions, EncoderInfo, TokenizedText } from '@bertq/model';

/** One batch through the model. */
export interface EngineRunResult {
  /** Row-major values of `shape`. */
  data: Float32Array;
  /** [rows, dims] for pooled output; [rows, seqLen, dims] for token-level output (NONE pooling). */
  shape: number[];
  /**
   * Milliseconds the model itself computed this batch: the time `run` took also holds passing rows
   * and vectors between threads. The worker's capacity is metered by this when the engine reports it.
   */
  computeMs?: number;
}

export interface EmbeddingEngine {
  /** What the model is: dims, pooling, max_seq_len, device… (the `config` endpoint reports it). */
  readonly info: EncoderInfo;
  /**
   * Validates and tokenizes a job's rows with the model's settings. Throws BadRequestError /
   * TooLongError naming the row (counted from 0 within the call) for bad input.
   */
  tokenize(texts: unknown, options?: EncodeOptions): Promise<TokenizedText[]>;
  /** Runs one batch of rows of similar length; token-level output is padded to the batch's longest row. */
  run(rows: readonly TokenizedText[]): Promise<EngineRunResult>;
  /** The sequence length token-level output is padded to, for a batch whose longest row is `longest`. */
  tokenLevelLength(longest: number): number;
  close(): Promise<void>;
  /** Versions of the runtime pieces (onnxruntime, …), reported by the `config` endpoint. */
  readonly versions?: Readonly<Record<string, string>>;
}
