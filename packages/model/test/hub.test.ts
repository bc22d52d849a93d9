import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { BadRequestError, ModelError } from '@bertq/protocol';
import {
  defaultCacheDir,
  downloadModel,
  isHubModelId,
  modelCacheDir,
  type DownloadProgress,
} from '../src/hub/index.js';

/** Fast retries so failure paths stay quick; the stall tests set their own timeout. */
const FAST = { retryDelayMs: 10, stallTimeoutMs: 5_000 } as const;
/** No test here should take near this; it bounds a regression that hangs. */
const TEST_TIMEOUT_MS = 20_000;

// ---------------------------------------------------------------------------------------------
// A local hub: the resolve layout, the model-info API, LFS redirects to a CDN on another origin
// ---------------------------------------------------------------------------------------------

interface RepoFixture {
  sha: string;
  files: Record<string, Buffer>;
  /** Files stored in LFS: the hub redirects them to the CDN with X-Linked-Size / X-Linked-Etag. */
  lfs?: string[];
  /** When set, requests without `Authorization: Bearer <token>` get 401. */
  token?: string;
}

interface LoggedRequest {
  server: 'hub' | 'cdn';
  method: string;
  path: string;
  file: string | undefined;
  range: string | undefined;
  authorization: string | undefined;
}

interface ServeContext {
  server: 'hub' | 'cdn';
  file: string;
  req: http.IncomingMessage;
  res: http.ServerResponse;
  body: Buffer;
  /** How many times this file was served before on this server (0 for the first). */
  count: number;
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
function gitSha1(b: Buffer): string {
  return createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
}
function bytes(n: number, seed = 7): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed + (i >> 8)) % 251;
  return b;
}

/**
 * `plain: true` is a static mirror: no model-info API, no X-Repo-Commit / X-Linked-* / X-Error-Code
 * headers, LFS files served directly. Otherwise it answers like huggingface.co.
 */
class FakeHub {
  readonly repos = new Map<string, RepoFixture>();
  readonly log: LoggedRequest[] = [];
  /** Return true to take over serving a file's bytes (drop, stall, corrupt...). */
  onServe: ((c: ServeContext) => boolean) | undefined;
  private readonly served = new Map<string, number>();

  private constructor(
    private readonly hubServer: http.Server,
    private readonly cdnServer: http.Server,
    readonly plain: boolean,
  ) {}

