/**
 * One job's computed rows, from the model's output until they are published. A batch mixes rows of
 * several jobs in shortest-first order, so a job's rows arrive a few at a time, in any order; a
 * result frame carries consecutive rows of one request. So rows are kept per job and handed out as
 * runs of consecutive rows.
 *
 * A job whose rows fit in `bufferBytes` (every pooled job: 256 rows × 1,024 dims is 1 MB) gets ONE
 * buffer: each row is copied once, from the model's output into its place, and a run is a view of
 * that buffer, which the frame encoder sends without another copy. A larger job (token-level output
 * of long sequences) keeps its rows in small per-batch runs instead, published whenever they reach
 * `bufferBytes`, so no job holds more than that however long it is.
 */
import { InternalError } from '@bertq/protocol';
import type { EngineRunResult } from './engine.js';

/** Consecutive rows of one job: `rows × width` values from its row `firstRow`. */
export interface OutputRun {
  firstRow: number;
  rows: number;
  data: Float32Array;
}

export class JobOutput {
  /** Values per row: dims, or seqLen × dims for token-level output. */
  readonly width: number;
  /** Rows written so far. */
  rowsDone = 0;
  /** Bytes written and not yet taken. */
  pendingBytes = 0;
  /** The one buffer of a small job (buffer mode). */
  readonly #buffer: Float32Array | undefined;
  /** Per row: written and not yet taken (buffer mode). */
  readonly #pending: Uint8Array | undefined;
  /** Runs not yet taken (run mode). */
  #runs: OutputRun[] = [];

  constructor(
    readonly rows: number,
    /** Shape of one row: [dims], or [seqLen, dims] for token-level output. */
    readonly rowShape: readonly number[],
    bufferBytes: number,
  ) {
    this.width = rowShape.reduce((a, b) => a * b, 1);
    if (rows * this.width * Float32Array.BYTES_PER_ELEMENT <= bufferBytes) {
      this.#buffer = new Float32Array(rows * this.width);
      this.#pending = new Uint8Array(rows);
    }
  }

  get complete(): boolean {
    return this.rowsDone === this.rows;
  }

  /**
   * Takes this job's rows out of one batch's output: `mine` lists, for each of its rows in the batch,
   * the job row (`row`) and its position in the batch (`at`). Token-level output is cut or
   * zero-padded to this job's row length, so a row reads the same whichever batch it ran in.
   */
  write(output: EngineRunResult, batchRows: number, mine: readonly { row: number; at: number }[]): void {
    const { shape, data } = output;
    if (shape[0] !== batchRows)
      throw new InternalError(`the model returned ${shape[0]} rows for a batch of ${batchRows}`);
    if (shape.length !== 2 && shape.length !== 3) {
      throw new InternalError(`the model returned output of shape [${shape.join(',')}]; expected 2 or 3 axes`);
    }
    const dims = shape[shape.length - 1]!;
    const seqIn = shape.length === 3 ? shape[1]! : 1;
    const inWidth = seqIn * dims;
    const copy = Math.min(inWidth, this.width);
    if (dims !== this.rowShape[this.rowShape.length - 1]) {
      throw new InternalError(`the model returned rows of ${dims} values; the job expects [${this.rowShape}]`);
    }
    let run: { firstRow: number; rows: number[]; at: number[] } | undefined;
    const closeRun = () => {
      if (run === undefined) return;
      const out = new Float32Array(run.rows.length * this.width);
      run.at.forEach((at, i) => {
        out.set(data.subarray(at * inWidth, at * inWidth + copy), i * this.width);
      });
      this.#runs.push({ firstRow: run.firstRow, rows: run.rows.length, data: out });
      run = undefined;
    };
    // Batch rows come shortest-first: in job-row order, consecutive rows make one run.
    const ordered = [...mine].sort((a, b) => a.row - b.row);
    for (const { row, at } of ordered) {
      if (this.#buffer !== undefined && this.#pending !== undefined) {
        if (this.#pending[row] !== 0) continue; // computed twice (cannot happen): keep the first
        this.#buffer.set(data.subarray(at * inWidth, at * inWidth + copy), row * this.width);
        this.#pending[row] = 1;
      } else {
        if (run !== undefined && run.firstRow + run.rows.length !== row) closeRun();
        run ??= { firstRow: row, rows: [], at: [] };
        run.rows.push(row);
        run.at.push(at);
      }
      this.rowsDone++;
      this.pendingBytes += this.width * Float32Array.BYTES_PER_ELEMENT;
    }
    closeRun();
  }

  /** The rows written since the last take, as runs of consecutive rows in row order. */
  take(): OutputRun[] {
    this.pendingBytes = 0;
    const pending = this.#pending;
    if (this.#buffer === undefined || pending === undefined) return this.#takeRuns();
    const out: OutputRun[] = [];
    let row = 0;
    while (row < this.rows) {
      if (pending[row] !== 1) {
        row++;
        continue;
      }
      const first = row;
      while (row < this.rows && pending[row] === 1) pending[row++] = 2;
      out.push({
        firstRow: first,
        rows: row - first,
        data: this.#buffer.subarray(first * this.width, row * this.width),
      });
    }
    return out;
  }

  /** Run mode: joins runs that continue each other, so rows of several batches travel as one frame. */
  #takeRuns(): OutputRun[] {
    const sorted = this.#runs.sort((a, b) => a.firstRow - b.firstRow);
    this.#runs = [];
    const out: OutputRun[] = [];
    let group: OutputRun[] = [];
    const close = () => {
      if (group.length === 1) out.push(group[0]!);
      else if (group.length > 1) {
        const data = new Float32Array(group.reduce((n, r) => n + r.data.length, 0));
        let at = 0;
        for (const r of group) {
          data.set(r.data, at);
          at += r.data.length;
        }
        out.push({ firstRow: group[0]!.firstRow, rows: group.reduce((n, r) => n + r.rows, 0), data });
      }
      group = [];
    };
    for (const run of sorted) {
      const last = group.at(-1);
      if (last !== undefined && last.firstRow + last.rows !== run.firstRow) close();
      group.push(run);
    }
    close();
    return out;
  }
}
