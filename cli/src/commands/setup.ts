import { connectNats } from '@bertq/nats';
import type { EnsuredStream } from '@bertq/worker';
import { ensureStream } from '@bertq/worker';
import { WORKER_INBOX_PREFIX } from '@bertq/protocol';
import { BaseCommand } from '../base.js';
import { streamFlags, streamOptionsFromFlags } from '../stream-flags.js';

export default class Setup extends BaseCommand<typeof Setup> {
  static override summary = "Create or update the service's job stream and its consumers (an operator's step).";
  static override description =
    "With the roles bertq ships, workers may pull jobs but not create, change or purge the stream that holds them, so a compromised worker host cannot empty or redirect the queue. Run this once per service with a credential that may (the admin's), and again after changing --max-queued-jobs or --stream-replicas; `bertq start` then finds the stream ready. Idempotent. Without auth (the default local setup), `bertq start` does this itself.";
  static override examples = [
    '<%= config.bin %> setup --nkey /etc/bertq-nats/admin.nk',
    'BERTQ_NATS_USER=admin BERTQ_NATS_PASSWORD=$BERTQ_ADMIN_PASSWORD <%= config.bin %> setup --service minilm --max-queued-jobs 2000',
  ];
  static override flags = { ...streamFlags };

  public async run(): Promise<EnsuredStream> {
    // The worker-side inbox: an admin's replies need no client to see them either.
    const nc = await connectNats({ ...this.natsOptions('bertq setup'), inboxPrefix: WORKER_INBOX_PREFIX });
    try {
      const ensured = await ensureStream(nc, { ...streamOptionsFromFlags(this.flags), service: this.flags.service });
      const changes = [
        ...(ensured.created ? [`created stream ${ensured.stream}`] : []),
        ...ensured.consumersCreated.map((c) => `created consumer ${c}`),
        ...ensured.updated.map((u) => `updated ${u}`),
      ];
      this.log(
        changes.length === 0
          ? `stream ${ensured.stream} and consumers ${Object.values(ensured.consumers).join(', ')} are as bertq needs them`
          : changes.join('\n'),
      );
      return ensured;
    } finally {
      await nc.close().catch(() => undefined);
    }
  }
}
