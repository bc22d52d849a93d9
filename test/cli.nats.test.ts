/**
 * The `bertq` command line as a user runs it: `bertq start` (with its embedded nats-server),
 * `bertq encode`, `bertq status`, `bertq terminate` — real processes, real NATS, the tiny model.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Encoder, detectInt8Kernel } from '@bertq/model';
import { freePort, maxAbsDiff, startNatsServer, tinyModel, waitFor, type TinyModelFixture } from '@bertq/testing';
import { BIN, runBertq, startBertq, workerPidsOf, type Run, type Started } from './cli-fixtures.js';

const START_TIMEOUT_MS = 60_000;
const COMMAND_TIMEOUT_MS = 30_000;
const TEST_TIMEOUT_MS = 120_000;
const TOLERANCE = 1e-6;

let tiny: TinyModelFixture;
let home: string;

before(async () => {
  tiny = await tinyModel();
  home = await mkdtemp(join(tmpdir(), 'bertq-cli-'));
});
after(async () => {
  await rm(home, { recursive: true, force: true });
});

function env(): NodeJS.ProcessEnv {
  return { ...process.env, BERTQ_CACHE: join(home, 'cache'), BERTQ_LOG_LEVEL: 'warn', NO_COLOR: '1' };
}

/** Runs `bertq …` to completion, with a deadline. */
function bertq(args: string[], input?: string): Promise<Run> {
  return runBertq(args, { env: env(), timeoutMs: COMMAND_TIMEOUT_MS, ...(input === undefined ? {} : { input }) });
}

/** Starts `bertq start …` and waits for its ready line. */
function startFleet(args: string[]): Promise<Started> {
  return startBertq(args, { env: env(), timeoutMs: START_TIMEOUT_MS });
}

