import { readFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { Flags } from '@oclif/core';
import { BertClient } from '@bertq/client';
import type { ClientOptions } from '@bertq/client';
import { createLogger } from '@bertq/nats';
import { ensureNatsServer, startFleet } from '@bertq/worker';
import type { FleetHandle } from '@bertq/worker';
import { BaseCommand, ENVIRONMENT_HELP } from '../base.js';
import {
  BASE_SETTINGS,
  EXPERIMENTS,
  PRECISION_VALUES,
  fleetsOf,
  parseExperimentNames,
  planExperiments,
  pointKey,
  serverKey,
} from '../benchmark/experiments.js';
import type { ExperimentName, PlannedExperiment, PointSettings, ServerSettings } from '../benchmark/experiments.js';
import { experimentTable, fixedSettings, reportFolder, writeReport } from '../benchmark/report.js';
import type { RunDescription } from '../benchmark/report.js';
import { measurePoint, waitIdle } from '../benchmark/runner.js';
import type { PointResult } from '../benchmark/runner.js';
import { FlagError, encoderOptionsFromFlags, modelFlags, parseIntList } from '../model-flags.js';
import { createProgress } from '../progress.js';
import type { ProgressReporter } from '../progress.js';

const EXPERIMENT = 'EXPERIMENT';

/**
 * Words sentences are made of when no --client-vocab-file is given: common English words, each one
 * WordPiece token in the usual uncased and cased vocabularies, so `n` words make about `n` tokens.
 */
const WORDS =
  'the of and to in is was for that with as on by he it at from his an were are which this be or has had not but first one their its new after who they have her she two been other when there all during into school time may years more most only over city some world would where later up such used many can state about national out known university united then made'.split(
    ' ',
  );

/** A point on a slow model may run this long (or 4 × --duration) to see the frames a rate needs. */
const MIN_POINT_CAP_S = 30;

/** How long the fleet may take to let go of an abandoned point's work before the next point. */
const IDLE_TIMEOUT_MS = 30_000;

/** bert-as-service's `-test_*` lists, as flags of one experiment each. */
const testFlag = (name: ExperimentName) =>
  Flags.string({
    summary: `Values of the ${name} experiment, comma-separated (default ${EXPERIMENTS[name].values.join(',')}; --quick ${EXPERIMENTS[name].quickValues.join(',')}).`,
    helpGroup: EXPERIMENT,
  });

export default class Benchmark extends BaseCommand<typeof Benchmark> {
  static override summary = "Measure speed as bert-as-service's benchmark did: one table and one plot per setting.";
  static override description =
    `Each experiment varies one setting and keeps the others at the base values (--max-seq-len, --client-batch-size, --num-client, --max-batch-size, --pooling-layer, --precision): max_seq_len, client_batch_size, num_client, max_batch_size, pooling_layer and precision. With --model-dir or --model it starts its own fleet for each server-side setting (on --server, or an embedded nats-server), under a service of its own that it removes afterwards. Given no model, it runs the client-side experiments (client_batch_size, num_client) against the fleet already serving --service. Throughput counts every client's sentences together. Each point runs until every client did --num-repeat requests or --duration seconds passed (longer for a model too slow to answer 3 frames by then; a point that still has fewer than 2 is marked ≥, a lower bound); tables go to stdout, progress to stderr, and one SVG plot per experiment, results.json and README.md to --output.` +
    `\n\n${ENVIRONMENT_HELP}`;
  static override examples = [
    '<%= config.bin %> benchmark --model-dir /tmp/english_L-12_H-768_A-12/ --quick',
    '<%= config.bin %> benchmark --model-dir /models/bert --experiments max_seq_len,pooling_layer --output bench-out',
    '<%= config.bin %> benchmark --service default --experiments client_batch_size,num_client',
  ];
  static override flags = {
    'model-dir': modelFlags['model-dir'],
    model: modelFlags.model,
    'tuned-model-dir': modelFlags['tuned-model-dir'],
    'ckpt-name': modelFlags['ckpt-name'],
    'config-name': modelFlags['config-name'],
    'graph-tmp-dir': modelFlags['graph-tmp-dir'],
    'pooling-strategy': modelFlags['pooling-strategy'],
    'cased-tokenization': modelFlags['cased-tokenization'],
    fused: modelFlags.fused,
    experiments: Flags.string({
      summary: `Experiments to run, comma-separated: ${Object.keys(EXPERIMENTS).join(', ')}, or all.`,
      default: 'all',
      helpGroup: EXPERIMENT,
    }),
    quick: Flags.boolean({
      summary: 'Fewer values per experiment and 2 s per point: about a minute on a small model.',
      helpGroup: EXPERIMENT,
    }),
    output: Flags.string({
      summary:
        'Folder for the plots (one SVG per experiment), results.json and README.md. Default ./bertq-benchmark, or a dated one beside it when that holds an earlier run; an explicit folder holding one is refused without --force.',
      helpGroup: EXPERIMENT,
    }),
    force: Flags.boolean({ summary: 'Replace an earlier run in --output.', helpGroup: EXPERIMENT }),
    duration: Flags.string({
      summary:
        'Seconds measured per point (default 10; --quick 2); a model too slow to return 3 result frames by then gets up to 4× that, at least 30 s.',
      helpGroup: EXPERIMENT,
    }),
    'num-repeat': Flags.integer({
      summary: 'A point ends sooner once every client finished this many requests.',
      default: 10,
      min: 1,
      helpGroup: EXPERIMENT,
    }),
    'client-vocab-file': Flags.string({
      summary: 'Text file whose words build the test sentences (default: a list of common English words).',
      helpGroup: EXPERIMENT,
    }),
    'max-seq-len': Flags.integer({ summary: 'Base max_seq_len.', default: BASE_SETTINGS.maxSeqLen, min: 3 }),
    'client-batch-size': Flags.integer({
      summary: 'Base sentences per request.',
      default: BASE_SETTINGS.clientBatchSize,
      min: 1,
    }),
    'num-client': Flags.integer({ summary: 'Base concurrent clients.', default: BASE_SETTINGS.numClient, min: 1 }),
    'max-batch-size': Flags.integer({ summary: 'Base max_batch_size.', default: BASE_SETTINGS.maxBatchSize, min: 1 }),
    'pooling-layer': Flags.integer({ summary: 'Base pooling layer.', default: BASE_SETTINGS.poolingLayer }),
    precision: Flags.string({
      summary: 'Base precision.',
      options: [...PRECISION_VALUES],
      default: BASE_SETTINGS.precision,
    }),
    'num-worker': Flags.integer({ summary: 'Workers of each fleet it starts.', default: 1, min: 1 }),
    'null-model': Flags.boolean({
      summary:
        'Workers run a model that costs nothing (the real tokenizer, zero vectors): the figures are what the serving path (client, NATS, worker) can feed a model with on this machine, the ceiling for an accelerator. Needs --model-dir or --model (for the tokenizer and the vector size).',
      helpGroup: EXPERIMENT,
    }),
    threads: Flags.integer({ summary: 'Inference threads per worker (default: cores / num-worker).', min: 1 }),
    'test-max-seq-len': testFlag('max_seq_len'),
    'test-client-batch-size': testFlag('client_batch_size'),
    'test-num-client': testFlag('num_client'),
    'test-max-batch-size': testFlag('max_batch_size'),
    'test-pooling-layer': testFlag('pooling_layer'),
    'test-precision': Flags.string({
      summary: `Values of the precision experiment (default ${PRECISION_VALUES.join(',')}; --quick float32,int8).`,
      helpGroup: EXPERIMENT,
    }),
  };

  public async run(): Promise<{ results: PointResult[]; files: string[] }> {
    const { flags } = this;
    const hasModel = Boolean(flags.model || flags['model-dir']);
    let names: ExperimentName[];
    const values: Partial<Record<ExperimentName, Array<number | string>>> = {};
    let seconds: number;
    try {
      names = parseExperimentNames(flags.experiments);
      const ints: Array<[ExperimentName, string | undefined]> = [
        ['max_seq_len', flags['test-max-seq-len']],
        ['client_batch_size', flags['test-client-batch-size']],
        ['num_client', flags['test-num-client']],
        ['max_batch_size', flags['test-max-batch-size']],
        ['pooling_layer', flags['test-pooling-layer']],
      ];
      for (const [name, text] of ints)
        if (text !== undefined) values[name] = parseIntList(text, `--test-${name.replaceAll('_', '-')}`);
      if (flags['test-precision'] !== undefined) {
        const list = flags['test-precision'].split(',').map((s) => s.trim());
        const bad = list.find((p) => !(PRECISION_VALUES as readonly string[]).includes(p));
        if (bad !== undefined) throw new FlagError(`--test-precision takes ${PRECISION_VALUES.join(', ')}, got ${bad}`);
        values.precision = list;
      }
      seconds = flags.duration === undefined ? (flags.quick ? 2 : 10) : Number(flags.duration);
      if (!(seconds > 0)) throw new FlagError(`--duration takes a number of seconds above 0, got ${flags.duration}`);
    } catch (err) {
      this.error((err as Error).message, { exit: 2 });
    }
    let words = WORDS;
    if (flags['client-vocab-file'] !== undefined) {
      const file = flags['client-vocab-file'];
      const text = await readFile(file, 'utf8').catch((err: Error) =>
        this.error(`cannot read --client-vocab-file ${file}: ${err.message}`, { exit: 2 }),
      );
      words = text.split(/\s+/).filter(Boolean);
    }
    if (words.length === 0) this.error(`--client-vocab-file ${flags['client-vocab-file']} holds no words`, { exit: 2 });

    const output = reportFolder(flags.output, flags.force);
    const notes: string[] = [];
    const clientOptions = this.clientOptions();
    let base: PointSettings = {
      maxSeqLen: flags['max-seq-len'],
      maxBatchSize: flags['max-batch-size'],
      poolingLayer: flags['pooling-layer'],
      precision: flags.precision as PointSettings['precision'],
      clientBatchSize: flags['client-batch-size'],
      numClient: flags['num-client'],
    };
    const loadStart = loadavg()[0]!;
    const startedAt = new Date().toISOString();
    const log = createLogger('silent', { component: 'benchmark' });

    if (flags['null-model']) {
      if (!hasModel)
        this.error('--null-model needs --model-dir or --model (its tokenizer and vector size)', { exit: 2 });
      notes.push(
        'null model: the workers ran the real tokenizer and returned zero vectors without computing; the figures are the serving path alone',
      );
    }
    // Without a model: the client-side experiments, against the fleet already running.
    if (!hasModel) {
      const skipped = names.filter((n) => EXPERIMENTS[n].side === 'server');
      names = names.filter((n) => EXPERIMENTS[n].side === 'client');
      if (skipped.length > 0)
        notes.push(
          `skipped ${skipped.join(', ')}: a server-side setting needs a fleet per value; give --model-dir or --model`,
        );
      if (names.length === 0)
        this.error(
          `nothing to run: ${skipped.join(', ')} need(s) --model-dir or --model (the benchmark starts a fleet per value)`,
          { exit: 2 },
        );
    }

    const nats = hasModel
      ? await ensureNatsServer(this.servers()[0]!, {
          logger: log,
          connection: this.connectionOptions('bertq benchmark'),
        })
      : undefined;
    const servers = nats?.started ? [nats.url] : this.servers();
    const service = hasModel ? `bertq-benchmark-${process.pid}` : flags.service;
    const target = { servers, service, clientOptions, words, seconds };
    const results = new Map<string, PointResult>();
    let model = '';
    let plan: PlannedExperiment[] = [];
    let progress: ProgressReporter | undefined;
    const printed = new Set<PlannedExperiment>();
    /** Plans the run once the model's depth is known, and shows the bar. */
    const planFor = (layers: number | undefined) => {
      plan = planExperiments(names, base, poolingValues(values, layers, flags.quick, notes), flags.quick);
      const total = new Set(plan.flatMap((e) => e.points.map(pointKey))).size;
      progress = createProgress({ label: 'benchmark', total, unit: 'points' });
    };
    const onPoint = () => {
      progress?.tick();
      for (const e of plan) {
        if (printed.has(e) || !e.points.every((p) => results.has(pointKey(p)))) continue;
        printed.add(e);
        if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
        this.log(`\nSpeed wrt. ${e.spec.name} (${fixedSettings(e)})\n${experimentTable(e, results)}`);
      }
    };

    try {
      if (!hasModel) {
        // The fleet's own settings are the base values of its points.
        const cfg = await readFleetConfig(target);
        base = {
          ...base,
          maxSeqLen: cfg.max_seq_len ?? base.maxSeqLen,
          maxBatchSize: cfg.max_batch_size,
          poolingLayer: cfg.pooling_layer[0] ?? base.poolingLayer,
          precision: cfg.precision ?? 'float32',
        };
        model = `service ${cfg.service}: ${cfg.model_dir ?? 'model'} (${cfg.model?.dims ?? '?'}-dim, ${cfg.device})`;
        planFor(cfg.model?.num_hidden_layers);
        await this.runFleetPoints(plan, undefined, target, results, onPoint);
      } else {
        // The base fleet first: it tells the model's depth, and serves the client-side experiments
        // and every experiment's base point. A model that cannot load fails the run here.
        const baseFleet = await this.startOwnFleet(base, servers, service);
        try {
          const cfg = await readFleetConfig(target);
          model = `${baseFleet.ready.model} (${baseFleet.ready.dims}-dim, ${cfg.model?.num_hidden_layers ?? '?'} layers), ${flags['num-worker']} worker(s)`;
          planFor(cfg.model?.num_hidden_layers);
          await this.runFleetPoints(plan, base, target, results, onPoint);
        } finally {
          await baseFleet.stop();
        }
        for (const settings of fleetsOf(plan).filter((f) => serverKey(f) !== serverKey(base))) {
          let fleet: FleetHandle;
          try {
            fleet = await this.startOwnFleet(settings, servers, service);
          } catch (err) {
            // One setting the model refuses (a precision, a layer) fails its points, not the run.
            const error = err instanceof Error ? err.message : String(err);
            for (const p of pointsOn(plan, settings, results)) {
              results.set(pointKey(p), { settings: p, sentPerSec: 0, rows: 0, seconds: 0, requests: 0, error });
              onPoint();
            }
            continue;
          }
          try {
            await this.runFleetPoints(plan, settings, target, results, onPoint);
          } finally {
            await fleet.stop();
          }
        }
      }
      progress?.done();
    } catch (err) {
      progress?.fail((err as Error).message);
      throw err;
    } finally {
      await nats?.stop();
    }

    const cores = availableParallelism();
    const run: RunDescription = {
      system: `${cpus()[0]?.model.trim() ?? 'CPU'}, ${cores} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${process.platform}/${process.arch}`,
      model,
      load: [loadStart, loadavg()[0]!],
      quick: flags.quick,
      startedAt,
    };
    const files = await writeReport(output, plan, results, run, notes);
    for (const note of notes) this.logToStderr(`note: ${note}`);
    this.logToStderr(
      `wrote ${files.length} files to ${output}/ (plots: ${files.filter((f) => f.endsWith('.svg')).length})`,
    );
    return { results: [...results.values()], files };
  }

  private async startOwnFleet(settings: ServerSettings, servers: string[], service: string): Promise<FleetHandle> {
    const { flags } = this;
    let encoder;
    try {
      encoder = encoderOptionsFromFlags({
        ...(flags as unknown as Parameters<typeof encoderOptionsFromFlags>[0]),
        'max-seq-len': String(settings.maxSeqLen),
        'pooling-layer': String(settings.poolingLayer),
        'mask-cls-sep': false,
        'no-special-token': false,
        'fixed-embed-length': false,
        normalize: false,
        fp16: false,
        precision: settings.precision,
      });
    } catch (err) {
      if (err instanceof FlagError) this.error(err.message, { exit: 2 });
      throw err;
    }
    return startFleet({
      servers,
      connection: this.connectionOptions('bertq benchmark'),
      service,
      numWorker: flags['num-worker'],
      encoder,
      maxBatchSize: settings.maxBatchSize,
      logLevel: 'silent',
      removeStreamOnStop: true,
      ...(flags.threads ? { threadsPerWorker: flags.threads } : {}),
      ...(flags['null-model'] ? { nullModel: true } : {}),
    });
  }

  /** Measures every not yet measured point whose server settings are `settings` (all, when undefined). */
  private async runFleetPoints(
    plan: readonly PlannedExperiment[],
    settings: ServerSettings | undefined,
    o: Target,
    results: Map<string, PointResult>,
    onPoint: () => void,
  ): Promise<void> {
    const todo = pointsOn(plan, settings, results);
    if (todo.length === 0) return;
    const needed = Math.max(...todo.map((p) => p.numClient));
    const clients = await Promise.all(
      Array.from({ length: needed }, (_, k) =>
        BertClient.connect({
          ...o.clientOptions,
          servers: o.servers,
          service: o.service,
          name: `bertq benchmark ${k + 1}`,
          timeout: 600_000,
        }),
      ),
    );
    try {
      for (const p of todo) {
        const result = await measurePoint({
          clients,
          settings: p,
          words: o.words,
          seconds: o.seconds,
          maxSeconds: Math.max(o.seconds * 4, MIN_POINT_CAP_S),
          warmupSeconds: Math.min(1, o.seconds / 4),
          numRepeat: this.flags['num-repeat'],
        });
        results.set(pointKey(p), result);
        await waitIdle(clients[0]!, IDLE_TIMEOUT_MS);
        onPoint();
      }
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  }
}

/** Where the points are measured. */
interface Target {
  servers: string[];
  service: string;
  clientOptions: ClientOptions<'ndarray'>;
  words: readonly string[];
  seconds: number;
}

/** The plan's points not measured yet whose server settings are `settings` (any, when undefined), each once. */
function pointsOn(
  plan: readonly PlannedExperiment[],
  settings: ServerSettings | undefined,
  results: ReadonlyMap<string, PointResult>,
): PointSettings[] {
  const points = plan
    .flatMap((e) => e.points)
    .filter((p) => settings === undefined || serverKey(p) === serverKey(settings));
  return [...new Map(points.map((p) => [pointKey(p), p])).values()].filter((p) => !results.has(pointKey(p)));
}

async function readFleetConfig(t: Target) {
  const probe = await BertClient.connect({ ...t.clientOptions, servers: t.servers, service: t.service });
  try {
    return await probe.serverConfig();
  } finally {
    await probe.close();
  }
}

/**
 * The pooling_layer values fitted to the model's depth: by default every layer (-1 … -L), or in
 * --quick the last, the middle and the first; values given that the model does not have are dropped
 * with a note.
 */
export function poolingValues(
  values: Partial<Record<ExperimentName, Array<number | string>>>,
  layers: number | undefined,
  quick: boolean,
  notes: string[],
): Partial<Record<ExperimentName, Array<number | string>>> {
  if (layers === undefined) return values;
  const given = values.pooling_layer as number[] | undefined;
  if (given === undefined) {
    const all = Array.from({ length: layers }, (_, i) => -(i + 1));
    const pick = quick ? [...new Set([-1, -Math.ceil(layers / 2), -layers])] : all;
    return { ...values, pooling_layer: pick };
  }
  const fits = given.filter((l) => l >= -layers && l < layers);
  if (fits.length < given.length)
    notes.push(
      `pooling_layer ${given.filter((l) => !fits.includes(l)).join(', ')} skipped: the model has ${layers} layers`,
    );
  return { ...values, pooling_layer: fits };
}
