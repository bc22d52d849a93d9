/**
 * Works out what a model location holds and where each file is, before anything heavy is read:
 * a Google BERT checkpoint folder (bert-as-service's model_dir / tuned_model_dir / ckpt_name /
 * config_name), a Hugging Face folder (config.json + model.safetensors, sharded or not), or an ONNX
 * file. Every missing or unusable file is a ModelError naming the exact path and what was expected.
 */
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ModelError } from '@bertq/protocol';
import { readSafetensorsIndex } from './safetensors.js';
import { normalizeCheckpointPrefix, openCheckpoint } from './tensorbundle/reader.js';

/** Where to find the model; either `model`, or `modelDir` with bert-as-service's companions. */
export interface ModelSourceOptions {
  /** A model folder (checkpoint, Hugging Face or ONNX, detected from its files) or a path to an `.onnx` file. */
  model?: string;
  /** bert-as-service `model_dir`: the pre-trained model folder (config and vocab come from here). */
  modelDir?: string;
  /** bert-as-service `tuned_model_dir`: load the checkpoint from this folder instead (a fine-tuned model). */
  tunedModelDir?: string;
  /** bert-as-service `ckpt_name`: checkpoint prefix inside the folder. Default `bert_model.ckpt`. */
  ckptName?: string;
  /** bert-as-service `config_name`: config file inside modelDir. Default `bert_config.json` (checkpoint) or `config.json` (Hugging Face). */
  configName?: string;
}

/**
 * What a sentence-transformers folder says about its pipeline (modules.json, 1_Pooling/config.json).
 * A hint for the caller: bertq does not apply it on its own.
 */
export interface SentenceTransformersHint {
  /** The pooling mode, when it is one bertq can compute; 'other' for weightedmean, lasttoken, mean_sqrt_len or a mix. */
  pooling?: 'mean' | 'cls' | 'max' | 'other';
  /** The raw pooling_mode_* flags that are true (or the `pooling_mode` string of newer versions). */
  poolingModes: string[];
  /** A Normalize module follows pooling (embeddings are meant to be L2-normalised). */
  normalize: boolean;
  /** A Dense module follows pooling; bertq cannot reproduce its projection. */
  dense: boolean;
  modulesPath?: string;
  poolingConfigPath?: string;
}

export interface CheckpointModelSource {
  kind: 'checkpoint';
  configPath: string;
  vocabPath: string;
  /** `<dir>/<ckptName>`: the index is `${checkpointPrefix}.index`. */
  checkpointPrefix: string;
  /** The data shards the index names, all present and long enough. */
  dataFiles: string[];
}

export interface HuggingFaceModelSource {
  kind: 'huggingface';
  /** The folder holding config.json and the weights (a sentence-transformers Transformer module folder, if it has one). */
  folder: string;
  configPath: string;
  /** The .safetensors files (one, or every shard of model.safetensors.index.json). */
  weightsPaths: string[];
  /** The shard index, when the weights are sharded. */
  weightsIndexPath?: string;
  vocabPath?: string;
  tokenizerJsonPath?: string;
  sentenceTransformers?: SentenceTransformersHint;
}

export interface OnnxModelSource {
  kind: 'onnx';
  onnxPath: string;
  vocabPath?: string;
  tokenizerJsonPath?: string;
  configPath?: string;
  sentenceTransformers?: SentenceTransformersHint;
}

export type ResolvedModelSource = CheckpointModelSource | HuggingFaceModelSource | OnnxModelSource;

const DEFAULT_CKPT_NAME = 'bert_model.ckpt';
const DEFAULT_CHECKPOINT_CONFIG = 'bert_config.json';
const HF_CONFIG = 'config.json';
const SAFETENSORS = 'model.safetensors';
const SAFETENSORS_INDEX = 'model.safetensors.index.json';
/** Where ONNX exports sit: folder root, or `onnx/` as Optimum exports in Hugging Face repos. */
const ONNX_CANDIDATES = ['model.onnx', join('onnx', 'model.onnx')];
const PYTORCH_ONLY = ['pytorch_model.bin', 'pytorch_model.bin.index.json'];

type Kind = 'file' | 'dir' | 'none';

async function kindOf(path: string): Promise<Kind> {
  try {
    const s = await stat(path);
    return s.isDirectory() ? 'dir' : s.isFile() ? 'file' : 'none';
  } catch {
    return 'none';
  }
}

const isFile = async (p: string): Promise<boolean> => (await kindOf(p)) === 'file';

