/**
 * A model that costs nothing, behind the real engine's interface: the real tokenizer, and `run`
 * returning zero vectors of the real shape at once. With it a fleet measures its serving path by
 * itself (client, broker, worker minus the model): what the path could feed an accelerator with
 * (bench/pipeline.bench.ts, `bertq benchmark --null-model`). Never for serving: every vector is zero.
 */
import type { EmbeddingEngine, EngineRunResult } from './engine.js';

export function nullEngine(real: EmbeddingEngine): EmbeddingEngine {
  return {
    get info() {
      return real.info;
    },
    versions: { ...(real.versions ?? {}), model: 'null (zero vectors, no compute)' },
    tokenize: (texts, options) => real.tokenize(texts, options),
    run: async (rows): Promise<EngineRunResult> => {
      const { dims, tokenLevel } = real.info;
      const longest = rows.reduce((m, r) => Math.max(m, r.length), 0);
      const shape = tokenLevel ? [rows.length, real.tokenLevelLength(longest), dims] : [rows.length, dims];
      return { data: new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, computeMs: 0 };
    },
    tokenLevelLength: (longest) => real.tokenLevelLength(longest),
    close: () => real.close(),
  };
}
