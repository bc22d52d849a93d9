import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ERROR_CODES, BertqError, errorFromCode, toBertqError, TooLongError } from '../src/index.js';

test('errors - every code round-trips through its wire form into the same typed class', () => {
  for (const code of Object.keys(ERROR_CODES)) {
    const err = errorFromCode(code, 'boom', { details: { row: 3 } });
    assert.ok(err instanceof BertqError);
    assert.equal(err.code, code);
    assert.equal(err.status, ERROR_CODES[code as keyof typeof ERROR_CODES].status);
    const again = errorFromCode(err.toJSON().code, err.toJSON().message);
    assert.equal(again.constructor, err.constructor);
    assert.equal(again.name, err.name);
  }
});

test('errors - an unknown code becomes INTERNAL and keeps the code in its message', () => {
  const err = errorFromCode('WHAT', 'x');
  assert.equal(err.code, 'INTERNAL');
  assert.match(err.message, /WHAT/);
});

test('errors - toBertqError keeps typed errors and wraps others with a cause', () => {
  const typed = new TooLongError('too long');
  assert.equal(toBertqError(typed), typed);
  const plain = new Error('disk on fire');
  const wrapped = toBertqError(plain, 'MODEL_ERROR');
  assert.equal(wrapped.code, 'MODEL_ERROR');
  assert.equal(wrapped.cause, plain);
});

test('errors - every code is documented in docs/protocol.md', () => {
  const docs = readFileSync(fileURLToPath(new URL('../../../../docs/protocol.md', import.meta.url)), 'utf8');
  for (const code of Object.keys(ERROR_CODES))
    assert.match(docs, new RegExp(`\`${code}\``), `${code} missing from docs/protocol.md`);
});