  static async start(plain = false): Promise<FakeHub> {
    const hub = new FakeHub(http.createServer(), http.createServer(), plain);
    hub.hubServer.on('request', (req, res) => hub.handleHub(req, res));
    hub.cdnServer.on('request', (req, res) => hub.handleCdn(req, res));
    await Promise.all([listen(hub.hubServer), listen(hub.cdnServer)]);
    return hub;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.hubServer.address() as AddressInfo).port}`;
  }
  get cdnUrl(): string {
    return `http://127.0.0.1:${(this.cdnServer.address() as AddressInfo).port}`;
  }

  /** GET requests for file bytes, on the hub and the CDN. */
  fileGets(file?: string): LoggedRequest[] {
    return this.log.filter(
      (r) => r.method === 'GET' && r.file !== undefined && (file === undefined || r.file === file),
    );
  }

  async close(): Promise<void> {
    for (const server of [this.hubServer, this.cdnServer]) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }

  private record(server: 'hub' | 'cdn', req: http.IncomingMessage, file: string | undefined): void {
    this.log.push({
      server,
      method: req.method ?? '',
      path: req.url ?? '',
      file,
      range: req.headers.range,
      authorization: req.headers.authorization,
    });
  }

  private fail(res: http.ServerResponse, status: number, code: string, message: string): void {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (!this.plain) {
      headers['x-error-code'] = code;
      headers['x-error-message'] = message;
    }
    res.writeHead(status, headers);
    res.end(JSON.stringify({ error: message }));
  }

  private handleHub(req: http.IncomingMessage, res: http.ServerResponse): void {
    const { pathname } = new URL(req.url ?? '/', this.url);
    const api = /^\/api\/models\/(.+)\/revision\/([^/]+)$/.exec(pathname);
    const resolve = /^\/(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(pathname);
    const file = resolve ? resolve[3]!.split('/').map(decodeURIComponent).join('/') : undefined;
    this.record('hub', req, file);
    const match = api ?? resolve;
    if (!match || (api && this.plain)) return this.fail(res, 404, 'NotFound', 'not found');
    const id = match[1]!;
    const revision = decodeURIComponent(match[2]!);
    const repo = this.repos.get(id);
    if (!repo) return this.fail(res, 404, 'RepoNotFound', `Repository ${id} not found`);
    if (repo.token && req.headers.authorization !== `Bearer ${repo.token}`) {
      return this.fail(res, 401, 'GatedRepo', `Access to model ${id} is restricted`);
    }
    if (revision !== 'main' && revision !== repo.sha)
      return this.fail(res, 404, 'RevisionNotFound', `Invalid rev id: ${revision}`);

    if (api) {
      const siblings = Object.entries(repo.files).map(([rfilename, body]) =>
        repo.lfs?.includes(rfilename)
          ? {
              rfilename,
              size: body.length,
              blobId: gitSha1(body),
              lfs: { sha256: sha256(body), size: body.length, pointerSize: 134 },
            }
          : { rfilename, size: body.length, blobId: gitSha1(body) },
      );
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id, sha: repo.sha, siblings }));
      return;
    }
    const body = repo.files[file!];
    if (!body) return this.fail(res, 404, 'EntryNotFound', `${file} does not exist`);
    if (this.plain) return this.serve('hub', file!, req, res, body, {});
    const common = { 'x-repo-commit': repo.sha };
    if (repo.lfs?.includes(file!)) {
      res.writeHead(302, {
        ...common,
        location: `${this.cdnUrl}/cdn/${id.replace('/', '--')}/${encodeURIComponent(file!)}`,
        'x-linked-size': String(body.length),
        'x-linked-etag': `"${sha256(body)}"`,
        etag: `"${sha256(body)}"`,
      });
      res.end();
      return;
    }
    this.serve('hub', file!, req, res, body, { ...common, etag: `"${gitSha1(body)}"` });
  }

  private handleCdn(req: http.IncomingMessage, res: http.ServerResponse): void {
    const m = /^\/cdn\/([^/]+)\/([^/]+)$/.exec(new URL(req.url ?? '/', this.cdnUrl).pathname);
    const file = m ? decodeURIComponent(m[2]!) : undefined;
    this.record('cdn', req, file);
    const body = m ? this.repos.get(m[1]!.replace('--', '/'))?.files[file!] : undefined;
    if (!body) {
      res.writeHead(404);
      res.end();
      return;
    }
    // A CDN's etag is not the sha256 (S3 uses md5); the client must not take it for one.
    this.serve('cdn', file!, req, res, body, { etag: `"${createHash('md5').update(body).digest('hex')}"` });
  }

  private serve(
    server: 'hub' | 'cdn',
    file: string,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    body: Buffer,
    headers: Record<string, string>,
  ): void {
    if (req.method === 'GET') {
      const key = `${server}:${file}`;
      const count = this.served.get(key) ?? 0;
      this.served.set(key, count + 1);
      if (this.onServe?.({ server, file, req, res, body, count })) return;
    }
    serveBytes(req, res, body, headers);
  }
}

/** Serve `body` with Range support (`bytes=N-`), as the hub and its CDN do. */
function serveBytes(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  body: Buffer,
  headers: Record<string, string>,
): void {
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  const head = req.method === 'HEAD';
  if (range) {
    const start = Number(range[1]);
    if (start >= body.length) {
      res.writeHead(416, { ...headers, 'content-range': `bytes */${body.length}` });
      res.end();
      return;
    }
    res.writeHead(206, {
      ...headers,
      'accept-ranges': 'bytes',
      'content-length': String(body.length - start),
      'content-range': `bytes ${start}-${body.length - 1}/${body.length}`,
    });
    res.end(head ? undefined : body.subarray(start));
    return;
  }
  res.writeHead(200, { ...headers, 'accept-ranges': 'bytes', 'content-length': String(body.length) });
  res.end(head ? undefined : body);
}

function listen(server: http.Server): Promise<void> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
}

const SHA = `${'a'.repeat(8)}0123456789abcdef0123456789abcdef`;

/** A BERT-style repo: config, vocab, tokenizer.json and a ~40 KB model.safetensors in LFS. */
function bertRepo(extra: Partial<RepoFixture> = {}): RepoFixture {
  return {
    sha: SHA,
    files: {
      'config.json': Buffer.from(JSON.stringify({ model_type: 'bert', hidden_size: 32, num_hidden_layers: 2 })),
      'vocab.txt': Buffer.from('[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\n'),
      'tokenizer.json': Buffer.from(JSON.stringify({ version: '1.0', model: { type: 'WordPiece' } })),
      'model.safetensors': bytes(40_000),
      'README.md': Buffer.from('# not needed\n'),
      ...extra.files,
    },
    lfs: ['model.safetensors'],
    ...(extra.token ? { token: extra.token } : {}),
    ...(extra.lfs ? { lfs: extra.lfs } : {}),
  };
}

async function setup(t: TestContext, plain = false): Promise<{ hub: FakeHub; cacheDir: string }> {
  const hub = await FakeHub.start(plain);
  const cacheDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bertq-hub-'));
  t.after(async () => {
    await hub.close();
    await fsp.rm(cacheDir, { recursive: true, force: true });
  });
  return { hub, cacheDir };
}