test('cli - bertq start (embedded nats-server) + bertq encode "hello world" prints the vector Encoder.encode computes', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const port = await freePort();
  const server = `nats://127.0.0.1:${port}`;
  const fleet = await startFleet([
    '--model',
    tiny.huggingFaceDir,
    '--server',
    server,
    '--num-worker',
    '1',
    '--threads',
    '1',
    '--graph-tmp-dir',
    tiny.graphDir,
  ]);
  try {
    assert.match(fleet.stderr(), /started an embedded nats-server -js at nats:\/\/127\.0\.0\.1:\d+/);
    assert.match(fleet.stderr(), /32-dim vectors, 1 worker\(s\) on cpu/);

    const enc = await Encoder.load({ model: tiny.huggingFaceDir, graphTmpDir: tiny.graphDir, threads: 1 });
    try {
      const want = await enc.encode(['hello world', 'First do it ||| then do it right']);
      const run = await bertq(['encode', 'hello world', 'First do it ||| then do it right', '--server', server]);
      assert.equal(run.code, 0, run.stderr);
      const lines = run.stdout.trim().split('\n');
      assert.equal(lines.length, 2, 'one JSON array per sentence');
      const got = Float32Array.from(lines.flatMap((l) => JSON.parse(l) as number[]));
      assert.ok(maxAbsDiff(got, want.data) <= TOLERANCE, `max diff ${maxAbsDiff(got, want.data)}`);

      // a file through --file into .npy, and stdin into CSV
      const file = join(home, 'lines.txt');
      const texts = Array.from({ length: 300 }, (_, i) => `sentence number ${i} about ${i % 7 ? 'rivers' : 'stones'}`);
      await writeFile(file, `${texts.join('\n')}\n`);
      const npy = join(home, 'out.npy');
      const viaFile = await bertq([
        'encode',
        '--file',
        file,
        '--output',
        npy,
        '--server',
        server,
        '--batch-size',
        '64',
      ]);
      assert.equal(viaFile.code, 0, viaFile.stderr);
      assert.match(viaFile.stderr, /encode done: 300 rows/, 'a progress summary with the row count');
      const bytes = await readFile(npy);
      const headerLen = bytes.readUInt16LE(8);
      assert.match(
        bytes.subarray(10, 10 + headerLen).toString('latin1'),
        /'descr': '<f4', 'fortran_order': False, 'shape': \(300, 32\)/,
      );
      const data = new Float32Array(
        bytes.buffer.slice(bytes.byteOffset + 10 + headerLen, bytes.byteOffset + bytes.length),
      );
      const wantFile = await enc.encode(texts);
      assert.ok(maxAbsDiff(data, wantFile.data) <= TOLERANCE);

      const csv = await bertq(['encode', '--format', 'csv', '--server', server, '--no-progress'], 'hello world\n');
      assert.equal(csv.code, 0, csv.stderr);
      assert.equal(csv.stdout.trim().split(',').length, 32);

      // A row the service would cut, with --check-length raise: the error names its line in the file.
      const longFile = join(home, 'long.txt');
      const long = Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ');
      await writeFile(longFile, ['one', 'two', 'three', long, 'five'].join('\n'));
      const tooLong = await bertq([
        'encode',
        '--file',
        longFile,
        '--check-length',
        'raise',
        '--batch-size',
        '2',
        '--server',
        server,
        '--no-progress',
      ]);
      assert.notEqual(tooLong.code, 0);
      assert.match(tooLong.stderr, /TOO_LONG/);
      assert.match(tooLong.stderr.replace(/\s*\n\s*›?\s*/g, ' '), /line 4 of \S*long\.txt/);
    } finally {
      await enc.close();
    }

    const status = await bertq(['status', '--json', '--server', server]);
    assert.equal(status.code, 0, status.stderr);
    const doc = JSON.parse(status.stdout) as { num_workers: number; statistic: { num_total_seq: number } };
    assert.equal(doc.num_workers, 1);
    assert.ok(doc.statistic.num_total_seq >= 303);

    const table = await bertq(['status', '--server', server]);
    assert.match(table.stdout, /service default: 1 worker\(s\) \(1 ready/);
    // Each worker with the machine and process it runs as: an operator can find it.
    assert.match(table.stdout, new RegExp(`\\s${hostname().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s+\\d+\\s+ready`));

    const term = await bertq(['terminate', '--server', server]);
    assert.equal(term.code, 0, term.stderr);
    assert.match(term.stdout, /draining/);
    assert.equal(
      await Promise.race([fleet.exited, new Promise((r) => setTimeout(() => r('still running'), COMMAND_TIMEOUT_MS))]),
      0,
    );
    // the embedded server went with it
    const after = await bertq(['encode', 'hello', '--server', server]);
    assert.notEqual(after.code, 0);
    assert.match(after.stderr, /NO_WORKERS/);
  } finally {
    fleet.child.kill('SIGKILL');
  }
});

test('cli - bertq encode with no worker fails fast with NO_WORKERS', { timeout: TEST_TIMEOUT_MS }, async () => {
  const nats = await startNatsServer();
  try {
    const t0 = Date.now();
    const run = await bertq(['encode', 'hello world', '--server', nats.url, '--service', 'nobody-home']);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /NO_WORKERS: .*nobody-home/);
    assert.ok(Date.now() - t0 < COMMAND_TIMEOUT_MS);
    // --json: the error is JSON on stdout, as the success would have been.
    const json = await bertq(['status', '--json', '--server', nats.url, '--service', 'nobody-home']);
    assert.equal(json.code, 1);
    const doc = JSON.parse(json.stdout) as { error: { code: string; message: string } };
    assert.equal(doc.error.code, 'NO_WORKERS');
    // An HTTP URL given as --server is named at once.
    const http = await bertq(['status', '--server', 'http://127.0.0.1:8125']);
    assert.equal(http.code, 1);
    assert.match(http.stderr, /BAD_REQUEST: http:\/\/127\.0\.0\.1:8125 is not a NATS URL/);
  } finally {
    await nats.stop();
  }
});

