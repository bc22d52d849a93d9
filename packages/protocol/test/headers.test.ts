import { test } from 'node:test';
import assert from 'node:assert/strict';
import { utf8Length } from '../src/utf8.js';
import {
  HEADERS,
  getHeader,
  newRequestId,
  dedupId,
  asciiJson,
  asciiHeaderValue,
  headerWireSize,
  messageWireSize,
} from '../src/index.js';

test('headers - request ids are 22 base-62 characters and do not repeat', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const id = newRequestId();
    assert.match(id, /^[0-9A-Za-z]{22}$/);
    seen.add(id);
  }
  assert.equal(seen.size, 2000);
});

test('headers - the dedup id is request id and offset', () => {
  assert.equal(dedupId('abc', 256), 'abc:256');
  assert.equal(HEADERS.msgId, 'Nats-Msg-Id');
});

test('headers - reads a header whatever the case of its name', () => {
  const headers = { 'bertq-id': 'x', 'BERTQ-OFFSET': '3', 'Bertq-Reply': 'r' };
  assert.equal(getHeader(headers, HEADERS.id), 'x');
  assert.equal(getHeader(headers, HEADERS.offset), '3');
  assert.equal(getHeader(headers, HEADERS.reply), 'r');
  assert.equal(getHeader(headers, HEADERS.deadline), undefined);
});

test('headers - JSON and messages put in headers are one line of ASCII and parse back unchanged', () => {
  const tokens = [['[CLS]', 'new york', '北京', 'caf\u00e9', 'line\nbreak', '\u{1F600}', '[SEP]']];
  const text = asciiJson(tokens);
  assert.match(text, /^[\x21-\x7e]*$/);
  assert.deepEqual(JSON.parse(text), tokens);
  const message = asciiHeaderValue('row 3:\r\n "caf\u00e9" is bad');
  assert.match(message, /^[\x20-\x7e]*$/);
  assert.ok(message.includes('caf\\u00e9'));
});

test('headers - wire size counts the NATS/1.0 header block and the body', () => {
  const headers = { 'Bertq-Id': 'abc', 'Bertq-Offset': '12' };
  const block = 'NATS/1.0\r\nBertq-Id: abc\r\nBertq-Offset: 12\r\n\r\n';
  assert.equal(headerWireSize(headers), block.length);
  assert.equal(messageWireSize(headers, new Uint8Array(10)), block.length + 10);
  assert.equal(headerWireSize({ 'Bertq-Worker': '\u00e9' }), 'NATS/1.0\r\nBertq-Worker: \r\n\r\n'.length + 2);
});

test('headers - utf8Length counts what TextEncoder writes, surrogate pairs and lone surrogates included', () => {
  const encoder = new TextEncoder();
  const samples = [
    '',
    'Bertq-Id',
    'ascii only',
    'é',
    '中文',
    '😀',
    'a😀b',
    '\ud83d',
    '\ude00x',
    'x\ud83d',
    '\u07ff\u0800\uffff',
  ];
  for (let i = 0; i < 200; i++) {
    const codes = Array.from({ length: i % 17 }, (_, j) => (i * 7919 + j * 104729) % 0x10000);
    samples.push(String.fromCharCode(...codes));
  }
  for (const s of samples) assert.equal(utf8Length(s), encoder.encode(s).length, JSON.stringify(s));
});
