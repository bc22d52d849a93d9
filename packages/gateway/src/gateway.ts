/**
 * The HTTP gateway: a node:http server in front of one bertq service, itself a NATS client of the
 * fleet (one BertClient, one connection), so it scales and restarts independently of the workers.
 *
 * Every request gets an id (X-Request-Id, echoed), CORS headers, the bearer-token check where the
 * route needs it, a bounded body, and a deadline; every error is JSON with the protocol's code and
 * that code's HTTP status. A one-second ticker feeds the dashboard's history and its event streams.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { BertClient, type FleetStatus, type FrameReport, type NdArray, type VectorsWithTokens } from '@bertq/client';
import { BadRequestError, NoWorkersError, TimeoutError, type ServerConfig } from '@bertq/protocol';
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
import {
  BearerCheck,
  GatewayHttpError,
  answerPreflight,
  applyCors,
  bertqErrorBody,
  checkJsonContentType,
  errorAnswer,
  openAIErrorBody,
  parseJsonObject,
  readBody,
  requestIdOf,
  sendJson,
} from './http.js';
import { GatewayMetrics } from './metrics.js';
import { resolveGatewayOptions, type GatewayOptions, type ResolvedGatewayOptions } from './options.js';
import { GATEWAY_VERSION } from './version.js';

/** Extra time a handler gets past the request deadline before the gateway answers TIMEOUT itself. */
export const HANDLER_GRACE_MS = 2_000;
/** Deadline of the control-plane routes (status, metrics, ready). */
export const CONTROL_ROUTE_TIMEOUT_MS = 10_000;
/** How long the config read behind /v1 checks and /ready is reused. */
export const CONFIG_CACHE_MS = 2_000;
/** Time to receive a whole request (headers and body) from a client. */
export const RECEIVE_TIMEOUT_MS = 60_000;
const TICK_MS = 1_000;

/** A running gateway. */
export interface GatewayHandle {
  /** `http://host:port/` to reach it (127.0.0.1 when listening on all interfaces). */
  readonly url: string;
  readonly port: number;
  /** The gateway's own client of the fleet. */
  readonly client: BertClient<'ndarray'>;
  readonly metrics: GatewayMetrics;
  /** Stops accepting, lets requests in flight finish (up to drainTimeoutMs), closes streams and the client. */
  close(): Promise<void>;
}

/** Which error body shape a route answers with. */
type ErrorStyle = 'bertq' | 'openai';

interface Context {
  req: IncomingMessage;
  res: ServerResponse;
  requestId: string;
  /** Aborted when the client goes away before its answer is written. */
  signal: AbortSignal;
}

interface Route {
  /** Label for metrics (the path itself: routes are a fixed set). */
  name: string;
  // biome-ignore lint/suspicious/noConfusingVoidType: a handler returns a status, or nothing for 200
  methods: Partial<Record<'GET' | 'POST', (ctx: Context) => Promise<number | void>>>;
  /** Needs the bearer token when one is set. */
  auth: boolean;
  errorStyle: ErrorStyle;
  /** Handler deadline in ms; undefined for streams. */
  deadlineMs: number | undefined;
  /** Counts as an encode request in the dashboard's history (rows, latency). */
  encodes: boolean;
}