test('cli - bertq start on a NATS server without JetStream says how to enable it', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const nats = await startNatsServer({ jetstream: false });
  try {
    const run = await bertq(['start', '--model', tiny.huggingFaceDir, '--server', nats.url, '--threads', '1']);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /JetStream/);
    assert.match(run.stderr, /-js|jetstream \{\}/);
  } finally {
    await nats.stop();
  }
});

test('cli - bertq start without a model, or with a bad flag, says what is wrong', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const none = await bertq(['start', '--server', 'nats://127.0.0.1:1']);
  assert.notEqual(none.code, 0);
  assert.match(none.stderr, /no model: give --model-dir/);
  const bad = await bertq(['start', '--model', tiny.huggingFaceDir, '--max-seq-len', 'lots']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--max-seq-len must be an integer of at least 3 or NONE/);
  const both = await bertq(['start', '--model', tiny.huggingFaceDir, '--fp16', '--precision', 'int8']);
  assert.notEqual(both.code, 0);
  assert.match(both.stderr, /--fp16 contradicts --precision int8/);

  // A taken --http-port fails at once, before any model is loaded or worker forked.
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  try {
    const port = (taken.address() as { port: number }).port;
    const started = performance.now();
    const busy = await bertq([
      'start',
      '--model',
      tiny.huggingFaceDir,
      '--http-port',
      String(port),
      '--server',
      'nats://127.0.0.1:1',
    ]);
    assert.notEqual(busy.code, 0);
    assert.match(busy.stderr, new RegExp(`--http-port ${port} is taken on 127\\.0\\.0\\.1`));
    assert.doesNotMatch(busy.stderr, /model prepared|bertq ready/);
    assert.ok(performance.now() - started < COMMAND_TIMEOUT_MS);
  } finally {
    await new Promise((resolve) => taken.close(resolve));
  }
});

test('cli - bertq start fails closed: with a user and password and nothing answering, it starts no open nats-server', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const port = await freePort();
  const passwordFile = join(home, 'worker-password');
  await writeFile(passwordFile, 'not-started-in-the-open\n', { mode: 0o600 });
  const run = await bertq([
    'start',
    '--model',
    tiny.huggingFaceDir,
    '--server',
    `nats://127.0.0.1:${port}`,
    '--user',
    'worker',
    '--password-file',
    passwordFile,
  ]);
  assert.notEqual(run.code, 0);
  const said = run.stderr.replace(/\s*›\s*/g, ' ').replace(/\s+/g, ' '); // oclif wraps its error lines
  assert.match(said, /will not start an open one there because a user, a password were given/);
  assert.doesNotMatch(run.stderr, /started an embedded nats-server|not-started-in-the-open/);
  // Nothing listens on the port.
  const probe = createServer();
  await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(port, '127.0.0.1', resolve));
  await new Promise((resolve) => probe.close(resolve));
});

