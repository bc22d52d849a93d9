/**
 * Probes for an orchestrator (Kubernetes' liveness, readiness and startup probes) of `bertq start`,
 * which otherwise speaks only NATS: `GET /healthz` is 200 while the supervisor runs and its fleet has
 * not given up (a worker being restarted is still alive), `GET /readyz` is 200 once every worker slot
 * has a ready worker. Answers say ok or not and why, nothing about the model or the network, so the
 * port can face the cluster network without a token. Listens from before the model loads, so a
 * long first load does not fail a liveness probe.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Probe {
  ok: boolean;
  /** One short reason, for people reading the probe's answer ("1 of 2 workers ready"). */
  detail: string;
}

export interface HealthServerOptions {
  host: string;
  port: number;
  live: () => Probe;
  ready: () => Probe;
}

export interface HealthServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startHealthServer(o: HealthServerOptions): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const probe = path === '/healthz' ? o.live : path === '/readyz' ? o.ready : undefined;
    if (probe === undefined || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(probe === undefined ? 404 : 405, { 'Content-Type': 'text/plain' }).end('GET /healthz or /readyz\n');
      return;
    }
    const { ok, detail } = probe();
    res
      .writeHead(ok ? 200 : 503, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' })
      .end(`${JSON.stringify({ status: ok ? 'ok' : 'not ok', detail })}\n`);
  });
  // A probe is one small request: a client that holds a connection open gets cut off.
  server.requestTimeout = 5_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 1_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: o.host, port: o.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
