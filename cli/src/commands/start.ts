import { Flags } from '@oclif/core';
import { startGateway } from '@bertq/gateway';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger, type NatsConnectOptions } from '@bertq/nats';
import { ensureNatsServer, otherServicesOn, startFleet, startPrivateNatsServer } from '@bertq/worker';
import type { EnsureNatsServerOptions, EnsuredNatsServer, FleetHandle, FleetReadyInfo } from '@bertq/worker';
import { BadRequestError, UnauthorizedError, WORKER_INBOX_PREFIX } from '@bertq/protocol';
import { startHealthServer } from '../health-server.js';
import { BaseCommand, ENVIRONMENT_HELP } from '../base.js';
import { createProgress } from '../progress.js';
import type { ProgressReporter } from '../progress.js';
import { gatewayOptionsFromFlags, httpFlags, httpPortFlag } from '../http-flags.js';
import { FlagError, encoderOptionsFromFlags, modelFlags, parseIntList } from '../model-flags.js';
import { assertPortFree } from '../port-check.js';
import { writePortFile } from '../port-file.js';
import { warnIfOnCommandLine } from '../secrets.js';
import { streamFlags, streamOptionsFromFlags } from '../stream-flags.js';

/** How often a terminated `bertq start` checks whether others still use its embedded server. */
const EMBEDDED_CHECK_MS = 2_000;
const FLEET = 'FLEET';

export default class Start extends BaseCommand<typeof Start> {
  static override summary = 'Start a worker fleet that serves a BERT model on NATS.';
  static override description =
    `Loads the model once (building its ONNX graph, or taking it from the cache), then starts --num-worker worker processes that pull encode jobs from the service's JetStream queue. When --server is local and no NATS server answers there, an embedded nats-server -js is started. Runs until Ctrl-C / SIGTERM, then drains: jobs in hand are finished, queued jobs stay queued for the next worker.` +
    `\n\n${ENVIRONMENT_HELP}`;
  static override examples = [
    '<%= config.bin %> start --model-dir /tmp/english_L-12_H-768_A-12/ --num-worker 4',
    '<%= config.bin %> start --model sentence-transformers/all-MiniLM-L6-v2 --pooling-layer=-1 --normalize',
    '<%= config.bin %> start --model-dir /models/bert --pooling-strategy NONE --max-seq-len NONE --show-tokens-to-client',
  ];
  static override flags = {
    ...modelFlags,
    'num-worker': Flags.integer({
      summary: 'Worker processes; each runs one model copy (one per GPU, or a slice of the CPU cores).',
      default: 1,
      min: 1,
      env: 'BERTQ_NUM_WORKER',
      helpGroup: FLEET,
    }),
    'max-batch-size': Flags.integer({
      summary: 'Most sentences per inference batch, and per job a client sends; larger batches are split.',
      default: 256,
      min: 1,
      env: 'BERTQ_MAX_BATCH_SIZE',
      helpGroup: FLEET,
    }),
    'max-batch-tokens': Flags.integer({
      summary: 'Most padded tokens (rows × longest) per inference batch: bounds memory and latency.',
      min: 1,
      env: 'BERTQ_MAX_BATCH_TOKENS',
      helpGroup: FLEET,
    }),
    'priority-batch-size': Flags.integer({
      summary: 'Requests of at most this many sentences jump ahead of bulk work.',
      default: 16,
      min: 0,
      env: 'BERTQ_PRIORITY_BATCH_SIZE',
      helpGroup: FLEET,
    }),
    'prefetch-size': Flags.integer({
      summary:
        'Jobs each worker pulls ahead of the model: more keeps the model busy, fewer leaves work for other workers.',
      min: 1,
      env: 'BERTQ_PREFETCH_SIZE',
      helpGroup: FLEET,
    }),
    ...streamFlags,
    cpu: Flags.boolean({
      summary: 'Run on CPU even when --device-map names GPUs.',
      env: 'BERTQ_CPU',
      helpGroup: FLEET,
    }),
    'device-map': Flags.string({
      summary: 'GPU ids for the workers, round-robin (e.g. 0,1,2,3); given, workers run on CUDA.',
      env: 'BERTQ_DEVICE_MAP',
      helpGroup: FLEET,
    }),
    threads: Flags.integer({
      summary: 'Inference threads per worker (default: cores / num-worker).',
      min: 1,
      env: 'BERTQ_THREADS',
      helpGroup: FLEET,
    }),
    'shared-weights': Flags.boolean({
      summary:
        'CPU workers share one copy of the weights, mapped from the graph cache, instead of each holding its own: less memory per worker, 13-35% slower (int8 most).',
      env: 'BERTQ_SHARED_WEIGHTS',
      helpGroup: FLEET,
    }),
    'health-port': Flags.integer({
      summary:
        'Serve GET /healthz (supervisor alive) and /readyz (every worker ready) on this port, for Kubernetes probes; answers carry no model or network details.',
      min: 0,
      max: 65_535,
      env: 'BERTQ_HEALTH_PORT',
      helpGroup: FLEET,
    }),
    'health-host': Flags.string({
      summary:
        'Interface of --health-port: 127.0.0.1 (default); 0.0.0.0 in a container, where the kubelet probes the pod IP.',
      default: '127.0.0.1',
      env: 'BERTQ_HEALTH_HOST',
      helpGroup: FLEET,
    }),
    verbose: Flags.boolean({ summary: 'Debug logging (same as --log-level debug).', env: 'BERTQ_VERBOSE' }),
    'http-port': httpPortFlag(false),
    'client-port': Flags.integer({
      summary:
        "Serve bert-as-service's Python client (clients/python: BertClient(port=…)) on this port: the same HTTP gateway as --http-port. bert-serving-start sets it from -port (default 5555).",
      min: 1,
      max: 65_535,
      env: 'BERTQ_CLIENT_PORT',
      helpGroup: 'HTTP',
    }),
    'own-nats': Flags.boolean({
      summary:
        "Start a nats-server of this command's own on a free local port, and never join one that is already running (bert-serving-start does this unless --server is given).",
      env: 'BERTQ_OWN_NATS',
      helpGroup: 'CONNECTION',
    }),
    ...httpFlags,
  };

