/**
 * The cut before tokenizing (src/text-cut.ts) held to the real tokenizer: for random texts built of
 * the characters BERT's normalizer treats specially, the tokens the tokenizer keeps from the cut text
 * are those it keeps from the whole text, and a row is still seen as cut when the whole was.
 */
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BertTokenizer } from '../src/tokenizer.js';
import { cutRow, cutText } from '@bertq/protocol';
import type { CutRule } from '@bertq/protocol';

// The real files live beside the repository (../shared/models from the repo root), never in it.
const MODELS_DIR = fileURLToPath(new URL('../shared/models/', new URL('../../../../', import.meta.url)));
const VOCAB_TXT = join(MODELS_DIR, 'bert-base-uncased-vocab.txt');
const TOKENIZER_JSON = join(MODELS_DIR, 'all-MiniLM-L6-v2-tokenizer', 'tokenizer.json');
const RULE: CutRule = { handleChineseChars: true, maxInputCharsPerWord: 100 };

/** Pieces a text is built of: words, whitespace of several kinds, punctuation, CJK, marks, removed characters, long words. */
const PIECES = [
  'a',
  'bc',
  'hello',
  'é',
  'e\u0301',
  '\u0301',
  '\u0301\u0302',
  ' ',
  '  ',
  '\t',
  '\n',
  '\u00A0',
  '\u3000',
  '\u2028',
  '.',
  ',',
  '-',
  '!',
  '«',
  '$',
  '中',
  '文字',
  '\u200B',
  '\uFEFF',
  '\u0000',
  '\u0007',
  '\uFFFD',
  '😀',
  'İ',
  'ß',
  'x'.repeat(99),
  'y'.repeat(150),
  `${'ab'.repeat(60)}\u0301`,
  `${'\u0301'.repeat(120)}z`,
  `q${'\u200B'.repeat(50)}r`,
];

/** A small deterministic generator (mulberry32): the same texts every run. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function nativeTokenizer(cased: boolean) {
  const lib = (await import('tokenizers')) as typeof import('tokenizers') & { default?: typeof import('tokenizers') };
  const { Tokenizer, WordPiece, bertNormalizer, bertPreTokenizer } = lib.default ?? lib;
  const native = new Tokenizer(await WordPiece.fromFile(VOCAB_TXT, { unkToken: '[UNK]' }));
  native.setNormalizer(
    bertNormalizer({ cleanText: true, handleChineseChars: true, lowercase: !cased, stripAccents: !cased }),
  );
  native.setPreTokenizer(bertPreTokenizer());
  return async (text: string): Promise<number[]> =>
    (await native.encode(text, null, { addSpecialTokens: false })).getIds();
}

function needVocab(t: TestContext): boolean {
  if (existsSync(VOCAB_TXT)) return true;
  t.skip(`real vocabulary not found at ${VOCAB_TXT}`);
  return false;
}

for (const cased of [false, true]) {
  test(`cutText - keeps exactly the tokens the whole text keeps (${cased ? 'cased' : 'uncased'}, 600 random texts)`, async (t) => {
    if (!needVocab(t)) return;
    const encode = await nativeTokenizer(cased);
    const next = random(cased ? 7 : 3);
    let cutSome = 0;
    for (let i = 0; i < 600; i++) {
      const pieces = Array.from(
        { length: 1 + Math.floor(next() * 160) },
        () => PIECES[Math.floor(next() * PIECES.length)]!,
      );
      const text = pieces.join('');
      const budget = 1 + Math.floor(next() * 24);
      const cut = cutText(text, budget, RULE);
      if (cut.length < text.length) cutSome++;
      const whole = await encode(text);
      const part = await encode(cut);
      const where = `text #${i} ${JSON.stringify(text.slice(0, 80))}…, budget ${budget}`;
      assert.deepEqual(part.slice(0, budget), whole.slice(0, budget), `the kept tokens differ: ${where}`);
      assert.ok(part.length >= Math.min(whole.length, budget + 1), `a cut row must still look cut: ${where}`);
    }
    assert.ok(cutSome > 100, `the random texts exercise the cut (${cutSome} of 600 were cut)`);
  });
}

test('cutText - 900 KB texts of one word, punctuation, CJK or words shrink to a few KB', () => {
  const big = 900 * 1024;
  for (const [name, text] of [
    ['one word', 'a'.repeat(big)],
    ['punctuation', '.'.repeat(big)],
    ['CJK', '中'.repeat(big)],
    ['words', 'hello '.repeat(big / 6)],
    ['one word with removed characters', 'ab\u200B'.repeat(big / 3)],
  ] as const) {
    const cut = cutText(text, 25, RULE);
    assert.ok(cut.length <= 4096, `${name}: ${cut.length} characters kept of ${text.length}`);
  }
  // A text with less than the budget in it is handed over whole.
  const short = `${' '.repeat(5000)}hello`;
  assert.equal(cutText(short, 25, RULE), short);
});

test('BertTokenizer - a 900 KB row keeps the tokens and the truncation of the whole', async (t) => {
  if (!existsSync(TOKENIZER_JSON)) {
    t.skip(`real tokenizer.json not found at ${TOKENIZER_JSON}`);
    return;
  }
  const tokenizer = await BertTokenizer.fromTokenizerJson(TOKENIZER_JSON, {
    maxPositionEmbeddings: 512,
    maxSeqLen: 25,
  });
  const text = `The quick brown fox. ${'jumps over the lazy dog, '.repeat(40_000)}`;
  const [row] = await tokenizer.tokenize([text], { showTokens: true });
  assert.equal(row!.length, 25);
  assert.deepEqual(row!.tokens!.slice(0, 7), ['[CLS]', 'the', 'quick', 'brown', 'fox', '.', 'jumps']);
  assert.ok(row!.truncatedFrom !== undefined && row!.truncatedFrom > 25, 'still reported as cut');
  // A row a little too long is not cut at all: its full length is reported exactly.
  const [near] = await tokenizer.tokenize([Array.from({ length: 600 }, () => 'the').join(' ')]);
  assert.equal(near!.truncatedFrom, 602);
  // A pair: both halves are cut, longest-first truncation still sees both longer than the budget.
  const [pair] = await tokenizer.tokenize([`${'a b '.repeat(100_000)} ||| ${'c d '.repeat(100_000)}`]);
  assert.equal(pair!.length, 25);
  assert.equal(
    pair!.typeIds.filter((x) => x === 1).length,
    12,
    'the second half keeps its share: 11 of 22 tokens, and its [SEP]',
  );
});

test('cutRow - pairs are cut half by half, short rows pass as they are, and a cut never makes a pair', () => {
  const short = 'hello ||| world';
  assert.equal(cutRow(short, 25, RULE), short);
  const pair = cutRow(`${'a b '.repeat(5_000)} ||| ${'c d '.repeat(5_000)}`, 25, RULE);
  const halves = pair.split(' ||| ');
  assert.equal(halves.length, 2);
  assert.ok(halves[0]!.length < 200 && halves[1]!.length < 200, `both halves cut: ${pair.length} chars`);
  // A line with a newline is one text, not a pair; cut before its newline it would read as a pair,
  // so it goes whole. Cut where no ` ||| ` is kept, it is cut as any text.
  const notAPair = `p ||| q ${'x y '.repeat(5_000)}\nsecond line`;
  assert.equal(cutRow(notAPair, 25, RULE), notAPair);
  const single = `${'x y '.repeat(5_000)} ||| tail\nsecond line`;
  assert.ok(cutRow(single, 25, RULE).length < 200);
});
