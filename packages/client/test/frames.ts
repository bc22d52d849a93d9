/**
 * Result and error frames built with the protocol's own encoder, decoded with its decoder: what a
 * worker would put on the wire, without a worker.
 */
import {
  decodeFrame,
  encodeErrorFrame,
  encodeResultFrames,
  type BertqError,
  type DecodedFrame,
  type OutputDtype,
  type ResultInput,
} from '@bertq/protocol';

/** Row r of a request holds [r, r + 0.5, r + 0.25, …] so a misplaced row is visible. */
export function rowValues(row: number, dim: number): number[] {
  return Array.from({ length: dim }, (_, k) => row + k / (k + 2));
}

export function resultFrames(
  id: string,
  offset: number,
  rows: number,
  options: { dim?: number; dtype?: OutputDtype; maxPayload?: number; tokens?: string[][] } = {},
): DecodedFrame[] {
  const dim = options.dim ?? 4;
  const data = new Float32Array(rows * dim);
  for (let i = 0; i < rows; i++) data.set(rowValues(offset + i, dim), i * dim);
  const input: ResultInput = { id, offset, rows, shape: [dim], dtype: options.dtype ?? 'f32', data, worker: 'W1' };
  if (options.tokens) input.tokens = options.tokens;
  return encodeResultFrames(input, { maxPayload: options.maxPayload ?? 1024 * 1024 }).map((f) =>
    decodeFrame(f.headers, f.body),
  );
}

export function errorFrame(id: string, offset: number, rows: number, error: BertqError): DecodedFrame {
  const f = encodeErrorFrame({ id, offset, rows, worker: 'W1' }, error);
  return decodeFrame(f.headers, f.body);
}
