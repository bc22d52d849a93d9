/**
 * Where the CPU time of an end-to-end run goes: the CPU seconds each process (this one, a worker, the
 * nats-server) spent over a stretch, read from /proc (Linux), and the hottest functions of a V8
 * `.cpuprofile` (what `node --cpu-prof` writes) by self time.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** CPU seconds (user + system) a process has used so far; undefined off Linux or once it is gone. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

/** CPU seconds of several processes between two readings. */
export class CpuMeter {
  readonly #start = new Map<string, number | undefined>();

  constructor(private readonly pids: Record<string, number>) {
    for (const [name, pid] of Object.entries(pids)) this.#start.set(name, cpuSeconds(pid));
  }

  /** Seconds used by each process since the meter was made. */
  read(): Record<string, number | undefined> {
    return Object.fromEntries(
      Object.entries(this.pids).map(([name, pid]) => {
        const now = cpuSeconds(pid);
        const start = this.#start.get(name);
        return [name, now === undefined || start === undefined ? undefined : now - start];
      }),
    );
  }
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** The `top` functions of a .cpuprofile by self time, with their share of all samples. */
export function hottestFunctions(file: string, top = 8): Array<{ name: string; share: number }> {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    const frame = byId.get(id)?.callFrame;
    const where = frame?.url
      ? `${frame.url.replace(/^.*\/(node_modules|packages)\//, '')}:${frame.lineNumber + 1}`
      : '';
    const name = `${frame?.functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
    self.set(name, (self.get(name) ?? 0) + dt);
    total += dt;
  });
  return [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, t]) => ({ name, share: total > 0 ? t / total : 0 }));
}

/** The .cpuprofile files in a folder. */
export function profilesIn(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(dir, f));
}
