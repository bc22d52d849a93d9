import { Flags } from '@oclif/core';
import { BertClient } from '@bertq/client';
import type { TerminateResult } from '@bertq/client';
import { BaseCommand } from '../base.js';
import { readPortFile } from '../port-file.js';

export default class Terminate extends BaseCommand<typeof Terminate> {
  static override summary = "Drain and stop every worker of the service (bert-as-service's bert-serving-terminate).";
  static override description =
    'Each worker stops pulling, finishes and publishes the jobs it holds, then exits. Jobs still queued in JetStream wait there for the next worker, so nothing is lost.';
  static override examples = [
    '<%= config.bin %> terminate',
    '<%= config.bin %> terminate --service minilm --drain-timeout 60000',
  ];
  static override flags = {
    'client-port': Flags.integer({
      summary:
        'Terminate the fleet `bert-serving-start -port` (or `bertq start --client-port`) serves on this port of this machine, wherever its NATS server is.',
      min: 1,
      max: 65_535,
    }),
    'drain-timeout': Flags.integer({
      summary: 'How long each worker may take to finish its jobs before it exits anyway (ms).',
      default: 30_000,
      min: 0,
    }),
  };

  public async run(): Promise<TerminateResult> {
    const port = this.flags['client-port'];
    const behind = port === undefined ? undefined : await readPortFile(port);
    const options = this.clientOptions();
    const client = await BertClient.connect({
      ...options,
      ...(behind === undefined ? {} : { servers: [behind.nats], service: behind.service }),
      timeout: 10_000,
    });
    try {
      const result = await client.terminate({
        reason: 'bertq terminate',
        drain_timeout_ms: this.flags['drain-timeout'],
      });
      for (const w of result.draining) this.log(`${w.worker_id}: draining (${w.in_flight_jobs} jobs in hand)`);
      for (const u of result.unreachable) this.warn(`${u.worker_id}: ${u.error}`);
      return result;
    } finally {
      await client.close();
    }
  }
}
