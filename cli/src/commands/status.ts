import { BertClient } from '@bertq/client';
import type { FleetStatus } from '@bertq/client';
import { BaseCommand } from '../base.js';
import { renderStatus } from '../status-table.js';

export default class Status extends BaseCommand<typeof Status> {
  static override summary = "Show the service's workers, model, queue depth, throughput and per-stage latency.";
  static override description =
    'Asks every worker of the service (found through the NATS services framework) for its status and sums them: what bert-as-service called server_status, plus the JetStream queue and latency percentiles. --json prints the full structure.';
  static override examples = ['<%= config.bin %> status', '<%= config.bin %> status --service minilm --json'];

  public async run(): Promise<FleetStatus> {
    const client = await BertClient.connect({ ...this.clientOptions(), timeout: 10_000 });
    try {
      const status = await client.serverStatus();
      if (!this.jsonEnabled()) this.log(renderStatus(status));
      return status;
    } finally {
      await client.close();
    }
  }
}
