/**
 * Tiny-model fixtures for the model package's tests: one deterministic random BERT written in every
 * format bertq reads, with the real bert-base-uncased vocab when ../shared is present (else a
 * synthetic WordPiece vocab, said once on stderr).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bertConfigJson } from '../src/config-json.js';
import { writeCheckpointFolder, writeHuggingFaceFolder, writeOnnxFolder } from '../src/export.js';
import type { VocabSource } from '../src/export.js';
import { buildBertGraph } from '../src/graph.js';
import { syntheticBertWeights, syntheticVocab, tinyBertConfig } from '../src/synthetic.js';
import type { BertWeights, GraphOptions } from '../src/types.js';

export const SHARED_MODELS = fileURLToPath(new URL('../../../../../shared/models/', import.meta.url));
export const SHARED_VOCAB = join(SHARED_MODELS, 'bert-base-uncased-vocab.txt');
export const hasShared = existsSync(SHARED_VOCAB);

export const TINY_SEED = 11;
export const ONNX_OPTIONS: GraphOptions = {
  poolingStrategy: 'REDUCE_MEAN',
  poolingLayer: [-2],
  precision: 'float32',
  normalize: false,
  fused: true,
};

export interface TinyModel {
  root: string;
  weights: BertWeights;
  vocab: VocabSource;
  checkpointDir: string;
  huggingFaceDir: string;
  /** bertq-built model.onnx (ONNX_OPTIONS) with vocab.txt beside it. */
  onnxPath: string;
  /** A foreign-style export: last_hidden_state output, no bertq metadata, config.json beside it. */
  foreignOnnxPath: string;
  cacheDir: string;
  cleanup(): Promise<void>;
}

let pending: Promise<TinyModel> | undefined;

export function tinyModel(): Promise<TinyModel> {
  pending ??= (async () => {
    const root = await mkdtemp(join(tmpdir(), 'bertq-tiny-'));
    let vocab: VocabSource;
    let vocabSize: number;
    if (hasShared) {
      vocab = { file: SHARED_VOCAB };
      vocabSize = 30522;
    } else {
      const tokens = syntheticVocab();
      process.stderr.write(
        `note: ${SHARED_VOCAB} not found; tiny model uses a synthetic ${tokens.length}-token vocab\n`,
      );
      vocab = { tokens };
      vocabSize = tokens.length;
    }
    const weights = syntheticBertWeights(tinyBertConfig({ vocabSize }), TINY_SEED);
    const checkpointDir = await writeCheckpointFolder(join(root, 'ckpt'), weights, vocab);
    const huggingFaceDir = await writeHuggingFaceFolder(join(root, 'hf'), weights, vocab);
    const onnxPath = await writeOnnxFolder(join(root, 'onnx'), weights, vocab, ONNX_OPTIONS);
    const foreignDir = join(root, 'foreign');
    await writeOnnxFolder(foreignDir, weights, vocab, ONNX_OPTIONS); // for vocab.txt and the folder
    const foreignOnnxPath = join(foreignDir, 'model.onnx');
    await writeFile(
      foreignOnnxPath,
      buildBertGraph(
        weights,
        { ...ONNX_OPTIONS, poolingStrategy: 'NONE', poolingLayer: [-1] },
        { outputName: 'last_hidden_state', bare: true },
      ),
    );
    await writeFile(join(foreignDir, 'config.json'), JSON.stringify(bertConfigJson(weights.config, 'huggingface')));
    const cacheDir = join(root, 'graphs');
    return {
      root,
      weights,
      vocab,
      checkpointDir,
      huggingFaceDir,
      onnxPath,
      foreignOnnxPath,
      cacheDir,
      cleanup: () => rm(root, { recursive: true, force: true }),
    };
  })();
  return pending;
}

/** Largest absolute difference between two arrays of the same length. */
export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length, 'lengths differ');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
