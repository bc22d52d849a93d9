/**
 * How a worker answers: result frames and error frames, each cut to the server's max_payload, on
 * core NATS, to the results subject a job named (parseJob has checked it is one of this service's).
 * Publishing never throws: a frame that cannot go out (the connection is closing) is logged, and
 * since the job's ack cannot go out either, JetStream redelivers the job after ack_wait.
 */
import { performance } from 'node:perf_hooks';
import type { NatsConnection } from '@nats-io/transport-node';
import { encodeErrorFrame, encodeResultFrames } from '@bertq/protocol';
import type { BertqError, ErrorContext, Job } from '@bertq/protocol';
import type { TokenizedText } from '@bertq/model';
import { toNatsHeaders } from '@bertq/nats';
import type { Logger } from 'pino';
import type { OutputRun } from '../core/job-output.js';

/** What a job's frames report of its stages, in ms (TEI's x-*-time headers); total is measured here. */
export interface JobTimings {
  tokenization: number;
  queue: number;
  inference: number;
  /** performance.now() when the worker took the job (total = now − takenAt). */
  takenAt: number;
}

export class Publisher {
  constructor(
    private readonly nc: NatsConnection,
    readonly maxPayload: number,
    private readonly workerId: string,
    private readonly log: Logger,
  ) {}

  /** Sends rows of a job as result frames (several, when they exceed max_payload). */
  results(
    job: Job,
    rows: readonly TokenizedText[],
    run: OutputRun,
    rowShape: readonly number[],
    timings: JobTimings,
  ): void {
    const mine = rows.slice(run.firstRow, run.firstRow + run.rows);
    const frames = encodeResultFrames(
      {
        id: job.id,
        offset: job.offset + run.firstRow,
        rows: run.rows,
        shape: [...rowShape],
        dtype: job.output,
        data: run.data,
        ...(job.showTokens ? { tokens: mine.map((r) => r.tokens ?? []) } : {}),
        tokenCounts: mine.map((r) => r.length),
        timings: {
          tokenization: timings.tokenization,
          queue: timings.queue,
          inference: timings.inference,
          total: performance.now() - timings.takenAt,
        },
        worker: this.workerId,
        ...(job.seal === undefined ? {} : { seal: job.seal }),
      },
      { maxPayload: this.maxPayload },
    );
    for (const frame of frames) this.publish(job.reply, frame.body, frame.headers);
  }

  /**
   * Sends one error frame for the request `id` (from `offset`, covering `rows` when known), with the
   * seal of the job's key when it carried one.
   */
  error(reply: string, address: Omit<ErrorContext, 'worker'> & { id: string }, error: BertqError): void {
    const frame = encodeErrorFrame({ ...address, worker: this.workerId }, error, { maxPayload: this.maxPayload });
    this.publish(reply, frame.body, frame.headers);
  }

  publish(subject: string, body: Uint8Array, headers: Record<string, string>): void {
    try {
      this.nc.publish(subject, body, { headers: toNatsHeaders(headers) });
    } catch (err) {
      this.log.warn({ err }, 'could not publish a frame; the job will be redelivered');
    }
  }
}
