/**
 * Download a BERT-family model from the Hugging Face Hub (or a mirror) by its id, into a local cache,
 * and return the folder that holds its files.
 *
 * It follows the hub's conventions the way huggingface_hub and transformers.js do:
 * - files live at `<endpoint>/<id>/resolve/<revision>/<file>`; large (LFS) files redirect to a CDN
 *   on another origin, with `X-Linked-Size` and `X-Linked-Etag` (the sha256) on the redirect;
 * - `<endpoint>/api/models/<id>/revision/<revision>?blobs=true` lists the files (`siblings`) of the
 *   commit (`sha`) the revision points to, with sizes and LFS sha256s; when it does not answer we
 *   probe the candidate files with HEAD (404 = absent), as a plain mirror needs;
 * - errors are told apart with `X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound,
 *   GatedRepo) where the server sends it, and by status otherwise;
 * - the cache is keyed by commit: `<cacheDir>/hub/models--<org>--<name>/snapshots/<commit>/`, with
 *   `refs/<revision>` naming the commit, so `offline` mode can find what a named revision resolved to.
 *
 * Downloads are resumable (`<file>.incomplete` plus a Range request), verified (size, and sha256
 * where the hub gives one), atomic (rename when complete) and never wait forever (a stall timeout on
 * every request; bounded retries with backoff for network errors and 5xx).
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { BadRequestError, ModelError } from '@bertq/protocol';

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/** Which weights to fetch. */
export type HubWeightsFormat = 'safetensors' | 'onnx';

/** One progress event of downloadModel. */
export interface DownloadProgress {
  /** The file being downloaded, relative to the model folder. */
  file: string;
  /** Bytes of that file on disk. */
  fileLoaded: number;
  /** Its size, once known. */
  fileTotal: number | undefined;
  /** Bytes on disk of all files this call downloads. */
  loaded: number;
  /** Their total size, when known for all of them. */
  total: number | undefined;
}

export interface DownloadModelOptions {
  /** Branch, tag or commit. Default 'main'. */
  revision?: string;
  /**
   * Cache root; models go to `<cacheDir>/hub/models--<org>--<name>/`. Default `$BERTQ_CACHE`, else
   * `$XDG_CACHE_HOME/bertq`, else `~/.cache/bertq`.
   */
  cacheDir?: string;
  /** Hub base URL (a mirror works). Default `$HF_ENDPOINT`, else `https://huggingface.co`. */
  endpoint?: string;
  /**
   * Access token for gated or private models, sent as `Authorization: Bearer` to the endpoint's
   * origin only (never to the CDN it redirects to). Default `$HF_TOKEN`.
   */
  token?: string;
  /** Use the cache only, no network. Default: true when `$HF_HUB_OFFLINE` is 1/true/yes/on. */
  offline?: boolean;
  /** 'safetensors' (default) fetches model.safetensors or its shards; 'onnx' fetches an ONNX export instead. */
  weights?: HubWeightsFormat;
  /** The ONNX file to fetch when `weights` is 'onnx'. Default 'onnx/model.onnx'. */
  onnxFile?: string;
  /** Called as bytes arrive. */
  onProgress?: (progress: DownloadProgress) => void;
  /** Abort the download; the promise rejects with the signal's reason, `.incomplete` files stay for a resume. */
  signal?: AbortSignal;
  /**
   * A request that receives no byte for this long is aborted and retried (resuming where it was).
   * Trades a quicker recovery from a dead connection against tolerance of a slow one. Default 30000.
   */
  stallTimeoutMs?: number;
  /**
   * Retries after a network error, a stall or a 5xx/429, with exponential backoff. For a file, an
   * attempt that made progress does not count. Default 5.
   */
  retries?: number;
  /** First backoff delay; it doubles with each retry (up to 10 s), with jitter. Default 500. */
  retryDelayMs?: number;
}

const DEFAULT_ENDPOINT = 'https://huggingface.co';
const DEFAULT_STALL_TIMEOUT_MS = 30_000;
const DEFAULT_RETRIES = 5;
const DEFAULT_RETRY_DELAY_MS = 500;
const MAX_RETRY_DELAY_MS = 10_000;
const MAX_REDIRECTS = 10;
/** Chunks received but not yet written before the response is paused. */
const MAX_QUEUED_CHUNKS = 64;
/** JSON bodies we read into memory (API answers, index and modules files) are small; a bigger one is not what we asked for. */
const MAX_JSON_BYTES = 64 * 1024 * 1024;
const COMMIT_RE = /^[0-9a-f]{40}$/;
const SHA256_RE = /^[0-9a-f]{64}$/;

/** Hub repo id syntax (huggingface_hub validate_repo_id): `name` or `org/name`, word characters, `-` and `.`. */
const HUB_ID_RE = /^(?:[A-Za-z0-9_](?:[\w.-]*[A-Za-z0-9_])?\/)?[A-Za-z0-9_](?:[\w.-]*[A-Za-z0-9_])?$/;
/** Strings ending like a model file are paths someone mistyped, not hub ids. */
const FILE_LIKE_RE = /\.(onnx|json|txt|safetensors|bin|ckpt|index|h5|pb|pt|pth|msgpack|model|zip|gz|tar|tgz)$/i;

/** True when `id` is spelled like a hub model id, whether or not a folder of that name exists. */
export function isHubModelIdSyntax(id: string): boolean {
  return (
    typeof id === 'string' &&
    id.length > 0 &&
    id.length <= 96 &&
    HUB_ID_RE.test(id) &&
    !id.includes('--') &&
    !id.includes('..') &&
    !FILE_LIKE_RE.test(id)
  );
}

/**
 * True when `s` names a model on the hub: `org/name` or `name` in the hub's id syntax, and not an
 * existing local path (a local folder always wins, as in transformers). Strings that look like file
 * names (`model.onnx`), relative or absolute paths (`./x`, `/x`, `~/x`, `C:\x`) and ids with `--` or
 * `..` are not hub ids.
 */
export function isHubModelId(s: string, cwd: string = process.cwd()): boolean {
  return isHubModelIdSyntax(s) && !existsSync(path.resolve(cwd, s));
}

/** The cache root: `$BERTQ_CACHE`, else `$XDG_CACHE_HOME/bertq`, else `~/.cache/bertq`. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env, home: string = os.homedir()): string {
  if (env.BERTQ_CACHE) return path.resolve(env.BERTQ_CACHE);
  if (env.XDG_CACHE_HOME) return path.resolve(env.XDG_CACHE_HOME, 'bertq');
  return path.join(home, '.cache', 'bertq');
}

/** Folder of one model in the cache: `<cacheDir>/hub/models--<org>--<name>` (the hub cache's naming). */
export function modelCacheDir(id: string, cacheDir: string = defaultCacheDir()): string {
  return path.join(path.resolve(cacheDir), 'hub', `models--${id.split('/').join('--')}`);
}

