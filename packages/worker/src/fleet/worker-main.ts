/**
 * Entry point of a fleet's worker processes (`child_process.fork` target). Everything happens in
 * worker-process.ts; this file only runs it, so a custom entry can import runWorkerProcess with hooks.
 */
import { runWorkerProcess } from './worker-process.js';

runWorkerProcess();