function missing(path: string, expected: string, details: Record<string, unknown> = {}): ModelError {
  return new ModelError(`${path} does not exist: ${expected}`, { details: { file: path, ...details } });
}

async function readJsonFile(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ModelError(`${what} ${path} cannot be read: ${(err as Error).message}`, {
      cause: err,
      details: { file: path },
    });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ModelError(`${what} ${path} is not valid JSON: ${(err as Error).message}`, {
      cause: err,
      details: { file: path },
    });
  }
}

/** The checkpoint name recorded in a TensorFlow `checkpoint` state file, to suggest as ckptName. */
async function recordedCheckpointName(dir: string): Promise<string | undefined> {
  try {
    const text = await readFile(join(dir, 'checkpoint'), 'utf8');
    const m = /^model_checkpoint_path:\s*"([^"]+)"/m.exec(text);
    return m ? basename(m[1]!) : undefined;
  } catch {
    return undefined;
  }
}

/** Resolves where the model's files are. Reads only small files (index headers, JSON). */
export async function resolveModelSource(opts: ModelSourceOptions): Promise<ResolvedModelSource> {
  if (opts.model !== undefined && opts.modelDir !== undefined) {
    throw new ModelError(`give either model (${opts.model}) or modelDir (${opts.modelDir}), not both`);
  }
  const location = opts.model ?? opts.modelDir;
  if (location === undefined) throw new ModelError('no model given: set model (a folder or an .onnx file) or modelDir');
  const path = resolve(location);
  const kind = await kindOf(path);
  if (kind === 'none') throw new ModelError(`model path ${path} does not exist`, { details: { file: path } });

  if (kind === 'file') {
    if (opts.model === undefined)
      throw new ModelError(`modelDir ${path} is a file, not a folder`, { details: { file: path } });
    if (!path.endsWith('.onnx')) {
      throw new ModelError(`model ${path} is a file but not an .onnx file; give a model folder or an .onnx file`, {
        details: { file: path },
      });
    }
    return onnxSource(path);
  }

  const wantsCheckpoint = opts.tunedModelDir !== undefined || opts.ckptName !== undefined;
  const ckptName = opts.ckptName ?? DEFAULT_CKPT_NAME;
  const ckptDir = resolve(opts.tunedModelDir ?? path);
  const indexPath = `${normalizeCheckpointPrefix(join(ckptDir, ckptName))}.index`;
  if (wantsCheckpoint || (await isFile(indexPath))) return checkpointSource(path, ckptDir, ckptName, opts.configName);

  const hfFolder = await transformerFolder(path);
  if ((await isFile(join(hfFolder, SAFETENSORS_INDEX))) || (await isFile(join(hfFolder, SAFETENSORS)))) {
    return huggingFaceSource(path, hfFolder, opts.configName);
  }
  for (const candidate of ONNX_CANDIDATES) {
    if (await isFile(join(path, candidate))) return onnxSource(join(path, candidate));
  }
  for (const name of PYTORCH_ONLY) {
    const p = join(hfFolder, name);
    if (await isFile(p)) {
      throw new ModelError(
        `model folder ${hfFolder} has only PyTorch weights (${p}); bertq reads safetensors, not pickled .bin files: ` +
          `convert it with transformers (model.save_pretrained(dir, safe_serialization=True)) to get ${join(hfFolder, SAFETENSORS)}`,
        { details: { file: p } },
      );
    }
  }
  const recorded = await recordedCheckpointName(path);
  // Say what the folder looks like it meant to be, so the one missing file stands out.
  const partial = (await isFile(join(hfFolder, HF_CONFIG)))
    ? ` (it has ${join(hfFolder, HF_CONFIG)}, so it looks like a Hugging Face model without its weights)`
    : (await isFile(join(path, opts.configName ?? DEFAULT_CHECKPOINT_CONFIG)))
      ? ` (it has ${join(path, opts.configName ?? DEFAULT_CHECKPOINT_CONFIG)}, so it looks like a Google BERT model without its checkpoint)`
      : '';
  throw new ModelError(
    `model folder ${path} has no ${ckptName}.index (checkpoint), no ${SAFETENSORS} (Hugging Face) and no model.onnx (ONNX)` +
      partial +
      (recorded ? `; its checkpoint file names "${recorded}": pass it as ckptName` : ''),
    { details: { file: path } },
  );
}

