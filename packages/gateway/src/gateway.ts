/**
 * The HTTP gateway: a fastify server in front of one bertq service, itself a NATS client of the
 * fleet (one BertClient, one connection), so it scales and restarts independently of the workers.
 *
 * Every request gets an id (X-Request-Id, echoed), CORS headers, the bearer-token check where the
 * route needs it, a bounded JSON body checked against its ajv schema (bodies.ts), and a deadline;
 * every error is JSON with the protocol's code and that code's HTTP status. Only application/json
 * bodies are read: a cross-site form or text/plain POST, which a browser sends without a CORS
 * preflight, is refused with 415. A one-second ticker feeds the dashboard's history and its streams.
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import secureJson from 'secure-json-parse';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { performance } from 'node:perf_hooks';
import { BertClient, type FleetStatus, type FrameReport, type NdArray, type VectorsWithTokens } from '@bertq/client';
import {
  BadRequestError,
  NoWorkersError,
  OverloadedError,
  TimeoutError,
  TooLargeError,
  decodeUtf8,
  withDeadline,
  type ServerConfig,
} from '@bertq/protocol';
import { pino, type Logger } from 'pino';
import {
  EventHub,
  loadDashboardAssets,
  summarizeFleet,
  type DashboardAsset,
  type DashboardSnapshot,
} from './dashboard.js';
import { encodeResponseJson, parseEncodeRequest } from './encode-route.js';
import {
  checkAgainstConfig,
  embeddingsResponseJson,
  parseEmbeddingsRequest,
  servedModelName,
} from './embeddings-route.js';
import { CachedReading } from './fleet-cache.js';
import { History } from './history.js';
import { BODY_VALIDATORS, EMBEDDINGS_BODY, ENCODE_BODY, TEI_EMBED_BODY } from './bodies.js';
import {
  checkTeiAgainstConfig,
  openAIModel,
  parseTeiEmbedRequest,
  teiEmbedResponseJson,
  teiErrorBody,
  teiInfo,
} from './tei-route.js';
import {
  BearerCheck,
  GatewayHttpError,
  answerPreflight,
  applyCors,
  bertqErrorBody,
  errorAnswer,
  openAIErrorBody,
  requestIdOf,
} from './http.js';
import { GatewayMetrics } from './metrics.js';
import {
  hostAllowed,
  hostName,
  resolveGatewayOptions,
  type GatewayOptions,
  type ResolvedGatewayOptions,
} from './options.js';
import { GATEWAY_VERSION } from './version.js';

/** Extra time a handler gets past the request deadline before the gateway answers TIMEOUT itself. */
export const HANDLER_GRACE_MS = 2_000;
/** Deadline of the control-plane routes (status, metrics, ready). */
export const CONTROL_ROUTE_TIMEOUT_MS = 10_000;
/** How long the config read behind /v1 checks and /ready is reused. */
export const CONFIG_CACHE_MS = 2_000;
/** Time to receive a whole request (headers and body) from a client. */
export { DEFAULT_RECEIVE_TIMEOUT_MS as RECEIVE_TIMEOUT_MS } from './options.js';
const TICK_MS = 1_000;
/** fastify's default idle keep-alive, which its own server (before the serverFactory) had. */
const FASTIFY_KEEP_ALIVE_MS = 72_000;

/** A running gateway. */
export interface GatewayHandle {
  /** `http://host:port/` to reach it (127.0.0.1 when listening on all interfaces). */
  readonly url: string;
  readonly port: number;
  /** The gateway's own client of the fleet. */
  readonly client: BertClient<'ndarray'>;
  readonly metrics: GatewayMetrics;
  /** The routes it serves and their methods (HEAD, answered for every GET, and OPTIONS left out). */
  readonly routes: ReadonlyArray<{ path: string; methods: readonly string[] }>;
  /** Stops accepting, lets requests in flight finish (up to drainTimeoutMs), closes streams and the client. */
  close(): Promise<void>;
}

/** Which error body shape a route answers with. */
type ErrorStyle = 'bertq' | 'openai' | 'tei';

/** What a handler gets. */
interface Context {
  request: FastifyRequest;
  reply: FastifyReply;
  requestId: string;
  /** Aborted when the client goes away before its answer is written. */
  signal: AbortSignal;
}

