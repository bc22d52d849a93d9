/**
 * Fuzzed jobs, published straight to a service's stream beside its normal traffic: broken JSON,
 * wrong schemas, odd texts (empty, huge, invalid UTF-8, control characters, lone surrogates), bad or
 * missing headers (id, offset, deadline), replies to subjects a worker must never publish to, and
 * over-large jobs. A seeded generator, so a failing run can be replayed.
 */
import { headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { HEADERS, newRequestId, serviceNames } from '@bertq/protocol';

export interface FuzzReport {
  published: number;
  /** Refused by the stream itself (too big for the lane, a duplicate id): fine, nothing to answer. */
  refusedByStream: number;
  /** Frames that came back on the fuzz results subject (error frames, or vectors for a valid job). */
  answered: number;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const ODD_TEXTS = [
  '',
  '   ',
  'x'.repeat(20_000),
  '\u0000\u0001\u0002',
  '\ud800 lone surrogate',
  '😀'.repeat(100),
  '|||',
  'a ||| ',
  ' ||| b',
  'Café naïve résumé',
  '\t\n\r',
];

/** Publishes `count` fuzzed jobs to the service's two lanes, `window` at a time; answers go to `replyToken`. */
export async function publishFuzzedJobs(
  nc: NatsConnection,
  service: string,
  count: number,
  options: { seed?: number; replyToken?: string; window?: number } = {},
): Promise<FuzzReport> {
  const names = serviceNames(service);
  const js = jetstream(nc);
  const random = rng(options.seed ?? 42);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const goodReply = `bertq.v1.${names.service}.results.${options.replyToken ?? 'fuzz'}`;
  const report: FuzzReport = { published: 0, refusedByStream: 0, answered: 0 };
  const encoder = new TextEncoder();
  const window = options.window ?? 64;

  const one = (i: number): { subject: string; body: Uint8Array; headers: Record<string, string> } => {
    const id = i % 50 === 0 ? `not a valid id ${i}` : newRequestId();
    const h: Record<string, string> = {
      [HEADERS.id]: id,
      [HEADERS.offset]: '0',
      [HEADERS.reply]: goodReply,
      [HEADERS.deadline]: String(Date.now() + 10_000),
      [HEADERS.msgId]: `${id}:0`,
    };
    let body: unknown = { texts: [pick(ODD_TEXTS)] };
    switch (Math.floor(random() * 12)) {
      case 0:
        return { subject: pick([names.jobs.high, names.jobs.bulk]), body: encoder.encode('{not json'), headers: h };
      case 1:
        body = { texts: 'not a list' };
        break;
      case 2:
        body = { texts: [1, null, {}, ['a', 2]] };
        break;
      case 3:
        body = { texts: Array.from({ length: 300 }, (_, k) => `row ${k}`) }; // over max_batch_size
        break;
      case 4:
        body = { texts: ['ok'], show_tokens: 'yes', output: pick(['f64', 'xml', 7]) };
        break;
      case 5:
        delete h[pick([HEADERS.id, HEADERS.offset, HEADERS.reply, HEADERS.deadline])];
        break;
      case 6:
        h[HEADERS.offset] = pick(['-1', 'abc', '1e9', '']);
        break;
      case 7:
        h[HEADERS.deadline] = pick(['0', 'yesterday', String(Date.now() - 1_000)]);
        break;
      case 8:
        // Replies a worker must never publish to: control endpoints, another service, the JetStream API.
        h[HEADERS.reply] = pick([
          `bertq.v1.${names.service}.terminate`,
          'bertq.v1.other.results.x',
          '$JS.API.STREAM.DELETE.X',
          'results.>',
          '',
        ]);
        break;
      case 9:
        return {
          subject: pick([names.jobs.high, names.jobs.bulk]),
          body: Uint8Array.from([0x7b, 0x22, 0x74, 0xff, 0xfe, 0x22, 0x3a, 0x5b, 0x5d, 0x7d]), // invalid UTF-8
          headers: h,
        };
      case 10:
        body = { texts: Array.from({ length: 1 + Math.floor(random() * 8) }, () => pick(ODD_TEXTS)), extra: true };
        break;
      default:
        body = { texts: Array.from({ length: 1 + Math.floor(random() * 4) }, () => `fuzz sentence ${i}`) };
    }
    return {
      subject: pick([names.jobs.high, names.jobs.bulk]),
      body: encoder.encode(JSON.stringify(body)),
      headers: h,
    };
  };

  const sub = nc.subscribe(goodReply, {
    callback: () => {
      report.answered++;
    },
  });
  try {
    for (let start = 0; start < count; start += window) {
      await Promise.all(
        Array.from({ length: Math.min(window, count - start) }, async (_, k) => {
          const job = one(start + k);
          const h = natsHeaders();
          for (const [key, value] of Object.entries(job.headers)) h.set(key, value);
          try {
            await js.publish(job.subject, job.body, { headers: h, timeout: 10_000 });
            report.published++;
          } catch {
            report.refusedByStream++;
          }
        }),
      );
    }
  } finally {
    // Late answers still count for a few seconds; the caller reads the report after its run.
    setTimeout(() => sub.unsubscribe(), 15_000).unref();
  }
  return report;
}
