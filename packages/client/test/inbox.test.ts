import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NonBlockingInbox } from '../src/inbox.js';

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((a, b) => {
    resolve = a;
    reject = b;
  });
  return { promise, resolve, reject };
}

test('inbox - next() hands out requests in completion order and ends when none is left', async () => {
  const inbox = new NonBlockingInbox<string>();
  const a = deferred<string>();
  const b = deferred<string>();
  inbox.track(inbox.reserve(), 'a', a.promise);
  inbox.track(inbox.reserve(), 'b', b.promise);
  assert.equal(inbox.unfetched, 2);
  b.resolve('B');
  assert.deepEqual(await inbox.next(), { id: 'b', seq: 1, ok: true, value: 'B' });
  const waiting = inbox.next();
  a.reject(new Error('boom'));
  const failed = await waiting;
  assert.equal(failed?.ok, false);
  assert.equal(await inbox.next(), undefined);
  assert.equal(inbox.unfetched, 0);
});

test('inbox - takeAll() waits for all and returns them in send order', async () => {
  const inbox = new NonBlockingInbox<number>();
  const ds = [deferred<number>(), deferred<number>(), deferred<number>()];
  const seqs = ds.map(() => inbox.reserve());
  // Tracked out of order (publishing finished out of order): the send order still wins.
  for (const i of [2, 0, 1]) inbox.track(seqs[i]!, `r${i}`, ds[i]!.promise);
  const all = inbox.takeAll();
  ds[1]!.resolve(1);
  ds[2]!.resolve(2);
  ds[0]!.resolve(0);
  assert.deepEqual(
    (await all).map((s) => s.id),
    ['r0', 'r1', 'r2'],
  );
  assert.deepEqual(await inbox.takeAll(), []);
});