/**
 * Download the files a BERT-family model needs (see module doc) and return the absolute path of a
 * local folder holding them. Files already in the cache are not fetched again.
 */
export async function downloadModel(id: string, options: DownloadModelOptions = {}): Promise<string> {
  if (!isHubModelIdSyntax(id)) {
    throw new BadRequestError(
      `"${id}" is not a Hugging Face model id: expected "org/name" or "name" (letters, digits, "-", "_", ".")`,
      {
        details: { id },
      },
    );
  }
  const revision = options.revision ?? 'main';
  if (revision.length === 0 || revision.includes('\0')) {
    throw new BadRequestError(`revision ${JSON.stringify(revision)} of ${id} is not a valid branch, tag or commit`, {
      details: { id, revision },
    });
  }
  const weights: HubWeightsFormat = options.weights ?? 'safetensors';
  const onnxFile = options.onnxFile ?? 'onnx/model.onnx';
  if (!isSafeRelativePath(onnxFile)) {
    throw new BadRequestError(`onnxFile "${onnxFile}" must be a relative path inside the model repo`, {
      details: { onnxFile },
    });
  }
  const endpoint = (options.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
  let endpointUrl: URL;
  try {
    endpointUrl = new URL(endpoint);
  } catch (cause) {
    throw new BadRequestError(`hub endpoint "${endpoint}" is not a URL`, { cause, details: { endpoint } });
  }
  if (endpointUrl.protocol !== 'http:' && endpointUrl.protocol !== 'https:') {
    throw new BadRequestError(`hub endpoint "${endpoint}" must be an http(s) URL`, { details: { endpoint } });
  }
  const token = options.token ?? (process.env.HF_TOKEN || undefined);
  const repoDir = modelCacheDir(id, options.cacheDir ?? defaultCacheDir());
  const offline = options.offline ?? isTruthyEnv(process.env.HF_HUB_OFFLINE);
  const selection: SelectionKey = weights === 'onnx' ? `onnx:${onnxFile}` : 'safetensors';

  if (offline) {
    const cached = await findCompleteSnapshot(repoDir, revision, selection);
    if (cached.dir) return cached.dir;
    throw new ModelError(
      `model ${id} (revision ${revision}) is not in the cache ${repoDir}${cached.reason ? ` (${cached.reason})` : ''}, and offline mode is on (offline option or HF_HUB_OFFLINE): run once with network access, or pass a local model folder`,
      { details: { id, revision, cacheDir: repoDir } },
    );
  }

  options.signal?.throwIfAborted();
  const ctx: HubContext = {
    id,
    revision,
    endpoint,
    endpointOrigin: endpointUrl.origin,
    token,
    signal: options.signal,
    stallTimeoutMs: options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS,
    retries: options.retries ?? DEFAULT_RETRIES,
    retryDelayMs: options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS,
    agents: {
      http: new http.Agent({ keepAlive: true }),
      https: new https.Agent({ keepAlive: true }),
    },
  };
  try {
    let listing: RepoListing;
    try {
      listing = await listRepo(ctx);
    } catch (err) {
      if (!isTransient(err)) throw err;
      // Like huggingface_hub: when the hub cannot be reached, a complete cached copy still serves.
      const cached = await findCompleteSnapshot(repoDir, revision, selection);
      if (cached.dir) return cached.dir;
      throw new ModelError(
        `cannot reach ${endpoint} to download ${id} (${describeError(err)}), and it is not in the cache ${repoDir} either`,
        { cause: err, details: { id, endpoint, revision } },
      );
    }
    const snapshot = await SnapshotCache.open(repoDir, listing.commit ?? revision, {
      id,
      revision,
      commit: listing.commit,
    });
    const downloader = new Downloader(ctx, listing, snapshot, options);
    try {
      const files = await planFiles(ctx, listing, downloader, weights, onnxFile);
      await downloader.fetchAll(files);
      await snapshot.markComplete(selection, files, revision);
    } catch (err) {
      if (isTransient(err)) {
        // Retries are spent (a probe that kept failing); callers get a typed error, not a socket error.
        throw new ModelError(`downloading ${id} from ${endpoint} failed: ${describeError(err)}`, {
          cause: err,
          details: { id, endpoint, revision },
        });
      }
      throw err;
    }
    return snapshot.dir;
  } finally {
    ctx.agents.http.destroy();
    ctx.agents.https.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// Which files a BERT-family model needs
// ---------------------------------------------------------------------------------------------

const TOKENIZER_FILES = ['tokenizer.json', 'vocab.txt'];
const OPTIONAL_FILES = [
  'tokenizer_config.json',
  'special_tokens_map.json',
  'modules.json',
  'sentence_bert_config.json',
];

/** Decide the files to fetch, reading `model.safetensors.index.json` and `modules.json` on the way. */
async function planFiles(
  ctx: HubContext,
  listing: RepoListing,
  downloader: Downloader,
  weights: HubWeightsFormat,
  onnxFile: string,
): Promise<string[]> {
  const small: string[] = [];
  const large: string[] = [];
  const lacks = (file: string, why: string): ModelError =>
    new ModelError(
      `model ${ctx.id} at ${ctx.endpoint} (revision ${ctx.revision}) lacks ${file}, which bertq needs: ${why}`,
      {
        details: { id: ctx.id, endpoint: ctx.endpoint, revision: ctx.revision, file },
      },
    );

  if (!(await listing.has('config.json'))) {
    if (
      listing.probing &&
      !(await listing.hasAny(['model.safetensors', 'tokenizer.json', 'vocab.txt', 'pytorch_model.bin', onnxFile]))
    ) {
      throw noModelError(ctx);
    }
    throw lacks('config.json', 'it describes the architecture (layers, hidden size, vocabulary size)');
  }
  small.push('config.json');

  // Tokenizer: the fast tokenizer file, the WordPiece vocabulary, or both.
  const tokenizerFiles: string[] = [];
  for (const file of TOKENIZER_FILES) if (await listing.has(file)) tokenizerFiles.push(file);
  if (tokenizerFiles.length === 0) throw lacks('tokenizer.json or vocab.txt', 'one of them defines the tokenizer');
  small.push(...tokenizerFiles);

  for (const file of OPTIONAL_FILES) if (await listing.has(file)) small.push(file);

  // sentence-transformers: modules.json names the module folders (1_Pooling, 2_Dense, ...).
  if (small.includes('modules.json')) {
    for (const dir of moduleFolders(await downloader.readJson('modules.json'))) {
      const config = `${dir}/config.json`;
      if (await listing.has(config)) small.push(config);
      const dense = `${dir}/model.safetensors`;
      if (await listing.has(dense)) large.push(dense);
    }
  }

  if (weights === 'onnx') {
    if (!(await listing.has(onnxFile))) throw lacks(onnxFile, 'the ONNX export was asked for (weights: "onnx")');
    large.unshift(onnxFile);
    // Exports over 2 GB keep their tensors in an external data file beside the graph.
    const external = `${onnxFile}_data`;
    if (await listing.has(external)) large.push(external);
  } else if (await listing.has('model.safetensors')) {
    large.unshift('model.safetensors');
  } else if (await listing.has('model.safetensors.index.json')) {
    small.push('model.safetensors.index.json');
    const shards = shardFiles(ctx, await downloader.readJson('model.safetensors.index.json'));
    for (const shard of shards) {
      if (!(await listing.has(shard))) throw lacks(shard, 'model.safetensors.index.json names it as a weights shard');
    }
    large.unshift(...shards);
  } else if (await listing.has('pytorch_model.bin')) {
    throw new ModelError(
      `model ${ctx.id} at ${ctx.endpoint} (revision ${ctx.revision}) has only PyTorch weights (pytorch_model.bin) and no safetensors; bertq reads model.safetensors only: convert it (save_pretrained(..., safe_serialization=True)), look for a revision with safetensors (often an open "refs/pr/N"), or use weights: "onnx" if the repo has an ONNX export`,
      { details: { id: ctx.id, endpoint: ctx.endpoint, revision: ctx.revision, file: 'pytorch_model.bin' } },
    );
  } else {
    throw lacks('model.safetensors', 'it holds the weights (no model.safetensors.index.json with shards either)');
  }
  return [...new Set([...small, ...large])];
}

function moduleFolders(modules: unknown): string[] {
  if (!Array.isArray(modules))
    throw new ModelError('modules.json is not a JSON array of modules', { details: { file: 'modules.json' } });
  const folders: string[] = [];
  for (const module of modules) {
    const dir = (module as { path?: unknown } | null)?.path;
    if (typeof dir !== 'string' || dir === '') continue; // '' is the transformer itself, at the root
    if (!isSafeRelativePath(dir))
      throw new ModelError(`modules.json names an unsafe module path "${dir}"`, {
        details: { file: 'modules.json', path: dir },
      });
    folders.push(dir.replace(/\/+$/, ''));
  }
  return folders;
}

function shardFiles(ctx: HubContext, index: unknown): string[] {
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (map === null || typeof map !== 'object' || Array.isArray(map)) {
    throw new ModelError(`model.safetensors.index.json of ${ctx.id} has no "weight_map" object`, {
      details: { file: 'model.safetensors.index.json' },
    });
  }
  const shards = new Set<string>();
  for (const [tensor, shard] of Object.entries(map as Record<string, unknown>)) {
    if (typeof shard !== 'string' || !isSafeRelativePath(shard)) {
      throw new ModelError(
        `model.safetensors.index.json of ${ctx.id} maps ${tensor} to an invalid shard ${JSON.stringify(shard)}`,
        {
          details: { file: 'model.safetensors.index.json', tensor },
        },
      );
    }
    shards.add(shard);
  }
  if (shards.size === 0)
    throw new ModelError(`model.safetensors.index.json of ${ctx.id} lists no shards`, {
      details: { file: 'model.safetensors.index.json' },
    });
  return [...shards];
}

/** A path the repo may legitimately contain: relative, `/`-separated, no `.`/`..` segments. */
function isSafeRelativePath(p: string): boolean {
  if (p.length === 0 || p.includes('\\') || p.includes('\0') || p.startsWith('/')) return false;
  return p
    .replace(/\/+$/, '')
    .split('/')
    .every((segment) => segment !== '' && segment !== '.' && segment !== '..');
}

// ---------------------------------------------------------------------------------------------
// Listing the repo: the model-info API, else HEAD probes
// ---------------------------------------------------------------------------------------------

/** What the hub says about one file. */
interface RemoteFile {
  size?: number | undefined;
  /** Only for LFS files, whose etag is their sha256. */
  sha256?: string | undefined;
}

interface RepoListing {
  /** The commit the revision resolved to, when the hub said. */
  commit: string | undefined;
  /** True when files are found by probing (no API answer): absence is a 404, not a missing sibling. */
  probing: boolean;
  has(file: string): Promise<boolean>;
  hasAny(files: string[]): Promise<boolean>;
  /** Size and sha256 when known, from the API or a probe. */
  meta(file: string): RemoteFile | undefined;
  /** Record what a download learned (so the manifest has it). */
  learn(file: string, meta: RemoteFile): void;
}

class MapListing implements RepoListing {
  readonly probing = false;
  constructor(
    readonly commit: string | undefined,
    private readonly files: Map<string, RemoteFile>,
  ) {}
  async has(file: string): Promise<boolean> {
    return this.files.has(file);
  }
  async hasAny(files: string[]): Promise<boolean> {
    return files.some((f) => this.files.has(f));
  }
  meta(file: string): RemoteFile | undefined {
    return this.files.get(file);
  }
  learn(file: string, meta: RemoteFile): void {
    this.files.set(file, { ...this.files.get(file), ...definedOnly(meta) });
  }
}

class ProbeListing implements RepoListing {
  readonly probing = true;
  commit: string | undefined;
  private readonly known = new Map<string, RemoteFile | null>();
  constructor(private readonly ctx: HubContext) {}

  async has(file: string): Promise<boolean> {
    if (!this.known.has(file)) {
      const meta = await withRetries(this.ctx, `HEAD ${file}`, () => this.probe(file));
      this.known.set(file, meta);
    }
    return this.known.get(file) !== null;
  }
  async hasAny(files: string[]): Promise<boolean> {
    for (const file of files) if (await this.has(file)) return true;
    return false;
  }
  meta(file: string): RemoteFile | undefined {
    return this.known.get(file) ?? undefined;
  }
  learn(file: string, meta: RemoteFile): void {
    this.known.set(file, { ...this.known.get(file), ...definedOnly(meta) });
  }

  /** HEAD the file; null when it is absent. Follows the CDN redirect only when the hub did not give the size. */
  private async probe(file: string): Promise<RemoteFile | null> {
    const url = new URL(resolveUrl(this.ctx, this.ctx.revision, file));
    const { exchange, hub } = await open(this.ctx, url, 'HEAD', {}, (h) => h.linkedSize === undefined);
    exchange.dispose();
    if (hub.commit) this.commit ??= hub.commit;
    const status = exchange.status;
    if (status === 200 || isRedirect(status)) {
      const contentLength = status === 200 ? headerNumber(exchange.headers['content-length']) : undefined;
      return { size: hub.linkedSize ?? contentLength, sha256: hub.sha256 };
    }
    if (status === 404 && hub.errorCode !== 'RepoNotFound' && hub.errorCode !== 'RevisionNotFound') return null;
    throw statusError(this.ctx, status, hub, file);
  }
}

/** Ask the model-info API for the commit and its files; fall back to probing when it does not answer. */
async function listRepo(ctx: HubContext): Promise<RepoListing> {
  const url = new URL(`${ctx.endpoint}/api/models/${ctx.id}/revision/${encodeURIComponent(ctx.revision)}?blobs=true`);
  const answer = await withRetries(ctx, 'model info', async () => {
    const { exchange, hub } = await open(ctx, url, 'GET', { accept: 'application/json' }, sameOriginOnly(ctx));
    try {
      if (exchange.status === 200) return { body: await readBody(exchange, MAX_JSON_BYTES), hub };
      if (exchange.status === 401 || exchange.status === 403 || exchange.status >= 500 || exchange.status === 429) {
        throw statusError(ctx, exchange.status, hub, undefined);
      }
      if (exchange.status === 404 && (hub.errorCode === 'RepoNotFound' || hub.errorCode === 'RevisionNotFound')) {
        throw statusError(ctx, exchange.status, hub, undefined);
      }
      return null; // a plain 404 or another 4xx: this endpoint has no model-info API
    } finally {
      exchange.dispose();
    }
  });
  const parsed = answer ? parseModelInfo(answer.body) : undefined;
  if (!parsed) {
    const listing = new ProbeListing(ctx);
    // config.json is needed anyway; probing it first also learns the commit (X-Repo-Commit).
    await listing.has('config.json');
    return listing;
  }
  return new MapListing(parsed.commit ?? answer?.hub.commit, parsed.files);
}

function parseModelInfo(body: Buffer): { commit: string | undefined; files: Map<string, RemoteFile> } | undefined {
  let info: unknown;
  try {
    info = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  const { sha, siblings } = (info ?? {}) as { sha?: unknown; siblings?: unknown };
  if (!Array.isArray(siblings)) return undefined;
  const files = new Map<string, RemoteFile>();
  for (const sibling of siblings) {
    const { rfilename, size, lfs } = (sibling ?? {}) as {
      rfilename?: unknown;
      size?: unknown;
      lfs?: { size?: unknown; sha256?: unknown };
    };
    if (typeof rfilename !== 'string') continue;
    const lfsSize = typeof lfs?.size === 'number' ? lfs.size : undefined;
    const lfsSha = typeof lfs?.sha256 === 'string' && SHA256_RE.test(lfs.sha256) ? lfs.sha256 : undefined;
    files.set(rfilename, { size: lfsSize ?? (typeof size === 'number' ? size : undefined), sha256: lfsSha });
  }
  return { commit: typeof sha === 'string' && COMMIT_RE.test(sha) ? sha : undefined, files };
}

function resolveUrl(ctx: HubContext, ref: string, file: string): string {
  const encodedFile = file.split('/').map(encodeURIComponent).join('/');
  return `${ctx.endpoint}/${ctx.id}/resolve/${encodeURIComponent(ref)}/${encodedFile}`;
}

// ---------------------------------------------------------------------------------------------
// Errors the hub answers with
// ---------------------------------------------------------------------------------------------

function noModelError(ctx: HubContext, status?: number): ModelError {
  const hint =
    status === 401 || status === 403 ? ' (if it is private or gated, set HF_TOKEN to a token that can read it)' : '';
  return new ModelError(`no model ${ctx.id} at ${ctx.endpoint}${hint}`, {
    details: { id: ctx.id, endpoint: ctx.endpoint, status },
  });
}

/** Turn a non-success status into the error a user can act on; 5xx/429 become transient (retried). */
function statusError(ctx: HubContext, status: number, hub: HubHeaders, file: string | undefined): Error {
  const details = {
    id: ctx.id,
    endpoint: ctx.endpoint,
    revision: ctx.revision,
    status,
    file,
    hubError: hub.errorMessage,
  };
  if (status >= 500 || status === 429) {
    return new TransientHttpError(
      `HTTP ${status} from ${ctx.endpoint}${file ? ` for ${file}` : ''}`,
      status,
      hub.retryAfterMs,
    );
  }
  if (hub.errorCode === 'RepoNotFound') return noModelError(ctx, status);
  if (hub.errorCode === 'RevisionNotFound') {
    return new ModelError(`model ${ctx.id} at ${ctx.endpoint} has no revision ${ctx.revision}`, { details });
  }
  if (status === 401 || status === 403 || hub.errorCode === 'GatedRepo') {
    const message = ctx.token
      ? `model ${ctx.id} at ${ctx.endpoint} is gated or private and refused the token (HTTP ${status}): request access on its page with the account of HF_TOKEN, or set HF_TOKEN to a token that has it`
      : `model ${ctx.id} at ${ctx.endpoint} is gated or private (HTTP ${status}): accept its terms on its page and set HF_TOKEN to an access token (or pass the token option)`;
    return new ModelError(message, { details });
  }
  if (status === 404) {
    return new ModelError(
      `model ${ctx.id} at ${ctx.endpoint} (revision ${ctx.revision}) has no file ${file ?? ''}`.trimEnd(),
      { details },
    );
  }
  return new ModelError(
    `unexpected HTTP ${status} from ${ctx.endpoint} for ${file ?? `model ${ctx.id}`}${hub.errorMessage ? `: ${hub.errorMessage}` : ''}`,
    { details },
  );
}

// ---------------------------------------------------------------------------------------------
// The cache: snapshots/<commit>/ plus a manifest of what is complete
// ---------------------------------------------------------------------------------------------

/** `safetensors`, or `onnx:<file>`: the set of files one kind of call needs. */
type SelectionKey = string;

interface ManifestEntry {
  size: number;
  sha256?: string;
}

interface Manifest {
  version: 1;
  id: string;
  revision: string;
  commit: string | null;
  /** Files known complete (renamed into place after their size and sha256 were checked). */
  files: Record<string, ManifestEntry>;
  /** For each selection, the files a complete download of it holds. */
  complete: Record<SelectionKey, string[]>;
}

/** A revision name as one safe path segment. */
function refKey(ref: string): string {
  return COMMIT_RE.test(ref) ? ref : encodeURIComponent(ref);
}

class SnapshotCache {
  private constructor(
    readonly repoDir: string,
    readonly key: string,
    readonly dir: string,
    private readonly manifestPath: string,
    private manifest: Manifest,
  ) {}

  static async open(
    repoDir: string,
    ref: string,
    info: { id: string; revision: string; commit: string | undefined },
  ): Promise<SnapshotCache> {
    const key = refKey(ref);
    const manifestPath = path.join(repoDir, 'manifests', `${key}.json`);
    const existing = await readManifest(manifestPath);
    const manifest: Manifest = existing ?? {
      version: 1,
      id: info.id,
      revision: info.revision,
      commit: info.commit ?? null,
      files: {},
      complete: {},
    };
    return new SnapshotCache(repoDir, key, path.join(repoDir, 'snapshots', key), manifestPath, manifest);
  }

  pathOf(file: string): string {
    return path.join(this.dir, ...file.split('/'));
  }

  /** Where the lock of `file` lives (outside the snapshot, so a crash leaves no stray file in the model folder). */
  lockOf(file: string): string {
    return path.join(this.repoDir, '.locks', this.key, `${file.split('/').join('--')}.lock`);
  }

  /**
   * Complete when renamed into place, recorded, the same size on disk, and not contradicted by the
   * hub. `reload` first merges what another process recorded meanwhile.
   */
  async isComplete(file: string, remote: RemoteFile | undefined, reload = false): Promise<boolean> {
    if (reload || !this.manifest.files[file]) await this.merge();
    const entry = this.manifest.files[file];
    if (!entry) return false;
    if (remote?.size !== undefined && remote.size !== entry.size) return false;
    if (remote?.sha256 && entry.sha256 && remote.sha256 !== entry.sha256) return false;
    return (await sizeOf(this.pathOf(file))) === entry.size;
  }

  /**
   * When `main` moves to a commit that changed only a README, the weights are the same blob: link
   * (or copy) a file with the same sha256 from another snapshot of this repo instead of fetching it.
   * Only sha256-identified (LFS) files qualify; a size alone proves nothing.
   */
  async reuseFromOtherSnapshot(file: string, remote: RemoteFile | undefined): Promise<boolean> {
    const sha256 = remote?.sha256;
    if (!sha256) return false;
    const manifestsDir = path.dirname(this.manifestPath);
    const names = await fsp.readdir(manifestsDir).catch(() => [] as string[]);
    for (const name of names) {
      if (!name.endsWith('.json') || name === `${this.key}.json`) continue;
      const other = await readManifest(path.join(manifestsDir, name));
      for (const [otherFile, entry] of Object.entries(other?.files ?? {})) {
        if (entry.sha256 !== sha256 || (remote.size !== undefined && remote.size !== entry.size)) continue;
        const source = path.join(this.repoDir, 'snapshots', name.slice(0, -'.json'.length), ...otherFile.split('/'));
        if ((await sizeOf(source)) !== entry.size) continue;
        const dest = this.pathOf(file);
        const staging = `${dest}.${process.pid}.link`;
        await fsp.mkdir(path.dirname(dest), { recursive: true });
        await fsp.rm(staging, { force: true });
        // Files in the cache are never written in place (only .incomplete files are), so sharing an inode is safe.
        await fsp.link(source, staging).catch(() => fsp.copyFile(source, staging));
        await fsp.rename(staging, dest);
        await this.record(file, { size: entry.size, sha256 });
        return true;
      }
    }
    return false;
  }

  async record(file: string, entry: ManifestEntry): Promise<void> {
    this.manifest.files[file] = entry;
    await this.save();
  }

  async markComplete(selection: SelectionKey, files: string[], revision: string): Promise<void> {
    this.manifest.complete[selection] = files;
    await this.save();
    if (revision !== this.key) {
      // refs/<revision> names the snapshot, so offline mode finds what "main" resolved to.
      await writeFileAtomic(path.join(this.repoDir, 'refs', refKey(revision)), this.key);
    }
  }

  /** Take in entries another process wrote; ours win where both have one. */
  private async merge(): Promise<void> {
    const disk = await readManifest(this.manifestPath);
    if (!disk) return;
    this.manifest.files = { ...disk.files, ...this.manifest.files };
    this.manifest.complete = { ...disk.complete, ...this.manifest.complete };
  }

  private async save(): Promise<void> {
    // Merge first: workers sharing a cache each write the manifest, and neither may drop the other's files.
    await this.merge();
    await writeFileAtomic(this.manifestPath, `${JSON.stringify(this.manifest, null, 2)}\n`);
  }
}

async function readManifest(file: string): Promise<Manifest | undefined> {
  try {
    const parsed = JSON.parse(await fsp.readFile(file, 'utf8')) as Manifest;
    if (parsed?.version !== 1 || typeof parsed.files !== 'object' || typeof parsed.complete !== 'object')
      return undefined;
    return parsed;
  } catch {
    return undefined; // absent or unreadable: treat as empty, files get fetched again
  }
}

/** The cached snapshot of `revision` if every file of `selection` is there; else why not. */
async function findCompleteSnapshot(
  repoDir: string,
  revision: string,
  selection: SelectionKey,
): Promise<{ dir?: string; reason?: string }> {
  let key = refKey(revision);
  if (!COMMIT_RE.test(revision)) {
    try {
      key = (await fsp.readFile(path.join(repoDir, 'refs', refKey(revision)), 'utf8')).trim();
    } catch {
      // No ref: the revision was cached under its own name (the server did not say the commit), or not at all.
    }
  }
  const manifest = await readManifest(path.join(repoDir, 'manifests', `${key}.json`));
  const files = manifest?.complete[selection];
  if (!manifest || !files) return { reason: 'nothing downloaded for it yet' };
  const dir = path.join(repoDir, 'snapshots', key);
  const missing: string[] = [];
  for (const file of files) {
    const entry = manifest.files[file];
    if (!entry || (await sizeOf(path.join(dir, ...file.split('/')))) !== entry.size) missing.push(file);
  }
  if (missing.length > 0) return { reason: `missing or changed: ${missing.join(', ')}` };
  return { dir };
}

async function writeFileAtomic(file: string, content: string): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await fsp.writeFile(tmp, content);
  await fsp.rename(tmp, file);
}

async function sizeOf(file: string): Promise<number | undefined> {
  try {
    const stat = await fsp.stat(file);
    return stat.isFile() ? stat.size : undefined;
  } catch {
    return undefined;
  }
}

async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

// ---------------------------------------------------------------------------------------------
// Downloading files
// ---------------------------------------------------------------------------------------------

class Downloader {
  private readonly ready = new Set<string>();
  private finishedBytes = 0;
  private total: number | undefined;

  constructor(
    private readonly ctx: HubContext,
    private readonly listing: RepoListing,
    private readonly snapshot: SnapshotCache,
    private readonly options: DownloadModelOptions,
  ) {}

  /** Read a small JSON file of the repo (downloading it into the snapshot if needed). */
  async readJson(file: string): Promise<unknown> {
    await this.ensure(file);
    const text = await fsp.readFile(this.snapshot.pathOf(file), 'utf8');
    try {
      return JSON.parse(text);
    } catch (cause) {
      throw new ModelError(`${file} of model ${this.ctx.id} is not valid JSON: ${(cause as Error).message}`, {
        cause,
        details: { id: this.ctx.id, file },
      });
    }
  }

  async fetchAll(files: string[]): Promise<void> {
    const pending: string[] = [];
    for (const file of files) {
      if (!this.ready.has(file) && !(await this.snapshot.isComplete(file, this.listing.meta(file)))) pending.push(file);
      else this.ready.add(file);
    }
    const sizes = pending.map((f) => this.listing.meta(f)?.size);
    this.total = sizes.every((s) => s !== undefined)
      ? this.finishedBytes + sizes.reduce<number>((a, s) => a + (s ?? 0), 0)
      : undefined;
    for (const file of pending) await this.ensure(file);
  }

  private async ensure(file: string): Promise<void> {
    if (this.ready.has(file)) return;
    const remote = this.listing.meta(file);
    if (!(await this.snapshot.isComplete(file, remote))) {
      const dest = this.snapshot.pathOf(file);
      const lock = await acquireFileLock(this.ctx, this.snapshot.lockOf(file), `${dest}.incomplete`, () =>
        this.snapshot.isComplete(file, remote, true),
      );
      if (lock) {
        try {
          // Another holder may have finished it between our check and taking the lock.
          if (
            !(await this.snapshot.isComplete(file, remote, true)) &&
            !(await this.snapshot.reuseFromOtherSnapshot(file, remote))
          ) {
            const result = await downloadFile(
              this.ctx,
              file,
              dest,
              remote,
              this.listing.commit ?? this.ctx.revision,
              (loaded, fileTotal) => this.report(file, loaded, fileTotal),
            );
            this.listing.learn(file, result);
            await this.snapshot.record(file, definedOnly(result) as ManifestEntry);
            this.finishedBytes += result.size;
          }
        } finally {
          await lock.release();
        }
      }
    }
    this.ready.add(file);
  }

  private report(file: string, fileLoaded: number, fileTotal: number | undefined): void {
    const loaded = this.finishedBytes + fileLoaded;
    this.options.onProgress?.({ file, fileLoaded, fileTotal, loaded, total: this.total });
  }
}

/** How often a waiting download looks at a lock another one holds. */
const LOCK_POLL_MS = 100;

/**
 * Take the lock of one file, so that workers sharing a cache (one per GPU on a host, or two loads
 * in one process) never write the same `.incomplete` at once. Returns undefined when, while we
 * waited, the holder finished the file. A lock whose holder process is gone is broken at once; one
 * whose download has not grown for a long while (its own stall timeouts would have ended it) is
 * taken over, so nothing waits forever.
 */
async function acquireFileLock(
  ctx: HubContext,
  lockPath: string,
  progressFile: string,
  doneElsewhere: () => Promise<boolean>,
): Promise<{ release(): Promise<void> } | undefined> {
  await fsp.mkdir(path.dirname(lockPath), { recursive: true });
  const patienceMs = Math.max(60_000, ctx.stallTimeoutMs * (ctx.retries + 2));
  let lastSize: number | undefined;
  let lastGrowth = Date.now();
  for (;;) {
    try {
      await fsp.writeFile(lockPath, `${process.pid}\n`, { flag: 'wx' });
      return { release: () => fsp.rm(lockPath, { force: true }) };
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'EEXIST') throw err;
    }
    if (await doneElsewhere()) return undefined;
    const owner = Number.parseInt(await fsp.readFile(lockPath, 'utf8').catch(() => ''), 10);
    const size = await sizeOf(progressFile);
    if (size !== lastSize) {
      lastSize = size;
      lastGrowth = Date.now();
    }
    if ((Number.isInteger(owner) && !isProcessAlive(owner)) || Date.now() - lastGrowth > patienceMs) {
      await fsp.rm(lockPath, { force: true });
      continue;
    }
    await sleep(LOCK_POLL_MS, ctx.signal);
  }
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: unknown }).code === 'EPERM'; // it exists, it is someone else's
  }
}

