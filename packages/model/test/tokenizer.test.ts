import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BadRequestError, InternalError, ModelError, TooLongError } from '@bertq/protocol';
import { BertTokenizer } from '../src/tokenizer.js';
import type { TokenizedText, TokenizeOptions } from '../src/tokenizer.js';

// The real files live beside the repository (../shared/models from the repo root), never in it.
const REPO_ROOT = new URL('../../../../', import.meta.url);
const MODELS_DIR = fileURLToPath(new URL('../shared/models/', REPO_ROOT));
const VOCAB_TXT = join(MODELS_DIR, 'bert-base-uncased-vocab.txt');
const TOKENIZER_JSON = join(MODELS_DIR, 'all-MiniLM-L6-v2-tokenizer', 'tokenizer.json');
const MAX_POSITIONS = 512;

const haveVocab = existsSync(VOCAB_TXT);
const haveJson = existsSync(TOKENIZER_JSON);

/** Token → id straight from vocab.txt (line number), an oracle independent of the tokenizers library. */
const vocabIds: Map<string, number> = haveVocab
  ? new Map(
      readFileSync(VOCAB_TXT, 'utf8')
        .split('\n')
        .map((token, line) => [token, line] as [string, number]),
    )
  : new Map();

function id(token: string): number {
  const found = vocabIds.get(token);
  assert.ok(found !== undefined, `test vocabulary lookup: ${token} is not in vocab.txt`);
  return found;
}

const loaded = new Map<string, Promise<BertTokenizer>>();
function cachedLoad(key: string, load: () => Promise<BertTokenizer>): Promise<BertTokenizer> {
  let p = loaded.get(key);
  if (p === undefined) loaded.set(key, (p = load()));
  return p;
}

/** The uncased vocab.txt tokenizer, or undefined after skipping the test with the reason. */
async function uncased(t: TestContext): Promise<BertTokenizer | undefined> {
  if (!haveVocab) {
    t.skip(`real vocabulary not found at ${VOCAB_TXT}`);
    return undefined;
  }
  return cachedLoad('uncased', () => BertTokenizer.fromVocabFile(VOCAB_TXT, { maxPositionEmbeddings: MAX_POSITIONS }));
}

async function cased(t: TestContext): Promise<BertTokenizer | undefined> {
  if (!haveVocab) {
    t.skip(`real vocabulary not found at ${VOCAB_TXT}`);
    return undefined;
  }
  return cachedLoad('cased', () =>
    BertTokenizer.fromVocabFile(VOCAB_TXT, { maxPositionEmbeddings: MAX_POSITIONS, cased: true }),
  );
}

async function fromJson(t: TestContext, casedOpt?: boolean): Promise<BertTokenizer | undefined> {
  if (!haveJson) {
    t.skip(`real tokenizer.json not found at ${TOKENIZER_JSON}`);
    return undefined;
  }
  const opts =
    casedOpt === undefined
      ? { maxPositionEmbeddings: MAX_POSITIONS }
      : { maxPositionEmbeddings: MAX_POSITIONS, cased: casedOpt };
  return cachedLoad(`json:${String(casedOpt)}`, () => BertTokenizer.fromTokenizerJson(TOKENIZER_JSON, opts));
}

async function one(tok: BertTokenizer, text: unknown, opts: TokenizeOptions = {}): Promise<TokenizedText> {
  const [row] = await tok.tokenize([text], { showTokens: true, ...opts });
  return row!;
}

const spaced = (row: TokenizedText): string => row.tokens!.join(' ');
const arr = (a: ArrayLike<number>): number[] => Array.from(a);

function rejectsWith(cls: new (...args: never[]) => Error, message: RegExp, details?: Record<string, unknown>) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    assert.match(err.message, message);
    if (details !== undefined) {
      for (const [k, v] of Object.entries(details)) {
        assert.deepEqual((err as unknown as { details: Record<string, unknown> }).details[k], v, `details.${k}`);
      }
    }
    return true;
  };
}

test('tokenizer - reads the special token ids and vocabulary size from the files', async (t) => {
  const tok = await uncased(t);
  if (!tok) return;
  assert.deepEqual(tok.specialIds, { cls: 101, sep: 102, pad: 0, unk: 100 });
  assert.equal(tok.vocabSize, 30522);
  const json = await fromJson(t);
  if (!json) return;
  assert.deepEqual(json.specialIds, { cls: 101, sep: 102, pad: 0, unk: 100 });
  assert.equal(json.vocabSize, 30522);
});

