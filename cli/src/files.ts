/** Files the CLI writes whole or not at all: a temporary file beside the target, then a rename. */
import { chmod, open, rename, rm } from 'node:fs/promises';

/**
 * Writes `text` to `path` whole or not at all, created with `mode` (so a secret is never readable by
 * others, even briefly) and synced before the rename; a failure leaves no temporary file behind.
 */
export async function writeFileWhole(path: string, text: string, mode = 0o644): Promise<void> {
  const temp = `${path}.${process.pid}.tmp`;
  const handle = await open(temp, 'w', mode);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await rm(temp, { force: true });
    throw err;
  }
  await handle.close();
  await chmod(temp, mode); // the umask may have taken bits off
  await rename(temp, path);
}