interface DownloadResult {
  size: number;
  sha256: string | undefined;
}

/**
 * Fetch one file into `<dest>.incomplete`, resuming what is there, then verify it and rename it to
 * `dest`. Retries transient failures; an attempt that added bytes resets the retry count.
 */
async function downloadFile(
  ctx: HubContext,
  file: string,
  dest: string,
  remote: RemoteFile | undefined,
  ref: string,
  onBytes: (loaded: number, total: number | undefined) => void,
): Promise<DownloadResult> {
  const tmp = `${dest}.incomplete`;
  await fsp.mkdir(path.dirname(dest), { recursive: true });
  // The commit, not the branch: every file comes from the same commit even if the branch moves meanwhile.
  const url = new URL(resolveUrl(ctx, ref, file));
  const expected: { size?: number | undefined; sha256?: string | undefined } = { ...remote };
  let failures = 0;
  let best = (await sizeOf(tmp)) ?? 0;
  let restartedAfterMismatch = false;

  for (;;) {
    const startedAt = (await sizeOf(tmp)) ?? 0;
    try {
      await fetchIntoTemp(ctx, file, url, tmp, expected, onBytes);
      const size = (await sizeOf(tmp)) ?? 0;
      if (expected.sha256) {
        const actual = await sha256OfFile(tmp);
        if (actual !== expected.sha256) {
          await fsp.rm(tmp, { force: true });
          // A resumed file may carry a bad prefix from an earlier run; one clean download settles it.
          if (startedAt > 0 && !restartedAfterMismatch) {
            restartedAfterMismatch = true;
            continue;
          }
          throw new ModelError(
            `sha256 mismatch for ${file} of model ${ctx.id}: the hub says ${expected.sha256}, the downloaded file has ${actual}; the file was deleted, try again`,
            { details: { id: ctx.id, file, expected: expected.sha256, actual } },
          );
        }
      }
      await fsp.rename(tmp, dest);
      return { size, sha256: expected.sha256 };
    } catch (err) {
      ctx.signal?.throwIfAborted();
      if (!isTransient(err)) throw err;
      const have = (await sizeOf(tmp)) ?? 0;
      if (have > best) {
        best = have;
        failures = 0;
      } else {
        failures++;
      }
      if (failures > ctx.retries) {
        throw new ModelError(
          `downloading ${file} of model ${ctx.id} from ${url.host} failed ${failures} times in a row: ${describeError(err)}`,
          {
            cause: err,
            details: { id: ctx.id, file, url: url.href },
          },
        );
      }
      await sleep(backoffMs(ctx, failures, err), ctx.signal);
    }
  }
}

