/**
 * The CLI's progress reporter for long transfers (model downloads during `bertq start`) and long jobs
 * (`bertq encode --file`). The library packages only report progress (events, callbacks); drawing
 * it is the CLI's job. Ours rather than cli-progress: it also writes a plain log mode off a terminal
 * (occasional lines, CI-friendly), shows a rate averaged over a window with byte units, and takes an
 * injected clock, so every line it prints is tested. On a terminal it redraws one line in place;
 * anywhere else (CI logs, files, pipes) it prints a plain line now and then, so logs stay readable.
 *
 * The formatting functions are pure and exported on their own, so they can be tested without a
 * stream or a clock.
 */

/** Where progress is written: `process.stderr`, or anything with `write()`. */
export interface ProgressStream {
  write(chunk: string): unknown;
  /** True on a terminal: the reporter then redraws a single line with `\r`. */
  isTTY?: boolean;
  /** Terminal width; lines are cut to fit, because a wrapped line cannot be redrawn in place. */
  columns?: number;
}

export interface ProgressOptions {
  /** Label printed at the start of every line (a file name, a model id). */
  label: string;
  /** Units expected in all. Without it there is no bar, percentage or ETA, only amount and rate. */
  total?: number;
  /** 'bytes' prints kB/MB/GB; any other word is printed after the count ('rows', 'texts'). Default 'bytes'. */
  unit?: 'bytes' | 'rows' | (string & {});
  /** Default `process.stderr`. */
  stream?: ProgressStream;
  /** Print nothing at all (the reporter still counts). */
  silent?: boolean;
  /** Force terminal (redrawn line) or log (occasional lines) output; default: `stream.isTTY`. */
  tty?: boolean;
  /** Clock in milliseconds; injected by tests. Default `Date.now`. */
  now?: () => number;
  /** Width of the `[#####-----]` bar in characters. Default 20. */
  barWidth?: number;
  /** Least time between two redraws on a terminal; 100 ms keeps it at ≤ 10 redraws/s. */
  redrawIntervalMs?: number;
  /** Off a terminal: print a line when this much time passed since the last one. Default 5000. */
  logIntervalMs?: number;
  /** Off a terminal with a known total: also print a line at each step of this fraction. Default 0.1. */
  logStep?: number;
  /** The rate is averaged over this window, so one slow chunk does not make it jump. Default 5000. */
  rateWindowMs?: number;
}

export interface ProgressReporter {
  /** Add `n` units done (default 1). */
  tick(n?: number): void;
  /** Set the amount done to an absolute value (a download that restarted from zero goes back). */
  update(current: number): void;
  /** Set or change the total once it becomes known. */
  setTotal(total: number | undefined): void;
  /** Finish with a summary line. Later calls do nothing. */
  done(): void;
  /** Finish with a failure line. Later calls do nothing. */
  fail(reason?: string): void;
  /** Units done so far. */
  readonly current: number;
}

// ---------------------------------------------------------------------------------------------
// Pure formatting
// ---------------------------------------------------------------------------------------------

const BYTE_UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
const COUNT_SUFFIXES = ['', 'k', 'M', 'G', 'T'];

/** Three significant digits: 1.23, 12.3, 123. */
function threeSignificant(value: number): string {
  let text = value.toFixed(2);
  if (Number(text) >= 10) text = value.toFixed(1);
  if (Number(text) >= 100) text = value.toFixed(0);
  return text;
}

/** Scale by 1000 until below 1000, bumping the suffix when rounding reaches 1000 (999.96 kB → 1.00 MB). */
function scaleBy1000(value: number, suffixes: readonly string[]): [string, string] {
  let index = 0;
  let scaled = value;
  while (scaled >= 1000 && index < suffixes.length - 1) {
    scaled /= 1000;
    index++;
  }
  let text = threeSignificant(scaled);
  if (Number(text) >= 1000 && index < suffixes.length - 1) {
    scaled /= 1000;
    index++;
    text = threeSignificant(scaled);
  }
  return [text, suffixes[index]!];
}

/** Bytes in decimal units as download tools print them: `512 B`, `1.50 kB`, `12.3 MB`, `4.00 GB`. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return '? B';
  const sign = bytes < 0 ? '-' : '';
  const size = Math.abs(bytes);
  if (size < 1000) return `${sign}${Math.round(size)} B`;
  const [text, unit] = scaleBy1000(size, BYTE_UNITS);
  return `${sign}${text} ${unit}`;
}

/** A count in short form: `7`, `0.5`, `950`, `12.3k`, `4.56M`. */
export function formatCount(count: number): string {
  if (!Number.isFinite(count)) return '?';
  const sign = count < 0 ? '-' : '';
  const size = Math.abs(count);
  if (size < 1000) {
    const text = Number.isInteger(size) ? String(size) : size < 10 ? size.toFixed(1) : size.toFixed(0);
    return `${sign}${text}`;
  }
  const [text, suffix] = scaleBy1000(size, COUNT_SUFFIXES);
  return `${sign}${text}${suffix}`;
}

