/**
 * Writes BertWeights as a model folder in each format bertq reads: a Google BERT checkpoint folder,
 * a Hugging Face folder, or an ONNX file with its vocab beside it. Test fixtures and benchmarks make
 * their models this way; users can convert between formats with it.
 */
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bertConfigJson } from './config-json.js';
import { buildBertGraph } from './graph.js';
import { writeSafetensors } from './safetensors.js';
import { writeCheckpoint } from './tensorbundle/writer.js';
import type { BertWeights, GraphOptions } from './types.js';
import { bertWeightsToCheckpointVariables, bertWeightsToHfTensors } from './weights.js';

/** A vocab given as a file to copy or as its lines. */
export type VocabSource = { file: string } | { tokens: readonly string[] };

async function writeVocab(dir: string, vocab: VocabSource): Promise<void> {
  if ('file' in vocab) await copyFile(vocab.file, join(dir, 'vocab.txt'));
  else await writeFile(join(dir, 'vocab.txt'), `${vocab.tokens.join('\n')}\n`);
}

/** `bert_config.json`, `vocab.txt`, `bert_model.ckpt.index` + `.data-00000-of-00001`, as Google released BERT. */
export async function writeCheckpointFolder(dir: string, weights: BertWeights, vocab: VocabSource): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'bert_config.json'), JSON.stringify(bertConfigJson(weights.config, 'google'), null, 2));
  await writeVocab(dir, vocab);
  await writeCheckpoint(join(dir, 'bert_model.ckpt'), bertWeightsToCheckpointVariables(weights));
  return dir;
}

/** `config.json`, `model.safetensors`, `vocab.txt`, as sentence-transformers saves a BertModel. */
export async function writeHuggingFaceFolder(dir: string, weights: BertWeights, vocab: VocabSource): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), JSON.stringify(bertConfigJson(weights.config, 'huggingface'), null, 2));
  await writeVocab(dir, vocab);
  await writeSafetensors(join(dir, 'model.safetensors'), bertWeightsToHfTensors(weights));
  return dir;
}

/** `model.onnx` (bertq's graph for these options, config in its metadata) and `vocab.txt`. */
export async function writeOnnxFolder(
  dir: string,
  weights: BertWeights,
  vocab: VocabSource,
  options: GraphOptions,
): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeVocab(dir, vocab);
  const path = join(dir, 'model.onnx');
  await writeFile(path, buildBertGraph(weights, options));
  return path;
}
