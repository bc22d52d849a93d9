/**
 * HTTP for the hub: one exchange with a stall watchdog (no request waits forever), redirects that carry
 * credentials only to the same origin (the Authorization header never follows to a CDN), bounded
 * retries with backoff for network errors and 5xx.
 */
import * as http from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import * as https from 'node:https';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { ModelError } from '@bertq/protocol';
import { SHA256_RE } from './id.js';

export const MAX_RETRY_DELAY_MS = 10_000;
export const MAX_REDIRECTS = 10;
/** Chunks received but not yet written before the response is paused. */
export const MAX_QUEUED_CHUNKS = 64;
/** JSON bodies we read into memory (API answers, index and modules files) are small; a bigger one is not what we asked for. */
export const MAX_JSON_BYTES = 64 * 1024 * 1024;

export interface HubContext {
  id: string;
  revision: string;
  endpoint: string;
  endpointOrigin: string;
  token: string | undefined;
  signal: AbortSignal | undefined;
  stallTimeoutMs: number;
  retries: number;
  retryDelayMs: number;
  agents: { http: http.Agent; https: https.Agent };
}

/** Facts the hub (the endpoint's origin, not the CDN) puts in its headers. */
export interface HubHeaders {
  commit?: string;
  linkedSize?: number;
  sha256?: string;
  errorCode?: string;
  errorMessage?: string;
  retryAfterMs?: number;
}

export interface Exchange {
  readonly url: URL;
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /**
   * Pass the body to `write`, chunk by chunk and in order; every chunk resets the stall watchdog.
   * When the connection fails, every chunk that had arrived is written before the error is thrown,
   * so a resume starts right after the last byte received.
   */
  consume(write: (chunk: Buffer) => Promise<void>): Promise<void>;
  /** Release the connection (destroys it when the body was not read to the end). */
  dispose(): void;
}

/** A failure worth retrying: the network, a stall, a truncated body, a 5xx or 429. */
export class TransientError extends Error {
  override name = 'TransientError';
}
export class StallError extends TransientError {
  override name = 'StallError';
}
export class TransientHttpError extends TransientError {
  override name = 'TransientHttpError';
  constructor(
    message: string,
    readonly status: number,
    readonly retryAfterMs: number | undefined,
  ) {
    super(message);
  }
}

export const NETWORK_ERROR_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTDOWN',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

export function isTransient(err: unknown): boolean {
  if (err instanceof TransientError) return true;
  const code = (err as { code?: unknown } | null)?.code;
  // HPE_*: the HTTP parser met a broken stream (a proxy cut it mid-chunk); a fresh attempt is the cure.
  return typeof code === 'string' && (NETWORK_ERROR_CODES.has(code) || code.startsWith('HPE_'));
}

export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}

export function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}

export function sameOriginOnly(ctx: HubContext): (hub: HubHeaders, next: URL) => boolean {
  return (_hub, next) => next.origin === ctx.endpointOrigin;
}

/**
 * Send `method` to `url`, following redirects while `follow` agrees. Authorization goes only to the
 * endpoint's origin: the CDN an LFS file redirects to must not see the token.
 */
export async function open(
  ctx: HubContext,
  start: URL,
  method: 'GET' | 'HEAD',
  extraHeaders: Record<string, string>,
  follow: (hub: HubHeaders, next: URL) => boolean,
): Promise<{ exchange: Exchange; hub: HubHeaders }> {
  const hub: HubHeaders = {};
  let url = start;
  for (let hop = 0; ; hop++) {
    const headers: Record<string, string> = {
      'user-agent': `bertq/0.1 (node ${process.versions.node})`,
      // Sizes and ranges are in bytes of the file itself, not of a compressed body.
      'accept-encoding': 'identity',
      ...extraHeaders,
    };
    if (ctx.token && url.origin === ctx.endpointOrigin) headers.authorization = `Bearer ${ctx.token}`;
    const exchange = await exchangeOnce(ctx, url, method, headers);
    if (url.origin === ctx.endpointOrigin) collectHubHeaders(hub, exchange.headers);
    const location = exchange.headers.location;
    if (!isRedirect(exchange.status) || !location) return { exchange, hub };
    const next = new URL(location, url);
    if (!follow(hub, next)) return { exchange, hub };
    exchange.dispose();
    if (hop >= MAX_REDIRECTS)
      throw new ModelError(`more than ${MAX_REDIRECTS} redirects from ${start.href}`, { details: { url: start.href } });
    if (next.protocol !== 'http:' && next.protocol !== 'https:') {
      throw new ModelError(`${url.host} redirected to a non-HTTP URL ${next.href}`, { details: { url: next.href } });
    }
    url = next;
  }
}

