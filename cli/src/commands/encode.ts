import { Args, Flags } from '@oclif/core';
import { BertClient } from '@bertq/client';
import type { FrameReport, NdArray, VectorsWithTokens } from '@bertq/client';
import { BadRequestError } from '@bertq/protocol';
import { BaseCommand } from '../base.js';
import { createProgress } from '../progress.js';
import { countLines, fileStream, lineBatches } from '../input.js';
import type { Line } from '../input.js';
import {
  FORMAT_EXTENSIONS,
  OUTPUT_FORMATS,
  OutputError,
  createWriter,
  formatFromPath,
  openOutput,
} from '../writers.js';
import type { Output } from '../writers.js';

/** --check-length → the client's checkLength (bert-as-service's check_length). */
const CHECK_LENGTH = { warn: 'warn', raise: true, off: false } as const;

interface EncodeSummary {
  rows: number;
  shape: number[];
  seconds: number;
  rowsPerSecond: number;
  output: string;
  /** The vectors themselves, when they went nowhere else (--json without --output). */
  vectors?: number[][] | number[][][];
  tokens?: string[][];
}

export default class Encode extends BaseCommand<typeof Encode> {
  static override summary = 'Encode sentences into vectors with a running bertq service.';
  static override description =
    `Sentences come from the arguments, from --file (one sentence a line), or from stdin. Output is one JSON array per input line, in input order (default), a NumPy .npy file, or CSV. A sentence pair is written "first ||| second". Large files stream through the fleet in batches, with a progress bar (rate and ETA) on stderr.`;
  static override examples = [
    '<%= config.bin %> encode "hello world"',
    '<%= config.bin %> encode "First do it" "then do it right" --show-tokens',
    '<%= config.bin %> encode --file sentences.txt --output vectors.npy',
    'cat sentences.txt | <%= config.bin %> encode --format csv > vectors.csv',
  ];
  static override strict = false;
  static override args = {
    // ignoreStdin: oclif would otherwise read piped stdin into this argument, as ONE sentence.
    texts: Args.string({ description: 'sentences to encode (one vector each)', required: false, ignoreStdin: true }),
  };
  static override flags = {
    file: Flags.string({ char: 'f', summary: 'Read sentences from this file, one per line.', exclusive: ['texts'] }),
    output: Flags.string({
      char: 'o',
      summary: 'Write vectors to this file instead of stdout (format from its extension).',
    }),
    format: Flags.option({ summary: 'Output format.', options: OUTPUT_FORMATS })(),
    'show-tokens': Flags.boolean({
      summary:
        'Also return the tokens each sentence was encoded as (jsonl; needs --show-tokens-to-client on the service).',
    }),
    tokenized: Flags.boolean({
      summary:
        'Input lines are already tokenized (tokens separated by spaces): no wordpiece split, unknown tokens become [UNK].',
    }),
    'skip-empty': Flags.boolean({
      summary: 'Skip blank lines instead of failing on them (bert-as-service rejects empty sentences).',
    }),
    'batch-size': Flags.integer({
      summary:
        'Sentences per request when streaming a file or stdin. Larger batches amortise overhead; smaller ones start output sooner.',
      default: 2048,
      min: 1,
    }),
    'check-length': Flags.option({
      summary:
        "Rows longer than the service's max_seq_len: warn (default: encode what fits, say so), raise (TOO_LONG naming the row), off.",
      options: ['warn', 'raise', 'off'] as const,
      default: 'warn' as const,
      env: 'BERTQ_CHECK_LENGTH',
    })(),
    timeout: Flags.integer({
      summary:
        'Deadline of each request in milliseconds; -1 waits as long as it takes (still NO_WORKERS within seconds once no worker serves the service).',
      default: 60_000,
      env: 'BERTQ_TIMEOUT',
      min: -1,
    }),
    progress: Flags.boolean({
      summary: 'Show a progress bar on stderr (default: for --file and stdin).',
      allowNo: true,
    }),
  };