test('tokenizer - shows the tokens of the README example, with WordPiece splits', async (t) => {
  const tok = await uncased(t);
  if (!tok) return;
  const rows = await tok.tokenize(['hello world!', 'thisis it'], { showTokens: true });
  assert.deepEqual(
    rows.map((r) => r.tokens),
    [
      ['[CLS]', 'hello', 'world', '!', '[SEP]'],
      ['[CLS]', 'this', '##is', 'it', '[SEP]'],
    ],
  );
  assert.deepEqual(arr(rows[0]!.ids), [101, 7592, id('world'), id('!'), 102]);
  assert.deepEqual(arr(rows[1]!.ids), [101, id('this'), id('##is'), id('it'), 102]);
  assert.deepEqual(arr(rows[0]!.typeIds), [0, 0, 0, 0, 0]);
  assert.deepEqual(arr(rows[0]!.mask), [1, 1, 1, 1, 1]);
  assert.equal(rows[0]!.length, 5);
  const plain = await tok.tokenize(['hello world!'], {});
  assert.equal(plain[0]!.tokens, undefined, 'tokens only when asked for');
});

test('tokenizer - looks pre-tokenized input up as is and marks unknown tokens [UNK]', async (t) => {
  const tok = await uncased(t);
  if (!tok) return;
  const rows = await tok.tokenize(
    [
      ['hello', 'world!'],
      ['thisis', 'it'],
    ],
    { isTokenized: true, showTokens: true },
  );
  assert.deepEqual(rows.map(spaced), ['[CLS] hello [UNK] [SEP]', '[CLS] [UNK] it [SEP]']);
  assert.deepEqual(arr(rows[0]!.ids), [101, 7592, 100, 102]);
  assert.deepEqual(arr(rows[1]!.ids), [101, 100, id('it'), 102]);
  // No normalisation either: an uppercase token is not the lowercase vocabulary entry.
  assert.equal(spaced(await one(tok, ['Hello'], { isTokenized: true })), '[CLS] [UNK] [SEP]');
});

test('tokenizer - splits a pre-tokenized row into a pair at its first ||| token', async (t) => {
  const tok = await uncased(t);
  if (!tok) return;
  const row = await one(tok, ['hello', '|||', 'world', '|||', 'it'], { isTokenized: true });
  assert.equal(spaced(row), '[CLS] hello [SEP] world [UNK] it [SEP]');
  assert.deepEqual(arr(row.typeIds), [0, 0, 0, 1, 1, 1, 1]);
  const trailing = await one(tok, ['hello', '|||'], { isTokenized: true });
  assert.equal(spaced(trailing), '[CLS] hello [SEP]', 'an empty second half is no pair');
});

