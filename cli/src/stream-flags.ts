/**
 * The flags that shape a service's JetStream queue, shared by \`bertq start\` (which creates or checks
 * the stream) and \`bertq setup\` (which creates it with a credential that may).
 */
import { Flags } from '@oclif/core';

const STREAM = 'STREAM';

export const streamFlags = {
  'stream-replicas': Flags.integer({
    summary:
      'Copies of the job stream in a clustered JetStream (1, 3 or 5): with 3, the queue survives the loss of a node. Default 1.',
    min: 1,
    max: 5,
    env: 'BERTQ_STREAM_REPLICAS',
    helpGroup: STREAM,
  }),
  'max-queued-jobs': Flags.integer({
    summary:
      'Bound of each lane (high, bulk) of the JetStream queue, in jobs; past it clients get OVERLOADED instead of waiting.',
    min: 1,
    env: 'BERTQ_MAX_QUEUED_JOBS',
    helpGroup: STREAM,
  }),
};

/** The stream options the flags give (unset flags keep the stream's defaults). */
export function streamOptionsFromFlags(flags: {
  'max-queued-jobs'?: number | undefined;
  'stream-replicas'?: number | undefined;
}): { maxQueuedJobs?: number; replicas?: number } {
  const stream: { maxQueuedJobs?: number; replicas?: number } = {};
  if (flags['max-queued-jobs'] !== undefined) stream.maxQueuedJobs = flags['max-queued-jobs'];
  if (flags['stream-replicas'] !== undefined) stream.replicas = flags['stream-replicas'];
  return stream;
}
