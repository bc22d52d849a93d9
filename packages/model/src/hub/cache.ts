/**
 * The cache: `snapshots/<commit>/` plus a manifest of what is complete, `refs/<revision>` naming the
 * commit, and per-file locks so that processes sharing a cache never write one file at once.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { COMMIT_RE } from './id.js';
import type { RemoteFile } from './listing.js';
import { type HubContext, sleep } from './http.js';

/** `safetensors`, or `onnx:<file>`: the set of files one kind of call needs. */
export type SelectionKey = string;

export interface ManifestEntry {
  size: number;
  sha256?: string;
}

export interface Manifest {
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
export function refKey(ref: string): string {
  return COMMIT_RE.test(ref) ? ref : encodeURIComponent(ref);
}

export class SnapshotCache {
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

export async function readManifest(file: string): Promise<Manifest | undefined> {
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
export async function findCompleteSnapshot(
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

export async function writeFileAtomic(file: string, content: string): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await fsp.writeFile(tmp, content);
  await fsp.rename(tmp, file);
}

export async function sizeOf(file: string): Promise<number | undefined> {
  try {
    const stat = await fsp.stat(file);
    return stat.isFile() ? stat.size : undefined;
  } catch {
    return undefined;
  }
}

export async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** How often a waiting download looks at a lock another one holds. */
export const LOCK_POLL_MS = 100;

/**
 * Take the lock of one file, so that workers sharing a cache (one per GPU on a host, or two loads
 * in one process) never write the same `.incomplete` at once. Returns undefined when, while we
 * waited, the holder finished the file. A lock whose holder process is gone is broken at once; one
 * whose download has not grown for a long while (its own stall timeouts would have ended it) is
 * taken over, so nothing waits forever.
 */
export async function acquireFileLock(
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

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: unknown }).code === 'EPERM'; // it exists, it is someone else's
  }
}
