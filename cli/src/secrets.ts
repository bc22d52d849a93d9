/**
 * Secrets (NATS password and token, the HTTP token) from files, as container platforms mount them,
 * and a warning when one is typed on the command line, where every local user can read it in `ps`.
 */
import { readFileSync } from 'node:fs';
import { BadRequestError } from '@bertq/protocol';

/** The file's content without its one trailing newline; undefined when no file is given. */
export function readSecretFile(path: string | undefined, flag: string): string | undefined {
  if (path === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new BadRequestError(
      `cannot read ${flag} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  const secret = text.replace(/\r?\n$/, '');
  if (secret === '') throw new BadRequestError(`${flag} ${path} is empty`);
  return secret;
}

/** True when `--<flag>` was given in argv (not through its environment variable). */
export function onCommandLine(flag: string, argv: readonly string[] = process.argv): boolean {
  return argv.some((a) => a === `--${flag}` || a.startsWith(`--${flag}=`));
}

/**
 * Warns on stderr when a secret flag was typed on the command line, naming the safer spellings.
 * Written directly, not through oclif's warn(): it must show under --json too (stdout stays JSON).
 */
export function warnIfOnCommandLine(flag: string, instead: string): void {
  if (onCommandLine(flag))
    process.stderr.write(
      `Warning: --${flag} on the command line is visible to every user of this machine (ps); use ${instead}\n`,
    );
}
