/**
 * The far side of pipeline.bench's bare loops, in its own process as a worker is: plain nats.js, no
 * bertq code. `reply`: answers every core request on `<prefix>.echo`. `work`: consumes the work-queue
 * stream `<stream>` in pulls of up to 64, answers each job with one core-NATS message to the subject
 * in its `Reply` header, then acks it (what a worker does per job, without parsing or a model).
 *
 *   node bench/dist/pipeline-peer.js reply|work <nats url> <prefix> [<stream> <consumer>]
 */
import { connect, headers } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';

const [mode, url, prefix, stream, consumerName] = process.argv.slice(2);
const nc = await connect({ servers: url!, name: `pipeline-peer-${mode}` });
const answer = new Uint8Array(16);

if (mode === 'reply') {
  nc.subscribe(`${prefix}.echo`, {
    callback: (_err, msg) => {
      msg.respond(answer);
    },
  });
} else if (mode === 'work') {
  const consumer = await jetstream(nc).consumers.get(stream!, consumerName!);
  const messages = await consumer.consume({ max_messages: 64 });
  void (async () => {
    for await (const m of messages) {
      const h = headers();
      h.set('Id', m.headers?.get('Id') ?? '');
      nc.publish(m.headers?.get('Reply') ?? `${prefix}.lost`, answer, { headers: h });
      m.ack();
    }
  })();
} else {
  throw new Error(`unknown mode ${mode}`);
}
await nc.flush(); // the server has the subscription before anyone is told to send
process.stdout.write('ready\n');
// Ends when the bench closes its stdin (or exits).
process.stdin.resume();
process.stdin.on('end', () => void nc.close().then(() => process.exit(0)));
