/**
 * Running the `bertq` command line in tests as a user does: a real process, with a deadline on
 * every wait. Shared by the CLI end-to-end tests (test/cli*.nats.test.ts, test/benchmark.nats.test.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { waitFor } from '@bertq/testing';

export const BIN = fileURLToPath(new URL('../../cli/bin/run.js', import.meta.url));

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `bertq …` (or another bin of the CLI) to completion; SIGKILL and a rejection past the deadline. */
export function runBertq(
  args: string[],
  options: { env: NodeJS.ProcessEnv; input?: string; timeoutMs: number; bin?: string },
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [options.bin ?? BIN, ...args], {
      env: options.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`bertq ${args.join(' ')} did not finish within ${options.timeoutMs} ms\n${stderr}`));
    }, options.timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

export interface Started {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** The process's pid while it runs; undefined once it has exited. */
export function livePid(started: Started | undefined): number | undefined {
  const c = started?.child;
  return c && c.exitCode === null && c.signalCode === null ? c.pid : undefined;
}

/** SIGTERM (it drains), SIGKILL once `timeoutMs` has passed; resolves when the process is gone. */
export async function stopStarted(started: Started | undefined, timeoutMs: number): Promise<void> {
  if (started === undefined || livePid(started) === undefined) return;
  started.child.kill('SIGTERM');
  const timer = setTimeout(() => started.child.kill('SIGKILL'), timeoutMs);
  await started.exited;
  clearTimeout(timer);
}

/** Starts `bertq start …` and waits for its ready line. */
export function startBertq(args: string[], options: { env: NodeJS.ProcessEnv; timeoutMs: number }): Promise<Started> {
  return startBertqUntil(['start', ...args], 'bertq ready', options);
}

/** Starts `bertq <argv>` (a long-running command) and waits until its stderr shows `ready`. */
export async function startBertqUntil(
  argv: string[],
  ready: string,
  options: { env: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<Started> {
  const child = spawn(process.execPath, [BIN, ...argv], {
    env: options.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  child.stdout!.resume();
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let code: number | null | undefined;
  void exited.then((c) => (code = c));
  await waitFor(
    `bertq ${argv[0]} to print "${ready}"`,
    () => {
      if (code !== undefined) throw new Error(`bertq ${argv[0]} exited with ${code}:\n${stderr}`);
      return stderr.includes(ready);
    },
    options.timeoutMs,
    100,
  );
  return { child, stderr: () => stderr, exited };
}

/** Pids of the worker processes a `bertq start` (pid `supervisor`) forked: its children running worker-main. */
export function workerPidsOf(supervisor: number): number[] {
  let children: number[];
  try {
    children = readFileSync(`/proc/${supervisor}/task/${supervisor}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return []; // gone
  }
  return children.filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('worker-main');
    } catch {
      return false;
    }
  });
}
