/**
 * The only file that imports onnxruntime-node. It runs inside a worker thread (see runtime.ts):
 * onnxruntime-node's `session.run` computes synchronously on the thread that calls it, so on the main
 * thread a 2-second batch would freeze tokenization, NATS pulls, result publishing and heartbeats for
 * 2 seconds. Here it freezes only this thread.
 */
import { parentPort } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import { DEVICE_PROFILES } from './devices.js';
import type { RuntimeOptions, ThreadReply, ThreadRequest } from './runtime.js';

if (!parentPort) throw new Error('runtime-thread.js must run in a worker thread');
const port = parentPort;
let session: ort.InferenceSession | undefined;

function reply(message: ThreadReply, transfer: ArrayBuffer[] = []): void {
  port.postMessage(message, transfer);
}

function sessionOptions(opts: RuntimeOptions): ort.InferenceSession.SessionOptions {
  const device = opts.device ?? 'cpu';
  const options: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: opts.optimization ?? 'all',
    executionMode: 'sequential',
    enableCpuMemArena: true,
    enableMemPattern: true,
    executionProviders: DEVICE_PROFILES[device].executionProviders(opts.deviceId ?? 0),
    logSeverityLevel: 3,
  };
  if (opts.threads !== undefined) {
    options.intraOpNumThreads = opts.threads;
    options.interOpNumThreads = 1;
  }
  const session: Record<string, unknown> = {};
  if (!DEVICE_PROFILES[device].spinWait) session.intra_op = { allow_spinning: '0' };
  // Prepacking copies each weight matrix into the GEMM's own layout, privately: off, the kernels read
  // the mapped weights themselves.
  if (opts.sharedWeights) session.disable_prepacking = '1';
  if (Object.keys(session).length > 0) options.extra = { session };
  return options;
}

async function handle(msg: ThreadRequest): Promise<void> {
  switch (msg.type) {
    case 'open': {
      try {
        session =
          typeof msg.model === 'string'
            ? await ort.InferenceSession.create(msg.model, sessionOptions(msg.options))
            : await ort.InferenceSession.create(msg.model, sessionOptions(msg.options));
        reply({ type: 'opened', inputNames: [...session.inputNames], outputNames: [...session.outputNames] });
      } catch (err) {
        reply({ type: 'error', id: -1, message: err instanceof Error ? err.message : String(err) });
      }
      return;
    }
    case 'run': {
      try {
        if (!session) throw new Error('the session is not open');
        const feeds: Record<string, ort.Tensor> = {};
        for (const [name, f] of Object.entries(msg.feeds)) {
          feeds[name] =
            f.data instanceof Float32Array
              ? new ort.Tensor('float32', f.data, f.dims)
              : new ort.Tensor('int64', f.data, f.dims);
        }
        const started = performance.now();
        const result = await session.run(feeds, [msg.output]);
        const computeMs = performance.now() - started;
        const t = result[msg.output]!;
        if (t.type !== 'float32') throw new Error(`model output ${msg.output} is ${t.type}, expected float32`);
        const data = t.data as Float32Array;
        reply({ type: 'result', id: msg.id, data, dims: [...t.dims], computeMs }, [data.buffer as ArrayBuffer]);
      } catch (err) {
        reply({ type: 'error', id: msg.id, message: err instanceof Error ? err.message : String(err) });
      }
      return;
    }
    case 'close': {
      await session?.release();
      session = undefined;
      reply({ type: 'closed' });
      return;
    }
  }
}

// Requests are handled one at a time, in order: a session runs one batch at a time anyway.
let queue = Promise.resolve();
port.on('message', (msg: ThreadRequest) => {
  queue = queue.then(() => handle(msg));
});
