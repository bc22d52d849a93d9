import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import {
  ERROR_CODES,
  SCHEMA_FILES,
  SCHEMAS,
  VALIDATORS,
  compiledSchemaId,
  validateServerConfig,
  validateServerStatus,
  decodeControlReply,
  encodeErrorFrame,
  serviceMetadata,
  OverloadedError,
  InternalError,
  type ServerConfig,
  type ServerStatus,
  type SchemaName,
} from '../src/index.js';

// dist/test/ → package root
const schemaDir = fileURLToPath(new URL('../../schemas/', import.meta.url));
const encoder = new TextEncoder();

test('schemas - the validators are compiled from the schema files on disk', () => {
  const onDisk = readdirSync(schemaDir)
    .filter((f) => f.endsWith('.json'))
    .sort();
  assert.deepEqual(onDisk, Object.values(SCHEMA_FILES).sort(), 'every schema file is loaded, and only those');
  for (const [name, file] of Object.entries(SCHEMA_FILES) as Array<[SchemaName, string]>) {
    const fromDisk = JSON.parse(readFileSync(join(schemaDir, file), 'utf8')) as { $id: string };
    assert.equal(compiledSchemaId(name), fromDisk.$id, `${file} is the compiled schema`);
    assert.deepEqual(SCHEMAS[name], fromDisk);
    assert.match(fromDisk.$id, new RegExp(`/${file.replace('.', '\\.')}$`), 'the $id names the file and its version');
  }
});

test('schemas - the error schema lists exactly the registry codes', () => {
  const codes = (SCHEMAS.error as unknown as { properties: { code: { enum: string[] } } }).properties.code.enum;
  assert.deepEqual([...codes].sort(), Object.keys(ERROR_CODES).sort());
  assert.equal(VALIDATORS.error({ code: 'TIMEOUT', message: 'late' }), true);
  assert.equal(VALIDATORS.error({ code: 'LATE', message: 'late' }), false);
});

function sampleConfig(): ServerConfig {
  return {
    protocol: 'bertq.v1',
    service: 'default',
    worker_id: 'W1a2b3c',
    server_version: '0.1.0',
    server_start_time: '2025-01-01T00:00:00.000Z',
    server_current_time: '2025-01-01T00:01:00.000Z',
    model_dir: '/models/uncased_L-12_H-768_A-12',
    tuned_model_dir: null,
    ckpt_name: 'bert_model.ckpt',
    config_name: 'bert_config.json',
    graph_tmp_dir: null,
    model_format: 'google-checkpoint',
    model: {
      hidden_size: 768,
      num_hidden_layers: 12,
      num_attention_heads: 12,
      max_position_embeddings: 512,
      vocab_size: 30522,
    },
    max_seq_len: 25,
    cased_tokenization: false,
    mask_cls_sep: false,
    max_batch_size: 256,
    priority_batch_size: 16,
    pooling_strategy: 'REDUCE_MEAN',
    pooling_layer: [-2],
    fp16: false,
    device: 'cpu',
    show_tokens_to_client: false,
    max_payload: 1048576,
    output_shape: [768],
    versions: { node: '20.0.0', onnxruntime: '1.20.0' },
  };
}

function sampleStatus(): ServerStatus {
  const stage = { count: 10, avg_ms: 1.5, p50_ms: 1.2, p99_ms: 4, max_ms: 5 };
  return {
    protocol: 'bertq.v1',
    service: 'default',
    worker_id: 'W1a2b3c',
    server_current_time: '2025-01-01T00:01:00.000Z',
    uptime_s: 60,
    state: 'ready',
    config: sampleConfig(),
    statistic: {
      num_data_request: 10,
      num_total_seq: 120,
      num_sys_request: 2,
      num_total_request: 12,
      num_exception: 0,
    },
    queue: {
      high: { pending: 0, ack_pending: 1, redelivered: 0, waiting: 1 },
      bulk: { pending: 42, ack_pending: 2 },
      local_rows: 64,
      local_bound: 1024,
    },
    timings: { tokenization: stage, queue: stage, inference: stage, total: stage },
    batches: { num_batch: 5, avg_rows: 24, avg_padded_tokens: 600, padding_ratio: 1.1 },
  };
}