async function assertFilesEqual(dir: string, repo: RepoFixture, files: string[]): Promise<void> {
  for (const file of files) {
    assert.deepEqual(await fsp.readFile(path.join(dir, file)), repo.files[file], `${file} differs from the hub's`);
  }
}

/** Run `fn` with some environment variables set, restoring them afterwards. */
async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(vars)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

const BERT_FILES = ['config.json', 'vocab.txt', 'tokenizer.json', 'model.safetensors'];

// ---------------------------------------------------------------------------------------------
// Ids and cache location
// ---------------------------------------------------------------------------------------------

test('hub - isHubModelId accepts hub ids and rejects paths and file names', async (t) => {
  const cwd = await fsp.mkdtemp(path.join(os.tmpdir(), 'bertq-id-'));
  t.after(() => fsp.rm(cwd, { recursive: true, force: true }));
  await fsp.mkdir(path.join(cwd, 'local-org', 'my-model'), { recursive: true });

  for (const id of [
    'bert-base-uncased',
    'sentence-transformers/all-MiniLM-L6-v2',
    'BAAI/bge-small-en-v1.5',
    'a_b/c.d-e',
  ]) {
    assert.equal(isHubModelId(id, cwd), true, id);
  }
  for (const s of [
    '',
    './model',
    '../model',
    '/models/bert',
    '~/bert',
    'C:\\models\\bert',
    'a/b/c',
    'org/',
    '/org/name',
    'model.onnx',
    'weights.safetensors',
    'vocab.txt',
    'org--name',
    'org/na..me',
    '-bad/name',
    'name-',
    'x'.repeat(97),
  ]) {
    assert.equal(isHubModelId(s, cwd), false, JSON.stringify(s));
  }
  // An existing local folder always wins over a hub id of the same spelling.
  assert.equal(isHubModelId('local-org/my-model', cwd), false);
  assert.equal(isHubModelId('local-org/other-model', cwd), true);
});

test('hub - the cache root comes from BERTQ_CACHE, then XDG_CACHE_HOME, then ~/.cache', () => {
  assert.equal(defaultCacheDir({ BERTQ_CACHE: '/c/bq', XDG_CACHE_HOME: '/xdg' }, '/home/u'), path.resolve('/c/bq'));
  assert.equal(defaultCacheDir({ XDG_CACHE_HOME: '/xdg' }, '/home/u'), path.resolve('/xdg/bertq'));
  assert.equal(defaultCacheDir({}, '/home/u'), path.join('/home/u', '.cache', 'bertq'));
  assert.equal(modelCacheDir('org/name', '/c'), path.join(path.resolve('/c'), 'hub', 'models--org--name'));
  assert.equal(
    modelCacheDir('bert-base-uncased', '/c'),
    path.join(path.resolve('/c'), 'hub', 'models--bert-base-uncased'),
  );
});

test('hub - an id that is not a hub id is a BadRequestError before any request', async () => {
  await assert.rejects(downloadModel('../etc/passwd', { endpoint: 'http://127.0.0.1:1' }), (err: unknown) => {
    assert.ok(err instanceof BadRequestError);
    assert.match(err.message, /"\.\.\/etc\/passwd" is not a Hugging Face model id/);
    return true;
  });
});

// ---------------------------------------------------------------------------------------------
// Downloading
// ---------------------------------------------------------------------------------------------

test('hub - downloads a BERT folder into the cache and returns its path', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { hub, cacheDir } = await setup(t);
  const repo = bertRepo();
  hub.repos.set('org/tiny-bert', repo);
  const events: DownloadProgress[] = [];

  const dir = await downloadModel('org/tiny-bert', {
    endpoint: hub.url,
    cacheDir,
    ...FAST,
    onProgress: (p) => events.push(p),
  });

  assert.equal(dir, path.join(cacheDir, 'hub', 'models--org--tiny-bert', 'snapshots', SHA));
  assert.ok(path.isAbsolute(dir));
  await assertFilesEqual(dir, repo, BERT_FILES);
  const names = (await fsp.readdir(dir)).sort();
  assert.deepEqual(names, [...BERT_FILES].sort(), 'only what a BERT model needs, no README, no .incomplete');
  // Files come from the commit the API resolved "main" to, so a moving branch cannot mix commits.
  assert.ok(
    hub
      .fileGets()
      .filter((r) => r.server === 'hub')
      .every((r) => r.path.includes(`/resolve/${SHA}/`)),
  );
  const last = events.at(-1)!;
  const totalBytes = BERT_FILES.reduce((n, f) => n + repo.files[f]!.length, 0);
  assert.equal(last.loaded, totalBytes);
  assert.equal(last.total, totalBytes);
  assert.ok(events.some((e) => e.file === 'model.safetensors' && e.fileTotal === 40_000));
  // "main" now names the snapshot in refs/, for offline use.
  assert.equal(await fsp.readFile(path.join(cacheDir, 'hub', 'models--org--tiny-bert', 'refs', 'main'), 'utf8'), SHA);
});

