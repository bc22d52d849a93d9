#!/usr/bin/env node
// Runs a command as on an AVX2-only x86 CPU (no AVX-512, no VNNI), at native speed: builds
// cpuid-mask.c once (cc) and runs the command with it preloaded. Linux x86-64 with the `cpuid_fault`
// CPU flag only; says why otherwise (exit 3).
//
//   node scripts/avx2-only/run.mjs node bench/dist/competitors.bench.js
//   node scripts/avx2-only/run.mjs --check      # exit 0 when usable here, 3 with the reason when not
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SOURCE = fileURLToPath(new URL('./cpuid-mask.c', import.meta.url));

/** Why the shim cannot run here, or undefined when it can. */
export function unavailable() {
  if (process.platform !== 'linux' || process.arch !== 'x64')
    return `needs Linux on x86-64 (this is ${process.platform}/${process.arch})`;
  let flags = '';
  try {
    flags =
      readFileSync('/proc/cpuinfo', 'utf8')
        .split('\n')
        .find((l) => l.startsWith('flags')) ?? '';
  } catch {
    return 'cannot read /proc/cpuinfo';
  }
  if (!/\bcpuid_fault\b/.test(flags))
    return 'this CPU (or its hypervisor) does not offer CPUID faulting (no cpuid_fault flag)';
  const cc = spawnSync('cc', ['--version'], { encoding: 'utf8' });
  if (cc.status !== 0) return 'needs a C compiler as `cc` (apt-get install gcc)';
  return undefined;
}

/** The built shim's path (built on first use, rebuilt when the source changes). */
export function buildShim() {
  const dir = join(tmpdir(), `bertq-avx2-only-${process.getuid?.() ?? 'user'}`);
  mkdirSync(dir, { recursive: true });
  const out = join(dir, `cpuid-mask-${Math.round(statSync(SOURCE).mtimeMs)}.so`);
  if (!existsSync(out)) {
    const tmp = `${out}.${process.pid}.tmp`;
    const r = spawnSync('cc', ['-O2', '-shared', '-fPIC', '-o', tmp, SOURCE, '-ldl'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`cc failed to build ${SOURCE}:\n${r.stderr}`);
    renameSync(tmp, out); // whole or not at all: a parallel build may race to the same name
  }
  return out;
}

/** The environment of a child that sees an AVX2-only CPU. */
export function avx2OnlyEnv(env = process.env) {
  return { ...env, LD_PRELOAD: [buildShim(), env.LD_PRELOAD].filter(Boolean).join(' ') };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const why = unavailable();
  if (args[0] === '--check') {
    if (why) console.error(`avx2-only: ${why}`);
    process.exit(why ? 3 : 0);
  }
  if (why) {
    console.error(`avx2-only: cannot run here: ${why}`);
    process.exit(3);
  }
  if (args.length === 0) {
    console.error('usage: node scripts/avx2-only/run.mjs <command> [args…] | --check');
    process.exit(2);
  }
  const r = spawnSync(args[0], args.slice(1), { stdio: 'inherit', env: avx2OnlyEnv() });
  process.exit(r.status ?? 1);
}
