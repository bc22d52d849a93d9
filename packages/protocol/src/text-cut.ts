/**
 * Cutting a text to what max_seq_len can use, before the native tokenizer sees it. Tokenizing is
 * linear in the text, so a 900 KB row costs seconds of worker time though only 25 tokens are kept:
 * a cheap scan finds where the tokens that can be kept end, and the tokenizer gets only that part.
 *
 * The cut never changes the tokens that are kept. It relies on what BERT's normalizer,
 * pre-tokenizer and WordPiece do (HF tokenizers' BertNormalizer, BertPreTokenizer, WordPiece):
 *   - whitespace separates words; control and format characters are removed (they join the
 *     characters on either side); each punctuation mark, and with handle_chinese_chars each CJK
 *     ideograph, is a token of its own: a cut just before one of those, or before a word, is a cut
 *     between pre-tokens, so the tokens before it are the same with or without the rest;
 *   - every word with a character that is not a combining mark makes at least one token, so once a
 *     text holds more units than the budget, the rest cannot be kept;
 *   - a word of more than max_input_chars_per_word characters is one [UNK], however long: its middle
 *     can go, as long as it stays over the limit.
 * Counting low is safe (the cut comes later); the scan only ever counts a unit it is sure of.
 */

import { splitSentencePair } from './texts.js';

/**
 * Tokens past what max_seq_len keeps that a cut text still holds: a row a little too long reports its
 * exact length (check_length, TOO_LONG under NONE), and a thousand tokens cost well under a millisecond.
 */
export const TEXT_CUT_MARGIN_TOKENS = 1_024;

/**
 * The token budget of each half of a row: what one half alone may keep (max_seq_len, or under NONE
 * max_position_embeddings) plus the margin. The worker's tokenizer and the client cut to the same one.
 */
export function textCutBudget(maxSeqLen: number | null, maxPositionEmbeddings: number): number {
  return (maxSeqLen ?? maxPositionEmbeddings) + TEXT_CUT_MARGIN_TOKENS;
}

/** What the tokenizer does that the cut relies on; `undefined` for a tokenizer it does not know. */
export interface CutRule {
  /** BertNormalizer's handle_chinese_chars: each CJK ideograph is a token of its own. */
  handleChineseChars: boolean;
  /** WordPiece's max_input_chars_per_word: a longer word is one [UNK]. */
  maxInputCharsPerWord: number;
}

const CJK =
  '\\u{4E00}-\\u{9FFF}\\u{3400}-\\u{4DBF}\\u{20000}-\\u{2A6DF}\\u{2A700}-\\u{2B73F}\\u{2B740}-\\u{2B81F}\\u{2B820}-\\u{2CEAF}\\u{F900}-\\u{FAFF}\\u{2F800}-\\u{2FA1F}';
const SPACE = '\\t\\n\\r \\p{Zs}\\u2028\\u2029';
const PUNCT = '\\p{P}!-\\/:-@\\[-`{-~';
// Removed by the normalizer's clean_text (NUL and U+FFFD too); \t\n\r are whitespace, not control.
const DROP = '\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F\\p{Cf}\\p{Co}\\p{Cn}\\uFFFD';

function unitPattern(handleChineseChars: boolean): RegExp {
  const single = handleChineseChars ? `[${PUNCT}${CJK}]` : `[${PUNCT}]`;
  const other = `${SPACE}${PUNCT}${DROP}${handleChineseChars ? CJK : ''}`;
  return new RegExp(`([${SPACE}]+)|(${single})|([${DROP}]+)|([^${other}]+)`, 'uy');
}

const PATTERNS = new Map<boolean, RegExp>();
const BASE = /\P{M}/u;
const MARK = /\p{M}/u;

/**
 * `text`, cut after the point where more than `maxTokens` tokens are certain, with overlong words
 * shortened; the same text when it holds no more. Its tokens up to `maxTokens` are those of `text`.
 */
