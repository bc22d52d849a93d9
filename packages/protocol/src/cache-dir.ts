/**
 * Where bertq keeps files on this machine (hub downloads, built graphs, an embedded nats-server's
 * store, the CLI's port files): one rule for every package, so they never disagree.
 */
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** The cache root: `$BERTQ_CACHE`, else `$XDG_CACHE_HOME/bertq`, else `~/.cache/bertq`. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string {
  if (env.BERTQ_CACHE) return resolve(env.BERTQ_CACHE);
  if (env.XDG_CACHE_HOME) return resolve(env.XDG_CACHE_HOME, 'bertq');
  return join(home, '.cache', 'bertq');
}
