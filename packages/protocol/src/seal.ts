/**
 * Request keys and seals: how a client knows a result frame was computed from a job it published.
 *
 * A shared `client` role may read every results subject, so any client learns the ids and reply
 * subjects of others' requests and could publish jobs of its own under them: its rows would then be
 * computed and sent to the victim as if they were the victim's. So a client puts a fresh secret key
 * in every job of a request (`Bertq-Key`, seen only by the broker and the workers), and a worker
 * answers each frame with the key's seal (`Bertq-Seal`: a SHA-256 digest). A frame whose seal is not
 * the one its request expects was computed from somebody else's job, and is dropped. The seal, which
 * any reader of the results subject sees, does not give the key away: the digest is one-way.
 */
import { createHash } from 'node:crypto';
import { newRequestId } from './headers.js';

const SEAL_CHARS = 22;

/**
 * A request key: what a request id is made of (22 base-62 characters, ~131 bits from the pooled
 * CSPRNG in headers.ts), drawn again. One generator for both: a call into the CSPRNG per key was what
 * the pool removed from the id (5% of a client's CPU with 1-row requests).
 */
export function newRequestKey(): string {
  return newRequestId();
}

/** What a key looks like on the wire: what the worker accepts in Bertq-Key. */
export const REQUEST_KEY = /^[A-Za-z0-9_-]{16,64}$/;

/** The seal a worker returns for `key`: the first 22 base64url characters (132 bits) of its SHA-256. */
export function sealOf(key: string): string {
  return createHash('sha256').update(key).digest('base64url').slice(0, SEAL_CHARS);
}