/** One attempt: GET (with Range when resuming) and append to the temp file. Throws TransientError when cut short. */
async function fetchIntoTemp(
  ctx: HubContext,
  file: string,
  url: URL,
  tmp: string,
  expected: { size?: number | undefined; sha256?: string | undefined },
  onBytes: (loaded: number, total: number | undefined) => void,
): Promise<void> {
  const existing = await sizeOf(tmp);
  let have = existing ?? 0;
  if (existing !== undefined && existing === expected.size) return; // all there; only verification is left
  if (expected.size !== undefined && have > expected.size) {
    await fsp.rm(tmp, { force: true });
    have = 0;
  }
  const { exchange, hub } = await open(ctx, url, 'GET', have > 0 ? { range: `bytes=${have}-` } : {}, () => true);
  try {
    expected.size ??= hub.linkedSize;
    expected.sha256 ??= hub.sha256;
    let start: number;
    let total: number | undefined;
    if (exchange.status === 200) {
      // A full body: either no Range was sent, or the server ignored it; start over.
      start = 0;
      total = headerNumber(exchange.headers['content-length']);
    } else if (exchange.status === 206) {
      const range = parseContentRange(exchange.headers['content-range']);
      if (!range || range.start !== have) {
        await fsp.rm(tmp, { force: true });
        throw new TransientError(
          `the server answered Range bytes=${have}- with ${String(exchange.headers['content-range'])}; restarting ${file} from zero`,
        );
      }
      start = have;
      total = range.total;
    } else if (exchange.status === 416) {
      const range = parseContentRange(exchange.headers['content-range']);
      if (range?.total !== undefined && range.total === have) {
        expected.size ??= have;
        return; // the previous attempt had everything but the rename
      }
      await fsp.rm(tmp, { force: true });
      throw new TransientError(`the server cannot resume ${file} at byte ${have}; restarting from zero`);
    } else {
      throw statusError(ctx, exchange.status, hub, file);
    }
    if (total !== undefined && expected.size !== undefined && total !== expected.size) {
      throw new ModelError(
        `${file} of model ${ctx.id}: the hub says ${expected.size} bytes but ${exchange.url.host} serves ${total}`,
        {
          details: { id: ctx.id, file, expected: expected.size, served: total },
        },
      );
    }
    expected.size ??= total;

    const handle = await fsp.open(tmp, start === 0 ? 'w' : 'a');
    let written = start;
    try {
      onBytes(written, expected.size);
      await exchange.consume(async (chunk) => {
        await handle.write(chunk);
        written += chunk.length;
        onBytes(written, expected.size);
      });
      await handle.datasync();
    } finally {
      await handle.close();
    }
    if (expected.size !== undefined && written < expected.size) {
      throw new TransientError(`the connection ended after ${written} of ${expected.size} bytes of ${file}`);
    }
    if (expected.size !== undefined && written > expected.size) {
      await fsp.rm(tmp, { force: true });
      throw new ModelError(
        `${file} of model ${ctx.id}: got ${written} bytes, ${written - expected.size} more than its size ${expected.size}`,
        {
          details: { id: ctx.id, file },
        },
      );
    }
  } finally {
    exchange.dispose();
  }
}