  /**
   * After a terminate, an embedded server that other services still use stays up (this process owns
   * it: its end would take the server along) until they are gone, or until Ctrl-C / SIGTERM.
   */
  private async keepEmbeddedWhileUsed(
    nats: { started: boolean; url: string },
    service: string,
    connection: Omit<NatsConnectOptions, 'servers'>,
  ): Promise<void> {
    if (!nats.started) return;
    let others = await otherServicesOn(nats.url, service, connection);
    if (others.length === 0) return;
    this.logToStderr(
      `the embedded nats-server at ${nats.url} stays up while service(s) ${others.join(', ')} use it; it stops when they do (Ctrl-C stops it now)`,
    );
    const interrupted = new Promise<'stop'>((resolve) => {
      process.once('SIGINT', () => resolve('stop'));
      process.once('SIGTERM', () => resolve('stop'));
    });
    while (others.length > 0) {
      const next = await Promise.race([interrupted, sleep(EMBEDDED_CHECK_MS).then(() => 'check' as const)]);
      if (next === 'stop') return;
      others = await otherServicesOn(nats.url, service, connection);
    }
    this.logToStderr(`no other service uses the embedded nats-server at ${nats.url}; stopping it`);
  }

  /**
   * The NATS server of this fleet: the one at `url` (an embedded one when nothing answers there and
   * the URL is local), or with --own-nats always a private one (a port and store of its own).
   */
  private natsServer(url: string, options: EnsureNatsServerOptions): Promise<EnsuredNatsServer> {
    return this.flags['own-nats'] ? startPrivateNatsServer(options) : ensureNatsServer(url, options);
  }

