/**
 * Token counts for OpenAI's `usage.prompt_tokens`, counted by bertq's own tokenizer with the fleet's
 * settings (vocabulary, casing, max_seq_len, [CLS]/[SEP]), so the number is what the model saw.
 *
 * Result frames carry no token counts (only the token strings, and only when a job asks for them), so
 * the gateway loads the same tokenizer the workers use, from the model folder their `config` names,
 * when this host can read it (`bertq start --http-port`, or a gateway beside the model files).
 * `@bertq/model` is imported lazily: a gateway that never counts never loads it.
 */
import { ModelError, type ServerConfig } from '@bertq/protocol';
import type { Texts } from '@bertq/client';

export interface TokenCounter {
  /** Tokens of each row ([CLS]/[SEP] included, after max_seq_len truncation), as the workers count them. */
  count(texts: Texts, isTokenized: boolean): Promise<number[]>;
  /** What the counts come from, for logs (e.g. the vocab file). */
  readonly source: string;
}

/**
 * Loads a counter with the tokenizer the fleet's config describes. Throws ModelError naming the path
 * when the model folder is not readable here (a hub id, or a path on another host).
 */
export async function tokenCounterFromConfig(config: ServerConfig): Promise<TokenCounter> {
  const modelDir = config.model_dir;
  if (typeof modelDir !== 'string' || modelDir === '') throw new ModelError('the fleet config names no model_dir to load a tokenizer from');
  const maxPositionEmbeddings = config.model?.max_position_embeddings;
  if (typeof maxPositionEmbeddings !== 'number') throw new ModelError('the fleet config has no model.max_position_embeddings');
  const { BertTokenizer, resolveModelSource } = await import('@bertq/model');
  const source = await resolveModelSource(
    config.model_format === 'google-checkpoint'
      ? {
          modelDir,
          ...(typeof config.tuned_model_dir === 'string' ? { tunedModelDir: config.tuned_model_dir } : {}),
          ...(typeof config.ckpt_name === 'string' ? { ckptName: config.ckpt_name } : {}),
          ...(typeof config.config_name === 'string' ? { configName: config.config_name } : {}),
        }
      : { model: modelDir },
  );
  const vocabPath = 'vocabPath' in source ? source.vocabPath : undefined;
  const tokenizerJsonPath = 'tokenizerJsonPath' in source ? source.tokenizerJsonPath : undefined;
  const base = { maxPositionEmbeddings, maxSeqLen: config.max_seq_len };
  // The same choice as the Encoder: a Hugging Face tokenizer.json carries the model's own normaliser;
  // the config's cased_tokenization reads false both when it was off and when it was left to that
  // file, so only an explicit true overrides it there.
  const useJson = tokenizerJsonPath !== undefined && (source.kind !== 'checkpoint' || vocabPath === undefined);
  let tokenizer;
  let from: string;
  if (useJson) {
    tokenizer = await BertTokenizer.fromTokenizerJson(tokenizerJsonPath, config.cased_tokenization === true ? { ...base, cased: true } : base);
    from = tokenizerJsonPath;
  } else if (vocabPath !== undefined) {
    tokenizer = await BertTokenizer.fromVocabFile(vocabPath, { ...base, cased: config.cased_tokenization === true });
    from = vocabPath;
  } else {
    throw new ModelError(`no vocab.txt or tokenizer.json beside the fleet's model ${modelDir}`, { details: { file: modelDir } });
  }
  const noSpecialToken = config.no_special_token === true;
  return {
    source: from,
    async count(texts: Texts, isTokenized: boolean): Promise<number[]> {
      const rows = await tokenizer.tokenize(texts, { isTokenized, noSpecialToken });
      return rows.map((r) => r.length);
    },
  };
}
