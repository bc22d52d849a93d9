/**
 * Joins byte parts of one row (`Bertq-Part: i/n`) for listeners. A listener sees requests it did not
 * send, whose row count it does not know, so it cannot hold a whole-request assembler; it keeps a
 * one-row RequestAssembler per split row instead, keyed by request and row.
 */
import { RequestAssembler, type AssembledResult, type ResultFrame } from '@bertq/protocol';

/** Split rows held at once; the oldest incomplete one is dropped past this (its parts never all came). */
export const MAX_OPEN_SPLIT_ROWS = 1024;

export class PartJoiner {
  private readonly open = new Map<string, RequestAssembler>();

  constructor(private readonly maxOpen = MAX_OPEN_SPLIT_ROWS) {}

  /**
   * Adds a part frame; returns the row (shape [1, …]) once all its parts are in, else undefined.
   * Throws InternalError for parts that contradict each other.
   */
  add(frame: ResultFrame): AssembledResult | undefined {
    const key = `${frame.id}:${frame.offset}`;
    let assembler = this.open.get(key);
    if (assembler === undefined) {
      assembler = new RequestAssembler({ id: frame.id, rows: 1 });
      this.open.set(key, assembler);
      if (this.open.size > this.maxOpen) this.open.delete(this.open.keys().next().value!);
    }
    try {
      // The row is row 0 of its one-row assembler.
      assembler.add({ ...frame, offset: 0 });
    } catch (err) {
      this.open.delete(key);
      throw err;
    }
    if (!assembler.complete) return undefined;
    this.open.delete(key);
    return assembler.result();
  }

  get openRows(): number {
    return this.open.size;
  }
}
