#!/usr/bin/env node
// bert-as-service's `bert-serving-benchmark -model_dir … -test_max_seq_len 20 40`, run as `bertq benchmark …`.
import { execute } from '@oclif/core';
import { translateBertServingArgs } from '../dist/src/compat.js';

const { args, notes } = translateBertServingArgs(process.argv.slice(2), 'benchmark', process.env);
for (const note of notes) process.stderr.write(`bert-serving-benchmark: ${note}\n`);
await execute({ dir: import.meta.url, args: ['benchmark', ...args] });
