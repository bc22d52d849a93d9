// node examples/04-multicast.mjs [nats://127.0.0.1:4222]
// Clients that share an identity share results: a listener receives what a sender asked for.
import { BertClient } from '@bertq/client';

const sender = await BertClient.connect({ servers: process.argv[2] });
const listener = await BertClient.connect({ servers: process.argv[2], identity: sender.identity });
const received = (async () => {
  for await (const delivery of listener.listen()) {
    console.log(
      `listener got rows ${delivery.offset}..${delivery.offset + delivery.rows - 1} of request ${delivery.id} (own: ${delivery.own})`,
    );
    return;
  }
})();
await sender.encode(['hello from the sender']);
await received;
await Promise.all([sender.close(), listener.close()]);
