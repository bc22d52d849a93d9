/** This package's version, read from its package.json (two levels above dist/src/). */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export const CLIENT_VERSION: string = (require('../../package.json') as { version: string }).version;

/**
 * Whether a client and a server version can work together: the same major version (the same minor
 * before 1.0, as semver has it). Returns the reason when they cannot.
 */
export function versionMismatch(client: string, server: string | undefined): string | undefined {
  if (server === undefined) return undefined;
  const parse = (v: string) => v.split('.').map((n) => Number.parseInt(n, 10));
  const [cMajor = 0, cMinor = 0] = parse(client);
  const [sMajor = 0, sMinor = 0] = parse(server);
  if (cMajor !== sMajor) return `major versions differ (client ${client}, server ${server})`;
  if (cMajor === 0 && cMinor !== sMinor)
    return `minor versions of a 0.x release differ (client ${client}, server ${server})`;
  return undefined;
}
