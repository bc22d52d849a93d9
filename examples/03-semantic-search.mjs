// node examples/03-semantic-search.mjs [nats://127.0.0.1:4222]
// bert-as-service's "QA semantic search": encode the questions once, then rank them for a query.
import { BertClient } from '@bertq/client';

const questions = [
  'How do I start the server?',
  'Why does the client hang?',
  'How can I encode a pair of sentences?',
  'Can I use my own tokenizer?',
  'How do I get word embeddings instead of sentence embeddings?',
  'How many requests can one server handle?',
  'How do I serve a fine-tuned model?',
];
const bc = await BertClient.connect({ servers: process.argv[2] });
const docs = await bc.encode(questions);
const dims = docs.shape[1];
const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

for (const query of ['tokens of every word', 'my client is stuck', 'fine tuned checkpoint']) {
  const q = (await bc.encode([query])).data;
  const scores = questions.map((_, i) => {
    const d = docs.data.subarray(i * dims, (i + 1) * dims);
    let dot = 0;
    for (let k = 0; k < dims; k++) dot += q[k] * d[k];
    return dot / (norm(q) * norm(d));
  });
  const top = scores
    .map((s, i) => [s, i])
    .sort((a, b) => b[0] - a[0])
    .slice(0, 3);
  console.log(`\n> ${query}`);
  for (const [s, i] of top) console.log(`  ${s.toFixed(3)}  ${questions[i]}`);
}
await bc.close();
