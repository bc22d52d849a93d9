import type { BertConfig } from './types.js';

/**
 * A BertConfig as the snake_case JSON both Google's bert_config.json and Hugging Face's config.json
 * use (`parseBertConfig` reads it back). The Hugging Face flavour adds what transformers expects.
 */
export function bertConfigJson(c: BertConfig, flavour: 'google' | 'huggingface' = 'google'): Record<string, unknown> {
  const base: Record<string, unknown> = {
    attention_probs_dropout_prob: 0.1,
    hidden_act: c.hiddenAct,
    hidden_dropout_prob: 0.1,
    hidden_size: c.hiddenSize,
    initializer_range: 0.02,
    intermediate_size: c.intermediateSize,
    max_position_embeddings: c.maxPositionEmbeddings,
    num_attention_heads: c.numAttentionHeads,
    num_hidden_layers: c.numHiddenLayers,
    type_vocab_size: c.typeVocabSize,
    vocab_size: c.vocabSize,
  };
  if (flavour === 'google') return c.layerNormEps === 1e-12 ? base : { ...base, layer_norm_eps: c.layerNormEps };
  return {
    architectures: ['BertModel'],
    model_type: 'bert',
    ...base,
    layer_norm_eps: c.layerNormEps,
    pad_token_id: 0,
    position_embedding_type: 'absolute',
  };
}