test('cli - bertq start --precision int8 serves int8 vectors within cosine 0.99 of float32, and says so', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const server = `nats://127.0.0.1:${await freePort()}`;
  const fleet = await startFleet([
    '--model',
    tiny.huggingFaceDir,
    '--server',
    server,
    '--num-worker',
    '1',
    '--threads',
    '1',
    '--graph-tmp-dir',
    tiny.graphDir,
    '--precision',
    'int8',
  ]);
  try {
    const texts = ['hello world', 'the rivers run to the sea', 'First do it ||| then do it right'];
    const run = await bertq(['encode', ...texts, '--server', server]);
    assert.equal(run.code, 0, run.stderr);
    const rows = run.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as number[]);
    const enc = await Encoder.load({ model: tiny.huggingFaceDir, graphTmpDir: tiny.graphDir, threads: 1 });
    try {
      const want = await enc.encode(texts);
      const d = want.shape[1]!;
      rows.forEach((row, r) => {
        const ref = want.data.subarray(r * d, (r + 1) * d);
        const dot = row.reduce((a, v, i) => a + v * ref[i]!, 0);
        const cos = dot / Math.hypot(...row) / Math.hypot(...ref);
        assert.ok(cos >= 0.99 && cos < 0.999999, `row ${r}: cosine ${cos} to float32`);
      });
    } finally {
      await enc.close();
    }
    // The int8 kernel path: logged once at start, shown by status, in the config endpoint.
    const kernel = await detectInt8Kernel();
    assert.ok(fleet.stderr().includes(`int8 on ${kernel.path}`), fleet.stderr());
    const status = await bertq(['status', '--server', server]);
    assert.match(status.stdout, /· int8/);
    assert.ok(status.stdout.includes(`int8 kernel: ${kernel.path}`), status.stdout);
    const config = await bertq(['status', '--json', '--server', server]);
    const doc = JSON.parse(config.stdout) as {
      workers: Array<{ config: { precision: string; int8_kernel?: { weight_bits: number; exact: boolean } } }>;
    };
    assert.equal(doc.workers[0]!.config.precision, 'int8');
    assert.deepEqual(
      { bits: doc.workers[0]!.config.int8_kernel?.weight_bits, exact: doc.workers[0]!.config.int8_kernel?.exact },
      { bits: kernel.weightBits, exact: kernel.exact },
    );
  } finally {
    fleet.child.kill('SIGKILL');
    await fleet.exited;
  }
});

/** Runs `bertq …args` with stdin fed by `produce` (a real pipe), to completion, with a deadline. */
function bertqPiped(args: string[], produce: (stdin: NodeJS.WritableStream) => Promise<void>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: env(), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.stdin.on('error', () => undefined); // the command may stop reading early; that is its right
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`bertq ${args.join(' ')} did not finish within ${COMMAND_TIMEOUT_MS} ms\n${stderr}`));
    }, COMMAND_TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    void produce(child.stdin).then(() => child.stdin.end());
  });
}

