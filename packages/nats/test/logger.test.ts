import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { createLogger, defaultLogFormat } from '../src/logger.js';

function capture(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (d) => (text += d));
  return { stream, text: () => text };
}

test('logger - readable lines on a terminal, JSON otherwise, and BERTQ_LOG_FORMAT decides when given', () => {
  assert.equal(defaultLogFormat({}, true), 'pretty');
  assert.equal(defaultLogFormat({}, false), 'json');
  assert.equal(defaultLogFormat({ BERTQ_LOG_FORMAT: 'json' }, true), 'json');
  assert.equal(defaultLogFormat({ BERTQ_LOG_FORMAT: 'pretty' }, false), 'pretty');
  assert.equal(defaultLogFormat({ BERTQ_LOG_FORMAT: 'xml' }, false), 'json', 'an unknown format is ignored');
});

test('logger - pretty writes a readable line, json one JSON document per event', () => {
  const pretty = capture();
  createLogger('info', { component: 'cli' }, { format: 'pretty', destination: pretty.stream }).info(
    { workers: 2 },
    'fleet ready',
  );
  assert.match(pretty.text(), /INFO.*fleet ready/);
  assert.match(pretty.text(), /"workers":2/);
  assert.doesNotMatch(pretty.text(), /"level":/);

  const json = capture();
  createLogger('info', {}, { format: 'json', destination: json.stream }).warn('careful');
  const line = JSON.parse(json.text().trim()) as { level: number; msg: string };
  assert.equal(line.level, 40);
  assert.equal(line.msg, 'careful');
});
