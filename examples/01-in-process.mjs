// node examples/01-in-process.mjs /path/to/model-folder-or-file.onnx
import { Encoder } from '@bertq/model';

const model = process.argv[2] ?? '.cache/demo-model';
const enc = await Encoder.load({ model, poolingStrategy: 'REDUCE_MEAN', poolingLayer: -2 });
const { data, shape, tokens } = await enc.encode(['First do it', 'then do it right', 'then do it better'], {
  showTokens: true,
});
console.log('shape', shape, 'dims', enc.config.dims);
for (let i = 0; i < shape[0]; i++)
  console.log(
    tokens[i].join(' '),
    '→',
    Array.from(data.subarray(i * shape[1], i * shape[1] + 4))
      .map((v) => v.toFixed(3))
      .join(', '),
    '…',
  );
await enc.close();