test('hub - honours the endpoint option and HF_ENDPOINT', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { hub, cacheDir } = await setup(t);
  hub.repos.set('org/tiny-bert', bertRepo());

  const viaEnv = await withEnv({ HF_ENDPOINT: hub.url }, () => downloadModel('org/tiny-bert', { cacheDir, ...FAST }));
  assert.ok(viaEnv.startsWith(cacheDir));
  assert.ok(hub.log.length > 0, 'HF_ENDPOINT pointed the download at the local hub');

  // The option wins over the environment (which here names a port nobody listens on).
  const before = hub.log.length;
  const viaOption = await withEnv({ HF_ENDPOINT: 'http://127.0.0.1:1' }, () =>
    downloadModel('org/tiny-bert', { endpoint: `${hub.url}/`, cacheDir, ...FAST, retries: 0 }),
  );
  assert.equal(viaOption, viaEnv);
  assert.ok(hub.log.length > before, 'the endpoint option reached the local hub');
});

test('hub - a gated model needs HF_TOKEN, sent as a bearer token', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { hub, cacheDir } = await setup(t);
  const repo = bertRepo({ token: 'hf_secret' });
  hub.repos.set('org/gated-bert', repo);

  await withEnv({ HF_TOKEN: undefined }, () =>
    assert.rejects(downloadModel('org/gated-bert', { endpoint: hub.url, cacheDir, ...FAST }), (err: unknown) => {
      assert.ok(err instanceof ModelError);
      assert.match(err.message, /org\/gated-bert .* is gated or private \(HTTP 401\)/);
      assert.match(err.message, /set HF_TOKEN/);
      return true;
    }),
  );
  assert.ok(hub.log.every((r) => r.authorization === undefined));

  await withEnv({ HF_TOKEN: 'hf_wrong' }, () =>
    assert.rejects(
      downloadModel('org/gated-bert', { endpoint: hub.url, cacheDir, ...FAST }),
      /gated or private and refused the token/,
    ),
  );

  const dir = await withEnv({ HF_TOKEN: 'hf_secret' }, () =>
    downloadModel('org/gated-bert', { endpoint: hub.url, cacheDir, ...FAST }),
  );
  await assertFilesEqual(dir, repo, BERT_FILES);
  assert.ok(hub.log.some((r) => r.server === 'hub' && r.authorization === 'Bearer hf_secret'));
});

test('hub - follows the LFS redirect to another origin without the Authorization header', {
  timeout: TEST_TIMEOUT_MS,
}, async (t) => {
  const { hub, cacheDir } = await setup(t);
  const repo = bertRepo({ token: 'hf_secret' });
  hub.repos.set('org/gated-bert', repo);

  const dir = await downloadModel('org/gated-bert', { endpoint: hub.url, cacheDir, token: 'hf_secret', ...FAST });

  await assertFilesEqual(dir, repo, ['model.safetensors']);
  const cdnGets = hub.log.filter((r) => r.server === 'cdn');
  assert.equal(cdnGets.length, 1, 'model.safetensors came from the CDN');
  assert.equal(cdnGets[0]!.authorization, undefined, 'the token must not leak to the CDN');
  assert.ok(hub.log.filter((r) => r.server === 'hub').every((r) => r.authorization === 'Bearer hf_secret'));
});

test('hub - a second call downloads nothing', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { hub, cacheDir } = await setup(t);
  hub.repos.set('org/tiny-bert', bertRepo());
  const first = await downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, ...FAST });
  const getsAfterFirst = hub.fileGets().length;
  assert.equal(getsAfterFirst, BERT_FILES.length + 1, 'each file once, plus the CDN hop of model.safetensors');

  const second = await downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, ...FAST });
  assert.equal(second, first);
  assert.equal(hub.fileGets().length, getsAfterFirst, 'no file was fetched again');
});

test('hub - two concurrent downloads of one model fetch each file once', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { hub, cacheDir } = await setup(t);
  const repo = bertRepo();
  hub.repos.set('org/tiny-bert', repo);
  // Slow the weights down so both calls overlap while one of them holds the file's lock.
  hub.onServe = ({ server, file, res, body }) => {
    if (server !== 'cdn' || file !== 'model.safetensors') return false;
    res.writeHead(200, { 'content-length': String(body.length) });
    res.write(body.subarray(0, 10_000));
    setTimeout(() => res.end(body.subarray(10_000)), 300);
    return true;
  };
  const [a, b] = await Promise.all([
    downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, ...FAST }),
    downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, ...FAST }),
  ]);
  assert.equal(a, b);
  await assertFilesEqual(a, repo, BERT_FILES);
  assert.equal(
    hub.fileGets('model.safetensors').filter((r) => r.server === 'cdn').length,
    1,
    'the weights were fetched once',
  );
  assert.deepEqual(
    (await fsp.readdir(path.join(modelCacheDir('org/tiny-bert', cacheDir), '.locks', SHA))).length,
    0,
    'no lock is left',
  );
});

