/**
 * Reads a model's hyper-parameters from Google's `bert_config.json` or Hugging Face's `config.json`
 * (same snake_case keys; HF adds model_type, layer_norm_eps, position_embedding_type) into BertConfig.
 */
import { readFile } from 'node:fs/promises';
import { ModelError } from '@bertq/protocol';
import type { BertConfig } from './types.js';

/** hidden_act values bertq computes, and the activation each maps to. */
const ACTIVATIONS: Readonly<Record<string, BertConfig['hiddenAct']>> = {
  gelu: 'gelu',
  // Hugging Face's tanh approximations; gelu_fast differs from gelu_new by < 1e-4 in value.
  gelu_new: 'gelu_new',
  gelu_pytorch_tanh: 'gelu_new',
  gelu_fast: 'gelu_new',
  relu: 'relu',
};

/** Hugging Face BertConfig defaults for keys a config may leave out (Google's always lists them but eps). */
const DEFAULTS = {
  hidden_act: 'gelu',
  max_position_embeddings: 512,
  type_vocab_size: 2,
  layer_norm_eps: 1e-12,
} as const;

/** Parses an already-loaded config object; `file` is named in every error. */
export function parseBertConfig(json: unknown, file: string): BertConfig {
  const bad = (field: string, what: string): ModelError =>
    new ModelError(`config ${file}: ${field} ${what}`, { details: { file, field } });
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ModelError(`config ${file} is not a JSON object`, { details: { file } });
  }
  const c = json as Record<string, unknown>;

  const modelType = c.model_type ?? 'bert';
  if (typeof modelType !== 'string') throw bad('"model_type"', 'is not a string');
  if (modelType !== 'bert') {
    throw bad(
      '"model_type"',
      `is "${modelType}"; bertq serves BERT models (model_type "bert") only` +
        (/roberta|camembert/i.test(modelType)
          ? ' (RoBERTa-style models offset position ids by the padding index and use a BPE tokenizer)'
          : ''),
    );
  }
  // Google configs have no model_type; a HF config without one still names its architecture.
  if (c.model_type === undefined && Array.isArray(c.architectures)) {
    const foreign = c.architectures.find((a) => typeof a === 'string' && !a.startsWith('Bert'));
    if (foreign !== undefined) throw bad('"architectures"', `lists ${String(foreign)}, not a BERT architecture`);
  }

  const int = (field: string, min: number, fallback?: number): number => {
    const v = c[field] ?? fallback;
    if (v === undefined) throw bad(`"${field}"`, 'is missing');
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
      throw bad(`"${field}"`, `is ${JSON.stringify(v)}; expected an integer >= ${min}`);
    }
    return v;
  };
  const vocabSize = int('vocab_size', 1);
  const hiddenSize = int('hidden_size', 1);
  const numHiddenLayers = int('num_hidden_layers', 1);
  const numAttentionHeads = int('num_attention_heads', 1);
  const intermediateSize = int('intermediate_size', 1);
  const maxPositionEmbeddings = int('max_position_embeddings', 1, DEFAULTS.max_position_embeddings);
  const typeVocabSize = int('type_vocab_size', 1, DEFAULTS.type_vocab_size);
  if (hiddenSize % numAttentionHeads !== 0) {
    throw bad('"hidden_size"', `(${hiddenSize}) is not a multiple of num_attention_heads (${numAttentionHeads})`);
  }

  const eps = c.layer_norm_eps ?? DEFAULTS.layer_norm_eps;
  if (typeof eps !== 'number' || !Number.isFinite(eps) || eps <= 0 || eps >= 1) {
    throw bad('"layer_norm_eps"', `is ${JSON.stringify(eps)}; expected a small positive number such as 1e-12`);
  }

  const act = c.hidden_act ?? DEFAULTS.hidden_act;
  const hiddenAct = typeof act === 'string' ? ACTIVATIONS[act] : undefined;
  if (hiddenAct === undefined) {
    throw bad('"hidden_act"', `is ${JSON.stringify(act)}; bertq supports ${Object.keys(ACTIVATIONS).join(', ')}`);
  }

  const positionType = c.position_embedding_type ?? 'absolute';
  if (positionType !== 'absolute') {
    throw bad('"position_embedding_type"', `is ${JSON.stringify(positionType)}; bertq supports "absolute" only`);
  }

  return {
    vocabSize,
    hiddenSize,
    numHiddenLayers,
    numAttentionHeads,
    intermediateSize,
    hiddenAct,
    maxPositionEmbeddings,
    typeVocabSize,
    layerNormEps: eps,
    modelType,
  };
}

/** Reads and parses a config file (bert_config.json or config.json). */
export async function readBertConfig(path: string): Promise<BertConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ModelError(
      code === 'ENOENT'
        ? `config file ${path} does not exist`
        : `config file ${path} cannot be read (${code ?? String(err)})`,
      { cause: err, details: { file: path } },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ModelError(`config ${path} is not valid JSON: ${(err as Error).message}`, {
      cause: err,
      details: { file: path },
    });
  }
  return parseBertConfig(json, path);
}
