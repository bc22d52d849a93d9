/**
 * Where `bert-serving-start -port P` left its NATS server: `<bertq cache>/ports/<P>.json`, so that
 * `bert-serving-terminate -port P` (and `bertq terminate --client-port P`) reach the same fleet, as
 * bert-as-service's did through its port. Only this machine's user reads it (mode 600).
 */
import { mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { BadRequestError, defaultCacheDir } from '@bertq/protocol';
import { writeFileWhole } from './files.js';

export interface PortRecord {
  /** The NATS server the fleet serving that port is on. */
  nats: string;
  service: string;
  pid: number;
}

function portFilePath(port: number): string {
  return join(defaultCacheDir(), 'ports', `${port}.json`);
}

/** Records the fleet behind `port`; `remove()` deletes the record when the fleet stops. */
export async function writePortFile(port: number, nats: string, service: string): Promise<{ remove(): Promise<void> }> {
  const path = portFilePath(port);
  const record: PortRecord = { nats, service, pid: process.pid };
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFileWhole(path, `${JSON.stringify(record)}\n`, 0o600);
  return { remove: () => rm(path, { force: true }) };
}

/** The fleet behind `port`, or a BAD_REQUEST saying that nothing on this machine serves it. */
export async function readPortFile(port: number): Promise<PortRecord> {
  const path = portFilePath(port);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new BadRequestError(
      `no bertq fleet serves port ${port} on this machine (no ${path}): start one with \`bert-serving-start -port ${port} …\`, or give --server`,
    );
  }
  const record = JSON.parse(text) as PortRecord;
  let alive = true;
  try {
    process.kill(record.pid, 0);
  } catch {
    alive = false;
  }
  if (!alive) {
    await rm(path, { force: true });
    throw new BadRequestError(`the fleet that served port ${port} (pid ${record.pid}) is gone`);
  }
  return record;
}
