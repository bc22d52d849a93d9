/** Turning assembled rows into the client's output format (bert-as-service's output_fmt). */
import { InternalError } from '@bertq/protocol';
import type { ListVectors, NdArray, OutputFormat, Vectors } from './types.js';

/**
 * Nested arrays from a row-major array: shape [2, 3] gives [[a,b,c],[d,e,f]], shape [2, 2, 3] gives
 * [[[…],[…]],[[…],[…]]]. Values are the float32 values as JS numbers.
 */
export function toNestedList(data: Float32Array, shape: readonly number[]): ListVectors {
  if (shape.length < 2)
    throw new InternalError(
      `list output needs a shape with a row axis and at least one more, got [${shape.join(',')}]`,
    );
  const total = shape.reduce((a, b) => a * b, 1);
  if (total !== data.length)
    throw new InternalError(`shape [${shape.join(',')}] holds ${total} values, data has ${data.length}`);
  const nest = (start: number, axis: number): unknown[] => {
    const size = shape[axis]!;
    if (axis === shape.length - 1) return Array.from(data.subarray(start, start + size));
    const stride = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
    const out = new Array<unknown>(size);
    for (let i = 0; i < size; i++) out[i] = nest(start + i * stride, axis + 1);
    return out;
  };
  return nest(0, 0) as ListVectors;
}

/** The array in the requested format; `ndarray` keeps the Float32Array as is (no copy). */
export function formatVectors<F extends OutputFormat>(format: F, array: NdArray): Vectors<F> {
  return (
    format === 'list' ? toNestedList(array.data, array.shape) : { data: array.data, shape: array.shape }
  ) as Vectors<F>;
}