export function cutText(text: string, maxTokens: number, rule: CutRule): string {
  if (!mayCut(text, maxTokens, rule)) return text;
  let pattern = PATTERNS.get(rule.handleChineseChars);
  if (pattern === undefined) {
    pattern = unitPattern(rule.handleChineseChars);
    PATTERNS.set(rule.handleChineseChars, pattern);
  }
  const kept: string[] = [];
  let units = 0;
  let inWord = false;
  let wordChars = 0; // characters of the current word that are not marks, counted up to the limit
  let keptFrom = 0; // start of the part of `text` not yet copied to `kept`
  let at = 0;
  while (at < text.length) {
    pattern.lastIndex = at;
    const m = pattern.exec(text);
    if (m === null) break; // cannot happen: the four groups cover every character
    const end = pattern.lastIndex;
    if (m[3] !== undefined) {
      // Removed by the normalizer: neither ends a word nor starts one.
    } else if (m[4] !== undefined) {
      const startsWord = !inWord && BASE.test(m[4]);
      if (startsWord) {
        if (units > maxTokens) return finish(text, kept, keptFrom, at);
        units++;
      }
      if (startsWord || inWord) {
        inWord = true;
        const overAt = overLimitAt(m[4], rule.maxInputCharsPerWord - wordChars);
        if (overAt.index >= 0) {
          // Over the limit from here on: one [UNK] whatever follows; keep the word up to here.
          kept.push(text.slice(keptFrom, at + overAt.index));
          keptFrom = skipWord(text, end, pattern);
          wordChars = rule.maxInputCharsPerWord + 1;
          at = keptFrom;
          continue;
        }
        wordChars += overAt.counted;
      }
    } else {
      inWord = false;
      wordChars = 0;
      if (m[2] !== undefined) {
        if (units > maxTokens) return finish(text, kept, keptFrom, at);
        units++;
      }
    }
    at = end;
  }
  return finish(text, kept, keptFrom, text.length);
}

/**
 * Where in `word` its count of non-mark characters passes `room` (the index just after the character
 * that does), or -1 with how many it counted. Looks at no more of a long word than it needs.
 */
function overLimitAt(word: string, room: number): { index: number; counted: number } {
  let counted = 0;
  for (let i = 0; i < word.length; ) {
    const cp = word.codePointAt(i)!;
    const width = cp > 0xffff ? 2 : 1;
    if (cp < 0x300 || !MARK.test(String.fromCodePoint(cp))) {
      counted++;
      if (counted > room) return { index: i + width, counted };
    }
    i += width;
  }
  return { index: -1, counted };
}

/** The index where the word that runs on at `from` ends (through removed characters too). */
function skipWord(text: string, from: number, pattern: RegExp): number {
  let at = from;
  while (at < text.length) {
    pattern.lastIndex = at;
    const m = pattern.exec(text);
    if (m === null || (m[3] === undefined && m[4] === undefined)) break;
    at = pattern.lastIndex;
  }
  return at;
}

function finish(text: string, kept: string[], keptFrom: number, end: number): string {
  if (kept.length === 0 && keptFrom === 0 && end === text.length) return text;
  kept.push(text.slice(keptFrom, end));
  return kept.join('');
}

/**
 * A whole row cut as the worker's tokenizer will read it: a sentence pair (`a ||| b`, splitSentencePair)
 * has each half cut and is joined again; a single row is cut as one text. What a client sends is then
 * no bigger than what can be used, and the worker's tokens are the same as for the whole row.
 */
export function cutRow(text: string, maxTokens: number, rule: CutRule): string {
  // Nothing in a row this short can be cut (the same test cutText makes of each half): no pair split,
  // whose strip scans the row, for the usual short row on a client's hot path.
  if (!mayCut(text, maxTokens, rule)) return text;
  const whole = splitSentencePair(text);
  const { a, b } = cutSegments(whole, maxTokens, rule);
  if (a === whole.a && b === whole.b) return text;
  if (b === null) {
    // A line with a newline is never a pair: a cut that drops the newline must not make it one.
    return a.includes(' ||| ') && !a.includes('\n') ? text : a;
  }
  return `${a} ||| ${b}`;
}

/** A row's halves (splitSentencePair), each cut to `maxTokens`; the same object when nothing was cut. */
export function cutSegments<S extends { a: string; b: string | null }>(row: S, maxTokens: number, rule: CutRule): S {
  const a = cutText(row.a, maxTokens, rule);
  const b = row.b === null ? null : cutText(row.b, maxTokens, rule);
  return a === row.a && b === row.b ? row : { ...row, a, b };
}

/** Whether a text is long enough that a cut could shorten it: every unit takes at least one UTF-16 unit. */
function mayCut(text: string, maxTokens: number, rule: CutRule): boolean {
  return text.length > maxTokens + rule.maxInputCharsPerWord;
}