test('hub - when main moves to a commit with the same weights, they are reused, not fetched again', {
  timeout: TEST_TIMEOUT_MS,
}, async (t) => {
  const { hub, cacheDir } = await setup(t);
  const repo = bertRepo();
  hub.repos.set('org/tiny-bert', repo);
  const first = await downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, ...FAST });

  const newSha = 'b'.repeat(40);
  repo.sha = newSha;
  repo.files['config.json'] = Buffer.from(
    JSON.stringify({ model_type: 'bert', hidden_size: 32, num_hidden_layers: 2, note: 'edited' }),
  );
  const second = await downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, ...FAST });

  assert.equal(second, path.join(modelCacheDir('org/tiny-bert', cacheDir), 'snapshots', newSha));
  await assertFilesEqual(second, repo, BERT_FILES);
  assert.equal(
    hub.fileGets('model.safetensors').length,
    2,
    'the weights were fetched once (hub + CDN hop), by the first call',
  );
  assert.equal(hub.fileGets('config.json').length, 2, 'the changed config was fetched again');
  // The old snapshot is intact, and offline "main" now means the new commit.
  assert.notDeepEqual(await fsp.readFile(path.join(first, 'config.json')), repo.files['config.json']);
  assert.equal(await downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, offline: true }), second);
});

test('hub - offline mode serves from the cache and says clearly when the model is not cached', {
  timeout: TEST_TIMEOUT_MS,
}, async (t) => {
  const { hub, cacheDir } = await setup(t);
  const repo = bertRepo();
  hub.repos.set('org/tiny-bert', repo);
  const online = await downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, ...FAST });
  const requests = hub.log.length;

  const offline = await downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, offline: true });
  assert.equal(offline, online);
  const viaEnv = await withEnv({ HF_HUB_OFFLINE: '1' }, () =>
    downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir }),
  );
  assert.equal(viaEnv, online);
  assert.equal(hub.log.length, requests, 'offline mode made no request');

  await assert.rejects(
    downloadModel('org/other-bert', { endpoint: hub.url, cacheDir, offline: true }),
    (err: unknown) => {
      assert.ok(err instanceof ModelError);
      assert.match(
        err.message,
        /model org\/other-bert \(revision main\) is not in the cache .*models--org--other-bert/,
      );
      assert.match(err.message, /offline mode is on/);
      return true;
    },
  );
  // A cached file that went missing is named.
  await fsp.rm(path.join(online, 'vocab.txt'));
  await assert.rejects(
    downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, offline: true }),
    /missing or changed: vocab\.txt/,
  );
});

test('hub - when the hub is unreachable, a complete cached copy still serves', {
  timeout: TEST_TIMEOUT_MS,
}, async (t) => {
  const { hub, cacheDir } = await setup(t);
  hub.repos.set('org/tiny-bert', bertRepo());
  const online = await downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, ...FAST });
  const endpoint = hub.url;
  await hub.close();

  assert.equal(await downloadModel('org/tiny-bert', { endpoint, cacheDir, ...FAST, retries: 1 }), online);
  await assert.rejects(
    downloadModel('org/uncached', { endpoint, cacheDir, ...FAST, retries: 1 }),
    /cannot reach http:\/\/127\.0\.0\.1:\d+ to download org\/uncached .*ECONNREFUSED.*not in the cache/,
  );
});

test('hub - resumes a dropped download with a Range request and ends byte-identical', {
  timeout: TEST_TIMEOUT_MS,
}, async (t) => {
  const { hub, cacheDir } = await setup(t);
  const repo = bertRepo();
  hub.repos.set('org/tiny-bert', repo);
  const half = 20_000;
  hub.onServe = ({ server, file, res, body, count }) => {
    if (server !== 'cdn' || file !== 'model.safetensors' || count > 0) return false;
    // Promise the whole file, send half, then close the connection.
    res.writeHead(200, { 'content-length': String(body.length) });
    res.write(body.subarray(0, half), () => res.socket?.destroySoon());
    return true;
  };

  const dir = await downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, ...FAST });

  await assertFilesEqual(dir, repo, BERT_FILES);
  const gets = hub.fileGets('model.safetensors').filter((r) => r.server === 'cdn');
  assert.equal(gets.length, 2);
  assert.equal(gets[0]!.range, undefined);
  assert.equal(gets[1]!.range, `bytes=${half}-`);
  // The hub saw the Range too (it is forwarded through the redirect).
  assert.equal(
    hub
      .fileGets('model.safetensors')
      .filter((r) => r.server === 'hub')
      .at(-1)!.range,
    `bytes=${half}-`,
  );
});