/** A route's settings, carried in fastify's route config. */
interface RouteConfig {
  /** Label for metrics (the path itself: routes are a fixed set). */
  name: string;
  /** Needs the bearer token when one is set. */
  auth: boolean;
  errorStyle: ErrorStyle;
  /** Handler deadline in ms; undefined for streams. */
  deadlineMs: number | undefined;
  /** Counts as an encode request in the dashboard's history (rows, latency). */
  encodes: boolean;
}

/** A handler resolves to the rows it encoded (0 for others). */
type Handler = (ctx: Context) => Promise<number>;

interface RouteSpec extends RouteConfig {
  method: 'GET' | 'POST';
  handler: Handler;
  /** The JSON schema of a POST body (bodies.ts). */
  body?: object;
}

/** Per request: what the history and metrics need once it is answered. */
interface Outcome {
  started: number;
  rows: number;
  errorCode: string | undefined;
}

/** Starts the gateway: connects to the fleet, then listens. Rejects (and cleans up) if either fails. */
export async function startGateway(options: GatewayOptions = {}): Promise<GatewayHandle> {
  const resolved = resolveGatewayOptions(options);
  const log = (options.logger ?? pino({ level: 'silent' })).child({ component: 'gateway' });
  const assets = await loadDashboardAssets();
  // Read before connecting: a missing certificate fails the start with nothing to clean up.
  const https = resolved.tls === undefined ? undefined : readTls(resolved.tls);
  const client = await BertClient.connect<'ndarray'>({
    name: 'bertq-gateway',
    ...options.client,
    outputFmt: 'ndarray',
    timeout: resolved.requestTimeoutMs,
  });
  let gateway: Gateway;
  try {
    gateway = new Gateway(resolved, client, assets, log, https);
    await gateway.listen();
  } catch (err) {
    await client.close().catch(() => {});
    throw err;
  }
  return gateway;
}

class Gateway implements GatewayHandle {
  readonly metrics = new GatewayMetrics();
  readonly client: BertClient<'ndarray'>;
  private readonly app: FastifyInstance;
  private readonly fleet: CachedReading<FleetStatus>;
  private readonly config: CachedReading<ServerConfig>;
  private readonly history: History;
  private readonly events = new EventHub();
  /** /events streams past the cap check and not yet open (waiting for the fleet reading). */
  private eventsOpening = 0;
  private readonly bearer: BearerCheck | undefined;
  private readonly startedAt = new Date();
  /** Methods of each route path, for 405 answers and CORS preflights. */
  private readonly allowed = new Map<string, string[]>();
  private readonly outcomes = new WeakMap<FastifyRequest, Outcome>();
  private readonly onFrame = (report: FrameReport): void => {
    this.metrics.observeFrame(report);
    this.history.recordFrame(report);
  };
  private ticker: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private closing: Promise<void> | undefined;
  private address: AddressInfo | undefined;

