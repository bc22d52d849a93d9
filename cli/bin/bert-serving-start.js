#!/usr/bin/env node
// bert-as-service's `bert-serving-start -model_dir … -num_worker 4`, run as `bertq start …`.
import { execute } from '@oclif/core';
import { translateBertServingArgs } from '../dist/src/compat.js';

const { args, notes } = translateBertServingArgs(process.argv.slice(2), 'start', process.env);
for (const note of notes) process.stderr.write(`bert-serving-start: ${note}\n`);
await execute({ dir: import.meta.url, args: ['start', ...args] });
