import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModelError } from '@bertq/protocol';
import { createRuntime, missingCudaProvider } from '../src/runtime.js';

test('runtime - CUDA without its provider library is a one-line MODEL_ERROR naming the file, before ONNX Runtime logs anything', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bertq-ort-'));
  try {
    const library = join(dir, 'libonnxruntime_providers_cuda.so');
    assert.equal(missingCudaProvider(dir), library);
    await writeFile(library, '');
    assert.equal(missingCudaProvider(dir), undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  // This machine's onnxruntime-node is the CPU build (installed with ONNXRUNTIME_NODE_INSTALL=skip).
  const missing = missingCudaProvider();
  if (missing === undefined) {
    t.skip('this onnxruntime-node has its CUDA provider: nothing to refuse');
    return;
  }
  const started = Date.now();
  await assert.rejects(
    createRuntime('/nonexistent/model.onnx', { device: 'cuda' }),
    (err: Error) =>
      err instanceof ModelError &&
      err.message.includes(missing) &&
      /is not installed\. The CUDA build of onnxruntime-node needs CUDA 12.*use --cpu/.test(err.message),
  );
  assert.ok(Date.now() - started < 1_000, 'refused before a session (or its thread) is started');
});
