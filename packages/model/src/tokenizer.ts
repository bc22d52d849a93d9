/**
 * BERT tokenization with bert-as-service's semantics, on the native Hugging Face `tokenizers`.
 *
 * The native library does the text work (cleaning, Chinese-character splitting, lowercasing and
 * accent stripping, punctuation splitting, WordPiece). Everything bert-as-service decides on top of
 * that — the `A ||| B` pair rule, longest-first truncation, where [CLS]/[SEP] go, the mask under
 * mask_cls_sep, [UNK] marking of pre-tokenized input — is done here in JS on id arrays, because the
 * native truncation breaks ties differently (it trims the first sequence where
 * bert-as-service's `_truncate_seq_pair` pops from the second).
 *
 * Two steps, because the worker tokenizes each job as it arrives and batches later by token count:
 * `tokenize()` validates and returns one `TokenizedText` per row; `collate()` pads rows into the
 * ONNX-ready `TokenizedBatch`.
 */
import { access, readFile } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import type { Encoding, Tokenizer as NativeTokenizer } from 'tokenizers';
import {
  BadRequestError,
  InternalError,
  ModelError,
  TooLongError,
  cutSegments,
  splitSentencePair,
  textCutBudget,
  validateTexts,
} from '@bertq/protocol';
import type { CutRule } from '@bertq/protocol';
import type { Texts } from '@bertq/protocol';
import { Coalescer } from './coalescer.js';
import type { TokenizedBatch } from './types.js';

/** bert-as-service's default max_seq_len. */
export const DEFAULT_MAX_SEQ_LEN = 25;

/** The smallest max_seq_len that leaves room for a pair's [CLS] A [SEP] B [SEP] scaffolding. */
export const MIN_MAX_SEQ_LEN = 3;

/** The token that splits a pre-tokenized row into a pair (bert-as-service's read_tokenized_examples). */
export const TOKENIZED_PAIR_SEPARATOR = '|||';

/** Options that shape one tokenize() call (they come from the job). */
export interface TokenizeOptions {
  /**
   * Longest row in tokens, counting [CLS] and [SEP]; longer rows are cut on the right (pairs
   * longest-first). `null` is bert-as-service's `NONE`: nothing is cut, `collate()` pads to the
   * longest row, and a row longer than the model's max_position_embeddings is a TOO_LONG error.
   * Left out: the tokenizer's own default (see `BertTokenizerOptions.maxSeqLen`).
   */
  maxSeqLen?: number | null;
  /**
   * Rows are token lists (bert-as-service's is_tokenized): no normalisation, no WordPiece; each
   * token is looked up as it is, unknown ones become [UNK]. A `'|||'` token splits a row into a pair.
   */
  isTokenized?: boolean;
  /** Keep the token strings of every row (with [CLS]/[SEP], and [UNK] where unknown). */
  showTokens?: boolean;
  /**
   * Add no [CLS]/[SEP] to single rows (bert-as-service's no_special_token); maxSeqLen then counts
   * only real tokens. Pairs keep their special tokens, as in bert-as-service: without [SEP] the two
   * halves would run together.
   */
  noSpecialToken?: boolean;
  /** Attention mask 0 at [CLS] and [SEP] (bert-as-service's mask_cls_sep): they take no part. */
  maskClsSep?: boolean;
  /** The rows were validated already (validateTexts, as a worker's parseJob does): do not check them again. */
  validated?: boolean;
}

/** One tokenized row, unpadded. */
export interface TokenizedText {
  ids: Int32Array;
  /** 0 for [CLS], A and the first [SEP]; 1 for B and its [SEP]. */
  typeIds: Int32Array;
  /** 1 where the model attends; 0 at [CLS]/[SEP] under maskClsSep. */
  mask: Uint8Array;
  /** Only with showTokens. */
  tokens?: string[];
  /** Number of tokens (= ids.length). */
  length: number;
  /** Set when max_seq_len cut the row: how many tokens (special ones included) it had before. */
  truncatedFrom?: number;
}

