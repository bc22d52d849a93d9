/** Which files of a hub repo a BERT-family model needs: config, tokenizer, weights (sharded too). */
import { ModelError } from '@bertq/protocol';
import type { Downloader, HubWeightsFormat } from './download.js';
import { type RepoListing, noModelError } from './listing.js';
import type { HubContext } from './http.js';

export const TOKENIZER_FILES = ['tokenizer.json', 'vocab.txt'];
export const OPTIONAL_FILES = [
  'tokenizer_config.json',
  'special_tokens_map.json',
  'modules.json',
  'sentence_bert_config.json',
];

/** Decide the files to fetch, reading `model.safetensors.index.json` and `modules.json` on the way. */
export async function planFiles(
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

export function moduleFolders(modules: unknown): string[] {
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

export function shardFiles(ctx: HubContext, index: unknown): string[] {
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
export function isSafeRelativePath(p: string): boolean {
  if (p.length === 0 || p.includes('\\') || p.includes('\0') || p.startsWith('/')) return false;
  return p
    .replace(/\/+$/, '')
    .split('/')
    .every((segment) => segment !== '' && segment !== '.' && segment !== '..');
}
