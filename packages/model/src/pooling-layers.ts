import { BadRequestError } from '@bertq/protocol';

/**
 * Turns bert-as-service layer indices into 0-based encoder-layer indices: Python indexing over all
 * `numHiddenLayers` layers (so -1 is the model's last layer even when fewer were computed).
 */
export function resolvePoolingLayers(poolingLayer: readonly number[], numHiddenLayers: number): number[] {
  if (poolingLayer.length === 0) throw new BadRequestError('pooling_layer must name at least one layer');
  return poolingLayer.map((l) => {
    if (!Number.isInteger(l) || l < -numHiddenLayers || l >= numHiddenLayers) {
      throw new BadRequestError(
        `pooling_layer ${l} is out of range for a model with ${numHiddenLayers} layers (allowed: ${-numHiddenLayers}..${numHiddenLayers - 1})`,
      );
    }
    return l < 0 ? numHiddenLayers + l : l;
  });
}
