import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { HEADERS, SCHEMA_FILES, ERROR_CODES } from '../src/index.js';

const docs = readFileSync(fileURLToPath(new URL('../../../../docs/protocol.md', import.meta.url)), 'utf8');

test('docs - protocol.md documents every header name', () => {
  for (const name of Object.values(HEADERS))
    assert.ok(docs.includes(`\`${name}\``), `${name} missing from docs/protocol.md`);
});

test('docs - protocol.md names every schema file', () => {
  for (const file of Object.values(SCHEMA_FILES))
    assert.ok(docs.includes(file), `${file} missing from docs/protocol.md`);
});

test('docs - the error table gives every code its status', () => {
  for (const [code, { status }] of Object.entries(ERROR_CODES)) {
    assert.match(
      docs,
      new RegExp(`\\|\\s*\`${code}\`\\s*\\|\\s*${status}\\s*\\|`),
      `${code} row with status ${status}`,
    );
  }
});