/** Options for loading a tokenizer. */
export interface BertTokenizerOptions {
  /**
   * Keep case and accents (bert-as-service's cased_tokenization; for cased and multilingual models).
   * vocab.txt: defaults to false (lowercase, strip accents). tokenizer.json: left out, the file's own
   * normaliser decides; given, it overrides the normaliser's lowercase/strip_accents.
   */
  cased?: boolean;
  /** The model's max_position_embeddings: no row may be longer, nor may maxSeqLen be. */
  maxPositionEmbeddings: number;
  /** max_seq_len used when a tokenize() call names none; `null` = NONE. Default 25. */
  maxSeqLen?: number | null;
}

/** Token ids of the four special tokens, read from the vocabulary. */
export interface SpecialTokenIds {
  cls: number;
  sep: number;
  pad: number;
  unk: number;
}

interface SpecialTokens {
  cls: string;
  sep: string;
  pad: string;
  unk: string;
}

/** One row after validation: its first segment and, for a pair (`A ||| B`), its second. */
export interface Segments<T> {
  a: T;
  b: T | null;
}

/** A segment turned into vocabulary ids (and token strings when asked). */
interface Piece {
  ids: ArrayLike<number>;
  tokens: string[] | undefined;
}

/**
 * The native tokenizers addon, loaded on first use: a process that imports @bertq/model for its types
 * and constants (the CLI's light commands, the gateway) must not map a native library it never calls.
 */
let nativeModule: Promise<typeof import('tokenizers')> | undefined;
async function loadNative(): Promise<typeof import('tokenizers')> {
  nativeModule ??= import('tokenizers').then((m) => (m as { default?: typeof import('tokenizers') }).default ?? m);
  return nativeModule;
}

/** A BERT WordPiece tokenizer with bert-as-service semantics. Build one with a static loader. */
export class BertTokenizer {
  /** Vocabulary size, added tokens included. */
  readonly vocabSize: number;
  readonly specialIds: Readonly<SpecialTokenIds>;
  readonly maxPositionEmbeddings: number;
  /** max_seq_len when a call names none; `null` = NONE. */
  readonly defaultMaxSeqLen: number | null;

  private readonly native: NativeTokenizer;
  /** The native batch call, with concurrent tokenize() calls merged into one (coalescer.ts). */
  private readonly encodeNative: Coalescer<string, Encoding>;
  private readonly specialTokens: Readonly<SpecialTokens>;
  /** Token → id, for pre-tokenized input (one JS map lookup beats a native call per token). */
  private readonly vocab: ReadonlyMap<string, number>;
  /** How long texts may be cut before tokenizing (protocol's text-cut.ts); undefined: never (an unknown tokenizer). */
  readonly cutRule: CutRule | undefined;

  private constructor(
    native: NativeTokenizer,
    source: string,
    specialTokens: SpecialTokens,
    opts: BertTokenizerOptions,
    cutRule: CutRule | undefined,
  ) {
    this.native = native;
    this.cutRule = cutRule;
    // encodeBatch only reads its input; its type just does not say so.
    this.encodeNative = new Coalescer((texts) => native.encodeBatch(texts as string[], { addSpecialTokens: false }));
    this.vocab = new Map(Object.entries(native.getVocab(true)));
    this.vocabSize = native.getVocabSize(true);
    if (this.vocabSize === 0) throw new ModelError(`${source} has an empty vocabulary`, { details: { path: source } });
    this.specialTokens = Object.freeze({ ...specialTokens });
    this.specialIds = Object.freeze({
      cls: this.requireId(source, specialTokens.cls),
      sep: this.requireId(source, specialTokens.sep),
      pad: this.requireId(source, specialTokens.pad),
      unk: this.requireId(source, specialTokens.unk),
    });
    if (!Number.isInteger(opts.maxPositionEmbeddings) || opts.maxPositionEmbeddings < MIN_MAX_SEQ_LEN) {
      throw new ModelError(
        `maxPositionEmbeddings must be an integer of at least ${MIN_MAX_SEQ_LEN}, got ${String(opts.maxPositionEmbeddings)}`,
      );
    }
    this.maxPositionEmbeddings = opts.maxPositionEmbeddings;
    const maxSeqLen = opts.maxSeqLen === undefined ? DEFAULT_MAX_SEQ_LEN : opts.maxSeqLen;
    this.checkMaxSeqLen(maxSeqLen);
    this.defaultMaxSeqLen = maxSeqLen;
  }