function parseContentRange(value: string | string[] | undefined): { start?: number; total?: number } | undefined {
  if (typeof value !== 'string') return undefined;
  const m = /^bytes\s+(?:(\d+)-(\d+)|\*)\/(\d+|\*)$/i.exec(value.trim());
  if (!m) return undefined;
  return {
    ...(m[1] !== undefined ? { start: Number(m[1]) } : {}),
    ...(m[3] !== '*' ? { total: Number(m[3]) } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// HTTP: one exchange with a stall watchdog, redirects, retries
// ---------------------------------------------------------------------------------------------

interface HubContext {
  id: string;
  revision: string;
  endpoint: string;
  endpointOrigin: string;
  token: string | undefined;
  signal: AbortSignal | undefined;
  stallTimeoutMs: number;
  retries: number;
  retryDelayMs: number;
  agents: { http: http.Agent; https: https.Agent };
}

/** Facts the hub (the endpoint's origin, not the CDN) puts in its headers. */
interface HubHeaders {
  commit?: string;
  linkedSize?: number;
  sha256?: string;
  errorCode?: string;
  errorMessage?: string;
  retryAfterMs?: number;
}

interface Exchange {
  readonly url: URL;
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /**
   * Pass the body to `write`, chunk by chunk and in order; every chunk resets the stall watchdog.
   * When the connection fails, every chunk that had arrived is written before the error is thrown,
   * so a resume starts right after the last byte received.
   */
  consume(write: (chunk: Buffer) => Promise<void>): Promise<void>;
  /** Release the connection (destroys it when the body was not read to the end). */
  dispose(): void;
}

/** A failure worth retrying: the network, a stall, a truncated body, a 5xx or 429. */
class TransientError extends Error {
  override name = 'TransientError';
}
class StallError extends TransientError {
  override name = 'StallError';
}
class TransientHttpError extends TransientError {
  override name = 'TransientHttpError';
  constructor(
    message: string,
    readonly status: number,
    readonly retryAfterMs: number | undefined,
  ) {
    super(message);
  }
}

const NETWORK_ERROR_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTDOWN',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

function isTransient(err: unknown): boolean {
  if (err instanceof TransientError) return true;
  const code = (err as { code?: unknown } | null)?.code;
  // HPE_*: the HTTP parser met a broken stream (a proxy cut it mid-chunk); a fresh attempt is the cure.
  return typeof code === 'string' && (NETWORK_ERROR_CODES.has(code) || code.startsWith('HPE_'));
}

function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}

function sameOriginOnly(ctx: HubContext): (hub: HubHeaders, next: URL) => boolean {
  return (_hub, next) => next.origin === ctx.endpointOrigin;
}

/**
 * Send `method` to `url`, following redirects while `follow` agrees. Authorization goes only to the
 * endpoint's origin: the CDN an LFS file redirects to must not see the token.
 */
async function open(
  ctx: HubContext,
  start: URL,
  method: 'GET' | 'HEAD',
  extraHeaders: Record<string, string>,
  follow: (hub: HubHeaders, next: URL) => boolean,
): Promise<{ exchange: Exchange; hub: HubHeaders }> {
  const hub: HubHeaders = {};
  let url = start;
  for (let hop = 0; ; hop++) {
    const headers: Record<string, string> = {
      'user-agent': `bertq/0.1 (node ${process.versions.node})`,
      // Sizes and ranges are in bytes of the file itself, not of a compressed body.
      'accept-encoding': 'identity',
      ...extraHeaders,
    };
    if (ctx.token && url.origin === ctx.endpointOrigin) headers.authorization = `Bearer ${ctx.token}`;
    const exchange = await exchangeOnce(ctx, url, method, headers);
    if (url.origin === ctx.endpointOrigin) collectHubHeaders(hub, exchange.headers);
    const location = exchange.headers.location;
    if (!isRedirect(exchange.status) || !location) return { exchange, hub };
    const next = new URL(location, url);
    if (!follow(hub, next)) return { exchange, hub };
    exchange.dispose();
    if (hop >= MAX_REDIRECTS)
      throw new ModelError(`more than ${MAX_REDIRECTS} redirects from ${start.href}`, { details: { url: start.href } });
    if (next.protocol !== 'http:' && next.protocol !== 'https:') {
      throw new ModelError(`${url.host} redirected to a non-HTTP URL ${next.href}`, { details: { url: next.href } });
    }
    url = next;
  }
}

function collectHubHeaders(hub: HubHeaders, headers: IncomingHttpHeaders): void {
  const text = (name: string): string | undefined => {
    const v = headers[name];
    return typeof v === 'string' && v !== '' ? v : undefined;
  };
  hub.commit ??= text('x-repo-commit');
  hub.linkedSize ??= headerNumber(headers['x-linked-size']);
  // An LFS file's etag is its sha256 (X-Linked-Etag on the redirect, ETag when served directly);
  // a regular file's is a git sha1 (40 hex), which we cannot check against a sha256.
  const etag = normalizeEtag(text('x-linked-etag')) ?? normalizeEtag(text('etag'));
  if (etag && SHA256_RE.test(etag)) hub.sha256 ??= etag;
  hub.errorCode ??= text('x-error-code');
  hub.errorMessage ??= text('x-error-message');
  const retryAfter = headerNumber(headers['retry-after']);
  if (retryAfter !== undefined) hub.retryAfterMs = retryAfter * 1000;
}

function normalizeEtag(etag: string | undefined): string | undefined {
  return etag?.replace(/^W\//, '').replace(/^"|"$/g, '').toLowerCase();
}

function headerNumber(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string' || !/^\d+$/.test(value.trim())) return undefined;
  return Number(value.trim());
}

/** One request/response. A watchdog aborts it when no byte comes for `stallTimeoutMs`; the signal aborts it too. */
function exchangeOnce(
  ctx: HubContext,
  url: URL,
  method: 'GET' | 'HEAD',
  headers: Record<string, string>,
): Promise<Exchange> {
  return new Promise<Exchange>((resolve, reject) => {
    if (ctx.signal?.aborted) {
      reject(ctx.signal.reason);
      return;
    }
    const secure = url.protocol === 'https:';
    let failure: unknown;
    let response: IncomingMessage | undefined;
    const abortWith = (err: unknown): void => {
      if (failure !== undefined) return;
      failure = err;
      response?.destroy(err as Error);
      request.destroy(err as Error);
    };
    const watchdog = setTimeout(
      () =>
        abortWith(new StallError(`no data from ${url.host} for ${ctx.stallTimeoutMs} ms (${method} ${url.pathname})`)),
      ctx.stallTimeoutMs,
    );
    const onAbort = (): void => abortWith(ctx.signal?.reason);
    ctx.signal?.addEventListener('abort', onAbort, { once: true });
    const cleanup = (): void => {
      clearTimeout(watchdog);
      ctx.signal?.removeEventListener('abort', onAbort);
    };
    const request = (secure ? https : http).request(
      url,
      { method, headers, agent: secure ? ctx.agents.https : ctx.agents.http },
      (res) => {
        response = res;
        watchdog.refresh();
        const consume = startReadingBody(res, {
          activity: () => watchdog.refresh(),
          abort: abortWith,
          failure: () => failure,
          finished: cleanup,
          host: url.host,
        });
        resolve({
          url,
          status: res.statusCode ?? 0,
          headers: res.headers,
          consume,
          dispose() {
            cleanup();
            if (!res.complete) res.destroy();
          },
        });
      },
    );
    request.on('error', (err) => {
      cleanup();
      reject(failure ?? err);
    });
    request.end();
  });
}

/**
 * Read `res` from the moment it arrives, in order, into the writer `consume()` will be given later.
 * Reading starts at once because a response destroyed by an error (the server dropped the
 * connection) discards what is still buffered in it: every byte received must reach the disk, so a
 * resume starts right after the last one. Memory stays bounded: past MAX_QUEUED_CHUNKS waiting
 * chunks the response is paused. The returned promise settles after every queued chunk is written.
 */
function startReadingBody(
  res: IncomingMessage,
  hooks: { activity(): void; abort(err: unknown): void; failure(): unknown; finished(): void; host: string },
): (write: (chunk: Buffer) => Promise<void>) => Promise<void> {
  let provideWriter!: (write: (chunk: Buffer) => Promise<void>) => void;
  const writer = new Promise<(chunk: Buffer) => Promise<void>>((resolve) => (provideWriter = resolve));
  // Resolves with the error, never rejects: nobody may be waiting (a redirect or an error status is disposed unread).
  let settleOutcome!: (err: unknown) => void;
  const outcome = new Promise<unknown>((resolve) => (settleOutcome = resolve));
  let queue: Promise<void> = Promise.resolve();
  let queued = 0;
  let writeError: unknown;
  let settled = false;

  const settle = (err: unknown): void => {
    if (settled) return;
    settled = true;
    void queue.then(() => {
      hooks.finished();
      settleOutcome(writeError ?? (err === undefined ? undefined : (hooks.failure() ?? err)));
    });
  };
  res.on('data', (chunk: Buffer) => {
    hooks.activity();
    if (++queued >= MAX_QUEUED_CHUNKS) res.pause();
    queue = queue.then(async () => {
      if (writeError === undefined) {
        try {
          await (await writer)(chunk);
          hooks.activity();
        } catch (err) {
          writeError = err;
          hooks.abort(err);
        }
      }
      if (--queued < MAX_QUEUED_CHUNKS / 2 && res.isPaused() && !res.destroyed) res.resume();
    });
  });
  res.once('end', () => settle(undefined));
  res.on('error', (err) => settle(err)); // `on`, not `once`: a second error must not go unhandled
  res.once('close', () =>
    settle(
      res.complete ? undefined : new TransientError(`the connection to ${hooks.host} closed before the body ended`),
    ),
  );

  return async (write) => {
    provideWriter(write);
    const err = await outcome;
    if (err !== undefined) throw err;
  };
}

async function readBody(exchange: Exchange, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  await exchange.consume(async (chunk) => {
    size += chunk.length;
    if (size > limit)
      throw new ModelError(
        `${exchange.url.href} answered more than ${limit} bytes where a small JSON document was expected`,
        { details: { url: exchange.url.href } },
      );
    chunks.push(chunk);
  });
  return Buffer.concat(chunks);
}

/** Run `attempt` until it succeeds, a non-transient error comes, or `ctx.retries` retries are spent. */
async function withRetries<T>(ctx: HubContext, what: string, attempt: () => Promise<T>): Promise<T> {
  for (let failures = 0; ; ) {
    try {
      return await attempt();
    } catch (err) {
      ctx.signal?.throwIfAborted();
      if (!isTransient(err) || failures >= ctx.retries) {
        if (isTransient(err) && failures > 0 && err instanceof Error)
          err.message = `${err.message} (${what}, after ${failures + 1} attempts)`;
        throw err;
      }
      failures++;
      await sleep(backoffMs(ctx, failures, err), ctx.signal);
    }
  }
}

/** Exponential backoff with jitter (so a fleet of workers does not retry in step); honours Retry-After. */
function backoffMs(ctx: HubContext, failures: number, err: unknown): number {
  const exponential = Math.min(MAX_RETRY_DELAY_MS, ctx.retryDelayMs * 2 ** Math.max(0, failures - 1));
  const jittered = exponential * (0.5 + Math.random() * 0.5);
  const retryAfter = err instanceof TransientHttpError ? err.retryAfterMs : undefined;
  return retryAfter !== undefined ? Math.min(Math.max(jittered, retryAfter), 60_000) : jittered;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function isTruthyEnv(value: string | undefined): boolean {
  return value !== undefined && /^(1|true|yes|on)$/i.test(value.trim());
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
