import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BadRequestError, OverloadedError, type ServerConfig } from '@bertq/protocol';
import { checkAgainstConfig, checkEmbeddingsRequest, embeddingsResponseJson } from '../src/embeddings-route.js';
import { checkEncodeRequest, encodeResponseJson } from '../src/encode-route.js';
import { BearerCheck, GatewayHttpError, bertqErrorBody, errorAnswer, openAIErrorBody } from '../src/http.js';
import { parseByteSize, parseCors, resolveGatewayOptions } from '../src/options.js';
import { arrayToJson, floatsToBase64, floatsToJson } from '../src/vectors-json.js';

function paramOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof BadRequestError, `BadRequestError, got ${String(err)}`);
    return err.details?.param as string | undefined;
  }
  assert.fail('expected a BadRequestError');
}

test('requests - /encode bodies: texts required, flags boolean, unknown fields named', () => {
  assert.deepEqual(checkEncodeRequest({ id: 7, texts: ['a'], is_tokenized: false }), {
    id: 7,
    texts: ['a'],
    isTokenized: false,
    showTokens: false,
  });
  assert.throws(() => checkEncodeRequest({}), /texts is missing/);
  // The rows themselves are validated once, by the client it hands them to (gateway-api tests the 400s).
  assert.throws(
    () => checkEncodeRequest({ texts: ['a'], show_tokens: 'yes' }),
    /show_tokens must be true or false, got "yes"/,
  );
  assert.throws(() => checkEncodeRequest({ texts: ['a'], batch: 1, foo: 2 }), /unknown fields "batch", "foo"/);
});

test('requests - /v1/embeddings bodies: errors name the offending param as OpenAI does', () => {
  assert.deepEqual(checkEmbeddingsRequest({ input: 'hi', model: 'm' }), {
    texts: ['hi'],
    encodingFormat: 'float',
    dimensions: undefined,
    model: 'm',
  });
  assert.equal(
    paramOf(() => checkEmbeddingsRequest({ model: 'm' })),
    'input',
  );
  assert.equal(
    paramOf(() => checkEmbeddingsRequest({ input: [] })),
    'input',
  );
  assert.equal(
    paramOf(() => checkEmbeddingsRequest({ input: [1, 2, 3] })),
    'input',
  );
  assert.equal(
    paramOf(() => checkEmbeddingsRequest({ input: [[1, 2]] })),
    'input',
  );
  assert.equal(
    paramOf(() => checkEmbeddingsRequest({ input: ['a', 3] })),
    'input',
  );
  assert.equal(
    paramOf(() => checkEmbeddingsRequest({ input: 'a', encoding_format: 'int8' })),
    'encoding_format',
  );
  assert.equal(
    paramOf(() => checkEmbeddingsRequest({ input: 'a', dimensions: 0 })),
    'dimensions',
  );
  assert.equal(
    paramOf(() => checkEmbeddingsRequest({ input: 'a', dimensions: 2.5 })),
    'dimensions',
  );
  assert.equal(
    paramOf(() => checkEmbeddingsRequest({ input: 'a', model: 3 })),
    'model',
  );
  assert.equal(
    paramOf(() => checkEmbeddingsRequest({ input: 'a', temperature: 1 })),
    'temperature',
  );
  assert.throws(() => checkEmbeddingsRequest({ input: ['a', ''] }), /'input\[1\]' is an empty string/);
});

const config = (over: Partial<ServerConfig>): ServerConfig =>
  ({ service: 'svc', pooling_strategy: 'REDUCE_MEAN', output_shape: [4], ...over }) as ServerConfig;

test('requests - /v1/embeddings refuses token-level services and dimensions the pooling cannot give', () => {
  const req = (dimensions?: number) => ({
    texts: ['a'],
    encodingFormat: 'float' as const,
    dimensions,
    model: undefined,
  });
  assert.doesNotThrow(() => checkAgainstConfig(req(4), config({})));
  assert.throws(
    () => checkAgainstConfig(req(5), config({})),
    /'dimensions' is 5, but service "svc" makes 4-dimensional vectors/,
  );
  assert.throws(
    () => checkAgainstConfig(req(), config({ pooling_strategy: 'NONE', output_shape: [null, 4] })),
    /token-level vectors/,
  );
  assert.throws(
    () => checkAgainstConfig(req(2), config({ pooling_strategy: 'REDUCE_MEAN_MAX', output_shape: [8] })),
    /REDUCE_MEAN_MAX/,
  );
});