  /**
   * Loads Google's `vocab.txt` (one WordPiece per line) with BERT's normaliser: clean control
   * characters, split Chinese characters, and (unless `cased`) lowercase and strip accents.
   */
  static async fromVocabFile(path: string, opts: BertTokenizerOptions): Promise<BertTokenizer> {
    await assertReadable(path, 'vocab file');
    const special: SpecialTokens = { cls: '[CLS]', sep: '[SEP]', pad: '[PAD]', unk: '[UNK]' };
    const { Tokenizer, WordPiece, bertNormalizer, bertPreTokenizer } = await loadNative();
    let model;
    try {
      model = await WordPiece.fromFile(path, { unkToken: special.unk });
    } catch (err) {
      throw new ModelError(`cannot load vocab file ${path}: ${errorMessage(err)}`, { cause: err, details: { path } });
    }
    const native = new Tokenizer(model);
    const uncased = opts.cased !== true;
    native.setNormalizer(
      bertNormalizer({ cleanText: true, handleChineseChars: true, lowercase: uncased, stripAccents: uncased }),
    );
    native.setPreTokenizer(bertPreTokenizer());
    return new BertTokenizer(native, path, special, opts, {
      handleChineseChars: true,
      maxInputCharsPerWord: WORDPIECE_MAX_INPUT_CHARS,
    });
  }

