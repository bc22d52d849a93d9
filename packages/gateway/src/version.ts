/** This package's version, read from its package.json (two levels above dist/src/). */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export const GATEWAY_VERSION: string = (require('../../package.json') as { version: string }).version;