/** An amount in its unit: `12.3 MB` for bytes, `1.20k rows` otherwise. */
export function formatAmount(amount: number, unit: string): string {
  return unit === 'bytes' ? formatBytes(amount) : `${formatCount(amount)} ${unit}`;
}

/** A rate per second: `12.3 MB/s`, `850 rows/s`; `-- MB/s` style when not known yet. */
export function formatRate(perSecond: number | undefined, unit: string): string {
  if (perSecond === undefined || !Number.isFinite(perSecond) || perSecond < 0) {
    return unit === 'bytes' ? '-- B/s' : `-- ${unit}/s`;
  }
  return `${formatAmount(perSecond, unit)}/s`;
}

/** Seconds as `m:ss` or `h:mm:ss`; `--:--` when not finite. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const whole = Math.floor(seconds);
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = whole % 60;
  const ss = String(s).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** Time left at the current rate, rounded up to whole seconds; `--:--` when it cannot be known. */
export function formatEta(remaining: number | undefined, perSecond: number | undefined): string {
  if (remaining === undefined || perSecond === undefined || !(perSecond > 0) || !Number.isFinite(perSecond)) {
    return '--:--';
  }
  return formatDuration(Math.ceil(Math.max(0, remaining) / perSecond));
}

function clampFraction(fraction: number): number {
  return Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
}

/** `#####-----`: `width` characters, the filled part rounded down so 100% shows only when done. */
export function formatBar(fraction: number, width: number): string {
  const filled = Math.floor(clampFraction(fraction) * width);
  return '#'.repeat(filled) + '-'.repeat(Math.max(0, width - filled));
}

/** Whole percent, rounded down: 0.999 is `99%`, not `100%`. */
export function formatPercent(fraction: number): string {
  return `${Math.floor(clampFraction(fraction) * 100)}%`;
}

/** What one line needs to know. */
export interface ProgressSnapshot {
  label: string;
  current: number;
  total?: number | undefined;
  /** Units per second, smoothed; undefined until it can be measured. */
  rate?: number | undefined;
  unit: string;
}

/** The redrawn terminal line: `label [#####-----] 42% 12.3 MB/s ETA 0:31`. */
export function formatTtyLine(s: ProgressSnapshot, barWidth: number): string {
  const rate = formatRate(s.rate, s.unit);
  if (s.total === undefined || s.total <= 0) {
    return `${s.label} ${formatAmount(s.current, s.unit)} ${rate}`;
  }
  const fraction = s.current / s.total;
  return `${s.label} [${formatBar(fraction, barWidth)}] ${formatPercent(fraction)} ${rate} ETA ${formatEta(s.total - s.current, s.rate)}`;
}

/** A log line (no bar, amounts spelled out): `label 42% 5.12 MB of 12.2 MB, 12.3 MB/s, ETA 0:31`. */
export function formatLogLine(s: ProgressSnapshot): string {
  const rate = formatRate(s.rate, s.unit);
  if (s.total === undefined || s.total <= 0) {
    return `${s.label} ${formatAmount(s.current, s.unit)}, ${rate}`;
  }
  const fraction = s.current / s.total;
  return `${s.label} ${formatPercent(fraction)} ${formatAmount(s.current, s.unit)} of ${formatAmount(s.total, s.unit)}, ${rate}, ETA ${formatEta(s.total - s.current, s.rate)}`;
}

/** The closing line: `label done: 12.2 MB in 0:04 (3.05 MB/s)`. */
export function formatDoneLine(label: string, amount: number, elapsedMs: number, unit: string): string {
  const seconds = elapsedMs / 1000;
  const rate = seconds > 0 ? amount / seconds : undefined;
  return `${label} done: ${formatAmount(amount, unit)} in ${formatDuration(seconds)} (${formatRate(rate, unit)})`;
}

/** The closing line of a failure: `label failed after 5.12 MB of 12.2 MB: reason`. */
export function formatFailLine(
  label: string,
  amount: number,
  total: number | undefined,
  unit: string,
  reason?: string,
): string {
  const of = total === undefined ? '' : ` of ${formatAmount(total, unit)}`;
  return `${label} failed after ${formatAmount(amount, unit)}${of}${reason ? `: ${reason}` : ''}`;
}

/** Cut a line to `columns - 1` characters so the terminal never wraps it (a wrapped line cannot be redrawn). */
export function fitLine(line: string, columns: number | undefined): string {
  if (columns === undefined || !(columns > 1) || line.length < columns) return line;
  return line.slice(0, columns - 1);
}

// ---------------------------------------------------------------------------------------------
// Rate over a sliding window
// ---------------------------------------------------------------------------------------------