test('hub - a later run resumes the .incomplete file an aborted run left', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { hub, cacheDir } = await setup(t);
  const repo = bertRepo();
  hub.repos.set('org/tiny-bert', repo);
  hub.onServe = ({ server, file, res, body, count }) => {
    if (server !== 'cdn' || file !== 'model.safetensors' || count > 0) return false;
    // Send a first part and hold the connection open, as a slow link would.
    res.writeHead(200, { 'content-length': String(body.length) });
    res.write(body.subarray(0, 12_000));
    return true;
  };
  const controller = new AbortController();
  await assert.rejects(
    downloadModel('org/tiny-bert', {
      endpoint: hub.url,
      cacheDir,
      ...FAST,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.file === 'model.safetensors' && p.fileLoaded >= 12_000) controller.abort();
      },
    }),
    (err: unknown) => (err as Error).name === 'AbortError',
  );
  const incomplete = path.join(
    modelCacheDir('org/tiny-bert', cacheDir),
    'snapshots',
    SHA,
    'model.safetensors.incomplete',
  );
  const have = (await fsp.stat(incomplete)).size;
  assert.equal(have, 12_000);

  const dir = await downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, ...FAST });
  await assertFilesEqual(dir, repo, ['model.safetensors']);
  assert.equal(
    hub
      .fileGets('model.safetensors')
      .filter((r) => r.server === 'cdn')
      .at(-1)!.range,
    `bytes=${have}-`,
  );
  await assert.rejects(fsp.stat(incomplete), { code: 'ENOENT' });
});

test('hub - a server that ignores Range and answers 200 restarts the file from zero', {
  timeout: TEST_TIMEOUT_MS,
}, async (t) => {
  const { hub, cacheDir } = await setup(t);
  const repo = bertRepo();
  hub.repos.set('org/tiny-bert', repo);
  hub.onServe = ({ server, file, res, body, count }) => {
    if (server !== 'cdn' || file !== 'model.safetensors') return false;
    res.writeHead(200, { 'content-length': String(body.length) });
    if (count === 0) res.write(body.subarray(0, 15_000), () => res.socket?.destroySoon());
    else res.end(body); // the full file, whatever the Range header said
    return true;
  };
  const dir = await downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, ...FAST });
  await assertFilesEqual(dir, repo, ['model.safetensors']);
  assert.equal(
    hub
      .fileGets('model.safetensors')
      .filter((r) => r.server === 'cdn')
      .at(-1)!.range,
    'bytes=15000-',
  );
});

test('hub - a sha256 mismatch is a ModelError and leaves no file behind', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { hub, cacheDir } = await setup(t);
  const repo = bertRepo();
  hub.repos.set('org/tiny-bert', repo);
  hub.onServe = ({ server, file, req, res, body }) => {
    if (server !== 'cdn' || file !== 'model.safetensors') return false;
    const corrupt = Buffer.from(body);
    corrupt[1234] = (corrupt[1234]! + 1) % 256;
    serveBytes(req, res, corrupt, {});
    return true;
  };
  await assert.rejects(downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, ...FAST }), (err: unknown) => {
    assert.ok(err instanceof ModelError);
    assert.match(
      err.message,
      new RegExp(
        `sha256 mismatch for model\\.safetensors of model org/tiny-bert: the hub says ${sha256(repo.files['model.safetensors']!)}`,
      ),
    );
    return true;
  });
  const snapshot = path.join(modelCacheDir('org/tiny-bert', cacheDir), 'snapshots', SHA);
  const left = await fsp.readdir(snapshot);
  assert.ok(!left.some((f) => f.startsWith('model.safetensors')), `left behind: ${left.join(', ')}`);
});

test('hub - a repo that does not exist is "no model <id> at <endpoint>"', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  for (const plain of [false, true]) {
    const { hub, cacheDir } = await setup(t, plain);
    await assert.rejects(downloadModel('nobody/nothing', { endpoint: hub.url, cacheDir, ...FAST }), (err: unknown) => {
      assert.ok(err instanceof ModelError, String(err));
      assert.equal(err.message, `no model nobody/nothing at ${hub.url}`);
      return true;
    });
  }
});

test('hub - an unknown revision says so', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { hub, cacheDir } = await setup(t);
  hub.repos.set('org/tiny-bert', bertRepo());
  await assert.rejects(
    downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, revision: 'v9', ...FAST }),
    new RegExp(`model org/tiny-bert at ${hub.url} has no revision v9`),
  );
});

