/**
 * A deterministic tiny random BERT (4 layers, hidden 32) written as model folders, for tests of the
 * worker, client, CLI and gateway. Uses the real bert-base-uncased vocab from ../shared/models when
 * present, else a synthetic WordPiece vocab. Written once per process into a temp folder.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  syntheticBertWeights,
  syntheticVocab,
  tinyBertConfig,
  writeCheckpointFolder,
  writeHuggingFaceFolder,
} from '@bertq/model';
import type { BertWeights, VocabSource } from '@bertq/model';

/** ../shared/models beside the repository checkout (present on bertq's build machines, not on users'). */
export const SHARED_MODELS_DIR = fileURLToPath(new URL('../../../../../shared/models/', import.meta.url));
export const SHARED_VOCAB = join(SHARED_MODELS_DIR, 'bert-base-uncased-vocab.txt');

export interface TinyModelFixture {
  /** Hugging Face layout: config.json, model.safetensors, vocab.txt. */
  huggingFaceDir: string;
  /** Google layout: bert_config.json, vocab.txt, bert_model.ckpt.{index,data-00000-of-00001}. */
  checkpointDir: string;
  /** A graph cache folder private to this fixture. */
  graphDir: string;
  weights: BertWeights;
  root: string;
  cleanup(): Promise<void>;
}

const fixtures = new Map<number, Promise<TinyModelFixture>>();

export function tinyModel(seed = 11): Promise<TinyModelFixture> {
  let f = fixtures.get(seed);
  if (!f) {
    f = (async () => {
      const root = await mkdtemp(join(tmpdir(), `bertq-tiny-${seed}-`));
      const shared = existsSync(SHARED_VOCAB);
      const tokens = shared ? undefined : syntheticVocab();
      const vocab: VocabSource = tokens ? { tokens } : { file: SHARED_VOCAB };
      const weights = syntheticBertWeights(tinyBertConfig({ vocabSize: tokens ? tokens.length : 30522 }), seed);
      const huggingFaceDir = await writeHuggingFaceFolder(join(root, 'hf'), weights, vocab);
      const checkpointDir = await writeCheckpointFolder(join(root, 'ckpt'), weights, vocab);
      return {
        huggingFaceDir,
        checkpointDir,
        graphDir: join(root, 'graphs'),
        weights,
        root,
        cleanup: async () => {
          fixtures.delete(seed);
          await rm(root, { recursive: true, force: true });
        },
      };
    })();
    fixtures.set(seed, f);
  }
  return f;
}