test('cli - bertq encode: piped stdin is one row per line, output files are whole or absent, a closed pipe is a quiet stop', {
  timeout: TEST_TIMEOUT_MS * 2,
}, async () => {
  const port = await freePort();
  const server = `nats://127.0.0.1:${port}`;
  const fleet = await startFleet([
    '--model',
    tiny.huggingFaceDir,
    '--server',
    server,
    '--num-worker',
    '1',
    '--threads',
    '1',
    '--graph-tmp-dir',
    tiny.graphDir,
  ]);
  const enc = await Encoder.load({ model: tiny.huggingFaceDir, graphTmpDir: tiny.graphDir, threads: 1 });
  try {
    // A fast producer: 3,000 lines written at once through a real pipe.
    const lines = Array.from({ length: 3_000 }, (_, i) => `line ${i} of the piped input`);
    const fast = await bertqPiped(['encode', '--format', 'csv', '--server', server, '--no-progress'], async (stdin) => {
      stdin.write(`${lines.join('\n')}\n`);
    });
    assert.equal(fast.code, 0, fast.stderr);
    const rows = fast.stdout.trim().split('\n');
    assert.equal(rows.length, 3_000, 'one row per piped line');
    const want = await enc.encode([lines[0]!, lines[2_999]!]);
    const got = Float32Array.from([...rows[0]!.split(','), ...rows[2_999]!.split(',')].map(Number));
    assert.ok(maxAbsDiff(got, want.data) <= 1e-5, 'first and last rows are those lines, in order');

    // A slow producer: lines trickle in over time; each still becomes its own row.
    const slow = await bertqPiped(
      ['encode', '--server', server, '--no-progress', '--batch-size', '2'],
      async (stdin) => {
        for (const text of ['hello', 'world', 'third line']) {
          stdin.write(`${text}\n`);
          await new Promise((r) => setTimeout(r, 200));
        }
      },
    );
    assert.equal(slow.code, 0, slow.stderr);
    const slowRows = slow.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as number[]);
    assert.equal(slowRows.length, 3);
    const hello = await enc.encode(['hello']);
    assert.ok(maxAbsDiff(Float32Array.from(slowRows[0]!), hello.data) <= 1e-5, '"hello" alone, not "hello world"');

    // A failure half-way (an empty line 150 of 300) leaves no output file and no partial file.
    const folder = await mkdtemp(join(home, 'out-'));
    const file = join(folder, 'in.txt');
    await writeFile(file, `${Array.from({ length: 300 }, (_, i) => (i === 149 ? '' : `sentence ${i}`)).join('\n')}\n`);
    const npy = join(folder, 'vectors.npy');
    const failed = await bertq([
      'encode',
      '--file',
      file,
      '--output',
      npy,
      '--server',
      server,
      '--batch-size',
      '50',
      '--no-progress',
    ]);
    assert.notEqual(failed.code, 0);
    assert.match(failed.stderr, /line 150 is empty/);
    assert.match(failed.stderr, /vectors\.npy was not written/);
    assert.deepEqual(await readdir(folder), ['in.txt'], 'neither vectors.npy nor a .partial file is left');

    // A missing output folder is one line, not a stack trace.
    const missing = await bertq([
      'encode',
      'hello',
      '--output',
      join(folder, 'no', 'such', 'dir', 'v.npy'),
      '--server',
      server,
    ]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /the folder .*no\/such\/dir does not exist/);
    assert.doesNotMatch(missing.stderr, /Unhandled| {4}at /);

    // `| head -1`: the reader goes away after one line; the writer stops quietly with 0.
    await writeFile(join(folder, 'many.txt'), `${Array.from({ length: 4_000 }, (_, i) => `row ${i}`).join('\n')}\n`);
    const headRun = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        [BIN, 'encode', '--file', join(folder, 'many.txt'), '--server', server, '--no-progress', '--batch-size', '500'],
        { env: env(), stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      child.stdout.once('data', () => child.stdout.destroy());
      const timer = setTimeout(
        () => (child.kill('SIGKILL'), reject(new Error('encode | head did not end'))),
        COMMAND_TIMEOUT_MS,
      );
      child.on('close', (code) => (clearTimeout(timer), resolve({ code, stderr })));
    });
    assert.equal(headRun.code, 0, headRun.stderr);
    assert.doesNotMatch(headRun.stderr, /EPIPE/);

    // npy without --output goes to stdout when it is a pipe (a terminal is refused with a hint).
    const npyPipe = await bertq(['encode', 'hello', '--format', 'npy', '--server', server]);
    assert.equal(npyPipe.code, 0, npyPipe.stderr);
    assert.equal(npyPipe.stdout.slice(1, 6), 'NUMPY');

    // .json is one JSON array (json.load reads it), .jsonl one per line; an unknown extension is refused.
    const asJson = join(folder, 'v.json');
    const wroteJson = await bertq(['encode', 'hello', 'world', '--output', asJson, '--server', server]);
    assert.equal(wroteJson.code, 0, wroteJson.stderr);
    const parsed = JSON.parse(await readFile(asJson, 'utf8')) as number[][];
    assert.equal(parsed.length, 2);
    const jsonOut = await bertq(['encode', 'hello', '--format', 'json', '--server', server]);
    assert.equal((JSON.parse(jsonOut.stdout) as number[][]).length, 1);
    const txt = await bertq(['encode', 'hello', '--output', join(folder, 'v.txt'), '--server', server]);
    assert.equal(txt.code, 1);
    assert.match(
      txt.stderr,
      /^BAD_REQUEST: cannot tell the format of --output \S+v\.txt .*\.jsonl, \.ndjson, \.json, \.npy, \.csv/m,
    );

    // Every error is one CODE: message line, paths whole; warnings name the CLI's flags.
    const longPath = join(
      folder,
      'a-folder-with-a-rather-long-name-to-wrap',
      'another-long-folder-name',
      'sentences.txt',
    );
    const noFile = await bertq(['encode', '--file', longPath, '--server', server, '--no-progress']);
    assert.equal(noFile.code, 1);
    assert.equal(noFile.stderr.trim().split('\n').length, 1, noFile.stderr);
    assert.match(noFile.stderr, /^BAD_REQUEST: .*no such file/);
    assert.ok(noFile.stderr.includes(longPath), 'the path is whole');
    const empty = await bertqPiped(['encode', '--server', server, '--no-progress'], async (stdin) => {
      stdin.write('\n');
    });
    assert.match(empty.stderr, /^BAD_REQUEST: line 1 is empty/m);
    const warned = await bertq(['encode', Array.from({ length: 60 }, () => 'word').join(' '), '--server', server]);
    assert.equal(warned.code, 0, warned.stderr);
    assert.match(warned.stderr, /^warning: .*--check-length raise/m);
    assert.doesNotMatch(warned.stderr, /\(node:\d+\)|checkLength/);
  } finally {
    await enc.close();
    fleet.child.kill('SIGTERM');
    await Promise.race([fleet.exited, new Promise((r) => setTimeout(r, COMMAND_TIMEOUT_MS))]);
    fleet.child.kill('SIGKILL');
  }
});