export function collectHubHeaders(hub: HubHeaders, headers: IncomingHttpHeaders): void {
  const text = (name: string): string | undefined => {
    const v = headers[name];
    return typeof v === 'string' && v !== '' ? v : undefined;
  };
  hub.commit ??= text('x-repo-commit');
  hub.linkedSize ??= headerNumber(headers['x-linked-size']);
  // An LFS file's etag is its sha256 (X-Linked-Etag on the redirect, ETag when served directly);
  // a regular file's is a git sha1 (40 hex), which we cannot check against a sha256.
  const etag = normalizeEtag(text('x-linked-etag')) ?? normalizeEtag(text('etag'));
  if (etag && SHA256_RE.test(etag)) hub.sha256 ??= etag;
  hub.errorCode ??= text('x-error-code');
  hub.errorMessage ??= text('x-error-message');
  const retryAfter = headerNumber(headers['retry-after']);
  if (retryAfter !== undefined) hub.retryAfterMs = retryAfter * 1000;
}

export function normalizeEtag(etag: string | undefined): string | undefined {
  return etag?.replace(/^W\//, '').replace(/^"|"$/g, '').toLowerCase();
}

export function headerNumber(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string' || !/^\d+$/.test(value.trim())) return undefined;
  return Number(value.trim());
}

/** One request/response. A watchdog aborts it when no byte comes for `stallTimeoutMs`; the signal aborts it too. */
export function exchangeOnce(
  ctx: HubContext,
  url: URL,
  method: 'GET' | 'HEAD',
  headers: Record<string, string>,
): Promise<Exchange> {
  return new Promise<Exchange>((resolve, reject) => {
    if (ctx.signal?.aborted) {
      reject(ctx.signal.reason);
      return;
    }
    const secure = url.protocol === 'https:';
    let failure: unknown;
    let response: IncomingMessage | undefined;
    const abortWith = (err: unknown): void => {
      if (failure !== undefined) return;
      failure = err;
      response?.destroy(err as Error);
      request.destroy(err as Error);
    };
    const watchdog = setTimeout(
      () =>
        abortWith(new StallError(`no data from ${url.host} for ${ctx.stallTimeoutMs} ms (${method} ${url.pathname})`)),
      ctx.stallTimeoutMs,
    );
    const onAbort = (): void => abortWith(ctx.signal?.reason);
    ctx.signal?.addEventListener('abort', onAbort, { once: true });
    const cleanup = (): void => {
      clearTimeout(watchdog);
      ctx.signal?.removeEventListener('abort', onAbort);
    };
    const request = (secure ? https : http).request(
      url,
      { method, headers, agent: secure ? ctx.agents.https : ctx.agents.http },
      (res) => {
        response = res;
        watchdog.refresh();
        const consume = startReadingBody(res, {
          activity: () => watchdog.refresh(),
          abort: abortWith,
          failure: () => failure,
          finished: cleanup,
          host: url.host,
        });
        resolve({
          url,
          status: res.statusCode ?? 0,
          headers: res.headers,
          consume,
          dispose() {
            cleanup();
            if (!res.complete) res.destroy();
          },
        });
      },
    );
    request.on('error', (err) => {
      cleanup();
      reject(failure ?? err);
    });
    request.end();
  });
}

/**
 * Read `res` from the moment it arrives, in order, into the writer `consume()` will be given later.
 * Reading starts at once because a response destroyed by an error (the server dropped the
 * connection) discards what is still buffered in it: every byte received must reach the disk, so a
 * resume starts right after the last one. Memory stays bounded: past MAX_QUEUED_CHUNKS waiting
 * chunks the response is paused. The returned promise settles after every queued chunk is written.
 */
export function startReadingBody(
  res: IncomingMessage,
  hooks: { activity(): void; abort(err: unknown): void; failure(): unknown; finished(): void; host: string },
): (write: (chunk: Buffer) => Promise<void>) => Promise<void> {
  let provideWriter!: (write: (chunk: Buffer) => Promise<void>) => void;
  const writer = new Promise<(chunk: Buffer) => Promise<void>>((resolve) => (provideWriter = resolve));
  // Resolves with the error, never rejects: nobody may be waiting (a redirect or an error status is disposed unread).
  let settleOutcome!: (err: unknown) => void;
  const outcome = new Promise<unknown>((resolve) => (settleOutcome = resolve));
  let queue: Promise<void> = Promise.resolve();
  let queued = 0;
  let writeError: unknown;
  let settled = false;

  const settle = (err: unknown): void => {
    if (settled) return;
    settled = true;
    void queue.then(() => {
      hooks.finished();
      settleOutcome(writeError ?? (err === undefined ? undefined : (hooks.failure() ?? err)));
    });
  };
  res.on('data', (chunk: Buffer) => {
    hooks.activity();
    if (++queued >= MAX_QUEUED_CHUNKS) res.pause();
    queue = queue.then(async () => {
      if (writeError === undefined) {
        try {
          await (await writer)(chunk);
          hooks.activity();
        } catch (err) {
          writeError = err;
          hooks.abort(err);
        }
      }
      if (--queued < MAX_QUEUED_CHUNKS / 2 && res.isPaused() && !res.destroyed) res.resume();
    });
  });
  res.once('end', () => settle(undefined));
  res.on('error', (err) => settle(err)); // `on`, not `once`: a second error must not go unhandled
  res.once('close', () =>
    settle(
      res.complete ? undefined : new TransientError(`the connection to ${hooks.host} closed before the body ended`),
    ),
  );

  return async (write) => {
    provideWriter(write);
    const err = await outcome;
    if (err !== undefined) throw err;
  };
}

export async function readBody(exchange: Exchange, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  await exchange.consume(async (chunk) => {
    size += chunk.length;
    if (size > limit)
      throw new ModelError(
        `${exchange.url.href} answered more than ${limit} bytes where a small JSON document was expected`,
        { details: { url: exchange.url.href } },
      );
    chunks.push(chunk);
  });
  return Buffer.concat(chunks);
}

/** Run `attempt` until it succeeds, a non-transient error comes, or `ctx.retries` retries are spent. */
export async function withRetries<T>(ctx: HubContext, what: string, attempt: () => Promise<T>): Promise<T> {
  for (let failures = 0; ; ) {
    try {
      return await attempt();
    } catch (err) {
      ctx.signal?.throwIfAborted();
      if (!isTransient(err) || failures >= ctx.retries) {
        if (isTransient(err) && failures > 0 && err instanceof Error)
          err.message = `${err.message} (${what}, after ${failures + 1} attempts)`;
        throw err;
      }
      failures++;
      await sleep(backoffMs(ctx, failures, err), ctx.signal);
    }
  }
}

/** Exponential backoff with jitter (so a fleet of workers does not retry in step); honours Retry-After. */
export function backoffMs(ctx: HubContext, failures: number, err: unknown): number {
  const exponential = Math.min(MAX_RETRY_DELAY_MS, ctx.retryDelayMs * 2 ** Math.max(0, failures - 1));
  const jittered = exponential * (0.5 + Math.random() * 0.5);
  const retryAfter = err instanceof TransientHttpError ? err.retryAfterMs : undefined;
  return retryAfter !== undefined ? Math.min(Math.max(jittered, retryAfter), 60_000) : jittered;
}

/** Waits `ms`, or rejects with the signal's reason when it aborts first. */
export async function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  await delay(ms, undefined, { signal }).catch((err: unknown) => {
    throw signal?.aborted ? signal.reason : err;
  });
}

export function isTruthyEnv(value: string | undefined): boolean {
  return value !== undefined && /^(1|true|yes|on)$/i.test(value.trim());
}

export function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
