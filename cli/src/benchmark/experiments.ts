/**
 * The experiments of bert-as-service's benchmark section, and bertq's precision one: which setting
 * each varies, on which side (a server-side setting needs a fleet of its own per value), and the
 * values it tries in full and in --quick runs. Pure data and planning; the command runs it.
 */

export const PRECISION_VALUES = ['float32', 'float16', 'int8'] as const;
export type BenchPrecision = (typeof PRECISION_VALUES)[number];

/** Everything one measured point depends on. */
export interface PointSettings {
  maxSeqLen: number;
  maxBatchSize: number;
  poolingLayer: number;
  precision: BenchPrecision;
  clientBatchSize: number;
  numClient: number;
}

export type ServerSettings = Pick<PointSettings, 'maxSeqLen' | 'maxBatchSize' | 'poolingLayer' | 'precision'>;

export const EXPERIMENT_NAMES = [
  'max_seq_len',
  'client_batch_size',
  'num_client',
  'max_batch_size',
  'pooling_layer',
  'precision',
] as const;
export type ExperimentName = (typeof EXPERIMENT_NAMES)[number];

export interface ExperimentSpec {
  name: ExperimentName;
  /** Which field of PointSettings it varies. */
  field: keyof PointSettings;
  /** Server-side settings need a fleet started per value; client-side ones run against any fleet. */
  side: 'server' | 'client';
  values: Array<number | string>;
  quickValues: Array<number | string>;
  /** What the value means, for the table header and the plot's x axis. */
  label: string;
}

export const EXPERIMENTS: Record<ExperimentName, ExperimentSpec> = {
  max_seq_len: {
    name: 'max_seq_len',
    field: 'maxSeqLen',
    side: 'server',
    values: [20, 40, 80, 160, 320],
    quickValues: [20, 40, 80],
    label: 'max_seq_len (tokens per sentence)',
  },
  client_batch_size: {
    name: 'client_batch_size',
    field: 'clientBatchSize',
    side: 'client',
    values: [1, 4, 8, 16, 64, 256, 512, 1024, 2048, 4096],
    quickValues: [1, 16, 256, 2048],
    label: 'client_batch_size (sentences per request)',
  },
  num_client: {
    name: 'num_client',
    field: 'numClient',
    side: 'client',
    values: [1, 2, 4, 8, 16, 32],
    quickValues: [1, 4, 32],
    label: 'num_client (concurrent clients)',
  },
  max_batch_size: {
    name: 'max_batch_size',
    field: 'maxBatchSize',
    side: 'server',
    values: [32, 64, 128, 256, 512],
    quickValues: [32, 256],
    label: 'max_batch_size (sentences per worker batch)',
  },
  pooling_layer: {
    name: 'pooling_layer',
    field: 'poolingLayer',
    side: 'server',
    values: [-1, -2, -3, -4, -5, -6, -7, -8, -9, -10, -11, -12],
    quickValues: [-1, -6, -12],
    label: 'pooling_layer',
  },
  precision: {
    name: 'precision',
    field: 'precision',
    side: 'server',
    // float16 only when asked (--test-precision): the fleets here run on the CPU, where float16 is
    // emulated, slower than float32, and warned about; nobody benchmarking a CPU asked for that.
    values: ['float32', 'int8'],
    quickValues: ['float32', 'int8'],
    label: 'precision',
  },
};

/** The seed's common settings: each experiment varies one of these and keeps the others. */
export const BASE_SETTINGS: PointSettings = {
  maxSeqLen: 40,
  maxBatchSize: 256,
  poolingLayer: -2,
  precision: 'float32',
  clientBatchSize: 2048,
  numClient: 1,
};

export interface PlannedExperiment {
  spec: ExperimentSpec;
  points: PointSettings[];
}

/** Each experiment's points: the base settings with one field set to each of its values. */
export function planExperiments(
  names: readonly ExperimentName[],
  base: PointSettings,
  values: Partial<Record<ExperimentName, Array<number | string>>>,
  quick: boolean,
): PlannedExperiment[] {
  return names.map((name) => {
    const spec = EXPERIMENTS[name];
    const list = values[name] ?? (quick ? spec.quickValues : spec.values);
    return { spec, points: list.map((v) => ({ ...base, [spec.field]: v }) as PointSettings) };
  });
}

/** The part of a point that needs its own fleet, as a key: points with equal keys share one fleet. */
export function serverKey(p: ServerSettings): string {
  return `seq${p.maxSeqLen}/mbs${p.maxBatchSize}/layer${p.poolingLayer}/${p.precision}`;
}

/** The whole point as a key: an equal point in two experiments (the base value) is measured once. */
export function pointKey(p: PointSettings): string {
  return `${serverKey(p)}/cbs${p.clientBatchSize}/nc${p.numClient}`;
}

/**
 * The distinct fleets a plan needs, in the order first needed, so each fleet starts once and every
 * point on it runs before the next starts.
 */
export function fleetsOf(plan: readonly PlannedExperiment[]): ServerSettings[] {
  const seen = new Map<string, ServerSettings>();
  for (const e of plan)
    for (const p of e.points) {
      const key = serverKey(p);
      if (!seen.has(key))
        seen.set(key, {
          maxSeqLen: p.maxSeqLen,
          maxBatchSize: p.maxBatchSize,
          poolingLayer: p.poolingLayer,
          precision: p.precision,
        });
    }
  return [...seen.values()];
}

/** Parses `--experiments max_seq_len,num_client` (dashes or underscores; `all`). */
export function parseExperimentNames(text: string): ExperimentName[] {
  const names = text
    .split(',')
    .map((s) => s.trim().toLowerCase().replaceAll('-', '_'))
    .filter(Boolean);
  if (names.includes('all')) return [...EXPERIMENT_NAMES];
  for (const n of names)
    if (!(EXPERIMENT_NAMES as readonly string[]).includes(n))
      throw new Error(`unknown experiment ${n}: choose from ${EXPERIMENT_NAMES.join(', ')} or all`);
  return [...new Set(names)] as ExperimentName[];
}
