/**
 * Cuts one batch's model output back into the jobs it came from. A batch mixes rows of several jobs
 * in shortest-first order; each job gets its rows as runs of consecutive row indices, because a
 * result frame carries consecutive rows of one request.
 */
import { InternalError } from '@bertq/protocol';
import type { EngineRunResult } from './engine.js';

/** Where one row of the batch came from. */
export interface BatchRow<J> {
  readonly job: J;
  /** Row index inside its job. */
  readonly row: number;
}

/** Consecutive rows of one job, ready for `encodeResultFrames`. */
export interface RowRun<J> {
  job: J;
  /** Index (inside the job) of the run's first row. */
  firstRow: number;
  rows: number;
  /** Shape of one row: [dims], or [seqLen, dims] for token-level output. */
  rowShape: number[];
  /** rows × prod(rowShape) values. */
  data: Float32Array;
}

/**
 * Splits `output` (row k belongs to `rows[k]`) into runs per job. Token-level output ([rows, s, dims])
 * is cut or zero-padded to `tokenLength` per row, as `Encoder.encode` does, so a row reads the same
 * whichever batch it ran in.
 */
export function splitBatchOutput<J>(rows: readonly BatchRow<J>[], output: EngineRunResult, tokenLength?: number): RowRun<J>[] {
  const { shape, data } = output;
  if (shape[0] !== rows.length) {
    throw new InternalError(`the model returned ${shape[0]} rows for a batch of ${rows.length}`);
  }
  const tokenLevel = shape.length === 3;
  if (!tokenLevel && shape.length !== 2) throw new InternalError(`the model returned output of shape [${shape.join(',')}]; expected 2 or 3 axes`);
  const dims = shape[shape.length - 1]!;
  const seqIn = tokenLevel ? shape[1]! : 1;
  const seqOut = tokenLevel ? (tokenLength ?? seqIn) : 1;
  const rowShape = tokenLevel ? [seqOut, dims] : [dims];
  const inWidth = seqIn * dims;
  const outWidth = seqOut * dims;
  const copy = Math.min(seqIn, seqOut) * dims;

  // Batch positions of each job's rows, sorted by row index.
  const byJob = new Map<J, Array<{ row: number; at: number }>>();
  rows.forEach(({ job, row }, at) => {
    let list = byJob.get(job);
    if (list === undefined) byJob.set(job, (list = []));
    list.push({ row, at });
  });

  const runs: RowRun<J>[] = [];
  for (const [job, list] of byJob) {
    list.sort((a, b) => a.row - b.row);
    let start = 0;
    while (start < list.length) {
      let end = start + 1;
      while (end < list.length && list[end]!.row === list[end - 1]!.row + 1) end++;
      const count = end - start;
      const out = new Float32Array(count * outWidth);
      for (let i = 0; i < count; i++) {
        const at = list[start + i]!.at;
        out.set(data.subarray(at * inWidth, at * inWidth + copy), i * outWidth);
      }
      runs.push({ job, firstRow: list[start]!.row, rows: count, rowShape, data: out });
      start = end;
    }
  }
  return runs;
}
