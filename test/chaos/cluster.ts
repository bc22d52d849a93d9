/**
 * A 3-node nats-server cluster on loopback with JetStream on every node (what a user grows to from
 * one broker), for the chaos harness: its nodes, their URLs, and the node that leads a stream.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { freePort, startNatsServer, waitFor, type NatsServer } from '@bertq/testing';

export interface Cluster {
  nodes: NatsServer[];
  /** Every node's URL (clients get them all, so they fail over). */
  urls: string[];
  /** The node whose server_name leads `stream` now. */
  leaderOf(stream: string): Promise<number>;
  stop(): Promise<void>;
}

export async function startCluster(size = 3): Promise<Cluster> {
  const routePorts = await Promise.all(Array.from({ length: size }, freePort));
  const routes = routePorts.map((p) => `nats-route://127.0.0.1:${p}`);
  const nodes = await Promise.all(
    routePorts.map((port, i) =>
      startNatsServer({
        config: {
          server_name: `n${i + 1}`,
          cluster: { name: 'bertq-chaos', listen: `127.0.0.1:${port}`, routes },
        },
        timeoutMs: 20_000,
      }),
    ),
  );
  const urls = nodes.map((n) => n.url);
  // JetStream in a cluster needs a meta leader before any stream can be made.
  const nc = await connect({ servers: urls });
  try {
    await waitFor(
      'the JetStream meta leader',
      async () => {
        try {
          const jsm = await jetstreamManager(nc, { timeout: 2_000 });
          await jsm.getAccountInfo();
          return true;
        } catch {
          return false;
        }
      },
      30_000,
      250,
    );
  } finally {
    await nc.close();
  }
  return {
    nodes,
    urls,
    async leaderOf(stream: string): Promise<number> {
      const c = await connect({ servers: urls });
      try {
        const info = await (await jetstreamManager(c)).streams.info(stream);
        const leader = info.cluster?.leader ?? '';
        return Number(leader.replace(/^n/, '')) - 1;
      } finally {
        await c.close();
      }
    },
    async stop(): Promise<void> {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}
