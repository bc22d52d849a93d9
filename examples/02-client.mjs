// node examples/02-client.mjs [nats://127.0.0.1:4222]
import { BertClient } from '@bertq/client';

const bc = await BertClient.connect({ servers: process.argv[2] });
const config = await bc.serverConfig();
console.log(
  `service ${config.service}: ${config.pooling_strategy} of layer ${config.pooling_layer}, max_seq_len ${config.max_seq_len}`,
);
const { shape } = await bc.encode(['First do it', 'then do it right', 'then do it better']);
console.log('encoded', shape);

// thousands of sentences: just encode; the client splits, the fleet batches
const many = Array.from({ length: 5000 }, (_, i) => `sentence number ${i}`);
const t0 = performance.now();
const out = await bc.encode(many);
console.log(`encoded ${out.shape[0]} sentences in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
await bc.close();
