/**
 * The protocol package speaks plain `Record<string, string>` headers (it has no NATS dependency);
 * these two functions are the only place they are converted to and from nats.js headers.
 */
import { headers as natsHeaders } from '@nats-io/transport-node';
import type { MsgHdrs } from '@nats-io/transport-node';
import type { HeaderMap } from '@bertq/protocol';

/** NATS headers from a plain header map. */
export function toNatsHeaders(map: HeaderMap): MsgHdrs {
  const h = natsHeaders();
  for (const [name, value] of Object.entries(map)) h.set(name, value);
  return h;
}

/** A plain header map from NATS headers: first value of each name; no header block gives `{}`. */
export function fromNatsHeaders(h: MsgHdrs | undefined): HeaderMap {
  const out: HeaderMap = {};
  if (h === undefined) return out;
  for (const name of h.keys()) out[name] = h.get(name);
  return out;
}