test('hub - a stalled transfer is aborted after the stall timeout and a retry succeeds', {
  timeout: TEST_TIMEOUT_MS,
}, async (t) => {
  const { hub, cacheDir } = await setup(t);
  const repo = bertRepo();
  hub.repos.set('org/tiny-bert', repo);
  hub.onServe = ({ server, file, res, body, count }) => {
    if (server !== 'cdn' || file !== 'model.safetensors' || count > 0) return false;
    res.writeHead(200, { 'content-length': String(body.length) });
    res.write(body.subarray(0, 5_000)); // ...and nothing more
    return true;
  };
  const started = Date.now();
  const dir = await downloadModel('org/tiny-bert', {
    endpoint: hub.url,
    cacheDir,
    retryDelayMs: 10,
    stallTimeoutMs: 300,
  });
  const elapsed = Date.now() - started;

  await assertFilesEqual(dir, repo, ['model.safetensors']);
  assert.ok(elapsed >= 300, `it waited out the stall timeout (${elapsed} ms)`);
  assert.ok(elapsed < 5_000, `it did not wait much longer than the stall timeout (${elapsed} ms)`);
  const gets = hub.fileGets('model.safetensors').filter((r) => r.server === 'cdn');
  assert.deepEqual(
    gets.map((r) => r.range),
    [undefined, 'bytes=5000-'],
  );
});

test('hub - a server that never answers fails after bounded retries instead of hanging', {
  timeout: TEST_TIMEOUT_MS,
}, async (t) => {
  const silent = http.createServer(() => {
    /* accepts the request and never answers */
  });
  await listen(silent);
  t.after(() => {
    silent.closeAllConnections();
    silent.close();
  });
  const cacheDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bertq-hub-'));
  t.after(() => fsp.rm(cacheDir, { recursive: true, force: true }));
  const endpoint = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
  const started = Date.now();
  await assert.rejects(
    downloadModel('org/tiny-bert', { endpoint, cacheDir, stallTimeoutMs: 200, retries: 2, retryDelayMs: 10 }),
    /cannot reach .* \(no data from 127\.0\.0\.1:\d+ for 200 ms .*after 3 attempts\)/,
  );
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 600 && elapsed < 5_000, `three stalled attempts of 200 ms (${elapsed} ms)`);
});

test('hub - 5xx answers are retried with backoff', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { hub, cacheDir } = await setup(t);
  const repo = bertRepo();
  hub.repos.set('org/tiny-bert', repo);
  hub.onServe = ({ file, res, count }) => {
    if (file !== 'config.json' || count > 1) return false;
    res.writeHead(503);
    res.end('busy');
    return true;
  };
  const dir = await downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, ...FAST });
  await assertFilesEqual(dir, repo, ['config.json']);
  assert.equal(hub.fileGets('config.json').length, 3);

  hub.onServe = ({ file, res }) => {
    if (file !== 'vocab.txt') return false;
    res.writeHead(500);
    res.end();
    return true;
  };
  await fsp.rm(path.join(dir, 'vocab.txt'));
  await assert.rejects(
    downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, ...FAST, retries: 2 }),
    /downloading vocab\.txt of model org\/tiny-bert from 127\.0\.0\.1:\d+ failed 3 times in a row: HTTP 500/,
  );
});

// ---------------------------------------------------------------------------------------------
// Which files
// ---------------------------------------------------------------------------------------------

test('hub - fetches sharded safetensors and the sentence-transformers modules', {
  timeout: TEST_TIMEOUT_MS,
}, async (t) => {
  const { hub, cacheDir } = await setup(t);
  const shard1 = bytes(9_000, 1);
  const shard2 = bytes(7_000, 2);
  const repo: RepoFixture = {
    sha: SHA,
    files: {
      'config.json': Buffer.from('{"model_type":"bert"}'),
      'tokenizer.json': Buffer.from('{}'),
      'tokenizer_config.json': Buffer.from('{"do_lower_case":true}'),
      'model.safetensors.index.json': Buffer.from(
        JSON.stringify({
          metadata: { total_size: 16_000 },
          weight_map: {
            'a.weight': 'model-00001-of-00002.safetensors',
            'b.weight': 'model-00002-of-00002.safetensors',
            'c.weight': 'model-00001-of-00002.safetensors',
          },
        }),
      ),
      'model-00001-of-00002.safetensors': shard1,
      'model-00002-of-00002.safetensors': shard2,
      'pytorch_model.bin': bytes(100),
      'modules.json': Buffer.from(
        JSON.stringify([
          { idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' },
          { idx: 1, name: '1', path: '1_Pooling', type: 'sentence_transformers.models.Pooling' },
          { idx: 2, name: '2', path: '2_Normalize', type: 'sentence_transformers.models.Normalize' },
        ]),
      ),
      '1_Pooling/config.json': Buffer.from('{"pooling_mode_mean_tokens":true}'),
      'sentence_bert_config.json': Buffer.from('{"max_seq_length":256}'),
      'special_tokens_map.json': Buffer.alloc(0), // an empty file is still a file
    },
    lfs: ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'],
  };
  hub.repos.set('st/mini', repo);
  const dir = await downloadModel('st/mini', { endpoint: hub.url, cacheDir, ...FAST });
  const expected = Object.keys(repo.files).filter((f) => f !== 'pytorch_model.bin');
  await assertFilesEqual(dir, repo, expected);
  assert.equal(hub.fileGets('pytorch_model.bin').length, 0);
  assert.equal(hub.fileGets().length, expected.length + 2, 'each file once, plus the CDN hop of the two shards');
});

test('hub - fetches an ONNX export instead of safetensors when asked', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const { hub, cacheDir } = await setup(t);
  const repo = bertRepo({ files: { 'onnx/model.onnx': bytes(5_000, 3) } as Record<string, Buffer> });
  hub.repos.set('org/tiny-bert', repo);
  const dir = await downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, weights: 'onnx', ...FAST });
  await assertFilesEqual(dir, repo, ['config.json', 'tokenizer.json', 'vocab.txt', 'onnx/model.onnx']);
  assert.equal(hub.fileGets('model.safetensors').length, 0, 'no safetensors when the ONNX export was asked for');

  hub.repos.set('org/no-onnx', bertRepo());
  await assert.rejects(
    downloadModel('org/no-onnx', { endpoint: hub.url, cacheDir, weights: 'onnx', ...FAST }),
    /model org\/no-onnx at .* \(revision main\) lacks onnx\/model\.onnx, which bertq needs/,
  );
});

