/**
 * The one validation of the rows a request carries, run once at each entry point: the client library
 * before it publishes, the worker when a job comes off the wire, `Encoder.encode` in-process. It says
 * what bert-as-service's client said (non-strings, blank strings), names the row (counted from the
 * start of the request), and also refuses text that has no UTF-8 form (a lone UTF-16 surrogate).
 */
import { BadRequestError } from './errors.js';

/** Rows: sentences (`"A ||| B"` is a pair), or token lists with is_tokenized. */
export type Texts = readonly string[] | readonly (readonly string[])[];

export interface ValidateTextsOptions {
  /** Rows are token lists (bert-as-service's is_tokenized). */
  isTokenized?: boolean;
  /** Index of the first row in its request, so messages name the request's row. Default 0. */
  offset?: number;
  /** How the caller spells the token-list switch, for the hint: the wire's or the library's. Default `is_tokenized`. */
  flag?: 'is_tokenized' | 'isTokenized';
}

/** What Python's str.strip() removes: str.isspace() characters (JS \s lacks \x1c-\x1f and \x85, adds \ufeff). */
export const PY_SPACE =
  '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_BLANK = new RegExp(`^[${PY_SPACE}]*$`);
/** Python's str.strip(): the characters str.isspace() names (PY_SPACE). */
const PY_STRIP = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'g');

/**
 * bert-as-service's pair rule for raw text: strip the line, then `^(.*) \|\|\| (.*)$` — greedy, so
 * the LAST " ||| " splits, and Python's `.` stops at "\n", so a line with a newline is never a pair.
 */
export function splitSentencePair(text: string): { a: string; b: string | null } {
  const line = text.replace(PY_STRIP, '');
  const at = line.includes('\n') ? -1 : line.lastIndexOf(' ||| ');
  return at < 0 ? { a: line, b: null } : { a: line.slice(0, at), b: line.slice(at + 5) };
}
/** With the u flag a surrogate class matches only unpaired halves: text that has no UTF-8 form. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** Returns `texts` typed, or throws BadRequestError naming the first problem and its row. */
export function validateTexts(texts: unknown, options: ValidateTextsOptions = {}): Texts {
  const isTokenized = options.isTokenized === true;
  const offset = options.offset ?? 0;
  if (!Array.isArray(texts)) {
    const got = typeof texts === 'string' ? 'a string (wrap a single sentence in a list: ["…"])' : describe(texts);
    throw new BadRequestError(`texts must be a list of ${isTokenized ? 'token lists' : 'strings'}, got ${got}`);
  }
  if (texts.length === 0) throw new BadRequestError('texts is empty: send at least one text');
  for (let i = 0; i < texts.length; i++) {
    const row = offset + i;
    const value: unknown = texts[i];
    if (!isTokenized) {
      if (Array.isArray(value)) {
        const hint =
          options.flag === 'isTokenized'
            ? 'pass { isTokenized: true } to send token lists'
            : 'send "is_tokenized": true with token lists';
        throw new BadRequestError(`texts[${row}] is a list of tokens; ${hint}`, { details: { row } });
      }
      checkText(value, `texts[${row}]`, row);
      continue;
    }
    if (!Array.isArray(value)) {
      throw new BadRequestError(`texts[${row}] must be a list of tokens (is_tokenized), got ${describe(value)}`, {
        details: { row },
      });
    }
    if (value.length === 0) throw new BadRequestError(`texts[${row}] is an empty token list`, { details: { row } });
    for (let j = 0; j < value.length; j++) checkText(value[j], `texts[${row}][${j}]`, row);
  }
  return texts as Texts;
}

function checkText(value: unknown, where: string, row: number): asserts value is string {
  if (typeof value !== 'string') {
    throw new BadRequestError(`${where} must be a string, got ${describe(value)}`, { details: { row } });
  }
  if (PY_BLANK.test(value)) {
    throw new BadRequestError(`${where} is ${value.length === 0 ? 'an empty string' : 'only whitespace'}`, {
      details: { row },
    });
  }
  const bad = value.search(LONE_SURROGATE);
  if (bad >= 0) {
    throw new BadRequestError(
      `${where} has a lone UTF-16 surrogate at index ${bad} (not valid Unicode, cannot be UTF-8 encoded)`,
      { details: { row, index: bad } },
    );
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}
