/**
 * Models from the Hugging Face Hub (or a mirror) by id. One module per idea: `id` (id syntax and the
 * cache's place), `http` (one exchange, redirects, retries), `listing` (what a repo holds, and the
 * hub's errors), `plan` (which files a model needs), `cache` (snapshots, manifest, locks), `transfer`
 * (resumable, verified file downloads), and `download` (downloadModel, which ties them together).
 */
export { downloadModel } from './download.js';
export { defaultCacheDir, isHubModelId, isHubModelIdSyntax, modelCacheDir } from './id.js';
export type { DownloadModelOptions, DownloadProgress, HubWeightsFormat } from './download.js';