test('cli - bert-serving-start takes bert-as-service syntax; a mistyped flag suggests the right one', {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const SERVING_START = fileURLToPath(new URL('../../cli/bin/bert-serving-start.js', import.meta.url));
  const typo = await bertq(['start', '--modl-dir', tiny.huggingFaceDir]);
  assert.equal(typo.code, 2);
  assert.match(typo.stderr, /unknown flag --modl-dir: did you mean --model-dir\?/);
  assert.doesNotMatch(typo.stderr, /CONNECTION FLAGS/, 'no help dump');

  const port = await freePort();
  const clientPort = await freePort();
  const run = spawn(
    process.execPath,
    [
      SERVING_START,
      '-model_dir',
      tiny.huggingFaceDir,
      '-num_worker',
      '1',
      '-pooling_layer',
      '-1',
      '-2',
      '-port',
      String(clientPort),
      '-xla',
      '-graph_tmp_dir',
      tiny.graphDir,
      '-server',
      `nats://127.0.0.1:${port}`,
    ],
    { env: env(), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  run.stderr.on('data', (d) => (stderr += d));
  run.stdout.resume();
  try {
    await waitFor(
      'bert-serving-start to be ready',
      () => {
        if (run.exitCode !== null) throw new Error(`bert-serving-start exited ${run.exitCode}:\n${stderr}`);
        return stderr.includes(`BertClient(port=${clientPort})`);
      },
      START_TIMEOUT_MS,
      100,
    );
    // -port is where bert-as-service's clients connect: an HTTP gateway there, on the -server given.
    const answer = await fetch(`http://127.0.0.1:${clientPort}/encode`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ id: 1, texts: ['hello'] }),
    });
    assert.equal(answer.status, 200);
    assert.match(stderr, new RegExp(`on nats://127\\.0\\.0\\.1:${port},`), 'the fleet is on the -server given');
    assert.match(stderr, /bert-serving-start: -xla is ignored/);
    // Two pooled layers of the 32-dim tiny model, side by side.
    assert.match(stderr, /64-dim vectors/);
    const term = await bertq(['terminate', '--server', `nats://127.0.0.1:${port}`]);
    assert.equal(term.code, 0, term.stderr);
  } finally {
    run.kill('SIGKILL');
  }
});