  constructor(
    private readonly options: ResolvedGatewayOptions,
    client: BertClient<'ndarray'>,
    private readonly assets: Map<string, DashboardAsset>,
    private readonly log: Logger,
    https: { cert: Buffer; key: Buffer } | undefined,
  ) {
    this.client = client;
    // Readings follow the connection: one begun before a reconnect is neither waited for nor kept.
    const epoch = () => client.status.reconnects;
    this.fleet = new CachedReading(() => client.serverStatus(), options.statusCacheMs, { epoch });
    this.config = new CachedReading(() => client.serverConfig(), CONFIG_CACHE_MS, { epoch });
    this.history = new History(options.historyPoints);
    this.bearer = options.token === undefined ? undefined : new BearerCheck(options.token);
    // Node checks its request and header timeouts only every connectionsCheckingInterval (30 s by
    // default): a slow client would be cut up to 30 s late. Check 4 times per headers timeout.
    // With a serverFactory fastify applies none of its server settings, so all of them are here.
    const timeouts = {
      requestTimeout: options.receiveTimeoutMs,
      headersTimeout: options.headersTimeoutMs,
      connectionsCheckingInterval: Math.max(100, Math.min(1_000, Math.floor(options.headersTimeoutMs / 4))),
      keepAliveTimeout: FASTIFY_KEEP_ALIVE_MS,
    };
    this.app = Fastify({
      bodyLimit: options.bodyLimit,
      serverFactory: (handler) =>
        https === undefined
          ? createHttpServer({ ...timeouts }, handler)
          : createHttpsServer({ ...timeouts, ...https }, handler),
      genReqId: (req) => requestIdOf(req),
      requestIdHeader: false,
      return503OnClosing: true,
      forceCloseConnections: 'idle',
      routerOptions: { ignoreTrailingSlash: true },
    });
    this.app.server.maxConnections = options.maxConnections;
    // JSON only: fastify's text/plain parser would let a cross-site page POST without a preflight.
    // The JSON parser is ours: invalid UTF-8 is refused (as on NATS) rather than read as U+FFFD.
    this.app.removeContentTypeParser(['text/plain', 'application/json']);
    this.app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => {
      try {
        done(null, parseJsonBody(body as Buffer));
      } catch (err) {
        done(err as Error, undefined);
      }
    });
    // Bodies are checked by bodies.ts's ajv validators, whose failures are already bertq errors.
    this.app.setValidatorCompiler(({ schema }) => {
      const validate = BODY_VALIDATORS.get(schema);
      if (validate === undefined) throw new Error('a gateway route has a body schema bodies.ts does not know');
      return (data: unknown) => {
        try {
          return { value: validate(data) };
        } catch (error) {
          return { error: error as Error };
        }
      };
    });
    this.app.addHook('onRequest', async (request, reply) => this.onRequest(request, reply));
    this.app.setErrorHandler((error, request, reply) => this.onError(error, request, reply));
    this.app.setNotFoundHandler((request, reply) => this.notFound(request, reply));
    for (const spec of this.routeSpecs()) this.addRoute(spec);
  }

  get routes(): Array<{ path: string; methods: string[] }> {
    return [...this.allowed].map(([path, methods]) => ({ path, methods: methods.filter((m) => m !== 'HEAD') }));
  }

  get port(): number {
    return this.address?.port ?? this.options.port;
  }

  get url(): string {
    const host = this.options.host === '0.0.0.0' || this.options.host === '::' ? '127.0.0.1' : this.options.host;
    const scheme = this.options.tls === undefined ? 'http' : 'https';
    return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${this.port}/`;
  }

  async listen(): Promise<void> {
    try {
      await this.app.listen({ port: this.options.port, host: this.options.host });
    } catch (err) {
      await this.app.close().catch(() => undefined);
      throw new BadRequestError(
        `the gateway cannot listen on ${this.options.host}:${this.options.port}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    this.address = this.app.server.address() as AddressInfo;
    this.ticker = setInterval(() => this.tick(), TICK_MS);
    this.ticker.unref();
    this.log.info(
      { url: this.url, service: this.client.service, auth: this.bearer !== undefined, cors: this.options.cors.kind },
      'gateway listening',
    );
  }

  // ---- routing -------------------------------------------------------------------------------

  private routeSpecs(): RouteSpec[] {
    const encodeDeadline = this.options.requestTimeoutMs + HANDLER_GRACE_MS;
    const control = { auth: true, errorStyle: 'bertq', deadlineMs: CONTROL_ROUTE_TIMEOUT_MS, encodes: false } as const;
    const asset = (path: string): RouteSpec => ({
      ...control,
      name: path,
      method: 'GET',
      auth: false,
      handler: (ctx) => this.serveAsset(ctx, path),
    });
    return [
      {
        ...control,
        name: '/encode',
        method: 'POST',
        body: ENCODE_BODY,
        deadlineMs: encodeDeadline,
        encodes: true,
        handler: (ctx) => this.encode(ctx),
      },
      {
        ...control,
        name: '/v1/embeddings',
        method: 'POST',
        body: EMBEDDINGS_BODY,
        deadlineMs: encodeDeadline,
        errorStyle: 'openai',
        encodes: true,
        handler: (ctx) => this.embeddings(ctx),
      },
      {
        ...control,
        name: '/embed',
        method: 'POST',
        body: TEI_EMBED_BODY,
        deadlineMs: encodeDeadline,
        errorStyle: 'tei',
        encodes: true,
        handler: (ctx) => this.teiEmbed(ctx),
      },
      { ...control, name: '/info', method: 'GET', errorStyle: 'tei', handler: (ctx) => this.teiInfo(ctx) },
      { ...control, name: '/v1/models', method: 'GET', errorStyle: 'openai', handler: (ctx) => this.models(ctx) },
      { ...control, name: '/v1/models/*', method: 'GET', errorStyle: 'openai', handler: (ctx) => this.model(ctx) },
      { ...control, name: '/config', method: 'GET', handler: (ctx) => this.serverConfig(ctx) },
      { ...control, name: '/status/server', method: 'GET', handler: (ctx) => this.statusServer(ctx) },
      { ...control, name: '/status/client', method: 'GET', handler: (ctx) => this.statusClient(ctx) },
      { ...control, name: '/health', method: 'GET', auth: false, handler: (ctx) => this.health(ctx) },
      { ...control, name: '/ready', method: 'GET', auth: false, handler: (ctx) => this.ready(ctx) },
      { ...control, name: '/metrics', method: 'GET', handler: (ctx) => this.prometheus(ctx) },
      { ...control, name: '/api/dashboard', method: 'GET', handler: (ctx) => this.dashboardSnapshot(ctx) },
      { ...control, name: '/events', method: 'GET', deadlineMs: undefined, handler: (ctx) => this.eventStream(ctx) },
      asset('/'),
      asset('/dashboard.js'),
      asset('/dashboard.css'),
    ];
  }

  private addRoute(spec: RouteSpec): void {
    const { method, handler, body, ...config } = spec;
    this.allowed.set(spec.name, method === 'GET' ? ['GET', 'HEAD'] : [method]);
    this.app.route({
      method,
      url: spec.name,
      config,
      ...(body === undefined ? {} : { schema: { body } }),
      handler: async (request, reply) => {
        const abort = new AbortController();
        reply.raw.once('close', () => {
          if (!reply.raw.writableFinished) {
            abort.abort(new BadRequestError('the HTTP client closed the connection before its answer was sent'));
          }
        });
        const ctx: Context = { request, reply, requestId: request.id, signal: abort.signal };
        const run = handler(ctx);
        const rows =
          spec.deadlineMs === undefined
            ? await run
            : await withDeadline(
                run,
                spec.deadlineMs,
                () => new TimeoutError(`the gateway gave up on ${spec.name} after ${spec.deadlineMs} ms`),
              );
        const outcome = this.outcomes.get(request);
        if (outcome !== undefined) outcome.rows = rows;
      },
    });
    // CORS preflight of this path: which methods and headers a cross-origin call may use.
    this.app.route({
      method: 'OPTIONS',
      url: spec.name,
      config,
      handler: async (request, reply) => {
        reply.hijack();
        answerPreflight(this.options.cors, request.raw, reply.raw, this.allowed.get(spec.name) ?? []);
      },
    });
  }

  /** Every request: id, CORS, metrics and history on the way out, the bearer check where needed. */
  private async onRequest(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const outcome: Outcome = { started: performance.now(), rows: 0, errorCode: undefined };
    this.outcomes.set(request, outcome);
    reply.header('X-Request-Id', request.id);
    applyCors(this.options.cors, request.raw, reply.raw);
    if (this.closing !== undefined) reply.header('Connection', 'close');
    const config = this.routeConfig(request);
    this.inFlight++;
    this.metrics.inFlight(1);
    reply.raw.once('close', () => {
      this.inFlight--;
      this.metrics.inFlight(-1);
      const seconds = config?.deadlineMs === undefined ? undefined : (performance.now() - outcome.started) / 1000;
      this.metrics.httpRequest(config?.name ?? 'other', request.method, reply.raw.statusCode, seconds);
      if (config?.encodes === true) {
        this.history.recordRequest(Date.now(), performance.now() - outcome.started, outcome.rows, outcome.errorCode);
      } else if (outcome.errorCode !== undefined) this.history.recordError(outcome.errorCode);
    });
    if (config?.auth === true && this.bearer !== undefined && request.method !== 'OPTIONS') {
      this.bearer.check(request.headers.authorization);
    }
    // Without a token, what the token would guard answers only requests that name this gateway: a
    // page re-pointed at 127.0.0.1 by DNS rebinding names its own host.
    if (
      config?.auth === true &&
      this.bearer === undefined &&
      !hostAllowed(this.options.allowedHosts, request.headers.host)
    ) {
      throw new GatewayHttpError(
        'MISDIRECTED_REQUEST',
        `Host ${JSON.stringify(request.headers.host)} is not a name this gateway answers to without a token (a guard against DNS rebinding): call it as localhost or 127.0.0.1, or start it with --allowed-hosts ${hostName(request.headers.host ?? '')} (or --http-token)`,
      );
    }
  }

  private routeConfig(request: FastifyRequest): RouteConfig | undefined {
    const config = request.routeOptions.config as Partial<RouteConfig> | undefined;
    return config?.name === undefined ? undefined : (config as RouteConfig);
  }

  private styleOf(request: FastifyRequest): ErrorStyle {
    return this.routeConfig(request)?.errorStyle ?? (request.url.startsWith('/v1/') ? 'openai' : 'bertq');
  }

  /** Unknown path: 404. Known path, other method: 405 with Allow. */
  private notFound(request: FastifyRequest, reply: FastifyReply): void {
    const path = (request.url.split('?')[0] ?? '/').replace(/(.)\/$/, '$1');
    const allow = this.allowed.get(path);
    const err =
      allow === undefined
        ? new GatewayHttpError(
            'NOT_FOUND',
            `no route ${request.method} ${path}; see GET / for the dashboard and the gateway's README for the API`,
          )
        : new GatewayHttpError(
            'METHOD_NOT_ALLOWED',
            `${path} takes ${allow.filter((m) => m !== 'HEAD').join(', ')}, not ${request.method}`,
            {
              Allow: allow.filter((m) => m !== 'HEAD').join(', '),
            },
          );
    this.onError(err, request, reply);
  }

  /** Every error, whoever raised it (a handler, a hook, fastify itself), answered in the route's shape. */
  private onError(error: unknown, request: FastifyRequest, reply: FastifyReply): void {
    const err = this.translate(error as FastifyError, request);
    const answer = errorAnswer(err);
    const outcome = this.outcomes.get(request);
    if (outcome !== undefined) outcome.errorCode = answer.code;
    if (reply.sent || reply.raw.destroyed) {
      this.log.debug({ requestId: request.id, url: request.url }, 'client left before its answer');
      return;
    }
    if (answer.status >= 500) {
      this.log.warn(
        { requestId: request.id, url: request.url, code: answer.code, error: answer.message },
        'request failed',
      );
    }
    this.metrics.error(answer.code);
    const headers = { ...answer.headers };
    // A body we refused to read is still on the wire: the connection cannot be reused.
    if (answer.code === 'TOO_LARGE') headers.Connection = 'close';
    const style = this.styleOf(request);
    const body =
      style === 'openai' ? openAIErrorBody(answer) : style === 'tei' ? teiErrorBody(answer) : bertqErrorBody(answer);
    void reply.code(answer.status).headers(headers).type(JSON_TYPE).send(body);
  }

  /** Fastify's own refusals (body parsing, limits, content types) as bertq errors. */
  private translate(err: FastifyError, request: FastifyRequest): unknown {
    switch (err.code) {
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return new TooLargeError(
          `request body is over the gateway's limit of ${this.options.bodyLimit} bytes (--http-body-limit); split the request`,
          { details: { limit: this.options.bodyLimit } },
        );
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
        return new GatewayHttpError(
          'UNSUPPORTED_MEDIA_TYPE',
          `request body must be application/json, got Content-Type ${request.headers['content-type'] ?? '(none)'}`,
        );
      default:
        // Empty or broken JSON never gets here: parseJsonBody, the only JSON parser, says so itself.
        if (typeof err.code === 'string' && err.code.startsWith('FST_') && (err.statusCode ?? 500) < 500) {
          return new BadRequestError(err.message, { cause: err });
        }
        return err;
    }
  }

  // ---- encode routes -------------------------------------------------------------------------

  /**
   * The frame observer for one request: feeds the gateway's metrics, and sums the token counts the
   * workers put on every frame (the usage OpenAI clients expect, with no second tokenization here).
   */
  private counting(): { onFrame: (report: FrameReport) => void; tokens: () => number } {
    let tokens = 0;
    return {
      onFrame: (report) => {
        this.onFrame(report);
        // a split row reports its count on every part: take it once
        if (report.tokenCounts && (report.part === undefined || report.part.index === 1))
          for (const n of report.tokenCounts) tokens += n;
      },
      tokens: () => tokens,
    };
  }

  /** Refuses a request of more rows than maxClientBatchSize, before any job is sent. */
  private checkRowCap(rows: number): void {
    const cap = this.options.maxClientBatchSize;
    if (rows <= cap) return;
    throw new TooLargeError(
      `${rows} rows in one request, over this gateway's limit of ${cap} (--max-client-batch-size): send them in requests of at most ${cap}, or use the library client or \`bertq encode\`, which stream`,
      { details: { rows, limit: cap } },
    );
  }

  /** POST /encode (bert-as-service). Resolves to the row count. */
  private async encode(ctx: Context): Promise<number> {
    const request = parseEncodeRequest(ctx.request.body as Record<string, unknown>);
    this.checkRowCap(request.texts.length);
    const usage = this.counting();
    const result = await this.client.encode(request.texts, {
      isTokenized: request.isTokenized,
      showTokens: request.showTokens,
      checkLength: false, // as bert-as-service's HTTP server: what fits is encoded, no warning per request
      signal: ctx.signal,
      onFrame: usage.onFrame,
    });
    const vectors = request.showTokens ? (result as VectorsWithTokens<NdArray>).vectors : (result as NdArray);
    const tokens = request.showTokens ? (result as VectorsWithTokens<NdArray>).tokens : undefined;
    const rows = request.texts.length;
    this.metrics.encoded('/encode', rows, usage.tokens());
    sendJson(ctx.reply, encodeResponseJson(request.id, vectors, tokens));
    return rows;
  }

  /** POST /v1/embeddings (OpenAI). Resolves to the row count. */
  private async embeddings(ctx: Context): Promise<number> {
    const request = parseEmbeddingsRequest(ctx.request.body as Record<string, unknown>);
    this.checkRowCap(request.texts.length);
    // Whether workers are alive is the encode's own business (NO_WORKERS at once); the config here
    // only says what they make, so a slightly old one is fine and no request waits for a re-read.
    const config = await this.config.latest();
    checkAgainstConfig(request, config);
    const usage = this.counting();
    const vectors = (await this.client.encode(request.texts, {
      checkLength: false, // OpenAI's API has no such check; the gateway's log stays quiet
      signal: ctx.signal,
      onFrame: usage.onFrame,
    })) as NdArray;
    const promptTokens = usage.tokens();
    const rows = request.texts.length;
    this.metrics.encoded('/v1/embeddings', rows, promptTokens);
    const body = embeddingsResponseJson(vectors, request, {
      model: servedModelName(config),
      normalize: config.normalize === true,
      promptTokens,
    });
    sendJson(ctx.reply, body);
    return rows;
  }

  // ---- control routes ------------------------------------------------------------------------

  /** POST /embed (Text Embeddings Inference). Resolves to the row count. */
  private async teiEmbed(ctx: Context): Promise<number> {
    const request = parseTeiEmbedRequest(ctx.request.body as Record<string, unknown>);
    this.checkRowCap(request.texts.length);
    const config = await this.config.latest();
    checkTeiAgainstConfig(request, config);
    const usage = this.counting();
    const vectors = (await this.client.encode(request.texts, {
      checkLength: !request.truncate, // TEI's truncate: false refuses what max_seq_len would cut
      signal: ctx.signal,
      onFrame: usage.onFrame,
    })) as NdArray;
    const rows = request.texts.length;
    this.metrics.encoded('/embed', rows, usage.tokens());
    sendJson(ctx.reply, teiEmbedResponseJson(vectors, request.normalize && config.normalize !== true));
    return rows;
  }

  /** GET /info (Text Embeddings Inference): what the service runs. */
  private async teiInfo(ctx: Context): Promise<number> {
    const info = teiInfo(await this.config.latest(), {
      maxClientBatchSize: this.options.maxClientBatchSize,
      version: GATEWAY_VERSION,
    });
    sendJson(ctx.reply, JSON.stringify(info));
    return 0;
  }

  /** GET /v1/models (OpenAI): the one model this gateway serves. */
  private async models(ctx: Context): Promise<number> {
    sendJson(ctx.reply, JSON.stringify({ object: 'list', data: [openAIModel(await this.config.latest())] }));
    return 0;
  }

  /** GET /v1/models/{id} (OpenAI): the model when `id` names it, else OpenAI's model_not_found. */
  private async model(ctx: Context): Promise<number> {
    const model = openAIModel(await this.config.latest());
    const id = decodeURIComponent((ctx.request.params as { '*'?: string })['*'] ?? '');
    if (id !== model.id) {
      throw new GatewayHttpError('NOT_FOUND', `The model '${id}' does not exist; this gateway serves '${model.id}'`);
    }
    sendJson(ctx.reply, JSON.stringify(model));
    return 0;
  }

  /** GET /config: the service's configuration, bert-as-service's `server_config` (a fresh read). */
  private async serverConfig(ctx: Context): Promise<number> {
    sendJson(ctx.reply, JSON.stringify(await this.client.serverConfig()));
    return 0;
  }

  private async statusServer(ctx: Context): Promise<number> {
    const reading = await this.fleet.get();
    if (!reading.ok) throw reading.error;
    sendJson(ctx.reply, JSON.stringify(reading.value));
    return 0;
  }

  private async statusClient(ctx: Context): Promise<number> {
    sendJson(ctx.reply, JSON.stringify({ ...this.client.status, gateway: this.gatewayInfo() }));
    return 0;
  }

  private gatewayInfo() {
    return {
      version: GATEWAY_VERSION,
      url: this.url,
      started_at: this.startedAt.toISOString(),
      uptime_s: (Date.now() - this.startedAt.getTime()) / 1000,
      in_flight: this.inFlight,
      http_requests: this.metrics.requestsTotal,
      errors: this.metrics.errorsTotal,
      dashboard_clients: this.events.size,
      auth: this.bearer !== undefined,
      body_limit: this.options.bodyLimit,
      request_timeout_ms: this.options.requestTimeoutMs,
    };
  }

  /** Open to probes without the token, but then only ok / not ok: no addresses, ids or model paths. */
  private withheld(ctx: Context): boolean {
    return this.bearer !== undefined && !this.bearer.ok(ctx.request.headers.authorization);
  }

  /**
   * Throws NO_WORKERS, at once, while the gateway's NATS connection is down: /health and /ready say so
   * instead of waiting on requests that cannot go out.
   */
  private requireConnected(ctx: Context, withheldMessage: string): void {
    const status = this.client.status;
    if (status.connected) return;
    if (this.withheld(ctx)) throw new NoWorkersError(withheldMessage);
    if (status.closed) throw new NoWorkersError('the gateway has lost its NATS connection');
    throw new NoWorkersError(
      `the gateway is reconnecting to NATS (disconnected since ${status.disconnectedSince ?? 'just now'}); requests wait for it within their deadlines`,
    );
  }

  private async health(ctx: Context): Promise<number> {
    this.requireConnected(ctx, 'not ok');
    if (this.withheld(ctx)) {
      sendJson(ctx.reply, '{"status":"ok"}');
      return 0;
    }
    sendJson(
      ctx.reply,
      JSON.stringify({
        status: 'ok',
        service: this.client.service,
        nats: this.client.status.server,
        uptime_s: (Date.now() - this.startedAt.getTime()) / 1000,
      }),
    );
    return 0;
  }

  private async ready(ctx: Context): Promise<number> {
    this.requireConnected(ctx, 'not ready');
    if (this.withheld(ctx)) {
      await this.config.value().catch(() => {
        throw new NoWorkersError('not ready');
      });
      sendJson(ctx.reply, '{"ready":true}');
      return 0;
    }
    const config = await this.config.value();
    sendJson(
      ctx.reply,
      JSON.stringify({
        ready: true,
        service: config.service,
        worker_id: config.worker_id,
        model: servedModelName(config),
        device: config.device,
      }),
    );
    return 0;
  }

  private async prometheus(ctx: Context): Promise<number> {
    const [reading, workers] = await Promise.all([this.fleet.get(), this.client.workerMetrics().catch(() => [])]);
    const text = await this.metrics.render(reading, workers);
    if (!ctx.reply.sent) void ctx.reply.type(GatewayMetrics.contentType).send(text);
    return 0;
  }

  // ---- dashboard -----------------------------------------------------------------------------

  private async serveAsset(ctx: Context, path: string): Promise<number> {
    const asset = this.assets.get(path);
    if (asset === undefined) throw new GatewayHttpError('NOT_FOUND', `no asset ${path}`);
    void ctx.reply
      .type(asset.type)
      .header('Cache-Control', 'no-cache')
      .header('X-Content-Type-Options', 'nosniff')
      .send(asset.body);
    return 0;
  }

  private snapshot(): DashboardSnapshot {
    return {
      service: this.client.service,
      gateway: {
        version: GATEWAY_VERSION,
        startedAt: this.startedAt.toISOString(),
        tokenRequired: this.bearer !== undefined,
      },
      fleet: summarizeFleet(this.client.service, this.fleet.peek()),
      history: this.history.all(),
    };
  }

  private async dashboardSnapshot(ctx: Context): Promise<number> {
    await this.fleet.get();
    sendJson(ctx.reply, JSON.stringify(this.snapshot()));
    return 0;
  }

  private async eventStream(ctx: Context): Promise<number> {
    // The slot is taken before the first await: counting only open streams let 378 of 500 parallel
    // opens past a cap of 32, each passing the check while the others waited for the fleet.
    if (this.events.size + this.eventsOpening >= this.options.maxEventStreams) {
      throw new OverloadedError(
        `${this.events.size + this.eventsOpening} dashboards are connected, the most this gateway serves; close one, or raise maxEventStreams`,
      );
    }
    this.eventsOpening++;
    try {
      await this.fleet.get();
    } finally {
      this.eventsOpening--;
    }
    this.metrics.dashboardClients(1);
    // A stream outlives the handler: fastify hands the raw response over.
    ctx.reply.hijack();
    this.events.open(ctx.reply.raw, this.snapshot(), () => this.metrics.dashboardClients(-1));
    return 0;
  }

  private tick(): void {
    const point = this.history.sample(Date.now(), this.fleet.peek(), this.inFlight);
    if (this.events.size === 0) return;
    // Refresh in the background: this tick shows the last reading, the next one the fresh one.
    void this.fleet.get();
    this.events.broadcast({ point, fleet: summarizeFleet(this.client.service, this.fleet.peek()) });
  }

  // ---- shutdown ------------------------------------------------------------------------------

  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.ticker !== undefined) clearInterval(this.ticker);
      this.events.endAll();
      // Requests in flight may finish within drainTimeoutMs; then every connection is cut.
      const closed = this.app.close();
      const timer = setTimeout(() => this.app.server.closeAllConnections(), this.options.drainTimeoutMs);
      await closed;
      clearTimeout(timer);
      await this.client.close();
      this.log.info('gateway closed');
    })();
    return this.closing;
  }
}

const JSON_TYPE = 'application/json; charset=utf-8';

/** A JSON answer (text already serialised); nothing when the answer went out already (a deadline). */
function sendJson(reply: FastifyReply, text: string): void {
  if (!reply.sent) void reply.type(JSON_TYPE).send(text);
}

/** A JSON request body: UTF-8 (strictly), not empty, JSON, without prototype-poisoning keys. */
function parseJsonBody(body: Buffer): unknown {
  const text = decodeUtf8(body);
  if (!text.ok) throw new BadRequestError(`request body is not valid UTF-8 at byte ${text.invalidAt}`);
  if (text.text.trim() === '') throw new BadRequestError('request body is empty: send a JSON object');
  try {
    return secureJson.parse(text.text, undefined, { protoAction: 'error', constructorAction: 'error' });
  } catch (err) {
    throw new BadRequestError(`request body is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}

function readTls(tls: { certFile: string; keyFile: string }): { cert: Buffer; key: Buffer } {
  try {
    return { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) };
  } catch (err) {
    throw new BadRequestError(`cannot read the gateway's TLS certificate or key: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
