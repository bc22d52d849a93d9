import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  HEADERS,
  ERROR_CODES,
  BertqError,
  InternalError,
  TooLargeError,
  TimeoutError,
  errorFromCode,
  encodeResultFrames,
  encodeErrorFrame,
  decodeFrame,
  decodeErrorReply,
  RequestAssembler,
  messageWireSize,
  float32ArrayToFloat16,
  float16ArrayToFloat32,
  type Frame,
  type ResultFrame,
  type OutputDtype,
  type ResultInput,
} from '../src/index.js';
import { seededRandom, shuffle, embeddingLike } from './random.js';

function decodeResult(frame: Frame): ResultFrame {
  const decoded = decodeFrame(frame.headers, frame.body);
  assert.equal(decoded.kind, 'result');
  return decoded as ResultFrame;
}

function assemble(frames: readonly Frame[], id: string, rows: number): RequestAssembler {
  const assembler = new RequestAssembler({ id, rows });
  for (const frame of frames) assembler.add(decodeResult(frame));
  return assembler;
}

/** The values a client should get back for a dtype: exact for f32 and json, binary16-rounded for f16. */
function expected(data: Float32Array, dtype: OutputDtype): Float32Array {
  return dtype === 'f16' ? float16ArrayToFloat32(float32ArrayToFloat16(data)) : data;
}

function makeTokens(rows: number, random: () => number): string[][] {
  const vocab = ['[CLS]', '[SEP]', 'hello', 'world', '##ing', 'caf\u00e9', '北京', '[UNK]'];
  return Array.from({ length: rows }, () =>
    Array.from({ length: 1 + Math.floor(random() * 12) }, () => vocab[Math.floor(random() * vocab.length)]!),
  );
}

const MAX_PAYLOADS = [333, 360, 400, 512, 777, 1024, 2048, 4096, 65536, 1 << 20];

for (const dtype of ['f32', 'f16', 'json'] as const) {
  for (const shape of [[16], [6, 8]]) {
    test(`frames - ${dtype} rows of shape [${shape}] split under every max_payload and reassemble exactly`, () => {
      const random = seededRandom(shape.length * 100 + dtype.length);
      const rows = 7;
      const rowElements = shape.reduce((a, b) => a * b, 1);
      const data = embeddingLike(rows * rowElements, random);
      const tokens = makeTokens(rows, random);
      let sawParts = false;
      let sawMultiRow = false;
      for (const maxPayload of MAX_PAYLOADS) {
        for (const withTokens of [false, true]) {
          const input: ResultInput = {
            id: 'Req42',
            offset: 3,
            rows,
            shape,
            dtype,
            data,
            timings: { tokenization: 0.5, queue: 12.25, inference: 40.125, total: 53 },
          };
          if (withTokens) input.tokens = tokens;
          input.tokenCounts = tokens.map((t) => t.length);
          const frames = encodeResultFrames(input, { maxPayload });
          for (const f of frames)
            assert.ok(
              messageWireSize(f.headers, f.body) <= maxPayload,
              `frame of ${messageWireSize(f.headers, f.body)} bytes over ${maxPayload}`,
            );
          sawParts ||= frames.some((f) => f.headers[HEADERS.part] !== undefined);
          sawMultiRow ||= frames.some((f) => Number(f.headers[HEADERS.rows]) > 1);
          const assembler = assemble(shuffle(frames, random), 'Req42', rows + 3 + 2);
          // rows 0-2 and 10-11 belong to other chunks of the request: still missing
          assert.deepEqual(assembler.missingRanges(), [
            [0, 2],
            [10, 11],
          ]);
          assert.equal(assembler.receivedRows, rows);
          // a request made of just this chunk
          const only = encodeResultFrames({ ...input, offset: 0 }, { maxPayload });
          const whole = assemble(shuffle(only, random), 'Req42', rows);
          assert.ok(whole.complete);
          const result = whole.result();
          assert.deepEqual(result.shape, [rows, ...shape]);
          assert.deepEqual(result.data, expected(data, dtype), `dtype ${dtype} maxPayload ${maxPayload}`);
          if (withTokens) assert.deepEqual(result.tokens, tokens);
          else assert.equal(result.tokens, undefined);
          assert.deepEqual(
            result.tokenCounts,
            tokens.map((t) => t.length),
            'token counts survive every split',
          );
        }
      }
      assert.ok(sawParts, 'the smallest payloads force byte parts');
      assert.ok(sawMultiRow, 'the largest payloads hold several rows in one frame');
    });
  }
}