  public async run(): Promise<FleetReadyInfo> {
    const { flags } = this;
    let encoder;
    let deviceMap: number[] | undefined;
    const gateways: Array<{ flag: string; options: ReturnType<typeof gatewayOptionsFromFlags> }> = [];
    warnIfOnCommandLine('http-token', 'BERTQ_HTTP_TOKEN or --http-token-file');
    try {
      encoder = encoderOptionsFromFlags(flags);
      deviceMap = flags['device-map'] ? parseIntList(flags['device-map'], '--device-map') : undefined;
      for (const flag of ['http-port', 'client-port'] as const) {
        const port = flags[flag];
        if (port !== undefined && !gateways.some((g) => g.options.port === port))
          gateways.push({ flag: `--${flag}`, options: gatewayOptionsFromFlags(port, flags) });
      }
    } catch (err) {
      if (err instanceof FlagError) this.error(err.message, { exit: 2 });
      throw err;
    }
    const logLevel = flags.verbose ? 'debug' : flags['log-level'];
    const log = createLogger(logLevel, { component: 'cli' });
    const servers = this.servers();
    // Every connection of the fleet reads replies on the workers' inbox, which no client may read.
    const connection = { ...this.connectionOptions('bertq start'), inboxPrefix: WORKER_INBOX_PREFIX };

    // A taken HTTP port fails now, before a model is loaded and workers are forked.
    for (const g of gateways) await assertPortFree(g.options.host ?? '127.0.0.1', g.options.port ?? 0, g.flag);
    // The probes answer from now on: loading a model can take longer than a liveness probe waits.
    let fleet: FleetHandle | undefined;
    let fleetClosed = false;
    const health =
      flags['health-port'] === undefined
        ? undefined
        : await startHealthServer({
            host: flags['health-host'],
            port: flags['health-port'],
            live: () => ({ ok: !fleetClosed, detail: fleetClosed ? 'the fleet has stopped' : 'running' }),
            ready: () => {
              const want = flags['num-worker'];
              const have = fleet?.workers.length ?? 0;
              if (fleet === undefined)
                return { ok: false, detail: fleetClosed ? 'the fleet has stopped' : 'loading the model' };
              return { ok: have === want && !fleetClosed, detail: `${have} of ${want} workers ready` };
            },
          }).catch((err: unknown) => {
            throw new BadRequestError(
              `cannot serve --health-port ${flags['health-port']} on ${flags['health-host']}: ${(err as Error).message}`,
              { cause: err },
            );
          });

    // Whatever happens from here, the probes' port is closed last, and the embedded server stopped.
    try {
      // The embedded default: a local URL where nothing answers gets its own nats-server -js.
      const nats = await this.natsServer(servers[0]!, { logger: log, connection });
      // One line, always: which NATS server this fleet is on, and whether this command started it.
      this.logToStderr(
        nats.started
          ? `started an embedded nats-server -js at ${nats.url} (pid ${nats.pid}, store ${nats.storeDir}${flags['own-nats'] ? '; its own, on a free port: it joins no running server' : ''})`
          : `using the NATS server already running at ${nats.url} (bertq did not start it)`,
      );
      try {
        // A hub download draws its bar here, in the CLI; the model package only reports progress.
        let download: ProgressReporter | undefined;
        if (process.stderr.isTTY && !flags.json) {
          encoder.hub = {
            ...encoder.hub,
            onProgress: (p) => {
              download ??= createProgress({
                label: `download ${encoder.model ?? ''}`.trim(),
                unit: 'bytes',
                total: p.total,
              });
              if (p.total !== undefined) download.setTotal(p.total);
              download.update(p.loaded);
            },
          };
        }

        const stream = streamOptionsFromFlags(flags);
        try {
          fleet = await startFleet({
            // With --own-nats the server this command started, wherever --server points.
            servers: flags['own-nats'] ? [nats.url] : servers,
            connection,
            service: flags.service,
            numWorker: flags['num-worker'],
            encoder,
            cpu: flags.cpu,
            logLevel,
            logger: log,
            stream,
            maxBatchSize: flags['max-batch-size'],
            priorityBatchSize: flags['priority-batch-size'],
            ...(deviceMap ? { deviceMap } : {}),
            ...(flags.threads ? { threadsPerWorker: flags.threads } : {}),
            ...(flags['shared-weights'] ? { sharedWeights: true } : {}),
            ...(flags['max-batch-tokens'] ? { maxBatchTokens: flags['max-batch-tokens'] } : {}),
            ...(flags['prefetch-size'] ? { prefetch: flags['prefetch-size'] } : {}),
            ...(flags['show-tokens-to-client'] ? { showTokensToClient: true } : {}),
          });
        } catch (err) {
          download?.fail(err instanceof Error ? err.message : String(err));
          fleetClosed = true;
          throw err;
        }
        download?.done();
        void fleet.closed.then(() => {
          fleetClosed = true;
        });
        const r = fleet.ready;
        this.logToStderr(
          `bertq ready: service "${r.service}" on ${nats.url}, model ${r.model}, ${r.dims}-dim vectors, ${r.workers} worker(s) on ${[...new Set(r.devices)].join(', ')}${r.int8Kernel ? `, int8 on ${r.int8Kernel}` : ''}`,
        );
        // The HTTP gateway, in this process, once the fleet answers; a NATS client like any other.
        const started: Array<Awaited<ReturnType<typeof startGateway>>> = [];
        for (const g of gateways) {
          let gateway;
          try {
            gateway = await startGateway({
              ...g.options,
              client: { ...this.clientOptions(), servers: [nats.url], name: 'bertq start gateway' },
              logger: log,
            });
          } catch (err) {
            await Promise.all(started.map((s) => s.close()));
            await fleet.stop();
            if ((err as { code?: string }).code !== 'UNAUTHORIZED') throw err;
            throw new UnauthorizedError(
              `the HTTP gateway of bertq start connects as a client with the fleet's own NATS credential, which may not publish jobs or read results (the shipped worker role may not): run \`bertq gateway\` with the client credential instead of ${g.flag} (${(err as Error).message})`,
              { cause: err },
            );
          }
          started.push(gateway);
          this.logToStderr(
            g.flag === '--client-port'
              ? `bert-as-service clients: BertClient(port=${g.options.port}) (clients/python) and POST ${new URL('/encode', gateway.url)}`
              : `bertq http gateway at ${gateway.url} (dashboard on /, OpenAI API on /v1/embeddings)`,
          );
        }
        const portFile =
          flags['client-port'] === undefined
            ? undefined
            : await writePortFile(flags['client-port'], nats.url, flags.service);

        const stopSignal = new Promise<string>((resolve) => {
          process.once('SIGINT', () => resolve('SIGINT'));
          process.once('SIGTERM', () => resolve('SIGTERM'));
        });
        const outcome = await Promise.race([
          stopSignal.then((s) => ({ signal: s })),
          fleet.closed.then((error) => ({ error })),
        ]);
        await Promise.all(started.map((g) => g.close()));
        await portFile?.remove();
        if ('signal' in outcome) {
          this.logToStderr(`${outcome.signal}: draining workers…`);
          await fleet.stop();
        } else {
          await this.keepEmbeddedWhileUsed(nats, flags.service, connection);
        }
        if ('error' in outcome && outcome.error) this.error(outcome.error.message, { exit: 1 });
        return r;
      } finally {
        await nats.stop();
      }
    } finally {
      await health?.close();
    }
  }
}