test('cli - bertq terminate --service a leaves the embedded nats-server up while service b uses it', {
  timeout: TEST_TIMEOUT_MS * 2,
}, async () => {
  const server = `nats://127.0.0.1:${await freePort()}`;
  const common = ['--model', tiny.huggingFaceDir, '--server', server, '--num-worker', '1', '--threads', '1'];
  const a = await startFleet([...common, '--graph-tmp-dir', tiny.graphDir, '--service', 'svc-a']);
  const b = await startFleet([...common, '--graph-tmp-dir', tiny.graphDir, '--service', 'svc-b']);
  try {
    assert.match(a.stderr(), /started an embedded nats-server/);
    assert.doesNotMatch(b.stderr(), /started an embedded nats-server/, 'b uses the server a started');
    const termA = await bertq(['terminate', '--server', server, '--service', 'svc-a']);
    assert.equal(termA.code, 0, termA.stderr);
    await waitFor(
      'a to say it keeps the server for b',
      () => /stays up while service\(s\) svc-b use it/.test(a.stderr()),
      20_000,
      100,
    );
    const stillServing = await bertq(['encode', 'hello', '--server', server, '--service', 'svc-b']);
    assert.equal(stillServing.code, 0, stillServing.stderr);

    const termB = await bertq(['terminate', '--server', server, '--service', 'svc-b']);
    assert.equal(termB.code, 0, termB.stderr);
    const exits = await Promise.race([
      Promise.all([a.exited, b.exited]),
      new Promise((resolve) => setTimeout(() => resolve('still running'), 30_000)),
    ]);
    assert.deepEqual(exits, [0, 0], 'both ended once nobody used the server');
    const gone = await bertq(['status', '--server', server]);
    assert.match(gone.stderr, /NO_WORKERS/, 'and the server went with the last of them');
  } finally {
    a.child.kill('SIGKILL');
    b.child.kill('SIGKILL');
  }
});

test('cli - bertq start --health-port: /healthz while the supervisor runs, /readyz only while every worker is ready', {
  timeout: TEST_TIMEOUT_MS * 2,
}, async () => {
  const nats = await startNatsServer();
  const port = await freePort();
  const url = (path: string) => `http://127.0.0.1:${port}${path}`;
  const probe = async (path: string) => {
    const res = await fetch(url(path), { signal: AbortSignal.timeout(5_000) });
    return { status: res.status, body: (await res.json()) as { status: string; detail: string } };
  };
  const fleet = await startFleet([
    '--model',
    tiny.huggingFaceDir,
    '--graph-tmp-dir',
    tiny.graphDir,
    '--server',
    nats.url,
    '--num-worker',
    '2',
    '--threads',
    '1',
    '--health-port',
    String(port),
  ]);
  try {
    assert.deepEqual(await probe('/healthz'), { status: 200, body: { status: 'ok', detail: 'running' } });
    assert.deepEqual(await probe('/readyz'), { status: 200, body: { status: 'ok', detail: '2 of 2 workers ready' } });
    const other = await fetch(url('/metrics'), { signal: AbortSignal.timeout(5_000) });
    assert.equal(other.status, 404);
    await other.text();

    // A killed worker: not ready until the supervisor has restarted it; alive all along.
    const [victim] = workerPidsOf(fleet.child.pid!);
    assert.ok(victim, 'found a worker process');
    process.kill(victim, 'SIGKILL');
    await waitFor(
      '/readyz to say a worker is missing',
      async () => (await probe('/readyz')).status === 503,
      10_000,
      20,
    );
    assert.equal((await probe('/healthz')).status, 200, 'the supervisor is alive while it restarts the worker');
    await waitFor('/readyz to recover', async () => (await probe('/readyz')).status === 200, 30_000, 100);
  } finally {
    fleet.child.kill('SIGTERM');
    await fleet.exited;
    await nats.stop();
  }
  // Gone with the fleet.
  await assert.rejects(fetch(url('/healthz'), { signal: AbortSignal.timeout(2_000) }));
});