async function checkpointSource(
  modelDir: string,
  ckptDir: string,
  ckptName: string,
  configName: string | undefined,
): Promise<CheckpointModelSource> {
  const prefix = normalizeCheckpointPrefix(join(ckptDir, ckptName));
  if (ckptDir !== modelDir && (await kindOf(ckptDir)) !== 'dir') {
    throw new ModelError(`tunedModelDir ${ckptDir} does not exist or is not a folder`, { details: { file: ckptDir } });
  }
  const indexPath = `${prefix}.index`;
  if (!(await isFile(indexPath))) {
    const recorded = await recordedCheckpointName(ckptDir);
    throw missing(
      indexPath,
      `expected the index of checkpoint ${ckptName} in ${ckptDir}` +
        (recorded && recorded !== ckptName ? ` (its checkpoint file names "${recorded}": pass that as ckptName)` : ''),
    );
  }
  // Data shards first: an index copied without its (large) data file is the commonest broken checkpoint.
  const ckpt = await openCheckpoint(prefix);
  await ckpt.verifyDataFiles();
  const configPath = join(modelDir, configName ?? DEFAULT_CHECKPOINT_CONFIG);
  if (!(await isFile(configPath))) throw missing(configPath, `expected the BERT config of the model in ${modelDir}`);
  const vocabPath = join(modelDir, 'vocab.txt');
  if (!(await isFile(vocabPath)))
    throw missing(vocabPath, `expected the WordPiece vocabulary of the model in ${modelDir}`);
  return { kind: 'checkpoint', configPath, vocabPath, checkpointPrefix: prefix, dataFiles: ckpt.dataFiles };
}

/** The folder of the Transformer module of a sentence-transformers model (the root unless modules.json says otherwise). */
async function transformerFolder(root: string): Promise<string> {
  const modulesPath = join(root, 'modules.json');
  if (!(await isFile(modulesPath))) return root;
  const modules = await readModules(modulesPath);
  const transformer = modules.find((m) => m.type.endsWith('.Transformer'));
  return transformer && transformer.path !== '' ? join(root, transformer.path) : root;
}

interface ModuleEntry {
  path: string;
  type: string;
}

async function readModules(modulesPath: string): Promise<ModuleEntry[]> {
  const json = await readJsonFile(modulesPath, 'sentence-transformers modules file');
  if (!Array.isArray(json))
    throw new ModelError(`sentence-transformers modules file ${modulesPath} is not a JSON array`, {
      details: { file: modulesPath },
    });
  return json.map((m, i) => {
    const { path, type } = (m ?? {}) as Record<string, unknown>;
    if (typeof path !== 'string' || typeof type !== 'string') {
      throw new ModelError(
        `sentence-transformers modules file ${modulesPath}: entry ${i} lacks a string "path" and "type"`,
        {
          details: { file: modulesPath, entry: i },
        },
      );
    }
    // Module folders live inside the model folder; a path that climbs out is refused.
    if (path.split(/[\\/]/).includes('..') || path.startsWith('/')) {
      throw new ModelError(`sentence-transformers modules file ${modulesPath}: entry ${i} has unsafe path "${path}"`, {
        details: { file: modulesPath, entry: i },
      });
    }
    return { path, type };
  });
}

const POOLING_FLAGS: ReadonlyArray<[string, string]> = [
  ['pooling_mode_cls_token', 'cls'],
  ['pooling_mode_mean_tokens', 'mean'],
  ['pooling_mode_max_tokens', 'max'],
  ['pooling_mode_mean_sqrt_len_tokens', 'mean_sqrt_len'],
  ['pooling_mode_weightedmean_tokens', 'weightedmean'],
  ['pooling_mode_lasttoken', 'lasttoken'],
];

