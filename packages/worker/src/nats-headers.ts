/**
 * The protocol package speaks plain `Record<string, string>` headers (it has no NATS dependency);
 * these two functions convert at the edge.
 */
import { headers as natsHeaders } from '@nats-io/transport-node';
import type { MsgHdrs } from '@nats-io/transport-node';
import type { HeaderMap } from '@bertq/protocol';

export function toNatsHeaders(map: HeaderMap): MsgHdrs {
  const h = natsHeaders();
  for (const [name, value] of Object.entries(map)) h.set(name, value);
  return h;
}

/** First value of each header; an absent header block gives an empty map. */
export function fromNatsHeaders(h: MsgHdrs | undefined): HeaderMap {
  const out: HeaderMap = {};
  if (h === undefined) return out;
  for (const key of h.keys()) out[key] = h.get(key);
  return out;
}
