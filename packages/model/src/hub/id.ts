/**
 * Hub model ids (`org/name`, or `name`), commit and sha256 syntax, and where the cache lives. An id is
 * only taken for one when it is not a path that exists here, so a local folder named like an id wins.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { defaultCacheDir } from '@bertq/protocol';

export const COMMIT_RE = /^[0-9a-f]{40}$/;
export const SHA256_RE = /^[0-9a-f]{64}$/;
/** Hub repo id syntax (huggingface_hub validate_repo_id): `name` or `org/name`, word characters, `-` and `.`. */
export const HUB_ID_RE = /^(?:[A-Za-z0-9_](?:[\w.-]*[A-Za-z0-9_])?\/)?[A-Za-z0-9_](?:[\w.-]*[A-Za-z0-9_])?$/;
/** Strings ending like a model file are paths someone mistyped, not hub ids. */
export const FILE_LIKE_RE = /\.(onnx|json|txt|safetensors|bin|ckpt|index|h5|pb|pt|pth|msgpack|model|zip|gz|tar|tgz)$/i;

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

// The cache root is shared by every package (hub downloads, graphs, the embedded server's store,
// the CLI's port files): it lives in @bertq/protocol, which all of them import.
export { defaultCacheDir };

/** Folder of one model in the cache: `<cacheDir>/hub/models--<org>--<name>` (the hub cache's naming). */
export function modelCacheDir(id: string, cacheDir: string = defaultCacheDir()): string {
  return path.join(path.resolve(cacheDir), 'hub', `models--${id.split('/').join('--')}`);
}