/** Reads modules.json and the Pooling module's config, when the folder is a sentence-transformers model. */
export async function readSentenceTransformersHint(root: string): Promise<SentenceTransformersHint | undefined> {
  const modulesPath = join(root, 'modules.json');
  const hasModules = await isFile(modulesPath);
  const modules = hasModules ? await readModules(modulesPath) : [];
  const poolingModule = modules.find((m) => m.type.endsWith('.Pooling'));
  const poolingConfigPath = join(root, poolingModule?.path ?? '1_Pooling', 'config.json');
  const hasPooling = await isFile(poolingConfigPath);
  if (!hasModules && !hasPooling) return undefined;
  if (poolingModule && !hasPooling) {
    throw missing(poolingConfigPath, `expected the Pooling module's config, which ${modulesPath} lists`);
  }

  const hint: SentenceTransformersHint = {
    poolingModes: [],
    normalize: modules.some((m) => m.type.endsWith('.Normalize')),
    dense: modules.some((m) => m.type.endsWith('.Dense')),
    ...(hasModules ? { modulesPath } : {}),
  };
  if (hasPooling) {
    hint.poolingConfigPath = poolingConfigPath;
    const cfg = await readJsonFile(poolingConfigPath, 'sentence-transformers pooling config');
    if (typeof cfg !== 'object' || cfg === null) {
      throw new ModelError(`sentence-transformers pooling config ${poolingConfigPath} is not a JSON object`, {
        details: { file: poolingConfigPath },
      });
    }
    const c = cfg as Record<string, unknown>;
    if (typeof c.pooling_mode === 'string') hint.poolingModes.push(c.pooling_mode);
    else for (const [flag, mode] of POOLING_FLAGS) if (c[flag] === true) hint.poolingModes.push(mode);
    const only = hint.poolingModes.length === 1 ? hint.poolingModes[0] : undefined;
    hint.pooling = only === 'mean' || only === 'cls' || only === 'max' ? only : 'other';
  }
  return hint;
}

async function tokenizerFiles(dirs: readonly string[]): Promise<{ vocabPath?: string; tokenizerJsonPath?: string }> {
  const out: { vocabPath?: string; tokenizerJsonPath?: string } = {};
  for (const d of dirs) {
    if (out.vocabPath === undefined && (await isFile(join(d, 'vocab.txt')))) out.vocabPath = join(d, 'vocab.txt');
    if (out.tokenizerJsonPath === undefined && (await isFile(join(d, 'tokenizer.json'))))
      out.tokenizerJsonPath = join(d, 'tokenizer.json');
  }
  return out;
}

async function huggingFaceSource(
  root: string,
  folder: string,
  configName: string | undefined,
): Promise<HuggingFaceModelSource> {
  const configPath = join(folder, configName ?? HF_CONFIG);
  if (!(await isFile(configPath)))
    throw missing(configPath, `expected the Hugging Face config.json beside the weights in ${folder}`);
  const indexPath = join(folder, SAFETENSORS_INDEX);
  let weightsPaths: string[];
  let weightsIndexPath: string | undefined;
  if (await isFile(indexPath)) {
    weightsIndexPath = indexPath;
    weightsPaths = (await readSafetensorsIndex(indexPath)).shardPaths;
    if (weightsPaths.length === 0)
      throw new ModelError(`safetensors index ${indexPath} names no shards`, { details: { file: indexPath } });
    for (const p of weightsPaths)
      if (!(await isFile(p))) throw missing(p, `expected a weight shard that ${indexPath} names`);
  } else {
    weightsPaths = [join(folder, SAFETENSORS)];
  }
  const tokenizer = await tokenizerFiles(folder === root ? [root] : [folder, root]);
  if (tokenizer.vocabPath === undefined && tokenizer.tokenizerJsonPath === undefined) {
    throw new ModelError(
      `model folder ${folder} has neither vocab.txt nor tokenizer.json: expected one of them to define the tokenizer`,
      {
        details: { file: join(folder, 'vocab.txt') },
      },
    );
  }
  const sentenceTransformers = await readSentenceTransformersHint(root);
  return {
    kind: 'huggingface',
    folder,
    configPath,
    weightsPaths,
    ...(weightsIndexPath ? { weightsIndexPath } : {}),
    ...tokenizer,
    ...(sentenceTransformers ? { sentenceTransformers } : {}),
  };
}

async function onnxSource(onnxPath: string): Promise<OnnxModelSource> {
  const dir = dirname(onnxPath);
  // Hugging Face repos keep the ONNX export in onnx/ and the tokenizer and config at the root.
  const root = basename(dir) === 'onnx' ? dirname(dir) : dir;
  const dirs = root === dir ? [dir] : [dir, root];
  const tokenizer = await tokenizerFiles(dirs);
  let configPath: string | undefined;
  for (const d of dirs) {
    if (configPath === undefined && (await isFile(join(d, HF_CONFIG)))) configPath = join(d, HF_CONFIG);
  }
  const sentenceTransformers = await readSentenceTransformersHint(root);
  return {
    kind: 'onnx',
    onnxPath,
    ...tokenizer,
    ...(configPath ? { configPath } : {}),
    ...(sentenceTransformers ? { sentenceTransformers } : {}),
  };
}