/** Starts the gateway: connects to the fleet, then listens. Rejects (and cleans up) if either fails. */
export async function startGateway(options: GatewayOptions = {}): Promise<GatewayHandle> {
  const resolved = resolveGatewayOptions(options);
  const log = (options.logger ?? pino({ level: 'silent' })).child({ component: 'gateway' });
  const assets = await loadDashboardAssets();
  const client = await BertClient.connect<'ndarray'>({
    name: 'bertq-gateway',
    ...options.client,
    outputFmt: 'ndarray',
    timeout: resolved.requestTimeoutMs,
  });
  const gateway = new Gateway(resolved, client, assets, log);
  try {
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
  private readonly server: Server;
  private readonly routes: Map<string, Route>;
  private readonly fleet: CachedReading<FleetStatus>;
  private readonly config: CachedReading<ServerConfig>;
  private readonly history: History;
  private readonly events = new EventHub();
  private readonly bearer: BearerCheck | undefined;
  private readonly startedAt = new Date();
  private readonly onFrame = (report: FrameReport): void => {
    this.metrics.observeFrame(report);
    this.history.recordFrame(report);
  };
  private ticker: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private drained: (() => void) | undefined;
  private closing: Promise<void> | undefined;
  private address: AddressInfo | undefined;

  constructor(
    private readonly options: ResolvedGatewayOptions,
    client: BertClient<'ndarray'>,
    private readonly assets: Map<string, DashboardAsset>,
    private readonly log: Logger,
  ) {
    this.client = client;
    this.fleet = new CachedReading(() => client.serverStatus(), options.statusCacheMs);
    this.config = new CachedReading(() => client.serverConfig(), CONFIG_CACHE_MS);
    this.history = new History(options.historyPoints);
    this.bearer = options.token === undefined ? undefined : new BearerCheck(options.token);
    this.routes = this.buildRoutes();
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.requestTimeout = RECEIVE_TIMEOUT_MS;
    this.server.headersTimeout = Math.min(RECEIVE_TIMEOUT_MS, 20_000);
  }

  get port(): number {
    return this.address?.port ?? this.options.port;
  }

  get url(): string {
    const host = this.options.host === '0.0.0.0' || this.options.host === '::' ? '127.0.0.1' : this.options.host;
    return `http://${host.includes(':') ? `[${host}]` : host}:${this.port}/`;
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void =>
        reject(
          new BadRequestError(
            `the gateway cannot listen on ${this.options.host}:${this.options.port}: ${err.message}`,
            { cause: err },
          ),
        );
      this.server.once('error', onError);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    this.address = this.server.address() as AddressInfo;
    this.server.on('error', (err) => this.log.error({ err }, 'http server error'));
    this.ticker = setInterval(() => this.tick(), TICK_MS);
    this.ticker.unref();
    this.log.info(
      { url: this.url, service: this.client.service, auth: this.bearer !== undefined, cors: this.options.cors.kind },
      'gateway listening',
    );
  }

  // ---- routing -------------------------------------------------------------------------------

  private buildRoutes(): Map<string, Route> {
    const encodeDeadline = this.options.requestTimeoutMs + HANDLER_GRACE_MS;
    const route = (
      name: string,
      r: Omit<Route, 'name' | 'errorStyle' | 'encodes'> & Partial<Pick<Route, 'errorStyle' | 'encodes'>>,
    ): [string, Route] => [name, { name, errorStyle: 'bertq', encodes: false, ...r }];
    const asset = (path: string) =>
      route(path, {
        methods: { GET: (ctx) => this.serveAsset(ctx, path) },
        auth: false,
        deadlineMs: CONTROL_ROUTE_TIMEOUT_MS,
      });
    return new Map<string, Route>([
      route('/encode', {
        methods: { POST: (ctx) => this.encode(ctx) },
        auth: true,
        deadlineMs: encodeDeadline,
        encodes: true,
      }),
      route('/v1/embeddings', {
        methods: { POST: (ctx) => this.embeddings(ctx) },
        auth: true,
        deadlineMs: encodeDeadline,
        errorStyle: 'openai',
        encodes: true,
      }),
      route('/status/server', {
        methods: { GET: (ctx) => this.statusServer(ctx) },
        auth: true,
        deadlineMs: CONTROL_ROUTE_TIMEOUT_MS,
      }),
      route('/status/client', {
        methods: { GET: (ctx) => this.statusClient(ctx) },
        auth: true,
        deadlineMs: CONTROL_ROUTE_TIMEOUT_MS,
      }),
      route('/health', {
        methods: { GET: (ctx) => this.health(ctx) },
        auth: false,
        deadlineMs: CONTROL_ROUTE_TIMEOUT_MS,
      }),
      route('/ready', {
        methods: { GET: (ctx) => this.ready(ctx) },
        auth: false,
        deadlineMs: CONTROL_ROUTE_TIMEOUT_MS,
      }),
      route('/metrics', {
        methods: { GET: (ctx) => this.prometheus(ctx) },
        auth: true,
        deadlineMs: CONTROL_ROUTE_TIMEOUT_MS,
      }),
      route('/api/dashboard', {
        methods: { GET: (ctx) => this.dashboardSnapshot(ctx) },
        auth: true,
        deadlineMs: CONTROL_ROUTE_TIMEOUT_MS,
      }),
      route('/events', { methods: { GET: (ctx) => this.eventStream(ctx) }, auth: true, deadlineMs: undefined }),
      asset('/'),
      asset('/dashboard.js'),
      asset('/dashboard.css'),
    ]);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const requestId = requestIdOf(req);
    res.setHeader('X-Request-Id', requestId);
    applyCors(this.options.cors, req, res);
    const path = pathOf(req.url);
    const route = this.routes.get(path);
    const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
    const label = route?.name ?? 'other';
    const style: ErrorStyle = route?.errorStyle ?? (path.startsWith('/v1/') ? 'openai' : 'bertq');
    res.once('finish', () => {
      const seconds = route?.deadlineMs === undefined ? undefined : (performance.now() - started) / 1000;
      this.metrics.httpRequest(label, req.method ?? 'GET', res.statusCode, seconds);
    });

    if (this.closing !== undefined) res.setHeader('Connection', 'close');
    if (method === 'OPTIONS') {
      if (route === undefined) return this.refuse(res, new GatewayHttpError('NOT_FOUND', `no route ${path}`), style);
      answerPreflight(
        this.options.cors,
        req,
        res,
        Object.keys(route.methods).flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m])),
      );
      return;
    }
    if (route === undefined) {
      return this.refuse(
        res,
        new GatewayHttpError(
          'NOT_FOUND',
          `no route ${req.method} ${path}; see GET / for the dashboard and the gateway's README for the API`,
        ),
        style,
      );
    }
    const handler = route.methods[method as 'GET' | 'POST'];
    if (handler === undefined) {
      const allow = Object.keys(route.methods).join(', ');
      return this.refuse(
        res,
        new GatewayHttpError('METHOD_NOT_ALLOWED', `${path} takes ${allow}, not ${req.method}`, { Allow: allow }),
        style,
      );
    }

    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished)
        abort.abort(new BadRequestError('the HTTP client closed the connection before its answer was sent'));
    });
    this.inFlight++;
    this.metrics.inFlight(1);
    let errorCode: string | undefined;
    let rows = 0;
    try {
      if (route.auth && this.bearer !== undefined) this.bearer.check(req.headers.authorization);
      const ctx: Context = { req, res, requestId, signal: abort.signal };
      const run = handler(ctx).then((r) => {
        rows = typeof r === 'number' ? r : 0;
      });
      if (route.deadlineMs === undefined) await run;
      else
        await withDeadline(
          run,
          route.deadlineMs,
          () => new TimeoutError(`the gateway gave up on ${path} after ${route.deadlineMs} ms`),
        );
    } catch (err) {
      const answer = errorAnswer(err);
      errorCode = answer.code;
      if (abort.signal.aborted) {
        this.log.debug({ requestId, path }, 'client left before its answer');
      } else {
        this.fail(res, err, route.errorStyle);
        if (answer.status >= 500)
          this.log.warn({ requestId, path, code: answer.code, error: answer.message }, 'request failed');
      }
    } finally {
      this.inFlight--;
      this.metrics.inFlight(-1);
      if (route.encodes) this.history.recordRequest(Date.now(), performance.now() - started, rows, errorCode);
      else if (errorCode !== undefined) this.history.recordError(errorCode);
      if (this.inFlight === 0) this.drained?.();
    }
  }

  /** An answer refused before any handler ran (unknown route, wrong method). */
  private refuse(res: ServerResponse, err: GatewayHttpError, style: ErrorStyle): void {
    this.history.recordError(err.code);
    this.fail(res, err, style);
  }

  /** Answers an error in the route's shape and counts it by code. */
  private fail(res: ServerResponse, err: unknown, style: ErrorStyle): void {
    const answer = errorAnswer(err);
    this.metrics.error(answer.code);
    const headers = { ...answer.headers };
    // A body we refused to read is still on the wire: the connection cannot be reused.
    if (answer.code === 'TOO_LARGE') headers.Connection = 'close';
    sendJson(res, answer.status, style === 'openai' ? openAIErrorBody(answer) : bertqErrorBody(answer), headers);
  }

  // ---- encode routes -------------------------------------------------------------------------

  private async readJson(ctx: Context): Promise<Record<string, unknown>> {
    checkJsonContentType(ctx.req);
    return parseJsonObject(await readBody(ctx.req, this.options.bodyLimit));
  }

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

  /** POST /encode (bert-as-service). Resolves to the row count. */
  private async encode(ctx: Context): Promise<number> {
    const request = parseEncodeRequest(await this.readJson(ctx));
    const usage = this.counting();
    const result = await this.client.encode(request.texts, {
      isTokenized: request.isTokenized,
      showTokens: request.showTokens,
      signal: ctx.signal,
      onFrame: usage.onFrame,
    });
    const vectors = request.showTokens ? (result as VectorsWithTokens<NdArray>).vectors : (result as NdArray);
    const tokens = request.showTokens ? (result as VectorsWithTokens<NdArray>).tokens : undefined;
    const rows = request.texts.length;
    this.countEncoded('/encode', rows, usage.tokens());
    sendJson(ctx.res, 200, encodeResponseJson(request.id, vectors, tokens));
    return rows;
  }

  /** POST /v1/embeddings (OpenAI). Resolves to the row count. */
  private async embeddings(ctx: Context): Promise<number> {
    const request = parseEmbeddingsRequest(await this.readJson(ctx));
    // Whether workers are alive is the encode's own business (NO_WORKERS at once); the config here
    // only says what they make, so a slightly old one is fine and no request waits for a re-read.
    const config = await this.config.latest();
    checkAgainstConfig(request, config);
    const usage = this.counting();
    const vectors = (await this.client.encode(request.texts, {
      signal: ctx.signal,
      onFrame: usage.onFrame,
    })) as NdArray;
    const promptTokens = usage.tokens();
    const rows = request.texts.length;
    this.countEncoded('/v1/embeddings', rows, promptTokens);
    const body = embeddingsResponseJson(vectors, request, {
      model: servedModelName(config),
      normalize: config.normalize === true,
      promptTokens,
    });
    sendJson(ctx.res, 200, body);
    return rows;
  }

  private countEncoded(endpoint: string, rows: number, tokens: number): void {
    this.metrics.encoded(endpoint, rows, tokens);
  }

  // ---- control routes ------------------------------------------------------------------------

  private async statusServer(ctx: Context): Promise<void> {
    const reading = await this.fleet.get();
    if (!reading.ok) throw reading.error;
    sendJson(ctx.res, 200, JSON.stringify(reading.value));
  }

  private async statusClient(ctx: Context): Promise<void> {
    sendJson(ctx.res, 200, JSON.stringify({ ...this.client.status, gateway: this.gatewayInfo() }));
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

  private async health(ctx: Context): Promise<void> {
    const status = this.client.status;
    if (status.closed) throw new NoWorkersError('the gateway has lost its NATS connection');
    sendJson(
      ctx.res,
      200,
      JSON.stringify({
        status: 'ok',
        service: this.client.service,
        nats: status.server,
        uptime_s: (Date.now() - this.startedAt.getTime()) / 1000,
      }),
    );
  }

  private async ready(ctx: Context): Promise<void> {
    const config = await this.config.value();
    sendJson(
      ctx.res,
      200,
      JSON.stringify({
        ready: true,
        service: config.service,
        worker_id: config.worker_id,
        model: servedModelName(config),
        device: config.device,
      }),
    );
  }

  private async prometheus(ctx: Context): Promise<void> {
    const [reading, workers] = await Promise.all([this.fleet.get(), this.client.workerMetrics().catch(() => [])]);
    const text = await this.metrics.render(reading, workers);
    ctx.res.setHeader('Content-Type', GatewayMetrics.contentType);
    ctx.res.setHeader('Content-Length', Buffer.byteLength(text));
    ctx.res.writeHead(200).end(text);
  }

  // ---- dashboard -----------------------------------------------------------------------------

  private async serveAsset(ctx: Context, path: string): Promise<void> {
    const asset = this.assets.get(path)!;
    ctx.res.setHeader('Content-Type', asset.type);
    ctx.res.setHeader('Content-Length', asset.body.length);
    ctx.res.setHeader('Cache-Control', 'no-cache');
    ctx.res.setHeader('X-Content-Type-Options', 'nosniff');
    ctx.res.writeHead(200).end(asset.body);
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

  private async dashboardSnapshot(ctx: Context): Promise<void> {
    await this.fleet.get();
    sendJson(ctx.res, 200, JSON.stringify(this.snapshot()));
  }

  private async eventStream(ctx: Context): Promise<void> {
    await this.fleet.get();
    this.metrics.dashboardClients(1);
    this.events.open(ctx.res, this.snapshot(), () => this.metrics.dashboardClients(-1));
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
      const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
      this.server.closeIdleConnections();
      if (this.inFlight > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.options.drainTimeoutMs);
          this.drained = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      this.server.closeAllConnections();
      await stopped;
      await this.client.close();
      this.log.info('gateway closed');
    })();
    return this.closing;
  }
}

/** The URL's path without query and trailing slash (except `/` itself). */
function pathOf(url: string | undefined): string {
  const raw = (url ?? '/').split('?')[0]!;
  return raw.length > 1 && raw.endsWith('/') ? raw.slice(0, -1) : raw;
}

/** `promise`, or the error `onTimeout` makes when `ms` pass first. */
function withDeadline<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
