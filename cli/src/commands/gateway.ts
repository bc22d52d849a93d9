import { DEFAULT_HTTP_PORT, startGateway } from '@bertq/gateway';
import { createLogger } from '@bertq/nats';
import { BaseCommand } from '../base.js';
import { gatewayOptionsFromFlags, httpFlags, httpPortFlag } from '../http-flags.js';
import { warnIfOnCommandLine } from '../secrets.js';

interface GatewaySummary {
  url: string;
  service: string;
}

export default class Gateway extends BaseCommand<typeof Gateway> {
  static override summary =
    'Serve a running bertq service over HTTP: bert-as-service /encode, OpenAI /v1/embeddings, live dashboard, Prometheus /metrics.';
  static override description =
    `The gateway is a NATS client of the fleet, so it runs anywhere NATS is reachable and scales and restarts on its own: start as many as you like behind a load balancer. Open / in a browser for the live dashboard. Runs until Ctrl-C / SIGTERM, then lets requests in flight finish.`;
  static override examples = [
    '<%= config.bin %> gateway --http-port 8125',
    '<%= config.bin %> gateway --http-port 8080 --service minilm --http-token "$TOKEN" --cors https://app.example.com',
    'curl -X POST localhost:8125/encode -H "content-type: application/json" -d \'{"id": 123, "texts": ["hello world"]}\'',
  ];
  static override flags = {
    'http-port': httpPortFlag(true),
    ...httpFlags,
  };

  public async run(): Promise<GatewaySummary> {
    const { flags } = this;
    let options;
    warnIfOnCommandLine('http-token', 'BERTQ_HTTP_TOKEN or --http-token-file');
    try {
      options = gatewayOptionsFromFlags(flags['http-port'] ?? DEFAULT_HTTP_PORT, flags);
    } catch (err) {
      this.error((err as Error).message, { exit: 2 });
    }
    const log = createLogger(flags['log-level']);
    const gateway = await startGateway({
      ...options,
      client: { ...this.clientOptions(), name: 'bertq gateway' },
      logger: log,
    });
    this.logToStderr(
      `bertq gateway for service "${gateway.client.service}" at ${gateway.url} (dashboard on /, OpenAI API on /v1/embeddings)`,
    );
    const signal = await new Promise<string>((resolve) => {
      process.once('SIGINT', () => resolve('SIGINT'));
      process.once('SIGTERM', () => resolve('SIGTERM'));
    });
    this.logToStderr(`${signal}: closing the gateway…`);
    await gateway.close();
    return { url: gateway.url, service: gateway.client.service };
  }
}