test('schemas - a full config and status validate, and unknown fields are allowed', () => {
  validateServerConfig(sampleConfig());
  validateServerConfig({ ...sampleConfig(), max_seq_len: null, output_shape: [null, 768], future_field: 1 });
  validateServerStatus(sampleStatus());
  validateServerStatus({
    ...sampleStatus(),
    queue: { ...sampleStatus().queue, high: { pending: null, ack_pending: null } },
  });
});

test('schemas - a broken config or status is refused naming the field', () => {
  assert.throws(
    () => validateServerConfig({ ...sampleConfig(), max_batch_size: 'lots' }),
    /^InternalError: invalid server config: max_batch_size must be integer, got string$/,
  );
  const { device: _device, ...noDevice } = sampleConfig();
  assert.throws(() => validateServerConfig(noDevice), /server config has no "device" field/);
  assert.throws(
    () => validateServerConfig({ ...sampleConfig(), protocol: 'bertq.v2' }),
    /protocol must be "bertq\.v1", got "bertq\.v2"/,
  );
  assert.throws(
    () => validateServerStatus({ ...sampleStatus(), state: 'sleeping' }),
    /state must be one of "starting", "ready", "draining", got "sleeping"/,
  );
  assert.throws(
    () => validateServerStatus({ ...sampleStatus(), config: { ...sampleConfig(), pooling_layer: 'last' } }),
    (err: unknown) =>
      err instanceof InternalError && /config\.pooling_layer must be array, got string/.test(err.message),
  );
  assert.throws(
    () => validateServerStatus({ ...sampleStatus(), timings: { queue: {} } }),
    /timings has no "tokenization" field/,
  );
});

test('schemas - control replies decode to documents or throw their typed error', () => {
  const status = decodeControlReply('status', {}, encoder.encode(JSON.stringify(sampleStatus())));
  assert.equal(status.queue.bulk.pending, 42);
  const config = decodeControlReply('config', {}, encoder.encode(JSON.stringify(sampleConfig())));
  assert.equal(config.max_batch_size, 256);
  const terminate = decodeControlReply(
    'terminate',
    {},
    encoder.encode(
      JSON.stringify({
        protocol: 'bertq.v1',
        service: 'default',
        worker_id: 'w',
        state: 'draining',
        in_flight_jobs: 3,
      }),
    ),
  );
  assert.equal(terminate.in_flight_jobs, 3);
  const error = encodeErrorFrame({}, new OverloadedError('queue full: 1024 rows'));
  assert.throws(
    () => decodeControlReply('status', error.headers, error.body),
    (err: unknown) => err instanceof OverloadedError && err.message === 'queue full: 1024 rows',
  );
  assert.throws(() => decodeControlReply('config', {}, encoder.encode('not json')), /config reply is not JSON/);
  assert.throws(() => decodeControlReply('terminate', {}, encoder.encode('{}')), /terminate reply must be an object/);
});

test('schemas - services-framework metadata is strings, with max_seq_len NONE for null', () => {
  assert.deepEqual(
    serviceMetadata({
      service: 'My_Svc',
      model: 'bert-base-uncased',
      device: 'cuda:0',
      pooling: 'REDUCE_MEAN',
      maxSeqLen: null,
    }),
    {
      protocol: 'bertq.v1',
      service: 'my-svc',
      model: 'bert-base-uncased',
      device: 'cuda:0',
      pooling: 'REDUCE_MEAN',
      max_seq_len: 'NONE',
    },
  );
  assert.equal(
    serviceMetadata({ service: 's', model: 'm', device: 'cpu', pooling: 'CLS_TOKEN', maxSeqLen: 128 }).max_seq_len,
    '128',
  );
});

test('schemas - the bundled schemas and generated types are up to date with the schema files', () => {
  const root = fileURLToPath(new URL('../../../../', import.meta.url));
  const res = spawnSync(process.execPath, [join(root, 'scripts', 'gen-schemas.mjs'), '--check'], { encoding: 'utf8' });
  assert.equal(res.status, 0, `${res.stderr}${res.stdout}`);
});

test('protocol - does no I/O: no source file imports a file-system, network or process module', () => {
  const srcDir = fileURLToPath(new URL('../../src/', import.meta.url));
  const sources = readdirSync(srcDir, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.ts'));
  assert.ok(sources.length > 5);
  for (const file of sources) {
    const text = readFileSync(join(srcDir, file), 'utf8');
    assert.doesNotMatch(text, /from '(node:)?(fs|fs\/promises|net|http|https|child_process|worker_threads)'/, file);
  }
});
