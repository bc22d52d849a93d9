/**
 * What a benchmark run leaves behind: a table per experiment on stdout, and in the output folder one
 * SVG plot per experiment, `results.json` (every point, for other tools) and `README.md` (the tables
 * and plots on one page). Every file is written whole or not at all (temporary file, then rename).
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BadRequestError } from '@bertq/protocol';
import { writeFileWhole } from '../files.js';
import { table } from '../status-table.js';
import type { PlannedExperiment, PointSettings } from './experiments.js';
import { pointKey } from './experiments.js';
import { lineChartSvg } from './plot.js';
import type { PointResult } from './runner.js';

export interface RunDescription {
  /** One line: machine, Node, ONNX Runtime. */
  system: string;
  /** Model, or the fleet measured. */
  model: string;
  /** Load average at the start and the end. */
  load: [number, number];
  quick: boolean;
  startedAt: string;
}

const fmt = (v: number | undefined, digits = 1) => (v === undefined ? '–' : v.toFixed(digits));

function settingText(p: PointSettings, field: keyof PointSettings): string {
  const v = p[field];
  return field === 'poolingLayer' ? `[${v}]` : String(v);
}

/** Nothing measured: no request finished, and no frames made even a lower bound. */
const none = (r: PointResult): boolean => r.requests === 0 && r.lowerBound !== true;

/** The rows of one experiment, in its value order; points not measured are left out. */
export function experimentRows(e: PlannedExperiment, results: ReadonlyMap<string, PointResult>): string[][] {
  return e.points.flatMap((p) => {
    const r = results.get(pointKey(p));
    if (!r) return [];
    return [
      [
        settingText(p, e.spec.field),
        // A failure's message goes under the table (experimentFailures): a cell holds a word. No
        // request finished: no throughput to show, whatever frames came in.
        r.error ? 'failed¹' : none(r) ? '–' : `${r.lowerBound ? '≥ ' : ''}${fmt(r.sentPerSec)}`,
        r.error || none(r) ? '–' : `${r.lowerBound ? '≥ ' : ''}${fmt(r.sentPerSec / p.numClient)}`,
        fmt(r.p50Ms, 0),
        fmt(r.p99Ms, 0),
        String(r.requests),
      ],
    ];
  });
}

const HEADERS = ['sent/s (all clients)', 'per client', 'p50 ms', 'p99 ms', 'requests'];

/** One line per failed point: its setting and the whole message (the table says only "failed¹"). */
export function experimentFailures(e: PlannedExperiment, results: ReadonlyMap<string, PointResult>): string[] {
  return e.points.flatMap((p) => {
    const r = results.get(pointKey(p));
    return r?.error ? [`¹ ${e.spec.name} ${settingText(p, e.spec.field)}: ${r.error}`] : [];
  });
}

export function experimentTable(e: PlannedExperiment, results: ReadonlyMap<string, PointResult>): string {
  const failures = experimentFailures(e, results);
  return [table([e.spec.name, ...HEADERS], experimentRows(e, results)), ...failures].join('\n');
}

/** The settings every point of the experiment shares, as a caption. */
export function fixedSettings(e: PlannedExperiment): string {
  const p = e.points[0]!;
  const all: Array<[keyof PointSettings, string]> = [
    ['maxSeqLen', `max_seq_len ${p.maxSeqLen}`],
    ['clientBatchSize', `client_batch_size ${p.clientBatchSize}`],
    ['numClient', `num_client ${p.numClient}`],
    ['maxBatchSize', `max_batch_size ${p.maxBatchSize}`],
    ['poolingLayer', `pooling_layer [${p.poolingLayer}]`],
    ['precision', p.precision],
  ];
  return all
    .filter(([field]) => field !== e.spec.field)
    .map(([, text]) => text)
    .join(', ');
}

export function experimentSvg(
  e: PlannedExperiment,
  results: ReadonlyMap<string, PointResult>,
  run: RunDescription,
): string {
  const values = e.points.map((p) => {
    const r = results.get(pointKey(p));
    return r && !r.error ? r.sentPerSec : undefined;
  });
  return lineChartSvg({
    title: `Speed wrt. ${e.spec.name}`,
    subtitle: [run.model.replace(/^.*\//, ''), fixedSettings(e)],
    xLabel: e.spec.label,
    yLabel: 'sentences / s (all clients)',
    x: e.points.map((p) => settingText(p, e.spec.field)),
    series: [{ name: 'bertq', values }],
  });
}

/** Writes the plots, results.json and README.md into `dir`; returns the files written. */
export async function writeReport(
  dir: string,
  plan: readonly PlannedExperiment[],
  results: ReadonlyMap<string, PointResult>,
  run: RunDescription,
  notes: readonly string[],
): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const written: string[] = [];
  const page: string[] = [
    '# bertq benchmark',
    '',
    `${run.startedAt}${run.quick ? ' (--quick)' : ''} · ${run.system}`,
    '',
    `Model: ${run.model} · load average ${run.load[0].toFixed(2)} at start, ${run.load[1].toFixed(2)} at end`,
    '',
    'Throughput is counted over all clients together (bert-as-service reported it per client).',
    '',
  ];
  for (const note of notes) page.push(`- ${note}`);
  if (notes.length > 0) page.push('');
  for (const e of plan) {
    if (!e.points.some((p) => results.has(pointKey(p)))) continue;
    const file = `${e.spec.name}.svg`;
    await writeFileWhole(join(dir, file), experimentSvg(e, results, run));
    written.push(join(dir, file));
    const rows = experimentRows(e, results);
    page.push(
      `## Speed wrt. ${e.spec.name}`,
      '',
      fixedSettings(e),
      '',
      `| ${e.spec.name} | ${HEADERS.join(' | ')} |`,
      `|${['', ...HEADERS].map(() => '---').join('|')}|`,
      ...rows.map((r) => `| ${r.join(' | ')} |`),
      '',
      ...experimentFailures(e, results).flatMap((line) => [line, '']),
      `![Speed wrt. ${e.spec.name}](${file})`,
      '',
    );
  }
  const json = {
    ...run,
    notes,
    experiments: plan.map((e) => ({
      name: e.spec.name,
      points: e.points.flatMap((p) => results.get(pointKey(p)) ?? []),
    })),
  };
  await writeFileWhole(join(dir, 'results.json'), `${JSON.stringify(json, null, 2)}\n`);
  await writeFileWhole(join(dir, 'README.md'), `${page.join('\n')}\n`);
  written.push(join(dir, 'results.json'), join(dir, 'README.md'));
  return written;
}

const DEFAULT_REPORT_FOLDER = 'bertq-benchmark';

/**
 * Where the report goes, never over an earlier run unasked: the default folder, or a dated one beside
 * it when it holds a run; an explicit folder holding one only with --force.
 */
export function reportFolder(given: string | undefined, force: boolean, now = new Date()): string {
  const holdsRun = (dir: string) => existsSync(join(dir, 'results.json'));
  if (given !== undefined) {
    if (holdsRun(given) && !force)
      throw new BadRequestError(
        `${given} holds an earlier benchmark run (results.json): give another --output, or --force to replace it`,
      );
    return given;
  }
  if (!holdsRun(DEFAULT_REPORT_FOLDER)) return DEFAULT_REPORT_FOLDER;
  const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${DEFAULT_REPORT_FOLDER}-${stamp}`;
}