test('frames - a frame carries its headers: request, offset, rows, shape, dtype and timings', () => {
  const frames = encodeResultFrames(
    {
      id: 'abc',
      offset: 32,
      rows: 3,
      shape: [4],
      dtype: 'f32',
      data: new Float32Array(12),
      timings: { tokenization: 1.23456, queue: 2, inference: 3.5, total: 7 },
      worker: 'w1',
    },
    { maxPayload: 1 << 20 },
  );
  assert.equal(frames.length, 1);
  const h = frames[0]!.headers;
  assert.equal(h[HEADERS.id], 'abc');
  assert.equal(h[HEADERS.offset], '32');
  assert.equal(h[HEADERS.rows], '3');
  assert.equal(h[HEADERS.shape], '3,4');
  assert.equal(h[HEADERS.dtype], 'f32');
  assert.equal(h[HEADERS.worker], 'w1');
  assert.equal(h[HEADERS.tokenizationTime], '1.235');
  assert.equal(h[HEADERS.totalTime], '7');
  assert.equal(frames[0]!.body.length, 3 * 4 * 4);
  const decoded = decodeResult(frames[0]!);
  assert.deepEqual(decoded.timings, { tokenization: 1.235, queue: 2, inference: 3.5, total: 7 });
  assert.equal(decoded.worker, 'w1');
});

test('frames - f32 bodies are little-endian row-major floats', () => {
  const data = new Float32Array([1, -2.5, 3.25, 1e-3]);
  const [frame] = encodeResultFrames(
    { id: 'x', offset: 0, rows: 2, shape: [2], dtype: 'f32', data },
    { maxPayload: 4096 },
  );
  const view = new DataView(frame!.body.buffer, frame!.body.byteOffset, frame!.body.byteLength);
  assert.deepEqual(
    [0, 1, 2, 3].map((i) => view.getFloat32(i * 4, true)),
    [...data],
  );
});

test('frames - f16 bodies are little-endian binary16, from float32 or from ready bits', () => {
  const data = new Float32Array([1, -2, 0.5, 65504]);
  const [fromFloats] = encodeResultFrames(
    { id: 'x', offset: 0, rows: 1, shape: [4], dtype: 'f16', data },
    { maxPayload: 4096 },
  );
  assert.deepEqual([...fromFloats!.body], [0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38, 0xff, 0x7b]);
  const [fromBits] = encodeResultFrames(
    { id: 'x', offset: 0, rows: 1, shape: [4], dtype: 'f16', data: new Uint16Array([0x3c00, 0xc000, 0x3800, 0x7bff]) },
    { maxPayload: 4096 },
  );
  assert.deepEqual([...fromBits!.body], [...fromFloats!.body]);
  assert.deepEqual([...decodeResult(fromBits!).data!], [1, -2, 0.5, 65504]);
});

test('frames - json bodies are readable arrays nested to the row shape, exact to float32', () => {
  const data = new Float32Array([0.1, 0.2, 0.3, -1, 1e-7, 12345.678]);
  const [frame] = encodeResultFrames(
    { id: 'x', offset: 0, rows: 1, shape: [2, 3], dtype: 'json', data },
    { maxPayload: 4096 },
  );
  const text = new TextDecoder().decode(frame!.body);
  assert.equal(text, '[[[0.1,0.2,0.3],[-1,1e-7,12345.678]]]');
  assert.deepEqual(decodeResult(frame!).data, data);
});