  public async run(): Promise<EncodeSummary> {
    const { flags } = this;
    const texts = flags['skip-empty'] ? this.positional.filter((t) => t.trim() !== '') : this.positional;
    const named = formatFromPath(flags.output);
    if (flags.output !== undefined && flags.format === undefined && named === undefined) {
      throw new BadRequestError(
        `cannot tell the format of --output ${flags.output} from its extension: name it ${OUTPUT_FORMATS.flatMap((f) => FORMAT_EXTENSIONS[f]).join(', ')}, or give --format (${OUTPUT_FORMATS.join(', ')})`,
      );
    }
    const format = flags.format ?? named ?? 'jsonl';
    if (format === 'npy' && !flags.output && !flags.json && process.stdout.isTTY) {
      this.error(
        'npy is binary and would garble the terminal: give --output vectors.npy, or redirect stdout (> vectors.npy)',
        { exit: 2 },
      );
    }
    if (flags['show-tokens'] && format !== 'jsonl' && format !== 'json')
      this.error('--show-tokens writes tokens beside vectors: use the jsonl or json format');
    const fromStdin = texts.length === 0 && !flags.file;
    if (fromStdin && process.stdin.isTTY) this.error('no sentences: give them as arguments, with --file, or on stdin');

    const total = flags.file ? await countLines(flags.file) : texts.length > 0 ? texts.length : undefined;
    const started = performance.now();
    const client = await BertClient.connect({ ...this.clientOptions(), timeout: flags.timeout });
    const collect = flags.json && !flags.output;
    const collected: { rows: Float32Array[]; shape: number[]; tokens: string[][] } = {
      rows: [],
      shape: [],
      tokens: [],
    };
    const progress =
      (flags.progress ?? (flags.file !== undefined || fromStdin)) && !collect
        ? createProgress({ label: 'encode', unit: 'rows', total })
        : undefined;
    progress?.update(0); // drawn at once, before the first rows come back

    // .npy needs the row count up front: stdin is read whole first in that case.
    let stdinLines: Line[] | undefined;
    if (fromStdin && format === 'npy') {
      stdinLines = [];
      for await (const batch of lineBatches(process.stdin, flags['batch-size'], flags['skip-empty']))
        stdinLines.push(...batch);
    }
    const batches: AsyncIterable<Line[]> | Iterable<Line[]> =
      texts.length > 0
        ? [texts.map((text, i) => ({ number: i + 1, text }))]
        : stdinLines
          ? chunk(stdinLines, flags['batch-size'])
          : lineBatches(flags.file ? fileStream(flags.file) : process.stdin, flags['batch-size'], flags['skip-empty']);

    let out: Output | undefined;
    try {
      out = collect ? undefined : openOutput(flags.output);
    } catch (err) {
      await client.close();
      if (err instanceof OutputError) this.error(err.message, { exit: 1 });
      throw err;
    }
    const rowsTotal = total ?? stdinLines?.length;
    const writer = out ? createWriter(format, out.stream, { totalRows: rowsTotal }) : undefined;
    let rows = 0;
    const soFar = () => `after ${rows}${rowsTotal === undefined ? '' : ` of ${rowsTotal}`} rows`;
    // A reader that stops reading (`| head -1`) ends us quietly, as it does any Unix tool.
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(0);
    });
    // Ctrl-C: no half-written file is left behind, and the user learns how far it got.
    const onInterrupt = () => {
      progress?.fail('interrupted');
      void (out?.abort() ?? Promise.resolve()).finally(() => {
        process.stderr.write(`interrupted ${soFar()}${flags.output ? `; ${flags.output} was not written` : ''}\n`);
        process.exit(130);
      });
    };
    process.once('SIGINT', onInterrupt);
    let shape: number[] = [];
    // Line numbers of the batches sent and not yet written: an error naming a row of the request
    // at the head (the one that failed) can then name its line of the input.
    const batchLines: number[][] = [];
    const texts$ = (async function* () {
      for await (const batch of batches) {
        for (const line of batch) {
          if (line.text.trim() === '') {
            throw new BadRequestError(
              `line ${line.number} is empty: bert-as-service semantics reject empty sentences (use --skip-empty to drop blank lines)`,
              { details: { line: line.number } },
            );
          }
        }
        batchLines.push(batch.map((l) => l.number));
        yield flags.tokenized ? batch.map((l) => l.text.trim().split(/\s+/)) : batch.map((l) => l.text);
      }
    })();

    try {
      const options = {
        isTokenized: flags.tokenized,
        showTokens: flags['show-tokens'],
        checkLength: CHECK_LENGTH[flags['check-length']],
        // The bar moves as rows arrive, frame by frame, not once per finished request.
        onFrame: (report: FrameReport) => {
          if (report.part === undefined || report.part.index === 1) progress?.tick(report.rows);
        },
      };
      for await (const result of client.encodeAsync(texts$, options)) {
        const { vectors, tokens } = flags['show-tokens']
          ? (result as VectorsWithTokens<NdArray>)
          : { vectors: result as NdArray, tokens: undefined };
        const n = vectors.shape[0]!;
        shape = vectors.shape.slice(1);
        if (writer) await writer.write(vectors.data, n, shape, tokens);
        else {
          collected.rows.push(vectors.data);
          if (tokens) collected.tokens.push(...tokens);
        }
        rows += n;
        batchLines.shift();
      }
      await writer?.close();
      await out?.commit();
      progress?.done();
    } catch (err) {
      const row = (err as { details?: { row?: unknown } }).details?.row;
      const line = typeof row === 'number' ? batchLines[0]?.[row] : undefined;
      if (err instanceof Error && line !== undefined && texts.length === 0)
        err.message += ` (line ${line} of ${flags.file ?? 'stdin'})`;
      progress?.fail(err instanceof Error ? err.message : String(err));
      await out?.abort();
      if (err instanceof Error && flags.output) err.message += ` (${soFar()}; ${flags.output} was not written)`;
      throw err;
    } finally {
      process.off('SIGINT', onInterrupt);
      await client.close();
    }

    const seconds = (performance.now() - started) / 1000;
    const summary: EncodeSummary = {
      rows,
      shape: [rows, ...shape],
      seconds: Number(seconds.toFixed(3)),
      rowsPerSecond: Number((rows / seconds).toFixed(1)),
      output: flags.output ?? (collect ? 'json' : 'stdout'),
    };
    if (collect) {
      summary.vectors = toNested(collected.rows, shape);
      if (flags['show-tokens']) summary.tokens = collected.tokens;
    }
    if (!flags.json && flags.output)
      this.logToStderr(`encoded ${rows} rows → ${flags.output} (${summary.rowsPerSecond} rows/s)`);
    return summary;
  }
}

function* chunk<T>(items: T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

function toNested(parts: Float32Array[], rowShape: number[]): number[][] | number[][][] {
  const width = rowShape.reduce((a, b) => a * b, 1);
  const out: Array<number[] | number[][]> = [];
  for (const data of parts) {
    for (let r = 0; r * width < data.length; r++) {
      const row = Array.from(data.subarray(r * width, (r + 1) * width));
      if (rowShape.length === 2) {
        const [t, d] = rowShape as [number, number];
        out.push(Array.from({ length: t }, (_, i) => row.slice(i * d, (i + 1) * d)));
      } else out.push(row);
    }
  }
  return out as number[][] | number[][][];
}
