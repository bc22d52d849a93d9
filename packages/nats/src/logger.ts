/**
 * The root pino logger of a worker or fleet process: JSON lines on stdout, one per event. Modules get
 * child loggers with fixed bindings (`{component, worker}`), never bindings built from request data.
 */
import { pino } from 'pino';
import type { Level, Logger } from 'pino';

export type LogLevel = Level | 'silent';
export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function createLogger(level: LogLevel = 'info', bindings: Record<string, string | number> = {}): Logger {
  return pino({ level, base: { pid: process.pid, ...bindings } });
}

/** A logger that writes nothing, for library callers that gave none. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