test('frames - a row that fits no frame is split into parts marked i/n', () => {
  const data = new Float32Array(200).map((_, i) => i / 7);
  const tokens = [['[CLS]', 'long', '[SEP]']];
  const frames = encodeResultFrames(
    { id: 'big', offset: 5, rows: 1, shape: [200], dtype: 'f32', data, tokens },
    { maxPayload: 300 },
  );
  assert.ok(frames.length > 3);
  frames.forEach((f, i) => {
    assert.equal(f.headers[HEADERS.part], `${i + 1}/${frames.length}`);
    assert.equal(f.headers[HEADERS.offset], '5');
    assert.equal(f.headers[HEADERS.rows], '1');
    assert.equal(f.headers[HEADERS.shape], '1,200');
    // parts stay aligned to whole floats
    assert.equal(f.body.length % 4, 0);
  });
  const total = frames.reduce((n, f) => n + f.body.length, 0);
  assert.equal(total, 800);
  // the tokens JSON is cut into the Bertq-Tokens values of the first parts
  const joined = frames.map((f) => f.headers[HEADERS.tokens] ?? '').join('');
  assert.deepEqual(JSON.parse(joined), tokens);
});

test('frames - tokens too long for one frame are spread over parts and come back whole', () => {
  const tokens = [Array.from({ length: 120 }, (_, i) => (i % 3 === 0 ? `new york ${i}` : `t\u00f6k${i}`))];
  const data = new Float32Array([1, 2, 3, 4]);
  const frames = encodeResultFrames(
    { id: 'tok', offset: 0, rows: 1, shape: [4], dtype: 'f32', data, tokens },
    { maxPayload: 400 },
  );
  const withTokens = frames.filter((f) => f.headers[HEADERS.tokens] !== undefined);
  assert.ok(withTokens.length > 2, 'the tokens need several parts');
  for (const f of frames) {
    assert.ok(messageWireSize(f.headers, f.body) <= 400);
    const value = f.headers[HEADERS.tokens];
    if (value !== undefined)
      assert.match(value, /^[\x21-\x7e]+$/, 'fragments are ASCII without spaces, so no header parser trims them');
  }
  const assembler = new RequestAssembler({ id: 'tok', rows: 1 });
  for (const f of shuffle(frames, seededRandom(3))) assembler.add(decodeResult(f));
  const result = assembler.result();
  assert.deepEqual(result.tokens, tokens);
  assert.deepEqual(result.data, data);
});

test('frames - out-of-order and duplicated frames assemble once; duplicates report false', () => {
  const random = seededRandom(99);
  const data = embeddingLike(10 * 64, random);
  const frames = encodeResultFrames(
    { id: 'dup', offset: 0, rows: 10, shape: [64], dtype: 'f32', data },
    { maxPayload: 300 },
  );
  assert.ok(frames.some((f) => f.headers[HEADERS.part] !== undefined));
  const assembler = new RequestAssembler({ id: 'dup', rows: 10 });
  const order = shuffle([...frames, ...frames, ...frames], random);
  let fresh = 0;
  for (const f of order) if (assembler.add(decodeResult(f))) fresh++;
  assert.equal(fresh, frames.length);
  assert.deepEqual(assembler.result().data, data);
});

test('frames - a redelivered row split differently still assembles (parts are kept per split)', () => {
  const random = seededRandom(5);
  const data = embeddingLike(96, random);
  const base: ResultInput = { id: 'redo', offset: 0, rows: 1, shape: [96], dtype: 'f16', data };
  const first = encodeResultFrames({ ...base, worker: 'w' }, { maxPayload: 250 });
  const second = encodeResultFrames({ ...base, worker: 'a-much-longer-worker-name' }, { maxPayload: 250 });
  assert.notEqual(first.length, second.length, 'the two workers split the row differently');
  const assembler = new RequestAssembler({ id: 'redo', rows: 1 });
  // The first worker died after its first part; the redelivery sends every part.
  assembler.add(decodeResult(first[0]!));
  assert.equal(assembler.complete, false);
  for (const f of second) assembler.add(decodeResult(f));
  assert.ok(assembler.complete);
  assert.deepEqual(assembler.result().data, expected(data, 'f16'));
});

