/**
 * Where `bert-serving-start -port P` left its NATS server: `<bertq cache>/ports/<P>.json`, so that
 * `bert-serving-terminate -port P` (and `bertq terminate --client-port P`) reach the same fleet, as
 * bert-as-service's did through its port. Only this machine's user reads it (mode 600).
 */
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
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

/**
 * The fleet behind `port`, or a BAD_REQUEST saying that nothing on this machine serves it. The file
 * names the NATS server this command then sends its credentials to: it is read only when it is this
 * user's own and nobody else may write it, and only when it holds what writePortFile writes.
 */
export async function readPortFile(port: number): Promise<PortRecord> {
  const path = portFilePath(port);
  let text: string;
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
    text = await readFile(path, 'utf8');
  } catch {
    throw new BadRequestError(
      `no bertq fleet serves port ${port} on this machine (no ${path}): start one with \`bert-serving-start -port ${port} …\`, or give --server`,
    );
  }
  if ((process.getuid !== undefined && info.uid !== process.getuid()) || (info.mode & 0o022) !== 0) {
    throw new BadRequestError(
      `${path} is not this user's own file, or others may write it: it is not trusted to name a NATS server; remove it, or give --server`,
    );
  }
  const record = parseRecord(text);
  if (record === undefined)
    throw new BadRequestError(`${path} is not a port record of bertq: remove it, or give --server`);
  if (!processAlive(record.pid)) {
    await rm(path, { force: true });
    throw new BadRequestError(`the fleet that served port ${port} (pid ${record.pid}) is gone`);
  }
  return record;
}

function parseRecord(text: string): PortRecord | undefined {
  try {
    const r = JSON.parse(text) as Partial<PortRecord>;
    const ok =
      typeof r.nats === 'string' &&
      /^nats:\/\//.test(r.nats) &&
      typeof r.service === 'string' &&
      Number.isSafeInteger(r.pid) &&
      (r.pid as number) > 0;
    return ok ? (r as PortRecord) : undefined;
  } catch {
    return undefined;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