test('requests - embeddings JSON: float and base64 carry exact float32s; a dimensions cut is re-normalised for normalising services', () => {
  const data = Float32Array.from([0.1, -0.2, 1e-8, 3, 0.6, 0.8, 0, 0]);
  const parse = (text: string) =>
    JSON.parse(text) as { data: Array<{ embedding: number[] | string; index: number }>; usage: unknown; model: string };
  const float = parse(
    embeddingsResponseJson(
      { data: data.slice(), shape: [2, 4] },
      { texts: ['a', 'b'], encodingFormat: 'float', dimensions: undefined, model: undefined },
      { model: 'm', normalize: false, promptTokens: 9 },
    ),
  );
  assert.deepEqual(
    float.data.map((d) => d.index),
    [0, 1],
  );
  assert.deepEqual(Float32Array.from(float.data[0]!.embedding as number[]), data.subarray(0, 4));
  assert.deepEqual(float.usage, { prompt_tokens: 9, total_tokens: 9 });
  assert.equal(float.model, 'm');

  const b64 = parse(
    embeddingsResponseJson(
      { data: data.slice(), shape: [2, 4] },
      { texts: ['a', 'b'], encodingFormat: 'base64', dimensions: undefined, model: undefined },
      { model: 'm', normalize: false, promptTokens: 0 },
    ),
  );
  const bytes = Buffer.from(b64.data[1]!.embedding as string, 'base64');
  assert.deepEqual(new Float32Array(bytes.buffer, bytes.byteOffset, 4), data.subarray(4, 8));

  const cut = parse(
    embeddingsResponseJson(
      { data: Float32Array.from([3, 4, 12, 0]), shape: [1, 4] },
      { texts: ['a'], encodingFormat: 'float', dimensions: 2, model: undefined },
      { model: 'm', normalize: true, promptTokens: 0 },
    ),
  );
  assert.deepEqual(
    cut.data[0]!.embedding,
    [0.6, 0.8].map((v) => Number(Math.fround(v).toPrecision(9))),
  );
});

test('requests - float JSON round-trips every float32 exactly, writes null for non-finite, nests token-level arrays', () => {
  const values = new Float32Array(2000);
  for (let i = 0; i < values.length; i++)
    values[i] = Math.fround(Math.sin(i * 12.9898) * 43758.5453 * 10 ** ((i % 13) - 8));
  const back = Float32Array.from(JSON.parse(floatsToJson(values, 0, values.length)) as number[]);
  assert.deepEqual(back, values);
  assert.equal(floatsToJson(Float32Array.from([NaN, Infinity, 1]), 0, 3), '[null,null,1.00000000]');
  assert.deepEqual(JSON.parse(arrayToJson(Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]), [2, 2, 2])), [
    [
      [1, 2],
      [3, 4],
    ],
    [
      [5, 6],
      [7, 8],
    ],
  ]);
  assert.equal(
    floatsToBase64(Float32Array.from([1, 2]), 1, 1),
    Buffer.from(Float32Array.from([2]).buffer).toString('base64'),
  );
  const encoded = JSON.parse(
    encodeResponseJson({ x: 1 }, { data: Float32Array.from([1, 2]), shape: [1, 2] }, [['[CLS]', '[SEP]']]),
  );
  assert.deepEqual(encoded, {
    id: { x: 1 },
    result: [[1, 2]],
    results: [[1, 2]],
    tokens: [['[CLS]', '[SEP]']],
    status: 200,
  });
});

test('requests - errors map to their HTTP status in both bodies; OVERLOADED tells when to retry', () => {
  const overloaded = errorAnswer(
    new OverloadedError('queue full', { details: { reply: 'bertq.v1.x.results.y', limit: 10 } }),
  );
  assert.equal(overloaded.status, 429);
  assert.equal(overloaded.headers['Retry-After'], '1');
  assert.deepEqual(JSON.parse(bertqErrorBody(overloaded)), {
    error: { code: 'OVERLOADED', message: 'queue full', details: { limit: 10 } },
  });
  assert.deepEqual(JSON.parse(openAIErrorBody(overloaded)), {
    error: { message: 'queue full', type: 'rate_limit_error', param: null, code: 'OVERLOADED' },
  });
  const unauthorized = errorAnswer(new GatewayHttpError('UNAUTHORIZED', 'no'));
  assert.equal(unauthorized.status, 401);
  assert.equal(JSON.parse(openAIErrorBody(unauthorized)).error.code, 'invalid_api_key');
  assert.equal(errorAnswer(new Error('boom')).status, 500);
});

test('requests - bearer tokens are checked whole: missing, wrong, longer or shorter tokens are all refused', () => {
  const check = new BearerCheck('abc123');
  assert.doesNotThrow(() => check.check('Bearer abc123'));
  assert.doesNotThrow(() => check.check('bearer   abc123'));
  for (const header of [
    undefined,
    '',
    'abc123',
    'Bearer',
    'Bearer abc12',
    'Bearer abc1234',
    'Basic abc123',
    'Bearer abc123 extra',
  ]) {
    assert.throws(
      () => check.check(header),
      (e: unknown) => e instanceof GatewayHttpError && e.status === 401,
      `refuses ${JSON.stringify(header)}`,
    );
  }
});

test('requests - options: CORS policies, byte sizes with units, and bad values named', () => {
  assert.deepEqual(parseCors('*'), { kind: 'any' });
  assert.deepEqual(parseCors('none'), { kind: 'none' });
  const list = parseCors('https://a.example, http://localhost:3000');
  assert.ok(list.kind === 'list' && list.origins.has('http://localhost:3000') && list.origins.size === 2);
  assert.throws(() => parseCors('a.example/path'), /scheme:\/\/host/);
  assert.equal(parseByteSize('1048576'), 1048576);
  assert.equal(parseByteSize('512kb'), 512 * 1024);
  assert.equal(parseByteSize('10MB'), 10 * 1024 * 1024);
  assert.throws(() => parseByteSize('ten'), /number of bytes/);
  assert.throws(() => resolveGatewayOptions({ port: 70000 }), /port must be an integer from 0 to 65535/);
  assert.throws(() => resolveGatewayOptions({ token: 'has space' }), /without whitespace/);
  // Secure by default: loopback only, no cross-origin calls (bert-as-service's * is explicit).
  assert.equal(resolveGatewayOptions({}).cors.kind, 'none');
  assert.equal(resolveGatewayOptions({}).host, '127.0.0.1');
});
