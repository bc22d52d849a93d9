/** The bertq version a worker reports (services-framework `version`, `server_version`): this package's. */
import { readFileSync } from 'node:fs';

function readVersion(): string {
  try {
    // dist/src/version.js → the package's package.json, two folders up.
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version?: unknown;
    };
    if (typeof pkg.version === 'string') return pkg.version;
  } catch {
    // a bundled copy without its package.json still runs; it just cannot say its version
  }
  return '0.0.0';
}

export const WORKER_VERSION = readVersion();
