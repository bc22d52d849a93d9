#!/usr/bin/env node
// bert-as-service's `bert-serving-terminate -port 5555`, run as `bertq terminate …`.
import { execute } from '@oclif/core';
import { translateBertServingArgs } from '../dist/src/compat.js';

const { args, notes } = translateBertServingArgs(process.argv.slice(2), 'terminate', process.env);
for (const note of notes) process.stderr.write(`bert-serving-terminate: ${note}\n`);
await execute({ dir: import.meta.url, args: ['terminate', ...args] });
