#!/usr/bin/env node
import { execute } from '@oclif/core';
import { joinListFlags } from '../dist/src/compat.js';

// `--pooling-layer -1 -2` (bert-as-service's list form) is read as `--pooling-layer=-1,-2`.
await execute({ dir: import.meta.url, args: joinListFlags(process.argv.slice(2)) });
