import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HEADERS, dedupId } from '@bertq/protocol';
import type { PreparedJob } from '../src/chunks.js';
import {
  ALL_DELIVERED,
  STALL_MS,
  jobsToReask,
  stalledRequests,
  type RecoverableRequest,
  type StallableRequest,
  type StoredJob,
} from '../src/recovery.js';

function job(offset: number): PreparedJob {
  return {
    offset,
    rows: 10,
    headers: { [HEADERS.id]: 'R', [HEADERS.offset]: String(offset), [HEADERS.msgId]: dedupId('R', offset) },
    body: new Uint8Array(),
  };
}

function request(stored: StoredJob[], settled = false): RecoverableRequest {
  return { lane: 'bulk', settled, unfinishedJobs: () => stored };
}

test('recovery - delivered jobs go again under a new id; undelivered ones under their own (a no-op unless lost)', () => {
  const delivered = { seq: 5, job: job(0), attempts: 0 };
  const again = { seq: 3, job: job(10), attempts: 1 };
  const queued = { seq: 9, job: job(20), attempts: 0 };
  const out = jobsToReask([request([delivered, again, queued])], { high: 100, bulk: 5 });
  const ids = out.map((o) => o.job.headers[HEADERS.msgId]);
  assert.deepEqual(ids, ['R:0:1', 'R:10:2', 'R:20']);
  assert.equal(out[2]!.job, queued.job, 'the very message that was acknowledged');
  // the other headers are the job's own
  assert.equal(out[0]!.job.headers[HEADERS.offset], '0');
});

test('recovery - settled requests are left alone; an unreadable consumer means every job gets a new id', () => {
  assert.deepEqual(jobsToReask([request([{ seq: 1, job: job(0), attempts: 0 }], true)], { high: 0, bulk: 0 }), []);
  const out = jobsToReask([request([{ seq: 7, job: job(0), attempts: 0 }])], {
    high: Number.POSITIVE_INFINITY,
    bulk: Number.POSITIVE_INFINITY,
  });
  assert.equal(out[0]!.job.headers[HEADERS.msgId], 'R:0:1');
});

test('recovery - a request is stalled only if it began before the last reconnect, misses jobs and had no rows for STALL_MS', () => {
  const stored = [{ seq: 1, job: job(0), attempts: 0 }];
  const r = (createdAt: number, lastProgressAt: number, unfinished = stored, settled = false): StallableRequest => ({
    lane: 'bulk',
    settled,
    createdAt,
    lastProgressAt,
    unfinishedJobs: () => unfinished,
  });
  const reconnect = 10_000;
  const now = reconnect + STALL_MS;
  const stalled = r(1_000, 2_000);
  const candidates = [
    stalled,
    r(1_000, reconnect + 1), // rows came after the reconnect, recently
    r(reconnect + 1, reconnect + 1), // began after the reconnect: the normal path serves it
    r(1_000, 2_000, []), // every stored job's rows are in (the rest are still being published)
    r(1_000, 2_000, stored, true), // settled
  ];
  assert.deepEqual(stalledRequests(candidates, reconnect, now), [stalled]);
  assert.deepEqual(stalledRequests(candidates, reconnect, now - 1), [], 'not yet STALL_MS since the reconnect');
  assert.deepEqual(stalledRequests(candidates, 0, now), [], 'no reconnect, no stall check');
  // What a stalled request asks for: every missing job, under a new id.
  assert.equal(jobsToReask([stalled], ALL_DELIVERED)[0]!.job.headers[HEADERS.msgId], 'R:0:1');
});
