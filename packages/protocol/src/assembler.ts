/**
 * Reassembles one request from its result frames. Frames arrive in any order (many workers, many
 * chunks), and the same rows can arrive twice (a job redelivered after its worker died), so rows are
 * placed by offset, byte parts by part index, and anything already held is ignored.
 */
import { InternalError } from './errors.js';
import { decodeRowBytes, type ResultFrame } from './frames.js';
import { elementCount } from './rows.js';
import type { OutputDtype } from './job.js';

export interface AssemblerOptions {
  /** Request id; frames of other requests are refused. */
  id: string;
  /** Rows in the whole request. */
  rows: number;
  /**
   * Expected per-row shape, when known (e.g. [768]); frames that disagree are refused. Left out, the
   * shape is learnt from the frames.
   */
  rowShape?: readonly number[];
}

/** The whole request, once every row is in. */
export interface AssembledResult {
  /** rows × prod(rowShape) values, row-major. */
  data: Float32Array;
  /** [rows, ...rowShape]. */
  shape: number[];
  /** Per row, its tokens, when every frame carried them. */
  tokens?: string[][];
  /** Per row, its token count, when every frame carried them (Bertq-Token-Counts). */
  tokenCounts?: number[];
}

interface RowParts {
  dtype: OutputDtype;
  shape: number[];
  /** Parts by count n, then by 1-based index. Keyed by n too: a redelivered row may be split differently. */
  byCount: Map<number, Map<number, { bytes: Uint8Array; tokensText: string }>>;
}

export class RequestAssembler {
  readonly id: string;
  readonly rows: number;
  private readonly expectedShape: readonly number[] | undefined;
  private readonly values: (Float32Array | undefined)[];
  private readonly shapes: (number[] | undefined)[];
  private readonly tokens: (string[] | undefined)[];
  private readonly counts: (number | undefined)[];
  private readonly parts = new Map<number, RowParts>();
  private referenceShape: readonly number[] | undefined;
  private filled = 0;

  constructor(options: AssemblerOptions) {
    if (!Number.isSafeInteger(options.rows) || options.rows < 1) {
      throw new InternalError(`request ${options.id} must have at least one row, got ${options.rows}`);
    }
    this.id = options.id;
    this.rows = options.rows;
    this.expectedShape = options.rowShape;
    // Filled with undefined, not holes: every()/find() skip holes.
    this.values = new Array<Float32Array | undefined>(options.rows).fill(undefined);
    this.shapes = new Array<number[] | undefined>(options.rows).fill(undefined);
    this.tokens = new Array<string[] | undefined>(options.rows).fill(undefined);
    this.counts = new Array<number | undefined>(options.rows).fill(undefined);
  }

  /** True once every row is in. */
  get complete(): boolean {
    return this.filled === this.rows;
  }

  /** Rows received so far. */
  get receivedRows(): number {
    return this.filled;
  }

  /**
   * Adds one result frame. Returns true when it brought at least one new row or part, false for a
   * duplicate. Throws InternalError for a frame that cannot belong to this request.
   */
  add(frame: ResultFrame): boolean {
    if (frame.id !== this.id)
      throw new InternalError(`frame of request ${frame.id} given to the assembler of request ${this.id}`);
    if (frame.offset + frame.rows > this.rows) {
      throw new InternalError(
        `frame of request ${this.id} holds rows ${frame.offset}..${frame.offset + frame.rows - 1}, but the request has ${this.rows} rows`,
      );
    }
    this.checkShape(frame.shape);
    if (frame.part !== undefined) return this.addPart(frame, frame.part);
    if (frame.data === undefined)
      throw new InternalError(`frame of request ${this.id} at offset ${frame.offset} has neither data nor a part`);

    const rowElements = elementCount(frame.shape);
    let added = false;
    for (let i = 0; i < frame.rows; i++) {
      const row = frame.offset + i;
      if (this.values[row] !== undefined) continue;
      this.place(
        row,
        frame.data.subarray(i * rowElements, (i + 1) * rowElements),
        frame.shape,
        frame.tokens?.[i],
        frame.tokenCounts?.[i],
      );
      added = true;
    }
    return added;
  }