  /**
   * Loads a Hugging Face `tokenizer.json` (WordPiece model). Its normaliser and pre-tokenizer are
   * kept (`cased`, when given, overrides lowercasing/accent stripping); its truncation, padding and
   * post-processor are not used — bertq applies bert-as-service's rules itself. Its special tokens
   * stay in the vocabulary but are not matched inside text, so "[CLS]" typed by a user is text, as
   * in bert-as-service and the vocab.txt loader.
   */
  static async fromTokenizerJson(path: string, opts: BertTokenizerOptions): Promise<BertTokenizer> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      throw new ModelError(`cannot read tokenizer file ${path}: ${errorMessage(err)}`, {
        cause: err,
        details: { path },
      });
    }
    let json: TokenizerJson;
    try {
      json = JSON.parse(text) as TokenizerJson;
    } catch (err) {
      throw new ModelError(`tokenizer file ${path} is not valid JSON: ${errorMessage(err)}`, {
        cause: err,
        details: { path },
      });
    }
    if (json === null || typeof json !== 'object' || json.model?.type !== 'WordPiece') {
      const type = json?.model?.type ?? 'no';
      throw new ModelError(`tokenizer file ${path} has a ${type} model; bertq serves BERT WordPiece tokenizers`, {
        details: { path },
      });
    }
    const special = specialTokensOf(json);
    if (opts.cased !== undefined) applyCased(json, opts.cased, path);
    json.truncation = null;
    json.padding = null;
    json.added_tokens = (json.added_tokens ?? []).filter(
      (t) => !(t.special && json.model?.vocab?.[t.content] === t.id),
    );
    const { Tokenizer } = await loadNative();
    let native: NativeTokenizer;
    try {
      native = Tokenizer.fromString(JSON.stringify(json));
    } catch (err) {
      throw new ModelError(`cannot load tokenizer file ${path}: ${errorMessage(err)}`, {
        cause: err,
        details: { path },
      });
    }
    return new BertTokenizer(native, path, special, opts, cutRuleOf(json));
  }

  /**
   * Validates and tokenizes a job's rows. `texts` is what came off the wire: an array of strings
   * (`"A ||| B"` is a pair) or, with isTokenized, an array of token arrays. Throws BadRequestError
   * naming the row for bad input, TooLongError for a row over max_position_embeddings under NONE.
   */
  async tokenize(texts: unknown, opts: TokenizeOptions = {}): Promise<TokenizedText[]> {
    const maxSeqLen = opts.maxSeqLen === undefined ? this.defaultMaxSeqLen : opts.maxSeqLen;
    this.checkMaxSeqLen(maxSeqLen);
    const showTokens = opts.showTokens === true;
    const valid = opts.validated === true ? (texts as Texts) : validateTexts(texts, { isTokenized: opts.isTokenized });
    const cutRows = new Set<number>();
    const pieces =
      opts.isTokenized === true
        ? this.lookUpTokens((valid as readonly (readonly string[])[]).map(splitTokenPair), showTokens)
        : await this.encodeSentences(
            (valid as readonly string[]).map((text, i) => {
              const whole = splitSentencePair(text);
              const cut = this.cut(whole, maxSeqLen);
              if (cut !== whole) cutRows.add(i);
              return cut;
            }),
            showTokens,
          );
    const rows = new Array<TokenizedText>(pieces.length);
    for (let i = 0; i < pieces.length; i++) {
      const row = this.assemble(pieces[i]!, maxSeqLen, opts, showTokens);
      if (row.length > this.maxPositionEmbeddings) {
        // A cut row's length counts only the part that was tokenized: say "at least".
        const length = cutRows.has(i) ? `at least ${row.length}` : String(row.length);
        throw new TooLongError(
          `texts[${i}] is ${length} tokens long, more than the model's max_position_embeddings of ` +
            `${this.maxPositionEmbeddings}; shorten it or set max_seq_len to cut it`,
          { details: { row: i, length: row.length, limit: this.maxPositionEmbeddings } },
        );
      }
      rows[i] = row;
    }
    return rows;
  }

  /**
   * A row's halves cut to what can be kept (text-cut.ts): a 900 KB text costs microseconds, not
   * seconds. Each half alone may keep at most max_seq_len tokens (NONE: max_position_embeddings).
   */
  private cut(row: Segments<string>, maxSeqLen: number | null): Segments<string> {
    if (this.cutRule === undefined) return row;
    return cutSegments(row, textCutBudget(maxSeqLen, this.maxPositionEmbeddings), this.cutRule);
  }

  /**
   * Pads rows into one batch of `seqLen` columns (default: the longest row), with the pad id from
   * the vocabulary, mask 0 and type id 0 on padding. Allocates only the output arrays.
   */
  collate(rows: readonly TokenizedText[], seqLen?: number): TokenizedBatch {
    let longest = 0;
    let anyTokens = false;
    for (const row of rows) {
      if (row.length > longest) longest = row.length;
      if (row.tokens !== undefined) anyTokens = true;
    }
    const width = seqLen ?? longest;
    if (!Number.isInteger(width) || width < longest) {
      throw new InternalError(`collate: seqLen ${String(seqLen)} is shorter than the longest row (${longest} tokens)`);
    }
    const cells = rows.length * width;
    const inputIds = new BigInt64Array(cells);
    const attentionMask = new BigInt64Array(cells);
    const tokenTypeIds = new BigInt64Array(cells);
    // Write each int64 through its low 32-bit half: no BigInt per cell. Every value here is a
    // non-negative int32, so the high half stays the zero the array was born with.
    const ids32 = new Int32Array(inputIds.buffer);
    const mask32 = new Int32Array(attentionMask.buffer);
    const types32 = new Int32Array(tokenTypeIds.buffer);
    const pad = this.specialIds.pad;
    const lengths = new Array<number>(rows.length);
    const tokens = anyTokens ? new Array<string[]>(rows.length) : undefined;
    for (let r = 0; r < rows.length; r++) {
      const row = rows[r]!;
      const base = r * width;
      for (let j = 0; j < row.length; j++) {
        const at = 2 * (base + j) + LOW_HALF;
        ids32[at] = row.ids[j]!;
        mask32[at] = row.mask[j]!;
        types32[at] = row.typeIds[j]!;
      }
      if (pad !== 0) for (let j = row.length; j < width; j++) ids32[2 * (base + j) + LOW_HALF] = pad;
      lengths[r] = row.length;
      if (tokens !== undefined) tokens[r] = row.tokens ?? NO_TOKENS;
    }
    const batch: TokenizedBatch = { rows: rows.length, seqLen: width, inputIds, attentionMask, tokenTypeIds, lengths };
    if (tokens !== undefined) batch.tokens = tokens;
    return batch;
  }

  /** Raw text: every segment of every row through one native batch call. */
  private async encodeSentences(rows: Segments<string>[], showTokens: boolean): Promise<Segments<Piece>[]> {
    // A pair's halves are encoded as two independent sentences — exactly what bert-as-service does
    // (it tokenizes text_a and text_b separately) — so pairs ride the same single native call.
    const flat: string[] = [];
    for (const row of rows) {
      flat.push(row.a);
      if (row.b !== null) flat.push(row.b);
    }
    let encodings: Encoding[];
    try {
      encodings = await this.encodeNative.call(flat);
    } catch (err) {
      throw new InternalError(`the tokenizer failed on a batch of ${rows.length} rows: ${errorMessage(err)}`, {
        cause: err,
      });
    }
    const piece = (e: Encoding): Piece => ({ ids: e.getIds(), tokens: showTokens ? e.getTokens() : undefined });
    const out = new Array<Segments<Piece>>(rows.length);
    let k = 0;
    for (let i = 0; i < rows.length; i++) {
      const a = piece(encodings[k++]!);
      const b = rows[i]!.b === null ? null : piece(encodings[k++]!);
      out[i] = { a, b };
    }
    return out;
  }

  /** Pre-tokenized text: each token looked up as it is (bert-as-service's mark_unk_tokens). */
  private lookUpTokens(rows: Segments<string[]>[], showTokens: boolean): Segments<Piece>[] {
    const { unk } = this.specialIds;
    const unkToken = this.specialTokens.unk;
    const piece = (words: string[]): Piece => {
      const ids = new Int32Array(words.length);
      const tokens = showTokens ? new Array<string>(words.length) : undefined;
      for (let j = 0; j < words.length; j++) {
        const id = this.vocab.get(words[j]!);
        ids[j] = id ?? unk;
        if (tokens !== undefined) tokens[j] = id === undefined ? unkToken : words[j]!;
      }
      return { ids, tokens };
    };
    return rows.map((row) => ({ a: piece(row.a), b: row.b === null ? null : piece(row.b) }));
  }

  /**
   * Truncates and frames one row exactly as bert-as-service's convert_lst_to_features: a row is a
   * pair only if its second half has tokens; a pair is cut longest-first to maxSeqLen - 3, a single
   * row to maxSeqLen - 2 (maxSeqLen without special tokens); a second half cut to nothing loses its
   * [SEP] too.
   */
  private assemble(
    row: Segments<Piece>,
    maxSeqLen: number | null,
    opts: TokenizeOptions,
    showTokens: boolean,
  ): TokenizedText {
    const { a, b } = row;
    const isPair = b !== null && b.ids.length > 0;
    const special = isPair || opts.noSpecialToken !== true;
    let lenA = a.ids.length;
    let lenB = isPair ? b.ids.length : 0;
    if (maxSeqLen !== null) {
      if (isPair) [lenA, lenB] = truncatePairLengths(lenA, lenB, maxSeqLen - 3);
      else lenA = Math.min(lenA, special ? maxSeqLen - 2 : maxSeqLen);
    }
    const length = special ? lenA + 2 + (lenB > 0 ? lenB + 1 : 0) : lenA;
    const ids = new Int32Array(length);
    const typeIds = new Int32Array(length);
    const mask = new Uint8Array(length).fill(1);
    const tokens = showTokens ? new Array<string>(length) : undefined;
    const { cls, sep } = this.specialIds;
    const edge = opts.maskClsSep === true ? 0 : 1;
    let at = 0;
    const put = (id: number, token: string | undefined, type: number, attend: number): void => {
      ids[at] = id;
      typeIds[at] = type;
      mask[at] = attend;
      if (tokens !== undefined) tokens[at] = token!;
      at++;
    };
    if (special) put(cls, this.specialTokens.cls, 0, edge);
    for (let j = 0; j < lenA; j++) put(a.ids[j]!, a.tokens?.[j], 0, 1);
    if (special) put(sep, this.specialTokens.sep, 0, edge);
    if (lenB > 0) {
      for (let j = 0; j < lenB; j++) put(b!.ids[j]!, b!.tokens?.[j], 1, 1);
      put(sep, this.specialTokens.sep, 1, edge);
    }
    const out: TokenizedText = { ids, typeIds, mask, length };
    if (tokens !== undefined) out.tokens = tokens;
    const fullB = isPair ? b.ids.length : 0;
    const full = special ? a.ids.length + 2 + (fullB > 0 ? fullB + 1 : 0) : a.ids.length;
    if (full > length) out.truncatedFrom = full;
    return out;
  }

  private checkMaxSeqLen(maxSeqLen: number | null): void {
    if (maxSeqLen === null) return;
    if (typeof maxSeqLen !== 'number' || !Number.isInteger(maxSeqLen) || maxSeqLen < MIN_MAX_SEQ_LEN) {
      throw new BadRequestError(
        `max_seq_len must be an integer of at least ${MIN_MAX_SEQ_LEN} or NONE (null), got ${String(maxSeqLen)}`,
        { details: { maxSeqLen } },
      );
    }
    if (maxSeqLen > this.maxPositionEmbeddings) {
      throw new TooLongError(
        `max_seq_len ${maxSeqLen} is larger than the model's max_position_embeddings of ${this.maxPositionEmbeddings}`,
        { details: { maxSeqLen, limit: this.maxPositionEmbeddings } },
      );
    }
  }

  private requireId(source: string, token: string): number {
    const id = this.native.tokenToId(token);
    if (id === null || id === undefined) {
      throw new ModelError(`${source} has no ${token} token in its vocabulary`, { details: { path: source, token } });
    }
    return id;
  }
}

