/**
 * Whether a TCP port can be listened on, checked before `bertq start` loads a model and forks
 * workers: a taken --http-port must fail in a second, not after the fleet is up.
 */
import { createServer } from 'node:net';
import { BadRequestError } from '@bertq/protocol';

export async function assertPortFree(host: string, port: number, flag: string): Promise<void> {
  if (port === 0) return; // any free port
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, exclusive: true }, resolve);
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new BadRequestError(
      code === 'EADDRINUSE'
        ? `${flag} ${port} is taken on ${host} (another program listens there): choose another ${flag}, or stop that program`
        : `cannot listen on ${host}:${port} (${flag}): ${code ?? (err as Error).message}`,
      { cause: err },
    );
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}