test('tokenizer - encodes "A ||| B" as a pair with type ids 0 then 1', async (t) => {
  const tok = await uncased(t);
  if (!tok) return;
  const row = await one(tok, 'First do it ||| then do it right');
  assert.equal(spaced(row), '[CLS] first do it [SEP] then do it right [SEP]');
  assert.deepEqual(arr(row.typeIds), [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
  assert.deepEqual(arr(row.mask), [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
  assert.deepEqual(arr(row.ids), [
    101,
    id('first'),
    id('do'),
    id('it'),
    102,
    id('then'),
    id('do'),
    id('it'),
    id('right'),
    102,
  ]);
});

test('tokenizer - splits pairs on the last " ||| " only, as bert-as-service\'s regex does', async (t) => {
  const tok = await uncased(t);
  if (!tok) return;
  assert.equal(spaced(await one(tok, 'a ||| b ||| c')), '[CLS] a | | | b [SEP] c [SEP]');
  assert.equal(spaced(await one(tok, 'a|||b')), '[CLS] a | | | b [SEP]', 'no spaces, no pair');
  assert.equal(spaced(await one(tok, 'a ||| ')), '[CLS] a | | | [SEP]', 'stripped first, so nothing follows');
  const multiline = await one(tok, 'a\nb ||| c');
  assert.equal(spaced(multiline), '[CLS] a b | | | c [SEP]', 'Python . stops at a newline');
  assert.ok(arr(multiline.typeIds).every((x) => x === 0));
  // A mix of pairs and singles keeps every row in its place.
  const rows = await tok.tokenize(['x ||| y', 'z', 'u ||| v'], { showTokens: true });
  assert.deepEqual(rows.map(spaced), ['[CLS] x [SEP] y [SEP]', '[CLS] z [SEP]', '[CLS] u [SEP] v [SEP]']);
});

test('tokenizer - truncates pairs longest-first, popping the second half on a tie', async (t) => {
  const tok = await uncased(t);
  if (!tok) return;
  // Budget 10 - 3 = 7 from 5 + 5: 5,5 → 5,4 → 4,4 → 4,3 (ties pop B; the native LongestFirst keeps 3,4).
  const tie = await one(tok, 'a b c d e ||| f g h i j', { maxSeqLen: 10 });
  assert.equal(spaced(tie), '[CLS] a b c d [SEP] f g h [SEP]');
  assert.deepEqual(arr(tie.typeIds), [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
  assert.equal(tie.length, 10);
  // Budget 5 from 8 + 2: A alone shrinks to 3.
  assert.equal(spaced(await one(tok, 'a b c d e f g h ||| i j', { maxSeqLen: 8 })), '[CLS] a b c [SEP] i j [SEP]');
  // Budget 5 from 2 + 6: B alone shrinks to 3.
  assert.equal(spaced(await one(tok, 'a b ||| c d e f g h', { maxSeqLen: 8 })), '[CLS] a b [SEP] c d e [SEP]');
  // Budget 1 from 5 + 1: 1,1 is a tie, B goes, and with it its [SEP].
  const lost = await one(tok, 'a b c d e ||| f', { maxSeqLen: 4 });
  assert.equal(spaced(lost), '[CLS] a [SEP]');
  assert.deepEqual(arr(lost.typeIds), [0, 0, 0]);
});

test('tokenizer - truncates a single sentence on the right to max_seq_len, default 25', async (t) => {
  const tok = await uncased(t);
  if (!tok) return;
  const letters = 'a b c d e f g h i j k l m n o p q r s t u v w x y z';
  const byDefault = await one(tok, letters);
  assert.equal(byDefault.length, 25);
  assert.equal(spaced(byDefault), `[CLS] ${letters.slice(0, 23 * 2 - 1)} [SEP]`);
  const short = await one(tok, letters, { maxSeqLen: 5 });
  assert.equal(spaced(short), '[CLS] a b c [SEP]');
  const fits = await one(tok, 'a b c', { maxSeqLen: 5 });
  assert.equal(spaced(fits), '[CLS] a b c [SEP]');
});

test('tokenizer - NONE keeps every token and pads the batch to its longest row', async (t) => {
  const tok = await uncased(t);
  if (!tok) return;
  const long = Array.from({ length: 40 }, () => 'the').join(' ');
  const rows = await tok.tokenize(['hello', long, 'a ||| b'], { maxSeqLen: null });
  assert.deepEqual(
    rows.map((r) => r.length),
    [3, 42, 5],
  );
  const batch = tok.collate(rows);
  assert.equal(batch.seqLen, 42);
  assert.deepEqual(batch.lengths, [3, 42, 5]);
});

test('tokenizer - NONE rejects a row longer than max_position_embeddings, naming row, length and limit', async (t) => {
  const tok = await uncased(t);
  if (!tok) return;
  const tooLong = Array.from({ length: 600 }, () => 'the').join(' ');
  await assert.rejects(
    tok.tokenize(['fine', tooLong], { maxSeqLen: null }),
    rejectsWith(TooLongError, /texts\[1\] is 602 tokens long.*512/, { row: 1, length: 602, limit: 512 }),
  );
  // A long text is cut before tokenizing (text-cut.ts): its length is then a lower bound, and says so.
  const muchTooLong = Array.from({ length: 5_000 }, () => 'the').join(' ');
  await assert.rejects(tok.tokenize([muchTooLong], { maxSeqLen: null }), /texts\[0\] is at least 15\d\d tokens long/);
  const exactly = Array.from({ length: 510 }, () => 'the').join(' ');
  const [row] = await tok.tokenize([exactly], { maxSeqLen: null });
  assert.equal(row!.length, 512, 'a row of exactly max_position_embeddings is allowed');
});

test('tokenizer - rejects a max_seq_len beyond the model, at construction and per call', async (t) => {
  if (!haveVocab) {
    t.skip(`real vocabulary not found at ${VOCAB_TXT}`);
    return;
  }
  await assert.rejects(
    BertTokenizer.fromVocabFile(VOCAB_TXT, { maxPositionEmbeddings: 512, maxSeqLen: 513 }),
    rejectsWith(TooLongError, /max_seq_len 513 .*max_position_embeddings of 512/),
  );
  const tok = await BertTokenizer.fromVocabFile(VOCAB_TXT, { maxPositionEmbeddings: 64, maxSeqLen: null });
  assert.equal(tok.defaultMaxSeqLen, null);
  await assert.rejects(tok.tokenize(['hi'], { maxSeqLen: 65 }), rejectsWith(TooLongError, /max_seq_len 65/));
  await assert.rejects(tok.tokenize(['hi'], { maxSeqLen: 2 }), rejectsWith(BadRequestError, /at least 3/));
  await assert.rejects(tok.tokenize(['hi'], { maxSeqLen: 7.5 }), rejectsWith(BadRequestError, /got 7.5/));
});

test('tokenizer - lowercases and strips accents unless cased', async (t) => {
  const tok = await uncased(t);
  const keep = await cased(t);
  if (!tok || !keep) return;
  assert.deepEqual((await one(tok, 'Café')).tokens, ['[CLS]', 'cafe', '[SEP]']);
  assert.deepEqual(arr((await one(tok, 'Café')).ids), [101, id('cafe'), 102]);
  assert.equal(spaced(await one(tok, 'HELLO Naïve')), '[CLS] hello naive [SEP]');
  // The same uncased vocabulary, cased: capitals survive (and miss it), accents survive ("caf" is in
  // it, "##é" is not, so the word is [UNK] as a whole).
  assert.equal(spaced(await one(keep, 'HELLO hello')), '[CLS] [UNK] hello [SEP]');
  assert.equal(spaced(await one(keep, 'café naïve')), '[CLS] [UNK] [UNK] [SEP]');
  assert.equal(spaced(await one(tok, 'café naïve')), '[CLS] cafe naive [SEP]');
});

test('tokenizer - splits Chinese characters one per token', async (t) => {
  const tok = await uncased(t);
  if (!tok) return;
  const row = await one(tok, 'hello中文world');
  assert.equal(spaced(row), '[CLS] hello 中 文 world [SEP]');
  assert.deepEqual(arr(row.ids), [101, 7592, id('中'), id('文'), id('world'), 102]);
});

test('tokenizer - cleans control characters as BERT does', async (t) => {
  const tok = await uncased(t);
  if (!tok) return;
  assert.equal(spaced(await one(tok, 'hel\u0000lo\tworld\u0007!')), '[CLS] hello world ! [SEP]');
  assert.equal(spaced(await one(tok, '\u0000')), '[CLS] [SEP]', 'text that cleans to nothing is [CLS] [SEP]');
});

test('tokenizer - treats special-token text typed by a user as plain text', async (t) => {
  const tok = await uncased(t);
  if (!tok) return;
  const row = await one(tok, 'hello [SEP] world');
  assert.equal(spaced(row), '[CLS] hello [ sep ] world [SEP]');
  assert.equal(arr(row.ids).filter((x) => x === 102).length, 1);
});

test('tokenizer - adds no [CLS]/[SEP] with noSpecialToken, and max_seq_len counts only real tokens', async (t) => {
  const tok = await uncased(t);
  if (!tok) return;
  const row = await one(tok, 'hello world', { noSpecialToken: true });
  assert.deepEqual(arr(row.ids), [7592, id('world')]);
  assert.deepEqual(row.tokens, ['hello', 'world']);
  assert.equal(spaced(await one(tok, 'a b c d e', { noSpecialToken: true, maxSeqLen: 3 })), 'a b c');
  assert.equal(spaced(await one(tok, ['hello', 'it'], { noSpecialToken: true, isTokenized: true })), 'hello it');
  // Pairs keep their separators, as in bert-as-service.
  assert.equal(spaced(await one(tok, 'a ||| b', { noSpecialToken: true })), '[CLS] a [SEP] b [SEP]');
});

test('tokenizer - masks [CLS] and [SEP] with maskClsSep but still shows them', async (t) => {
  const tok = await uncased(t);
  if (!tok) return;
  const single = await one(tok, 'hello world', { maskClsSep: true });
  assert.deepEqual(arr(single.mask), [0, 1, 1, 0]);
  assert.deepEqual(single.tokens, ['[CLS]', 'hello', 'world', '[SEP]']);
  const pair = await one(tok, 'a ||| b c', { maskClsSep: true });
  assert.deepEqual(arr(pair.mask), [0, 1, 0, 1, 1, 0]);
  const batch = tok.collate([single, pair]);
  assert.deepEqual(Array.from(batch.attentionMask), [0n, 1n, 1n, 0n, 0n, 0n, 0n, 1n, 0n, 1n, 1n, 0n]);
});

test('tokenizer - collates rows into padded int64 tensors', async (t) => {
  const tok = await uncased(t);
  if (!tok) return;
  const rows = await tok.tokenize(['hello world', 'a ||| b c'], { showTokens: true });
  const batch = tok.collate(rows, 8);
  assert.equal(batch.rows, 2);
  assert.equal(batch.seqLen, 8);
  assert.ok(batch.inputIds instanceof BigInt64Array);
  assert.ok(batch.attentionMask instanceof BigInt64Array);
  assert.ok(batch.tokenTypeIds instanceof BigInt64Array);
  const big = (xs: number[]): bigint[] => xs.map(BigInt);
  assert.deepEqual(
    Array.from(batch.inputIds),
    big([101, 7592, id('world'), 102, 0, 0, 0, 0, 101, id('a'), 102, id('b'), id('c'), 102, 0, 0]),
  );
  assert.deepEqual(Array.from(batch.attentionMask), big([1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0]));
  assert.deepEqual(Array.from(batch.tokenTypeIds), big([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0]));
  assert.deepEqual(batch.lengths, [4, 6]);
  assert.deepEqual(batch.tokens, [rows[0]!.tokens, rows[1]!.tokens]);
  assert.equal(tok.collate(rows).seqLen, 6, 'default: the longest row');
  assert.equal(tok.collate(await tok.tokenize(['x'], {})).tokens, undefined);
  assert.throws(
    () => tok.collate(rows, 5),
    rejectsWith(InternalError, /seqLen 5 is shorter than the longest row \(6 tokens\)/),
  );
  const empty = tok.collate([]);
  assert.equal(empty.rows, 0);
  assert.equal(empty.inputIds.length, 0);
});

test('tokenizer - rejects bad input with a BAD_REQUEST naming the row', async (t) => {
  const tok = await uncased(t);
  if (!tok) return;
  const bad = (texts: unknown, message: RegExp, row?: number, opts: TokenizeOptions = {}) =>
    assert.rejects(
      tok.tokenize(texts, opts),
      rejectsWith(BadRequestError, message, row === undefined ? undefined : { row }),
    );
  await bad('hello', /texts must be a list of strings, got a string/);
  await bad({ texts: [] }, /texts must be a list of strings, got an object/);
  await bad([], /texts is empty/);
  await bad(['ok', 42], /texts\[1\] must be a string, got a number/, 1);
  await bad(['ok', 'ok', null], /texts\[2\] must be a string, got null/, 2);
  await bad(['ok', ['a', 'b']], /texts\[1\] is a list of tokens; send "is_tokenized": true with token lists/, 1);
  await bad(['ok', ''], /texts\[1\] is an empty string/, 1);
  await bad([' \t\n'], /texts\[0\] is only whitespace/, 0);
  await bad(['ok', 'ab\uD800cd'], /texts\[1\] has a lone UTF-16 surrogate at index 2/, 1);
  await bad(['ok', 'ab\uDFFF'], /texts\[1\] has a lone UTF-16 surrogate/, 1);
  const tokenized: TokenizeOptions = { isTokenized: true };
  await bad([['ok'], 'hello'], /texts\[1\] must be a list of tokens \(is_tokenized\), got a string/, 1, tokenized);
  await bad([['ok'], []], /texts\[1\] is an empty token list/, 1, tokenized);
  await bad([['ok', 7]], /texts\[0\]\[1\] must be a string, got a number/, 0, tokenized);
  await bad([['ok'], ['a', '']], /texts\[1\]\[1\] is an empty string/, 1, tokenized);
  await bad([['\uD83D']], /texts\[0\]\[0\] has a lone UTF-16 surrogate/, 0, tokenized);
  // A well-formed pair of surrogates is fine.
  assert.equal((await tok.tokenize(['smile 😀'], {})).length, 1);
});

test('tokenizer - reports a missing or unusable model file as MODEL_ERROR naming the path', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bertq-tokenizer-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const missing = join(dir, 'nope', 'vocab.txt');
  const opts = { maxPositionEmbeddings: 512 };
  const escaped = (p: string) => new RegExp(p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  await assert.rejects(
    BertTokenizer.fromVocabFile(missing, opts),
    rejectsWith(ModelError, escaped(missing), { path: missing }),
  );
  const missingJson = join(dir, 'tokenizer.json');
  await assert.rejects(
    BertTokenizer.fromTokenizerJson(missingJson, opts),
    rejectsWith(ModelError, escaped(missingJson)),
  );
  const broken = join(dir, 'broken.json');
  await writeFile(broken, '{"model": ');
  await assert.rejects(
    BertTokenizer.fromTokenizerJson(broken, opts),
    rejectsWith(ModelError, /broken\.json is not valid JSON/),
  );
  const bpe = join(dir, 'bpe.json');
  await writeFile(bpe, JSON.stringify({ model: { type: 'BPE', vocab: {}, merges: [] } }));
  await assert.rejects(
    BertTokenizer.fromTokenizerJson(bpe, opts),
    rejectsWith(ModelError, /bpe\.json has a BPE model/),
  );
  const noCls = join(dir, 'small-vocab.txt');
  await writeFile(noCls, '[PAD]\n[UNK]\n[SEP]\nhello\n');
  await assert.rejects(
    BertTokenizer.fromVocabFile(noCls, opts),
    rejectsWith(ModelError, /small-vocab\.txt has no \[CLS\] token/),
  );
});

test('tokenizer - tokenizer.json gives exactly the ids of its vocab.txt twin', async (t) => {
  const txt = await uncased(t);
  const json = await fromJson(t);
  if (!txt || !json) return;
  const long = 'The quick brown fox jumps over the lazy dog, again and again; '.repeat(30);
  const sentences = [
    'Hello, world! How are you?',
    'Café crème brûlée, naïve façade — São Paulo.',
    '我爱北京天安门，中文分词。',
    'mixed 中文 and English text',
    'First do it ||| then do it right',
    `${long} ||| a short second half`,
    long,
    "don't won't it's U.S.A. e-mail @user #tag $100 3.14159",
    'tabs\tand\nnewlines\r\nand\u0000controls\u0007',
    'emoji 😀 and symbols ∑ ∞ ≠',
    'hello [CLS] [SEP] [MASK] literal',
    'unaffable antidisestablishmentarianism',
    'ÀÉÎÕÜ ß Ω',
  ];
  for (const maxSeqLen of [25, 128, null]) {
    for (const opts of [{ maxSeqLen }, { maxSeqLen, maskClsSep: true }, { maxSeqLen, noSpecialToken: true }]) {
      const a: TokenizedText[] = await txt.tokenize(sentences, { ...opts, showTokens: true });
      const b: TokenizedText[] = await json.tokenize(sentences, { ...opts, showTokens: true });
      for (let i = 0; i < sentences.length; i++) {
        const what = `sentence ${i} with ${JSON.stringify(opts)}`;
        assert.deepEqual(arr(b[i]!.ids), arr(a[i]!.ids), what);
        assert.deepEqual(arr(b[i]!.typeIds), arr(a[i]!.typeIds), what);
        assert.deepEqual(arr(b[i]!.mask), arr(a[i]!.mask), what);
        assert.deepEqual(b[i]!.tokens, a[i]!.tokens, what);
      }
    }
  }
  // The long text really was cut, and the pair really was a pair.
  const [cut] = await json.tokenize([long], { maxSeqLen: 25 });
  assert.equal(cut!.length, 25);
  // The cased override applies to the file's own normaliser too.
  const casedJson = await fromJson(t, true);
  const casedTxt = await cased(t);
  if (!casedJson || !casedTxt) return;
  const tokensOf = (rows: TokenizedText[]) => rows.map((r) => r.tokens);
  const casedFromJson = tokensOf(await casedJson.tokenize(sentences, { showTokens: true }));
  assert.deepEqual(casedFromJson, tokensOf(await casedTxt.tokenize(sentences, { showTokens: true })));
  assert.notDeepEqual(casedFromJson, tokensOf(await json.tokenize(sentences, { showTokens: true })));
});

test('tokenizer - marks a row max_seq_len cut with its full length (check_length), and only such a row', async (t) => {
  if (!haveVocab) {
    t.skip(`real vocabulary not found at ${VOCAB_TXT}`);
    return;
  }
  const tok = await BertTokenizer.fromVocabFile(VOCAB_TXT, { maxPositionEmbeddings: 64, maxSeqLen: 8 });
  const [short, long, pair] = await tok.tokenize(['hello world', 'a b c d e f g h i j', 'a b c ||| d e f g h']);
  assert.equal(short!.truncatedFrom, undefined);
  assert.equal(long!.length, 8);
  assert.equal(long!.truncatedFrom, 12, '10 tokens + [CLS] + [SEP]');
  assert.equal(pair!.truncatedFrom, 11, '3 + 5 tokens + [CLS] + 2 × [SEP]');
});