test('hub - a repo without a required file names that file', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  for (const plain of [false, true]) {
    const { hub, cacheDir } = await setup(t, plain);
    const noTokenizer = bertRepo();
    delete noTokenizer.files['vocab.txt'];
    delete noTokenizer.files['tokenizer.json'];
    hub.repos.set('org/no-tokenizer', noTokenizer);
    await assert.rejects(
      downloadModel('org/no-tokenizer', { endpoint: hub.url, cacheDir, ...FAST }),
      (err: unknown) => {
        assert.ok(err instanceof ModelError);
        assert.match(err.message, /model org\/no-tokenizer at .* lacks tokenizer\.json or vocab\.txt/);
        return true;
      },
    );
    assert.equal(hub.fileGets('model.safetensors').length, 0, 'it fails before downloading the weights');

    const noConfig = bertRepo();
    delete noConfig.files['config.json'];
    hub.repos.set('org/no-config', noConfig);
    await assert.rejects(
      downloadModel('org/no-config', { endpoint: hub.url, cacheDir, ...FAST }),
      /lacks config\.json/,
    );

    const pytorchOnly = bertRepo({ files: { 'pytorch_model.bin': bytes(300) } as Record<string, Buffer> });
    delete pytorchOnly.files['model.safetensors'];
    hub.repos.set('org/pt-only', pytorchOnly);
    await assert.rejects(downloadModel('org/pt-only', { endpoint: hub.url, cacheDir, ...FAST }), (err: unknown) => {
      assert.ok(err instanceof ModelError);
      assert.match(err.message, /has only PyTorch weights \(pytorch_model\.bin\) and no safetensors/);
      return true;
    });

    const missingShard = bertRepo({
      files: {
        'model.safetensors.index.json': Buffer.from('{"weight_map":{"w":"model-00001-of-00002.safetensors"}}'),
      } as Record<string, Buffer>,
    });
    delete missingShard.files['model.safetensors'];
    hub.repos.set('org/missing-shard', missingShard);
    await assert.rejects(
      downloadModel('org/missing-shard', { endpoint: hub.url, cacheDir, ...FAST }),
      /lacks model-00001-of-00002\.safetensors, which bertq needs: model\.safetensors\.index\.json names it/,
    );
  }
});

test('hub - a static mirror without the model-info API is probed with HEAD, and cached the same', {
  timeout: TEST_TIMEOUT_MS,
}, async (t) => {
  const { hub, cacheDir } = await setup(t, true);
  const repo = bertRepo();
  hub.repos.set('org/tiny-bert', repo);
  const dir = await downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, ...FAST });
  // No commit was announced, so the snapshot is named after the revision.
  assert.equal(dir, path.join(cacheDir, 'hub', 'models--org--tiny-bert', 'snapshots', 'main'));
  await assertFilesEqual(dir, repo, BERT_FILES);
  assert.ok(hub.log.some((r) => r.method === 'HEAD'));
  assert.equal(hub.fileGets('README.md').length, 0);

  const gets = hub.fileGets().length;
  assert.equal(await downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, ...FAST }), dir);
  assert.equal(hub.fileGets().length, gets, 'no file was fetched again');
  assert.equal(await downloadModel('org/tiny-bert', { endpoint: hub.url, cacheDir, offline: true }), dir);
});