/**
 * bert-as-service's `_truncate_seq_pair`, on lengths: while too long, drop the last token of the
 * longer half, of the second half on a tie.
 */
export function truncatePairLengths(lenA: number, lenB: number, budget: number): [number, number] {
  while (lenA + lenB > budget) {
    if (lenA > lenB) lenA--;
    else lenB--;
  }
  return [lenA, lenB];
}

// ---- splitting rows into pairs (raw text: splitSentencePair, in @bertq/protocol) ----------------

/** read_tokenized_examples: the first '|||' token splits; an empty second half means no pair. */
function splitTokenPair(words: readonly string[]): Segments<string[]> {
  const at = words.indexOf(TOKENIZED_PAIR_SEPARATOR);
  return at < 0 ? { a: [...words], b: null } : { a: words.slice(0, at), b: words.slice(at + 1) };
}

// ---- loading helpers ---------------------------------------------------------------------------------

/** WordPiece's default max_input_chars_per_word (HF tokenizers and Google's BERT). */
const WORDPIECE_MAX_INPUT_CHARS = 100;

/**
 * The cut rule of a tokenizer.json: only for BERT's own normalizer and pre-tokenizer, whose rules
 * text-cut.ts relies on; any other pipeline gets its texts whole.
 */
function cutRuleOf(json: TokenizerJson): CutRule | undefined {
  const normalizer = json.normalizer;
  if (normalizer?.type !== 'BertNormalizer' || json.pre_tokenizer?.type !== 'BertPreTokenizer') return undefined;
  const max = json.model?.max_input_chars_per_word ?? WORDPIECE_MAX_INPUT_CHARS;
  if (!Number.isSafeInteger(max) || max < 1) return undefined;
  return { handleChineseChars: normalizer.handle_chinese_chars !== false, maxInputCharsPerWord: max };
}

