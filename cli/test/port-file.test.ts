import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readPortFile, writePortFile } from '../src/port-file.js';

test("port file - read back only while its fleet lives, only from the user's own unshared file, only when it is one", async () => {
  const cache = await mkdtemp(join(tmpdir(), 'bertq-ports-'));
  const before = process.env.BERTQ_CACHE;
  process.env.BERTQ_CACHE = cache;
  try {
    const port = 5599;
    const file = join(cache, 'ports', `${port}.json`);
    const written = await writePortFile(port, 'nats://127.0.0.1:4333', 'default');
    assert.deepEqual(await readPortFile(port), { nats: 'nats://127.0.0.1:4333', service: 'default', pid: process.pid });
    // Others may write it: whoever did would receive this user's NATS credentials. Refused.
    await chmod(file, 0o666);
    await assert.rejects(readPortFile(port), /others may write it: it is not trusted/);
    await chmod(file, 0o600);
    await writeFile(file, '{"nats":"http://evil.example","service":"x","pid":1}', { mode: 0o600 });
    await assert.rejects(readPortFile(port), /is not a port record of bertq/);
    await writeFile(file, JSON.stringify({ nats: 'nats://127.0.0.1:4333', service: 'default', pid: 2 ** 30 }), {
      mode: 0o600,
    });
    await assert.rejects(readPortFile(port), /is gone/);
    await written.remove();
    await assert.rejects(readPortFile(port), /no bertq fleet serves port 5599/);
  } finally {
    if (before === undefined) delete process.env.BERTQ_CACHE;
    else process.env.BERTQ_CACHE = before;
    await rm(cache, { recursive: true, force: true });
  }
});
