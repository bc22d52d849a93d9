/**
 * The HTTP gateway's flags, shared by `bertq gateway` (on its own) and `bertq start --http-port`
 * (in the same process as the fleet), and their translation into the gateway's options.
 */
import { Flags } from '@oclif/core';
import {
  DEFAULT_BODY_LIMIT,
  DEFAULT_CORS,
  DEFAULT_HTTP_HOST,
  DEFAULT_HTTP_PORT,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_CLIENT_BATCH_SIZE,
  DEFAULT_REQUEST_TIMEOUT_MS,
  parseByteSize,
} from '@bertq/gateway';
import type { GatewayOptions } from '@bertq/gateway';
import { readSecretFile } from './secrets.js';

const HTTP = 'HTTP';

/** Everything but the port, whose meaning differs (required for `gateway`, the switch for `start`). */
export const httpFlags = {
  'http-host': Flags.string({
    summary:
      'Interface the HTTP gateway listens on: 127.0.0.1 (default) only this host; 0.0.0.0 serves the network, as bert-as-service did (then set --http-token).',
    default: DEFAULT_HTTP_HOST,
    env: 'BERTQ_HTTP_HOST',
    helpGroup: HTTP,
  }),
  cors: Flags.string({
    summary:
      "Which web pages may call the HTTP API from a browser: none (default), a comma-separated origin list, or * for any page (bert-as-service's default; unsafe with no --http-token).",
    default: DEFAULT_CORS,
    env: 'BERTQ_CORS',
    helpGroup: HTTP,
  }),
  'http-token': Flags.string({
    summary:
      'Bearer token the HTTP API requires (Authorization: Bearer …); /health, /ready and the dashboard page stay open. Default: no token, an open API.',
    env: 'BERTQ_HTTP_TOKEN',
    helpGroup: HTTP,
    exclusive: ['http-token-file'],
  }),
  'http-token-file': Flags.string({
    summary: 'File holding the HTTP bearer token (a mounted secret; argv shows in `ps`).',
    env: 'BERTQ_HTTP_TOKEN_FILE',
    helpGroup: HTTP,
  }),
  'allowed-hosts': Flags.string({
    summary:
      'Host names the HTTP API answers to without --http-token, comma-separated, besides localhost, 127.0.0.1, ::1 and --http-host (a guard against DNS rebinding); * for any (behind a proxy that checks Host). Needed when serving the network by name without a token.',
    env: 'BERTQ_ALLOWED_HOSTS',
    helpGroup: HTTP,
  }),
  'http-body-limit': Flags.string({
    summary:
      'Largest HTTP request body (bytes, or e.g. 512kb, 10mb); larger ones get 413. Higher admits bigger batches at the cost of gateway memory.',
    default: String(DEFAULT_BODY_LIMIT),
    env: 'BERTQ_HTTP_BODY_LIMIT',
    helpGroup: HTTP,
  }),
  'http-tls-cert': Flags.string({
    summary: 'Serve HTTPS with this certificate (PEM file; with --http-tls-key). Default: plain HTTP.',
    env: 'BERTQ_HTTP_TLS_CERT',
    dependsOn: ['http-tls-key'],
    helpGroup: HTTP,
  }),
  'http-tls-key': Flags.string({
    summary: 'Private key (PEM file) of --http-tls-cert.',
    env: 'BERTQ_HTTP_TLS_KEY',
    dependsOn: ['http-tls-cert'],
    helpGroup: HTTP,
  }),
  'http-max-connections': Flags.integer({
    summary: "Open HTTP connections at once; past it new ones are closed (bert-as-service's -http_max_connect).",
    default: DEFAULT_MAX_CONNECTIONS,
    min: 1,
    env: 'BERTQ_HTTP_MAX_CONNECTIONS',
    helpGroup: HTTP,
  }),
  'max-client-batch-size': Flags.integer({
    summary: 'Rows in one HTTP request; more is 413 (the answer is held in memory: big jobs belong to `bertq encode`).',
    default: DEFAULT_MAX_CLIENT_BATCH_SIZE,
    min: 1,
    env: 'BERTQ_MAX_CLIENT_BATCH_SIZE',
    helpGroup: HTTP,
  }),
  'http-timeout': Flags.integer({
    summary: 'Deadline of one HTTP encode request in ms; past it the answer is 504 and workers drop its queued chunks.',
    default: DEFAULT_REQUEST_TIMEOUT_MS,
    min: 1,
    env: 'BERTQ_HTTP_TIMEOUT',
    helpGroup: HTTP,
  }),
};

/** The HTTP port flag: `required` for `bertq gateway`; optional (off) for `bertq start`. */
export function httpPortFlag(required: boolean) {
  return Flags.integer({
    summary: required
      ? 'Port of the HTTP gateway (bert-as-service /encode, OpenAI /v1/embeddings, dashboard on /, /metrics).'
      : 'Also serve HTTP on this port, in this process, once the fleet is ready: bert-as-service /encode, OpenAI /v1/embeddings, dashboard, /metrics.',
    min: 0,
    max: 65_535,
    env: 'BERTQ_HTTP_PORT',
    helpGroup: HTTP,
    ...(required ? { default: DEFAULT_HTTP_PORT } : {}),
  });
}

export interface HttpFlagValues {
  'http-host': string;
  cors: string;
  'http-token'?: string | undefined;
  'http-token-file'?: string | undefined;
  'allowed-hosts'?: string | undefined;
  'http-body-limit': string;
  'http-timeout': number;
  'http-max-connections': number;
  'max-client-batch-size': number;
  'http-tls-cert'?: string | undefined;
  'http-tls-key'?: string | undefined;
}

/** Gateway options from the flags (not the connection: the caller adds `client`). */
export function gatewayOptionsFromFlags(port: number, flags: HttpFlagValues): Omit<GatewayOptions, 'client'> {
  const token = flags['http-token'] ?? readSecretFile(flags['http-token-file'], '--http-token-file');
  return {
    port,
    host: flags['http-host'],
    cors: flags.cors,
    bodyLimit: parseByteSize(flags['http-body-limit']),
    requestTimeoutMs: flags['http-timeout'],
    maxConnections: flags['http-max-connections'],
    maxClientBatchSize: flags['max-client-batch-size'],
    tls:
      flags['http-tls-cert'] && flags['http-tls-key']
        ? { certFile: flags['http-tls-cert'], keyFile: flags['http-tls-key'] }
        : undefined,
    ...(token ? { token } : {}),
    ...(flags['allowed-hosts'] ? { allowedHosts: flags['allowed-hosts'] } : {}),
  };
}