/**
 * Units per second over the last `windowMs`. It keeps one sample at or before the window's start
 * as the anchor, so the rate is measured over (about) the whole window, and it is computed up to
 * `now`, so a stalled transfer shows a falling rate instead of the last good one.
 */
export class RateMeter {
  private readonly samples: Array<{ t: number; value: number }> = [];

  constructor(
    private readonly windowMs: number,
    start: number,
    initial = 0,
  ) {
    this.samples.push({ t: start, value: initial });
  }

  record(t: number, value: number): void {
    const last = this.samples[this.samples.length - 1]!;
    if (value < last.value) {
      // The amount went back (a restarted download): old samples would make the rate negative.
      this.samples.length = 0;
    }
    this.samples.push({ t, value });
    while (this.samples.length > 2 && this.samples[1]!.t <= t - this.windowMs) this.samples.shift();
  }

  /** Units per second up to `now`; undefined until some time has passed. */
  rate(now: number): number | undefined {
    const first = this.samples[0]!;
    const last = this.samples[this.samples.length - 1]!;
    const elapsed = now - first.t;
    if (elapsed <= 0 || this.samples.length < 2) return undefined;
    return ((last.value - first.value) * 1000) / elapsed;
  }
}

// ---------------------------------------------------------------------------------------------
// The reporter
// ---------------------------------------------------------------------------------------------

class Progress implements ProgressReporter {
  current = 0;
  private total: number | undefined;
  private finished = false;
  private readonly started: number;
  private lastDraw = Number.NEGATIVE_INFINITY;
  private lastLog: number;
  private lastStep = 0;
  private drewSomething = false;
  private readonly meter: RateMeter;
  private readonly unit: string;
  private readonly stream: ProgressStream;
  private readonly tty: boolean;
  private readonly now: () => number;
  private readonly barWidth: number;
  private readonly redrawIntervalMs: number;
  private readonly logIntervalMs: number;
  private readonly logStep: number;

  constructor(private readonly options: ProgressOptions) {
    this.total = options.total;
    this.unit = options.unit ?? 'bytes';
    this.stream = options.stream ?? process.stderr;
    this.tty = options.tty ?? this.stream.isTTY === true;
    this.now = options.now ?? Date.now;
    this.barWidth = options.barWidth ?? 20;
    this.redrawIntervalMs = options.redrawIntervalMs ?? 100;
    this.logIntervalMs = options.logIntervalMs ?? 5000;
    this.logStep = options.logStep ?? 0.1;
    this.started = this.now();
    this.lastLog = this.started;
    this.meter = new RateMeter(options.rateWindowMs ?? 5000, this.started);
  }

  tick(n = 1): void {
    this.update(this.current + n);
  }

  update(current: number): void {
    if (this.finished) return;
    this.current = current;
    const t = this.now();
    this.meter.record(t, current);
    if (this.options.silent) return;
    if (this.tty) {
      if (t - this.lastDraw >= this.redrawIntervalMs) this.redraw(t);
    } else {
      this.maybeLog(t);
    }
  }

  setTotal(total: number | undefined): void {
    this.total = total;
  }

  done(): void {
    this.finish(formatDoneLine(this.options.label, this.current, this.now() - this.started, this.unit));
  }

  fail(reason?: string): void {
    this.finish(formatFailLine(this.options.label, this.current, this.total, this.unit, reason));
  }

  private snapshot(t: number): ProgressSnapshot {
    return {
      label: this.options.label,
      current: this.current,
      total: this.total,
      rate: this.meter.rate(t),
      unit: this.unit,
    };
  }

  private redraw(t: number): void {
    this.lastDraw = t;
    this.drewSomething = true;
    this.stream.write(`\r${fitLine(formatTtyLine(this.snapshot(t), this.barWidth), this.stream.columns)}\x1b[K`);
  }

  private maybeLog(t: number): void {
    let due = t - this.lastLog >= this.logIntervalMs;
    if (this.total !== undefined && this.total > 0 && this.logStep > 0) {
      const step = Math.floor(clampFraction(this.current / this.total) / this.logStep);
      if (step > this.lastStep) due = true;
    }
    if (!due) return;
    if (this.total !== undefined && this.total > 0 && this.logStep > 0) {
      this.lastStep = Math.floor(clampFraction(this.current / this.total) / this.logStep);
    }
    this.lastLog = t;
    this.stream.write(`${formatLogLine(this.snapshot(t))}\n`);
  }

  private finish(line: string): void {
    if (this.finished) return;
    this.finished = true;
    if (this.options.silent) return;
    if (this.tty) {
      // Replace the bar if one is on screen; otherwise just print the line.
      const prefix = this.drewSomething ? '\r' : '';
      this.stream.write(`${prefix}${fitLine(line, this.stream.columns)}\x1b[K\n`);
    } else {
      this.stream.write(`${line}\n`);
    }
  }
}

/** A progress reporter; see ProgressOptions. */
export function createProgress(options: ProgressOptions): ProgressReporter {
  return new Progress(options);
}