/** The parts of tokenizer.json that bertq reads or rewrites. */
interface TokenizerJson {
  model?: { type?: string; unk_token?: string; vocab?: Record<string, number>; max_input_chars_per_word?: number };
  normalizer?: NormalizerJson | null;
  pre_tokenizer?: { type?: string } | null;
  post_processor?: {
    type?: string;
    cls?: [string, number];
    sep?: [string, number];
    single?: Array<{ SpecialToken?: { id: string } }>;
  } | null;
  padding?: { pad_token?: string } | null;
  truncation?: unknown;
  added_tokens?: Array<{ id: number; content: string; special?: boolean }>;
}

interface NormalizerJson {
  type?: string;
  lowercase?: boolean;
  strip_accents?: boolean | null;
  handle_chinese_chars?: boolean;
  normalizers?: NormalizerJson[];
}

async function assertReadable(path: string, what: string): Promise<void> {
  try {
    await access(path, fsConstants.R_OK);
  } catch (err) {
    throw new ModelError(`cannot read ${what} ${path}: ${errorMessage(err)}`, { cause: err, details: { path } });
  }
}

/** The special tokens a tokenizer.json declares (post-processor, model, padding), BERT's names otherwise. */
function specialTokensOf(json: TokenizerJson): SpecialTokens {
  const post = json.post_processor;
  let cls = '[CLS]';
  let sep = '[SEP]';
  if (post?.cls && post.sep) {
    cls = post.cls[0];
    sep = post.sep[0];
  } else if (post?.type === 'TemplateProcessing' && Array.isArray(post.single)) {
    const marks = post.single.flatMap((p) => (p.SpecialToken ? [p.SpecialToken.id] : []));
    if (marks.length >= 2) [cls, sep] = [marks[0]!, marks[marks.length - 1]!];
  }
  return { cls, sep, pad: json.padding?.pad_token ?? '[PAD]', unk: json.model?.unk_token ?? '[UNK]' };
}

