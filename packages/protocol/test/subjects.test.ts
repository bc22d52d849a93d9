import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BadRequestError,
  jobSubject,
  jobWildcardSubject,
  resultsSubject,
  controlSubject,
  streamName,
  consumerName,
  priorityFor,
  serviceNames,
  normalizeServiceName,
  isPublishSubject,
  isResultsSubject,
  tenantInboxPrefix,
  SERVICE_FRAMEWORK_NAME,
} from '../src/index.js';

test('subjects - derives every v1 name of a service', () => {
  assert.equal(jobSubject('minilm', 'high'), 'bertq.v1.minilm.jobs.high');
  assert.equal(jobSubject('minilm', 'bulk'), 'bertq.v1.minilm.jobs.bulk');
  assert.equal(jobWildcardSubject('minilm'), 'bertq.v1.minilm.jobs.>');
  assert.equal(resultsSubject('minilm', 'Client_7'), 'bertq.v1.minilm.results.Client_7');
  assert.equal(controlSubject('minilm', 'config'), 'bertq.v1.minilm.config');
  assert.equal(controlSubject('minilm', 'status'), 'bertq.v1.minilm.status');
  assert.equal(controlSubject('minilm', 'terminate'), 'bertq.v1.minilm.terminate');
  assert.equal(controlSubject('minilm', 'status', 'W0rker'), 'bertq.v1.minilm.status.W0rker');
  assert.equal(streamName('minilm'), 'BERTQ_MINILM');
  assert.equal(consumerName('high'), 'high');
  assert.equal(consumerName('bulk'), 'bulk');
  assert.equal(SERVICE_FRAMEWORK_NAME, 'bertq');
});

test('subjects - service names are case-insensitive and treat "-" and "_" alike', () => {
  assert.equal(normalizeServiceName('My_Svc-2'), 'my-svc-2');
  assert.equal(streamName('my-svc'), 'BERTQ_MY_SVC');
  assert.equal(streamName('MY_SVC'), 'BERTQ_MY_SVC');
  // Same stream ⇒ same subjects, so two spellings can never half-share a service.
  assert.equal(jobSubject('MY_SVC', 'high'), jobSubject('my-svc', 'high'));
  const names = serviceNames('Bert_Base');
  assert.equal(names.service, 'bert-base');
  assert.equal(names.stream, 'BERTQ_BERT_BASE');
  assert.deepEqual(names.jobs, {
    high: 'bertq.v1.bert-base.jobs.high',
    bulk: 'bertq.v1.bert-base.jobs.bulk',
    all: 'bertq.v1.bert-base.jobs.>',
  });
  assert.equal(names.results('abc'), 'bertq.v1.bert-base.results.abc');
  assert.equal(names.workerControl('terminate', 'w1'), 'bertq.v1.bert-base.terminate.w1');
});

test('subjects - rejects invalid service names with a BadRequestError that names them', () => {
  for (const bad of ['', 'a.b', 'a b', '*', '>', 'caf\u00e9', 'x'.repeat(65), 'a/b']) {
    assert.throws(
      () => jobSubject(bad, 'high'),
      (err: unknown) =>
        err instanceof BadRequestError &&
        err.code === 'BAD_REQUEST' &&
        (bad === '' ? /empty/.test(err.message) : err.message.includes(JSON.stringify(bad))),
      `service name ${JSON.stringify(bad)} should be refused`,
    );
  }
});

test('subjects - rejects identities and worker ids that are not one subject token', () => {
  assert.throws(() => resultsSubject('svc', 'a.b'), /client identity "a\.b" is invalid/);
  assert.throws(() => resultsSubject('svc', ''), BadRequestError);
  assert.throws(() => controlSubject('svc', 'status', 'w>'), /worker id "w>" is invalid/);
  assert.throws(() => controlSubject('svc', 'restart' as 'status'), /control operation must be one of/);
  assert.throws(() => jobSubject('svc', 'urgent' as 'high'), /priority must be "high" or "bulk"/);
});

test('subjects - a job of at most priority_batch_size rows goes to high', () => {
  assert.equal(priorityFor(1, 16), 'high');
  assert.equal(priorityFor(16, 16), 'high');
  assert.equal(priorityFor(17, 16), 'bulk');
  assert.equal(priorityFor(1, 0), 'bulk');
});

test('subjects - recognises subjects one can publish to', () => {
  assert.ok(isPublishSubject('bertq.v1.svc.results.me'));
  assert.ok(isPublishSubject('_INBOX.abc123'));
  for (const bad of ['', 'a..b', '.a', 'a.', 'a.*', 'a.>', 'a b', 'a\tb', 'a\r\nb'])
    assert.equal(isPublishSubject(bad), false, bad);
});

test('subjects - a tenant is a token of its own in results subjects, and the prefix of its inbox', () => {
  assert.equal(resultsSubject('svc', 'id7', 'acme'), 'bertq.v1.svc.results.acme.id7');
  assert.equal(serviceNames('svc').results('id7', 'acme'), 'bertq.v1.svc.results.acme.id7');
  assert.equal(tenantInboxPrefix('acme'), '_INBOX.acme');
  assert.throws(() => resultsSubject('svc', 'id', 'a.b'), /tenant "a\.b" is invalid/);
  assert.throws(() => tenantInboxPrefix('>'), /tenant ">" is invalid/);
  // What a worker may publish to: one or two tokens after results, of its own service only.
  assert.equal(isResultsSubject('svc', 'bertq.v1.svc.results.id7'), true);
  assert.equal(isResultsSubject('svc', 'bertq.v1.svc.results.acme.id7'), true);
  assert.equal(isResultsSubject('svc', 'bertq.v1.svc.results.acme.id7.deeper'), false);
  assert.equal(isResultsSubject('svc', 'bertq.v1.svc.results.acme.'), false);
  assert.equal(isResultsSubject('svc', 'bertq.v1.svc.results..id7'), false);
  assert.equal(isResultsSubject('svc', 'bertq.v1.svc.results.*.id7'), false);
  assert.equal(isResultsSubject('svc', 'bertq.v1.other.results.acme.id7'), false);
  assert.equal(isResultsSubject('svc', 'bertq.v1.svc.terminate'), false);
});
