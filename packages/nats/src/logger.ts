/**
 * The root pino logger of a bertq process: one event per line on stdout, as JSON (for log shippers,
 * and whenever stdout is not a terminal) or as readable lines on a terminal (pino-pretty, run in
 * this thread: the line is written before the process may exit). Modules get child loggers with
 * fixed bindings (`{component, worker}`), never bindings built from request data.
 */
import { pino } from 'pino';
import type { DestinationStream, Level, Logger } from 'pino';
import pretty from 'pino-pretty';

export type LogLevel = Level | 'silent';
export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export type LogFormat = 'json' | 'pretty';
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty'];

/**
 * `$BERTQ_LOG_FORMAT` when it names a format (the CLI's `--log-format` sets it, and forked workers
 * inherit it), else readable lines on a terminal and JSON otherwise.
 */
export function defaultLogFormat(
  env: NodeJS.ProcessEnv = process.env,
  isTTY: boolean = process.stdout.isTTY === true,
): LogFormat {
  const given = env.BERTQ_LOG_FORMAT;
  if (given === 'json' || given === 'pretty') return given;
  return isTTY ? 'pretty' : 'json';
}

export interface LoggerOutput {
  /** Default: defaultLogFormat(). */
  format?: LogFormat;
  /** Where lines go. Default stdout. */
  destination?: NodeJS.WritableStream;
}

export function createLogger(
  level: LogLevel = 'info',
  bindings: Record<string, string | number> = {},
  output: LoggerOutput = {},
): Logger {
  const options = { level, base: { pid: process.pid, ...bindings } };
  const format = output.format ?? defaultLogFormat();
  if (format === 'json') {
    return output.destination === undefined
      ? pino(options)
      : pino(options, output.destination as unknown as DestinationStream);
  }
  const stream = pretty({
    sync: true,
    colorize: output.destination === undefined && process.stdout.isTTY === true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname',
    singleLine: true,
    ...(output.destination === undefined ? {} : { destination: output.destination }),
  });
  return pino(options, stream);
}

/** A logger that writes nothing, for library callers that gave none. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
