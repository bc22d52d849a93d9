import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import { BadRequestError, ModelError } from '@bertq/protocol';
import { defaultCacheDir, isHubModelIdSyntax, modelCacheDir } from './id.js';
import { isSafeRelativePath, planFiles } from './plan.js';
import { type RepoListing, listRepo } from './listing.js';
import {
  type ManifestEntry,
  type SelectionKey,
  SnapshotCache,
  acquireFileLock,
  findCompleteSnapshot,
} from './cache.js';
import { type HubContext, definedOnly, describeError, isTransient, isTruthyEnv } from './http.js';
import { downloadFile } from './transfer.js';

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

export const DEFAULT_ENDPOINT = 'https://huggingface.co';
export const DEFAULT_STALL_TIMEOUT_MS = 30_000;
export const DEFAULT_RETRIES = 5;
export const DEFAULT_RETRY_DELAY_MS = 500;

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

export class Downloader {
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