test('frames - token-level rows of different lengths are zero-padded to the longest', () => {
  const short = new Float32Array([1, 2, 3, 4]); // 2 tokens × 2
  const long = new Float32Array([5, 6, 7, 8, 9, 10]); // 3 tokens × 2
  const assembler = new RequestAssembler({ id: 'pad', rows: 2 });
  for (const f of encodeResultFrames(
    { id: 'pad', offset: 0, rows: 1, shape: [2, 2], dtype: 'f32', data: short },
    { maxPayload: 4096 },
  ))
    assembler.add(decodeResult(f));
  for (const f of encodeResultFrames(
    { id: 'pad', offset: 1, rows: 1, shape: [3, 2], dtype: 'f32', data: long },
    { maxPayload: 4096 },
  ))
    assembler.add(decodeResult(f));
  const result = assembler.result();
  assert.deepEqual(result.shape, [2, 3, 2]);
  assert.deepEqual([...result.data], [1, 2, 3, 4, 0, 0, 5, 6, 7, 8, 9, 10]);
});

test('frames - the assembler refuses frames that cannot belong to its request', () => {
  const frame = (offset: number, rows: number, shape: number[], id = 'r') =>
    decodeResult(
      encodeResultFrames(
        { id, offset, rows, shape, dtype: 'f32', data: new Float32Array(rows * shape.reduce((a, b) => a * b, 1)) },
        { maxPayload: 4096 },
      )[0]!,
    );
  const assembler = new RequestAssembler({ id: 'r', rows: 4, rowShape: [8] });
  assert.throws(
    () => assembler.add(frame(0, 1, [8], 'other')),
    /frame of request other given to the assembler of request r/,
  );
  assert.throws(() => assembler.add(frame(3, 2, [8])), /holds rows 3\.\.4, but the request has 4 rows/);
  assert.throws(() => assembler.add(frame(0, 1, [9])), /row shape \[9\], expected \[8\]/);
  assert.throws(() => assembler.add(frame(0, 1, [2, 8])), /row shape \[2,8\], expected \[8\]/);
  assembler.add(frame(0, 2, [8]));
  assert.throws(
    () => assembler.result(),
    (err: unknown) => err instanceof InternalError && /rows 2-3 of 4 are missing/.test(err.message),
  );
});

test('frames - encoding refuses a max_payload too small for the headers, naming it', () => {
  assert.throws(
    () =>
      encodeResultFrames(
        { id: 'r', offset: 0, rows: 1, shape: [4], dtype: 'f32', data: new Float32Array(4) },
        { maxPayload: 100 },
      ),
    (err: unknown) =>
      err instanceof TooLargeError && /max_payload of 100 bytes cannot hold one result frame/.test(err.message),
  );
  assert.throws(
    () =>
      encodeResultFrames(
        { id: 'r', offset: 0, rows: 2, shape: [4], dtype: 'f32', data: new Float32Array(4) },
        { maxPayload: 4096 },
      ),
    /data has 4 values, expected 8/,
  );
});

test('frames - every error code round-trips through an error frame to the same typed class', () => {
  for (const code of Object.keys(ERROR_CODES)) {
    const err = errorFromCode(code, `boom for ${code}`, { details: { row: 3 } });
    const frame = encodeErrorFrame({ id: 'req', offset: 16, rows: 8 }, err);
    assert.equal(frame.headers[HEADERS.serviceErrorCode], String(ERROR_CODES[code as keyof typeof ERROR_CODES].status));
    assert.equal(frame.headers[HEADERS.errorCode], code);
    assert.equal(frame.headers[HEADERS.serviceError], `boom for ${code}`);
    assert.deepEqual(JSON.parse(new TextDecoder().decode(frame.body)), {
      code,
      message: `boom for ${code}`,
      details: { row: 3 },
    });
    const decoded = decodeFrame(frame.headers, frame.body);
    assert.equal(decoded.kind, 'error');
    if (decoded.kind !== 'error') continue;
    assert.equal(decoded.id, 'req');
    assert.equal(decoded.offset, 16);
    assert.equal(decoded.rows, 8);
    assert.equal(decoded.error.constructor, err.constructor);
    assert.equal(decoded.error.code, code);
    assert.equal(decoded.error.message, err.message);
    assert.deepEqual(decoded.error.details, { row: 3 });
  }
});