/**
 * Makes a tokenizer.json normaliser cased or uncased: BertNormalizer flags are set; in a Sequence,
 * cased drops Lowercase/StripAccents steps. Asking for uncased from a normaliser with no lowercasing
 * step is a MODEL_ERROR rather than a silent no-op.
 */
function applyCased(json: TokenizerJson, cased: boolean, path: string): void {
  let lowercases = false;
  const visit = (n: NormalizerJson | null | undefined): void => {
    if (!n) return;
    if (n.type === 'BertNormalizer') {
      n.lowercase = !cased;
      n.strip_accents = !cased;
      lowercases = true;
    } else if (n.type === 'Sequence' && Array.isArray(n.normalizers)) {
      if (cased) n.normalizers = n.normalizers.filter((c) => c.type !== 'Lowercase' && c.type !== 'StripAccents');
      else if (n.normalizers.some((c) => c.type === 'Lowercase')) lowercases = true;
      n.normalizers.forEach(visit);
    } else if (n.type === 'Lowercase') {
      lowercases = true;
    }
  };
  visit(json.normalizer);
  if (!cased && !lowercases) {
    throw new ModelError(
      `tokenizer file ${path} has no lowercasing normaliser (${json.normalizer?.type ?? 'none'}), so it cannot be made uncased`,
      { details: { path } },
    );
  }
  if (cased && json.normalizer?.type === 'Lowercase') json.normalizer = null;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Stands in for the tokens of a row that did not ask for them, in a batch where others did. */
const NO_TOKENS = Object.freeze([]) as unknown as string[];

/** Index of an int64's low 32-bit half within its pair of int32 words on this machine. */
const LOW_HALF = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 0 : 1;
