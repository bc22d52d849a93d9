"""bert-as-service's client examples, unchanged, against a running ``bert-serving-start``.

Run by test/python-client.nats.test.ts, which starts ``bert-serving-start -model_dir DIR -num_worker 1
-show_tokens_to_client`` with its defaults (so the clients below use theirs: localhost:5555), then
``python3 -m unittest`` here. BERTQ_TEST_VECTORS names a file for the vectors of REFERENCE_TEXTS, which
the test compares with an in-process encoder.
"""

import json
import os
import threading
import unittest

import numpy as np

from bert_serving.client import BertClient, BertqError, Response

REFERENCE_TEXTS = ['First do it', 'then do it right', 'then do it better', 'First do it ||| then do it right']


class ReadmeExamples(unittest.TestCase):
    """The code blocks of bert-as-service's README, as its users wrote them."""

    @classmethod
    def setUpClass(cls):
        cls.bc = BertClient()  # ip='localhost', port=5555
        cls.dim = cls.bc.server_config['model']['dims']

    @classmethod
    def tearDownClass(cls):
        cls.bc.close()

    def test_encode(self):
        vecs = self.bc.encode(['First do it', 'then do it right', 'then do it better'])
        self.assertIsInstance(vecs, np.ndarray)
        self.assertEqual(vecs.dtype, np.float32)
        self.assertEqual(vecs.shape, (3, self.dim))
        self.assertFalse(np.allclose(vecs[0], vecs[1]), 'different sentences, different vectors')

    def test_pair(self):
        pair = self.bc.encode(['First do it ||| then do it right'])
        single = self.bc.encode(['First do it then do it right'])
        self.assertEqual(pair.shape, (1, self.dim))
        self.assertFalse(np.allclose(pair, single), 'a pair is not the same sentence run together')

    def test_vectors_for_the_comparison(self):
        out = os.environ.get('BERTQ_TEST_VECTORS')
        vecs = self.bc.encode(REFERENCE_TEXTS)
        if out:
            with open(out, 'w') as fp:
                json.dump({'texts': REFERENCE_TEXTS, 'vectors': vecs.tolist()}, fp)

    def test_is_tokenized(self):
        texts = ['hello world!', 'good day']
        texts2 = [s.split() for s in texts]
        vecs = self.bc.encode(texts2, is_tokenized=True)
        self.assertEqual(vecs.shape, (2, self.dim))

    def test_show_tokens(self):
        vecs, tokens = self.bc.encode(['hello world!', 'thisis it'], show_tokens=True)
        self.assertEqual(vecs.shape, (2, self.dim))
        self.assertEqual(tokens[0][0], '[CLS]')
        self.assertIn('hello', tokens[0])
        vecs, tokens = self.bc.encode([['hello', 'world!'], ['thisis', 'it']], show_tokens=True, is_tokenized=True)
        self.assertEqual(tokens[1][:3], ['[CLS]', '[UNK]', 'it'])

    def test_encode_async(self):
        lst_str = ['a line of text %d' % i for i in range(7)]

        def text_gen():
            while True:
                yield lst_str

        seen = 0
        for j in self.bc.encode_async(text_gen(), max_num_batch=10):
            self.assertEqual((j.shape[0], j.shape[1]), (7, self.dim))
            seen += 1
        self.assertEqual(seen, 10)

    def test_non_blocking_fetch_all(self):
        batches = [['batch %d row %d' % (b, r) for r in range(b + 1)] for b in range(4)]
        for batch in batches:
            self.assertIsNone(self.bc.encode(batch, blocking=False))
        ordered = self.bc.fetch_all()
        self.assertEqual([v.shape[0] for v in ordered], [1, 2, 3, 4])
        for batch in batches:
            self.bc.encode(batch, blocking=False)
        joined = self.bc.fetch_all(concat=True)
        self.assertEqual(joined.shape, (10, self.dim))
        self.assertTrue(np.allclose(joined[:1], self.bc.encode(batches[0]), atol=1e-6))
        self.assertIsNone(self.bc.fetch_all(), 'nothing pending: None, as before')

    def test_fetch_yields_responses_with_ids(self):
        for batch in (['x'], ['y', 'z']):
            self.bc.encode(batch, blocking=False)
        got = sorted(self.bc.fetch(), key=lambda r: r.id)
        self.assertEqual(len(got), 2)
        self.assertIsInstance(got[0], Response)
        self.assertEqual(got[1].embedding.shape, (2, self.dim))

    def test_server_status_as_json(self):
        status = json.dumps(self.bc.server_status, ensure_ascii=False)
        self.assertIn('num_workers', status)
        self.assertEqual(self.bc.server_config['protocol'], 'bertq.v1')

    def test_list_output_and_context_manager(self):
        with BertClient(output_fmt='list', show_server_config=False) as bc:
            vecs = bc.encode(['hello'])
            self.assertIsInstance(vecs, list)
            self.assertIsInstance(vecs[0][0], float)

    def test_big_request_in_slices(self):
        texts = ['sentence number %d' % i for i in range(2500)]
        vecs = self.bc.encode(texts)
        self.assertEqual(vecs.shape, (2500, self.dim))
        self.assertTrue(np.allclose(vecs[2499], self.bc.encode([texts[2499]])[0], atol=1e-5))

    def test_threads_each_with_a_client(self):
        # bert-as-service's advice: one client per thread.
        results = []

        def work(i):
            with BertClient(check_version=False) as bc:
                results.append(bc.encode(['thread %d' % i]).shape)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(results, [(1, self.dim)] * 4)


class Errors(unittest.TestCase):
    """The exceptions a caller of bert-as-service catches, plus bertq's codes in the message."""

    def test_bad_input_is_value_or_type_error(self):
        with BertClient() as bc:
            with self.assertRaises(TypeError):
                bc.encode('not a list')
            with self.assertRaises(ValueError):
                bc.encode([])
            with self.assertRaises(ValueError):
                bc.encode(['ok', '   '])
            with self.assertRaises(TypeError):
                bc.encode(['ok', 3])

    def test_length_warning(self):
        with BertClient() as bc:
            with self.assertWarns(UserWarning):
                bc.encode([' '.join(['word'] * 100)])

    def test_service_errors_carry_bertq_codes(self):
        with BertClient(ignore_all_checks=True) as bc:
            # Past the client's own checks (as a client of another language would send it).
            with self.assertRaises(BertqError) as caught:
                bc._post([''], False, False)
            self.assertEqual(caught.exception.code, 'BAD_REQUEST')
            self.assertIsInstance(caught.exception, ValueError)
            self.assertIn('BAD_REQUEST: ', str(caught.exception))

    def test_nobody_there_is_connection_error(self):
        with self.assertRaises(ConnectionError) as caught:
            BertClient(port=1)
        self.assertIn('bert-serving-start', str(caught.exception))

    def test_listen_says_what_http_cannot_do(self):
        with BertClient() as bc:
            with self.assertRaises(NotImplementedError):
                bc.listen()

    def test_timeout_is_timeout_error(self):
        # 1 ms is less than any encode takes: the client gives up as bert-as-service's did.
        with BertClient(timeout=1, ignore_all_checks=True) as bc:
            with self.assertRaises(TimeoutError):
                bc.encode(['too slow for one millisecond ' * 20] * 2000)


if __name__ == '__main__':
    unittest.main()