test('frames - an error message with line breaks and non-ASCII stays one ASCII header line; the body keeps it whole', () => {
  const err = new TimeoutError('row "caf\u00e9"\r\ntimed out');
  const frame = encodeErrorFrame({ id: 'r' }, err);
  assert.match(frame.headers[HEADERS.serviceError]!, /^[\x20-\x7e]+$/);
  const decoded = decodeFrame(frame.headers, frame.body);
  assert.ok(decoded.kind === 'error' && decoded.error instanceof TimeoutError && decoded.error.message === err.message);
});

test('frames - an error frame is cut to fit max_payload', () => {
  const err = new InternalError('x'.repeat(5000), { details: { blob: 'y'.repeat(5000) } });
  const frame = encodeErrorFrame({ id: 'r' }, err, { maxPayload: 1500 });
  assert.ok(messageWireSize(frame.headers, frame.body) <= 1500);
  const decoded = decodeFrame(frame.headers, frame.body);
  assert.ok(
    decoded.kind === 'error' && decoded.error instanceof InternalError && decoded.error.message.startsWith('xxx'),
  );
});

test('frames - an error with only services-framework headers still becomes its typed class', () => {
  const timeout = decodeErrorReply(
    { [HEADERS.serviceErrorCode]: '504', [HEADERS.serviceError]: 'too slow' },
    new Uint8Array(0),
  );
  assert.ok(timeout instanceof TimeoutError);
  assert.equal(timeout.message, 'too slow');
  const unknown = decodeErrorReply({ [HEADERS.serviceErrorCode]: '418' }, new Uint8Array(0));
  assert.ok(unknown instanceof BertqError);
  assert.equal(unknown.code, 'INTERNAL');
  assert.equal(decodeErrorReply({ [HEADERS.id]: 'x' }, new Uint8Array(0)), undefined);
});

test('frames - malformed result frames are refused with an InternalError naming the request', () => {
  const [good] = encodeResultFrames(
    { id: 'm', offset: 0, rows: 2, shape: [3], dtype: 'f32', data: new Float32Array(6) },
    { maxPayload: 4096 },
  );
  const h = good!.headers;
  const cases: Array<[Record<string, string>, Uint8Array, RegExp]> = [
    [{ ...h, [HEADERS.id]: undefined as unknown as string }, good!.body, /no Bertq-Id header/],
    [{ ...h, [HEADERS.rows]: 'x' }, good!.body, /request m: Bertq-Rows is missing/],
    [{ ...h, [HEADERS.shape]: '3,3' }, good!.body, /does not start with the row count 2/],
    [{ ...h, [HEADERS.dtype]: 'f64' }, good!.body, /Bertq-Dtype must be f32, f16 or json/],
    [h, good!.body.subarray(0, 20), /body is 20 bytes, expected 24/],
    [{ ...h, [HEADERS.tokens]: '[["a"]]' }, good!.body, /JSON array of 2 token lists/],
    [
      { ...h, [HEADERS.part]: '3/2', [HEADERS.rows]: '1', [HEADERS.shape]: '1,3' },
      good!.body,
      /Bertq-Part must be i\/n/,
    ],
    [
      { ...h, [HEADERS.dtype]: 'json' },
      new TextEncoder().encode('[[1,2,3],[4,5]]'),
      /json result body\[1\] must be an array of 3, got an array of 2/,
    ],
  ];
  for (const [headers, body, message] of cases) {
    const clean = Object.fromEntries(Object.entries(headers).filter(([, v]) => v !== undefined));
    assert.throws(
      () => decodeFrame(clean, body),
      (err: unknown) => err instanceof InternalError && message.test(err.message),
      String(message),
    );
  }
});