  private addPart(frame: ResultFrame, part: NonNullable<ResultFrame['part']>): boolean {
    const row = frame.offset;
    if (this.values[row] !== undefined) return false;
    let entry = this.parts.get(row);
    if (entry === undefined) {
      entry = { dtype: frame.dtype, shape: frame.shape, byCount: new Map() };
      this.parts.set(row, entry);
    }
    if (entry.dtype !== frame.dtype) {
      throw new InternalError(
        `row ${row} of request ${this.id} arrived in parts of dtype ${entry.dtype} and ${frame.dtype}`,
      );
    }
    let pieces = entry.byCount.get(part.count);
    if (pieces === undefined) {
      pieces = new Map();
      entry.byCount.set(part.count, pieces);
    }
    if (pieces.has(part.index)) return false;
    pieces.set(part.index, { bytes: part.bytes, tokensText: part.tokensText });
    if (pieces.size === part.count) {
      const ordered = Array.from({ length: part.count }, (_, i) => pieces.get(i + 1)!);
      const joined = new Uint8Array(ordered.reduce((n, p) => n + p.bytes.length, 0));
      let at = 0;
      for (const p of ordered) {
        joined.set(p.bytes, at);
        at += p.bytes.length;
      }
      const tokens = this.joinTokens(row, ordered.map((p) => p.tokensText).join(''));
      this.parts.delete(row);
      this.place(row, decodeRowBytes(joined, entry.dtype, entry.shape), entry.shape, tokens, frame.tokenCounts?.[0]);
    }
    return true;
  }

  /** Parses the joined tokens fragments of a split row: the JSON of a one-row Bertq-Tokens value. */
  private joinTokens(row: number, text: string): string[] | undefined {
    if (text === '') return undefined;
    let tokens: unknown;
    try {
      tokens = JSON.parse(text);
    } catch (err) {
      throw new InternalError(`tokens of row ${row} of request ${this.id}, joined from its parts, are not JSON`, {
        cause: err,
      });
    }
    if (
      !Array.isArray(tokens) ||
      tokens.length !== 1 ||
      !Array.isArray(tokens[0]) ||
      !tokens[0].every((t: unknown) => typeof t === 'string')
    ) {
      throw new InternalError(
        `tokens of row ${row} of request ${this.id}, joined from its parts, are not one token list`,
      );
    }
    return tokens[0] as string[];
  }

  private place(
    row: number,
    values: Float32Array,
    shape: number[],
    tokens: string[] | undefined,
    count: number | undefined,
  ): void {
    this.values[row] = values;
    this.shapes[row] = shape;
    if (tokens !== undefined) this.tokens[row] = tokens;
    if (count !== undefined) this.counts[row] = count;
    this.filled++;
  }

  /**
   * Per-row shapes must agree, except the first axis of token-level rows: with max_seq_len NONE each
   * batch is padded to its own longest row, so rows from different batches may differ there.
   */
  private checkShape(shape: readonly number[]): void {
    // The first shape seen (or the expected one) is the reference for every later frame.
    this.referenceShape ??= this.expectedShape ?? [...shape];
    const reference = this.referenceShape;
    // Axis 0 of a token-level row (rank >= 2) is its sequence length and may vary; the rest must match.
    const from = shape.length >= 2 ? 1 : 0;
    const matches = reference.length === shape.length && shape.every((d, i) => i < from || d === reference[i]);
    if (!matches) {
      throw new InternalError(
        `frame of request ${this.id} has row shape [${shape.join(',')}], expected [${reference.join(',')}]`,
      );
    }
  }

  /** Row ranges not yet received, as [first, last] pairs (for a TIMEOUT message that says what is missing). */
  /** True when rows offset … offset + rows − 1 are all in. */
  hasRows(offset: number, rows: number): boolean {
    for (let row = offset; row < offset + rows; row++) if (this.values[row] === undefined) return false;
    return true;
  }

  missingRanges(): Array<[number, number]> {
    const ranges: Array<[number, number]> = [];
    let start = -1;
    for (let row = 0; row <= this.rows; row++) {
      const missing = row < this.rows && this.values[row] === undefined;
      if (missing && start < 0) start = row;
      if (!missing && start >= 0) {
        ranges.push([start, row - 1]);
        start = -1;
      }
    }
    return ranges;
  }

  /**
   * The assembled request. Token-level rows of different lengths are zero-padded to the longest, as
   * one batch would have been. Throws InternalError while rows are missing.
   */
  result(): AssembledResult {
    if (!this.complete) {
      const missing = this.missingRanges().map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`));
      throw new InternalError(
        `request ${this.id} is incomplete: rows ${missing.join(', ')} of ${this.rows} are missing`,
      );
    }
    const shapes = this.shapes as number[][];
    const rowShape = [...shapes[0]!];
    if (rowShape.length >= 2) rowShape[0] = Math.max(...shapes.map((s) => s[0]!));
    const rowElements = elementCount(rowShape);
    const data = new Float32Array(this.rows * rowElements);
    for (let row = 0; row < this.rows; row++) {
      // A shorter row fills the start of its slot; the rest stays zero (padding).
      data.set(this.values[row]!, row * rowElements);
    }
    const out: AssembledResult = { data, shape: [this.rows, ...rowShape] };
    if (this.tokens.every((t) => t !== undefined)) out.tokens = this.tokens as string[][];
    if (this.counts.every((c) => c !== undefined)) out.tokenCounts = this.counts as number[];
    return out;
  }
}
