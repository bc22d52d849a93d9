/**
 * Listing a repo's files at a commit: the model-info API, else HEAD probes (a plain mirror); and the
 * typed errors the hub answers with.
 */
import { ModelError } from '@bertq/protocol';
import { COMMIT_RE, SHA256_RE } from './id.js';
import {
  type HubContext,
  type HubHeaders,
  TransientHttpError,
  headerNumber,
  isRedirect,
  open,
  readBody,
  sameOriginOnly,
  withRetries,
  definedOnly,
  MAX_JSON_BYTES,
} from './http.js';

/** What the hub says about one file. */
export interface RemoteFile {
  size?: number | undefined;
  /** Only for LFS files, whose etag is their sha256. */
  sha256?: string | undefined;
}

export interface RepoListing {
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

export class MapListing implements RepoListing {
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

export class ProbeListing implements RepoListing {
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
export async function listRepo(ctx: HubContext): Promise<RepoListing> {
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

export function parseModelInfo(
  body: Buffer,
): { commit: string | undefined; files: Map<string, RemoteFile> } | undefined {
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

export function resolveUrl(ctx: HubContext, ref: string, file: string): string {
  const encodedFile = file.split('/').map(encodeURIComponent).join('/');
  return `${ctx.endpoint}/${ctx.id}/resolve/${encodeURIComponent(ref)}/${encodedFile}`;
}

export function noModelError(ctx: HubContext, status?: number): ModelError {
  const hint =
    status === 401 || status === 403 ? ' (if it is private or gated, set HF_TOKEN to a token that can read it)' : '';
  return new ModelError(`no model ${ctx.id} at ${ctx.endpoint}${hint}`, {
    details: { id: ctx.id, endpoint: ctx.endpoint, status },
  });
}

/** Turn a non-success status into the error a user can act on; 5xx/429 become transient (retried). */
export function statusError(ctx: HubContext, status: number, hub: HubHeaders, file: string | undefined): Error {
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
