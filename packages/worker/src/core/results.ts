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
export function splitBatchOutput<J>(
  rows: readonly BatchRow<J>[],
  output: EngineRunResult,
  tokenLength?: number,
): RowRun<J>[] {
  const { shape, data } = output;
  if (shape[0] !== rows.length) {
    throw new InternalError(`the model returned ${shape[0]} rows for a batch of ${rows.length}`);
  }
  const tokenLevel = shape.length === 3;
  if (!tokenLevel && shape.length !== 2)
    throw new InternalError(`the model returned output of shape [${shape.join(',')}]; expected 2 or 3 axes`);
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
    if (list === undefined) {
      list = [];
      byJob.set(job, list);
    }
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

/**
 * Joins runs of one job that continue each other (row after row, same row shape) into single runs,
 * in row order — so rows computed in different batches still travel as one frame.
 */
export function mergeRuns<J>(runs: readonly RowRun<J>[]): RowRun<J>[] {
  const sorted = [...runs].sort((a, b) => a.firstRow - b.firstRow);
  const out: RowRun<J>[] = [];
  let group: RowRun<J>[] = [];
  const close = () => {
    if (group.length === 0) return;
    if (group.length === 1) out.push(group[0]!);
    else {
      const rows = group.reduce((n, r) => n + r.rows, 0);
      const data = new Float32Array(group.reduce((n, r) => n + r.data.length, 0));
      let at = 0;
      for (const r of group) {
        data.set(r.data, at);
        at += r.data.length;
      }
      out.push({ job: group[0]!.job, firstRow: group[0]!.firstRow, rows, rowShape: group[0]!.rowShape, data });
    }
    group = [];
  };
  for (const run of sorted) {
    const last = group.at(-1);
    const continues =
      last !== undefined && last.firstRow + last.rows === run.firstRow && last.rowShape.join() === run.rowShape.join();
    if (!continues) close();
    group.push(run);
  }
  close();
  return out;
}
