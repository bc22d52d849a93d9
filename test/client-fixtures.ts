/**
 * Shared pieces of the client end-to-end tests (test/client-*.nats.test.ts): the tiny model, an
 * encoder loaded on it, sentences that exercise the tokenizer, and a fresh service name per test.
 */
import { Encoder, type EncoderOptions } from '@bertq/model';
import { tinyModel } from '@bertq/testing';

/** Vectors through the fleet must equal in-process vectors to this (both run the same graph). */
export const TOLERANCE = 1e-6;

/** Short and long rows, a sentence pair, unicode and an unknown-ish word. */
export const SENTENCES = [
  'hello world',
  'First do it',
  'then do it right',
  'then do it better',
  'the quick brown fox jumps over the lazy dog near the river bank on a sunny afternoon',
  'good day ||| nice weather',
  'Café naïve résumé',
  'xyzzyplugh',
];

/** An encoder on the tiny model, one inference thread (the test machine is shared). */
export async function loadEncoder(options: Partial<EncoderOptions> = {}): Promise<Encoder> {
  const tiny = await tinyModel();
  return Encoder.load({ model: tiny.huggingFaceDir, graphTmpDir: tiny.graphDir, threads: 1, ...options });
}

export { freshService } from '@bertq/testing';

export { maxAbsDiff } from '@bertq/testing';

/** `count` distinct sentences of varied length, so a row out of place changes the vectors. */
export function manySentences(count: number): string[] {
  const words = ['alpha', 'river', 'stone', 'cloud', 'green', 'swift', 'quiet', 'north', 'ember', 'maple'];
  return Array.from({ length: count }, (_, i) => {
    const n = 2 + (i % 9);
    const parts = [String(i)];
    for (let k = 0; k < n; k++) parts.push(words[(i * 7 + k * 3) % words.length]!);
    return parts.join(' ');
  });
}
