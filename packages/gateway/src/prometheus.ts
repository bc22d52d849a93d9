/**
 * Counters, gauges and histograms in Prometheus text exposition format 0.0.4, by hand: a few dozen
 * lines do what a client library would, and the gateway keeps no dependency for it. Label sets are
 * keyed by their canonical text, so `{a="1",b="2"}` is one series whatever order the caller names them.
 */

/** The Content-Type Prometheus expects for this format. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type Labels = Readonly<Record<string, string>>;

/** A metric that can write itself as exposition text. */
export interface Metric {
  readonly name: string;
  render(): string;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A label value as the format wants it: backslash, double quote and newline escaped. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** HELP text escapes only backslash and newline. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A sample value: Go's float formatting names the non-finite ones `+Inf`, `-Inf`, `NaN`. */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

/** `{a="1",b="2"}` with names sorted, or '' for no labels. */
export function labelText(labels: Labels): string {
  const names = Object.keys(labels).sort();
  if (names.length === 0) return '';
  return `{${names.map((n) => `${n}="${escapeLabelValue(labels[n]!)}"`).join(',')}}`;
}

abstract class BaseMetric<S> implements Metric {
  protected readonly series = new Map<string, { labels: Labels; state: S }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[] = [],
  ) {
    if (!NAME.test(name)) throw new Error(`invalid metric name ${name}`);
    for (const l of labelNames)
      if (!LABEL_NAME.test(l) || l === 'le') throw new Error(`invalid label name ${l} on ${name}`);
  }

  protected abstract readonly type: 'counter' | 'gauge' | 'histogram';
  protected abstract fresh(): S;
  protected abstract lines(name: string, labels: Labels, state: S): string[];

  /** The series for `labels`, made on first use; every declared label must be given, and no other. */
  protected at(labels: Labels): S {
    const key = labelText(labels);
    let entry = this.series.get(key);
    if (entry === undefined) {
      const given = Object.keys(labels);
      if (given.length !== this.labelNames.length || !this.labelNames.every((l) => typeof labels[l] === 'string')) {
        throw new Error(`${this.name} takes labels {${this.labelNames.join(', ')}}, got {${given.join(', ')}}`);
      }
      entry = { labels: { ...labels }, state: this.fresh() };
      this.series.set(key, entry);
    }
    return entry.state;
  }

  /** Forgets every series (gauges rebuilt from a fresh reading). */
  reset(): void {
    this.series.clear();
  }

  render(): string {
    const out = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`];
    const entries = [...this.series.values()].sort((a, b) => labelText(a.labels).localeCompare(labelText(b.labels)));
    for (const { labels, state } of entries) out.push(...this.lines(this.name, labels, state));
    return out.join('\n');
  }
}

/** A value that only goes up (resets when the gateway restarts; Prometheus' rate() handles that). */
export class Counter extends BaseMetric<{ value: number }> {
  protected readonly type = 'counter';
  protected fresh() {
    return { value: 0 };
  }
  protected lines(name: string, labels: Labels, s: { value: number }): string[] {
    return [`${name}${labelText(labels)} ${formatValue(s.value)}`];
  }
  inc(labels: Labels = {}, by = 1): void {
    if (!(by >= 0)) throw new Error(`${this.name} can only go up, got ${by}`);
    this.at(labels).value += by;
  }
  get(labels: Labels = {}): number {
    return this.series.get(labelText(labels))?.state.value ?? 0;
  }
  /** Sum over every series (e.g. all status codes). */
  total(): number {
    let sum = 0;
    for (const { state } of this.series.values()) sum += state.value;
    return sum;
  }
  /** Every series and its value. */
  entries(): Array<{ labels: Labels; value: number }> {
    return [...this.series.values()].map(({ labels, state }) => ({ labels, value: state.value }));
  }
}

/** A value that goes up and down. */
export class Gauge extends BaseMetric<{ value: number }> {
  protected readonly type = 'gauge';
  protected fresh() {
    return { value: 0 };
  }
  protected lines(name: string, labels: Labels, s: { value: number }): string[] {
    return [`${name}${labelText(labels)} ${formatValue(s.value)}`];
  }
  set(labels: Labels, value: number): void {
    this.at(labels).value = value;
  }
  inc(labels: Labels = {}, by = 1): void {
    this.at(labels).value += by;
  }
  get(labels: Labels = {}): number {
    return this.series.get(labelText(labels))?.state.value ?? 0;
  }
}

interface HistogramState {
  /** Observations per bucket (not cumulative); the last slot is +Inf. */
  counts: number[];
  sum: number;
  count: number;
}

/** Observations counted into fixed buckets (cumulative `_bucket{le=…}`, then `_sum` and `_count`). */
export class Histogram extends BaseMetric<HistogramState> {
  protected readonly type = 'histogram';
  readonly buckets: readonly number[];

  constructor(name: string, help: string, buckets: readonly number[], labelNames: readonly string[] = []) {
    super(name, help, labelNames);
    for (let i = 0; i < buckets.length; i++) {
      if (!Number.isFinite(buckets[i]!) || (i > 0 && buckets[i]! <= buckets[i - 1]!))
        throw new Error(`${name} buckets must be finite and increasing`);
    }
    this.buckets = [...buckets];
  }

  protected fresh(): HistogramState {
    return { counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
  }

  protected lines(name: string, labels: Labels, s: HistogramState): string[] {
    const out: string[] = [];
    let cumulative = 0;
    for (let i = 0; i <= this.buckets.length; i++) {
      cumulative += s.counts[i]!;
      const le = i < this.buckets.length ? formatValue(this.buckets[i]!) : '+Inf';
      out.push(`${name}_bucket${labelText({ ...labels, le })} ${cumulative}`);
    }
    out.push(`${name}_sum${labelText(labels)} ${formatValue(s.sum)}`);
    out.push(`${name}_count${labelText(labels)} ${s.count}`);
    return out;
  }

  observe(labels: Labels, value: number): void {
    if (!Number.isFinite(value)) return; // a broken timing must not poison _sum
    const s = this.at(labels);
    let i = 0;
    while (i < this.buckets.length && value > this.buckets[i]!) i++;
    s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  /** Count and sum of one series. */
  get(labels: Labels = {}): { count: number; sum: number } {
    const s = this.series.get(labelText(labels))?.state;
    return { count: s?.count ?? 0, sum: s?.sum ?? 0 };
  }
}

/** The exposition text of several metrics: blocks separated by newlines, ending with one. */
export function renderMetrics(metrics: readonly Metric[]): string {
  return `${metrics.map((m) => m.render()).join('\n')}\n`;
}
