"""bert-as-service's ``BertClient``, served by bertq.

Code written for bert-as-service runs unchanged::

    from bert_serving.client import BertClient
    bc = BertClient()                     # ip='localhost', port=5555
    bc.encode(['First do it', 'then do it right', 'then do it better'])

bert-as-service's client spoke ZeroMQ to two ports (``port``, ``port_out``). This one speaks HTTP to
the bertq gateway at ``http://<ip>:<port>``: ``bert-serving-start -port 5555`` (its default) serves
exactly that port, and ``bertq start --client-port`` / ``bertq gateway --http-port`` do too.
``port_out`` is accepted and unused. Only the standard library and numpy are needed.

What HTTP cannot do: multicast. bert-as-service sent every result to all clients sharing an
``identity``; over HTTP an answer goes to the caller only, so ``listen()`` raises
NotImplementedError (bertq's TypeScript client and any NATS client can listen: docs/protocol.md).
"""

import http.client
import json
import os
import socket
import sys
import threading
import time
import uuid
import warnings
from collections import namedtuple
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from urllib.parse import urlsplit

import numpy as np

__all__ = ['BertClient', 'ConcurrentBertClient', 'BertqError', 'Response']
__version__ = '1.10.0'

#: The wire protocol this client expects the service to speak (its config's ``protocol``).
PROTOCOL = 'bertq.v1'
#: Rows per HTTP request: a bigger encode() is sent in slices, several at a time, and joined.
ROWS_PER_REQUEST = 1024
#: HTTP requests of one client in flight at once (slices of a big encode, non-blocking encodes).
CONCURRENT_REQUESTS = 4


class Response(namedtuple('Response', ['id', 'embedding', 'tokens'])):
    """One result of ``fetch()``: the request id (send order), its vectors and, if asked, tokens.

    As in bert-as-service it is a named tuple; ``shape`` and numpy conversion reach the vectors, so
    ``for j in bc.encode_async(...): j.shape`` works as its README shows.
    """

    __slots__ = ()

    @property
    def shape(self):
        return np.asarray(self.embedding).shape

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.embedding, dtype=dtype)


class BertqError(Exception):
    """An error the service answered with; ``code`` is bertq's (BAD_REQUEST, OVERLOADED, ...)."""

    def __init__(self, code, message, status=None, details=None):
        super().__init__('%s: %s' % (code, message))
        self.code = code
        self.status = status
        self.details = details or {}


class BertqBadRequest(BertqError, ValueError):
    """BAD_REQUEST, TOO_LARGE, TOO_LONG: the input; fix it, retrying does not help."""


class BertqTimeout(BertqError, TimeoutError):
    """TIMEOUT: the service did not finish the request in time (a ``TimeoutError``, as before)."""


class BertqUnavailable(BertqError, ConnectionError):
    """NO_WORKERS, OVERLOADED: nothing serves the request now; retry later or add workers."""


class BertqUnauthorized(BertqError, PermissionError):
    """UNAUTHORIZED: the gateway wants a token (``BERTQ_HTTP_TOKEN``)."""


_ERROR_CLASSES = {
    'BAD_REQUEST': BertqBadRequest,
    'TOO_LARGE': BertqBadRequest,
    'TOO_LONG': BertqBadRequest,
    'TIMEOUT': BertqTimeout,
    'NO_WORKERS': BertqUnavailable,
    'OVERLOADED': BertqUnavailable,
    'UNAUTHORIZED': BertqUnauthorized,
}


def _error(code, message, status=None, details=None):
    return _ERROR_CLASSES.get(code, BertqError)(code, message, status, details)


class _Http(object):
    """One keep-alive connection per thread to the gateway; JSON in, JSON out, typed errors."""

    def __init__(self, base, timeout_s, token):
        parts = urlsplit(base)
        self.base = base
        self.https = parts.scheme == 'https'
        self.host = parts.hostname or 'localhost'
        self.port = parts.port or (443 if self.https else 80)
        self.timeout_s = timeout_s
        self.token = token
        self.local = threading.local()
        self.opened = []  # every connection of every thread, closed by close()
        self.opened_lock = threading.Lock()

    def _connection(self, fresh=False):
        conn = getattr(self.local, 'conn', None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            conn = cls(self.host, self.port, timeout=self.timeout_s)
            self.local.conn = conn
            with self.opened_lock:
                self.opened.append(conn)
        return conn

    def request(self, method, path, body=None, timeout_ms=None):
        headers = {'Accept': 'application/json'}
        data = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode('utf-8')
            headers['Content-Type'] = 'application/json'
        if self.token:
            headers['Authorization'] = 'Bearer ' + self.token
        for attempt in (0, 1):
            conn = self._connection(fresh=attempt > 0)
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except socket.timeout:
                # Its answer may still come on this connection: drop it, and open none until asked.
                self._drop()
                raise TimeoutError(
                    'no response from the server (with "timeout"=%d ms), please check the following:\n'
                    '- is the server still running? (bertq status)\n'
                    '- is a big request still being encoded? give a larger "timeout", or -1 to wait for it'
                    % timeout_ms
                )
            except (ConnectionRefusedError, socket.gaierror) as err:
                raise ConnectionError(
                    'no bertq gateway at %s (%s): start one with "bert-serving-start -model_dir ... -port %d" '
                    '(or "bertq gateway --http-port %d" beside a running fleet)' % (self.base, err, self.port, self.port)
                )
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A kept-alive connection the server closed meanwhile: once more on a new one.
                if attempt == 1:
                    raise
        try:
            doc = json.loads(raw.decode('utf-8')) if raw else None
        except ValueError:
            doc = None
        if resp.status >= 400:
            err = (doc or {}).get('error') if isinstance(doc, dict) else None
            if isinstance(err, dict):
                raise _error(err.get('code', 'INTERNAL'), err.get('message', ''), resp.status, err.get('details'))
            raise _error('INTERNAL', 'HTTP %d from %s%s: %r' % (resp.status, self.base, path, raw[:200]), resp.status)
        return doc

    def _drop(self):
        conn = getattr(self.local, 'conn', None)
        if conn is not None:
            conn.close()
            self.local.conn = None

    def close(self):
        with self.opened_lock:
            opened, self.opened = self.opened, []
        for conn in opened:
            conn.close()
        self.local.conn = None


class BertClient(object):
    """bert-as-service's client: the same arguments, methods, shapes and exceptions.

    :param ip: the server's host (or a full ``http(s)://host:port`` URL)
    :param port: the bertq gateway's port: ``bert-serving-start -port`` (default 5555)
    :param port_out: accepted for compatibility; results come back on the same HTTP connection
    :param output_fmt: ``'ndarray'`` (float32) or ``'list'``
    :param show_server_config: print the server's configuration when connected
    :param identity: a name for this client (bert-as-service's multicast key; see listen())
    :param check_version: refuse a server that does not speak bertq.v1 (AttributeError)
    :param check_length: warn when a sentence has more words than the server's max_seq_len
    :param check_token_info: refuse ``show_tokens=True`` when the server does not send tokens
    :param ignore_all_checks: skip the server config read at start and every check above
    :param timeout: milliseconds to wait for an answer; -1 waits as long as it takes
    :param token: the gateway's bearer token, if it has one (default: ``$BERTQ_HTTP_TOKEN``)
    """

    def __init__(self, ip='localhost', port=5555, port_out=5556, output_fmt='ndarray', show_server_config=False,
                 identity=None, check_version=True, check_length=True, check_token_info=True,
                 ignore_all_checks=False, timeout=-1, token=None):
        if output_fmt == 'ndarray':
            self.formatter = lambda x: x
        elif output_fmt == 'list':
            self.formatter = lambda x: x.tolist()
        else:
            raise AttributeError('"output_fmt" must be "ndarray" or "list"')
        self.output_fmt = output_fmt
        self.ip = ip
        self.port = port
        self.port_out = port_out
        self.identity = identity or str(uuid.uuid4())
        self.timeout = timeout
        self.base = ip.rstrip('/') if '://' in ip else 'http://%s:%d' % (ip, port)
        self._http = _Http(self.base, None if timeout is None or timeout < 0 else timeout / 1000.0,
                           token if token is not None else os.environ.get('BERTQ_HTTP_TOKEN'))
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=CONCURRENT_REQUESTS, thread_name_prefix='bertq-request')
        # Slices of one big encode go out from threads of their own: a pool thread never waits on itself.
        self._slicer = ThreadPoolExecutor(max_workers=CONCURRENT_REQUESTS, thread_name_prefix='bertq-slice')
        self._pending = {}  # request id -> Future of a Response
        self._feeding = 0  # encode_async feeders still running
        self.request_id = 0
        self.length_limit = 0
        self.token_info_available = False
        self.ignore_all_checks = ignore_all_checks
        self.check_length = check_length
        self.check_token_info = check_token_info
        self._stats = {'num_request': 0, 'num_total_seq': 0}

        if not ignore_all_checks and (check_version or show_server_config or check_length or check_token_info):
            s_status = self.server_config
            if check_version and s_status.get('protocol') != PROTOCOL:
                raise AttributeError(
                    'version mismatch! server speaks %r, client speaks %r; consider "BertClient(check_version=False)" '
                    'or "BertClient(ignore_all_checks=True)"' % (s_status.get('protocol'), PROTOCOL))
            if show_server_config:
                self._print_dict(s_status, 'server config:')
            if check_length:
                self.length_limit = s_status.get('max_seq_len') or 0
            if check_token_info:
                self.token_info_available = bool(s_status.get('show_tokens_to_client'))

    # ---- properties --------------------------------------------------------------------------------

    @property
    def status(self):
        """The client's own status, as bert-as-service's ``status``."""
        return {
            'identity': self.identity,
            'num_request': self._stats['num_request'],
            'num_total_seq': self._stats['num_total_seq'],
            'pending_request': len(self._pending),
            'output_fmt': self.output_fmt,
            'server': self.base,
            'port': self.port,
            'port_out': self.port_out,
            'timeout': self.timeout,
            'client': 'bertq bert_serving.client %s' % __version__,
            'python_version': sys.version,
            'numpy_version': np.__version__,
        }

    @property
    def server_config(self):
        """The service's configuration (``GET /config``): how its workers were started."""
        return self._http.request('GET', '/config', timeout_ms=self.timeout)

    @property
    def server_status(self):
        """The fleet's status (``GET /status/server``): workers, queue, throughput, latency."""
        return self._http.request('GET', '/status/server', timeout_ms=self.timeout)

    # ---- encoding ----------------------------------------------------------------------------------

    def encode(self, texts, blocking=True, is_tokenized=False, show_tokens=False):
        """Encode a list of strings (or, with ``is_tokenized``, a list of token lists).

        :return: a float32 ndarray ``[len(texts), dim]`` (or ``[len, max_seq_len, dim]`` for
            ``pooling_strategy NONE``), a list with ``output_fmt='list'``; with ``show_tokens``, a
            tuple ``(vectors, tokens)``; with ``blocking=False``, None: ``fetch()`` brings it.
        """
        if is_tokenized:
            self._check_input_lst_lst_str(texts)
        else:
            self._check_input_lst_str(texts)
        if not self.ignore_all_checks:
            if self.length_limit and not self._check_length(texts, self.length_limit, is_tokenized):
                warnings.warn(
                    'some of your sentences have more tokens than "max_seq_len=%d" set on the server, as consequence '
                    'you may get less-accurate or truncated embeddings.\nhere is what you can do:\n'
                    '- disable the length-check by create a new "BertClient(check_length=False)" when you do not '
                    'want to display this warning\n- or, start a new server with a larger "max_seq_len"'
                    % self.length_limit)
            if show_tokens and self.check_token_info and not self.token_info_available:
                raise ValueError(
                    '"show_tokens=True", but the server does not support showing tokenization info to clients.\n'
                    'here is what you can do:\n- start a new server with "bert-serving-start -show_tokens_to_client ..."\n'
                    '- or, use "encode(show_tokens=False)"')
        with self._lock:
            self.request_id += 1
            req_id = self.request_id
            self._stats['num_request'] += 1
            self._stats['num_total_seq'] += len(texts)
        if blocking:
            return self._result(self._encode(texts, is_tokenized, show_tokens), show_tokens)
        future = self._pool.submit(self._encode_response, req_id, texts, is_tokenized, show_tokens)
        with self._lock:
            self._pending[req_id] = future
        return None

    def _encode_response(self, req_id, texts, is_tokenized, show_tokens):
        vectors, tokens = self._encode(texts, is_tokenized, show_tokens)
        return Response(req_id, self.formatter(vectors), tokens)

    def _result(self, encoded, show_tokens):
        vectors, tokens = encoded
        return (self.formatter(vectors), tokens) if show_tokens else self.formatter(vectors)

    def _encode(self, texts, is_tokenized, show_tokens):
        """POST /encode, in slices of ROWS_PER_REQUEST rows (several in flight), joined in order."""
        slices = [texts[i:i + ROWS_PER_REQUEST] for i in range(0, len(texts), ROWS_PER_REQUEST)]
        if len(slices) == 1:
            answers = [self._post(slices[0], is_tokenized, show_tokens)]
        else:
            answers = list(self._slicer.map(lambda s: self._post(s, is_tokenized, show_tokens), slices))
        vectors = [np.asarray(a['result'], dtype=np.float32) for a in answers]
        if len(vectors) > 1 and vectors[0].ndim == 3:
            # Token-level output under max_seq_len NONE: pad every slice to the longest token axis.
            width = max(v.shape[1] for v in vectors)
            vectors = [np.pad(v, ((0, 0), (0, width - v.shape[1]), (0, 0))) for v in vectors]
        joined = vectors[0] if len(vectors) == 1 else np.concatenate(vectors, axis=0)
        tokens = [t for a in answers for t in (a.get('tokens') or [])] if show_tokens else None
        return joined, tokens

    def _post(self, texts, is_tokenized, show_tokens):
        body = {'id': self.identity, 'texts': texts}
        if is_tokenized:
            body['is_tokenized'] = True
        if show_tokens:
            body['show_tokens'] = True
        return self._http.request('POST', '/encode', body, timeout_ms=self.timeout)

    def fetch(self, delay=.0):
        """Results of non-blocking ``encode()`` calls as they complete (send order NOT preserved).

        :return: a generator of ``Response(id, embedding, tokens)``; ``id`` is the send order.
        """
        time.sleep(delay)
        while True:
            with self._lock:
                futures = list(self._pending.values())
                feeding = self._feeding > 0
            if not futures:
                if not feeding:
                    return
                time.sleep(0.01)
                continue
            done, _ = wait(futures, timeout=None if not feeding else 0.1, return_when=FIRST_COMPLETED)
            for future in done:
                response = future.result()
                with self._lock:
                    self._pending.pop(response.id, None)
                yield response

    def fetch_all(self, sort=True, concat=False):
        """Every pending result, in send order (``sort``), optionally joined into one array or list."""
        if not self._pending and not self._feeding:
            return None
        tmp = list(self.fetch())
        if sort:
            tmp = sorted(tmp, key=lambda v: v.id)
        tmp = [v.embedding for v in tmp]
        if concat:
            if self.output_fmt == 'ndarray':
                tmp = np.concatenate(tmp, axis=0)
            elif self.output_fmt == 'list':
                tmp = [vv for v in tmp for vv in v]
        return tmp

    def encode_async(self, batch_generator, max_num_batch=None, delay=0.1, **kwargs):
        """Encode batches from a generator in the background; yields each ``Response`` as it completes.

        At most ``CONCURRENT_REQUESTS`` × 4 batches wait at once: an endless generator is read only
        as fast as the service encodes.
        """
        room = threading.Semaphore(CONCURRENT_REQUESTS * 4)
        errors = []

        def run():
            try:
                cnt = 0
                for texts in batch_generator:
                    room.acquire()
                    self.encode(texts, blocking=False, **kwargs)
                    with self._lock:
                        future = self._pending[self.request_id]
                    future.add_done_callback(lambda _f: room.release())
                    cnt += 1
                    if max_num_batch and cnt == max_num_batch:
                        break
            except Exception as err:  # surfaced to the reader below
                errors.append(err)
            finally:
                with self._lock:
                    self._feeding -= 1

        with self._lock:
            self._feeding += 1
        threading.Thread(target=run, name='bertq-encode-async', daemon=True).start()

        def results():
            for response in self.fetch(delay):
                yield response
            if errors:
                raise errors[0]

        return results()

    def listen(self):
        """Multicast (every client sharing an ``identity`` gets every result) does not exist over HTTP."""
        raise NotImplementedError(
            'listen() needs multicast, which HTTP cannot do: an answer goes to the caller only. Use bertq\'s '
            'TypeScript client (BertClient.listen) or subscribe to bertq.v1.<service>.results.<identity> on NATS '
            '(docs/protocol.md)')

    def close(self):
        """Lets running requests finish, drops queued ones, and closes every connection."""
        # Requests already running finish (each has the gateway's deadline), queued ones are dropped;
        # then every connection any thread opened is closed.
        for pool in (self._pool, self._slicer):
            try:
                pool.shutdown(wait=True, cancel_futures=True)
            except TypeError:  # Python 3.8
                pool.shutdown(wait=True)
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.close()

    # ---- bert-as-service's input checks ------------------------------------------------------------

    @staticmethod
    def _check_length(texts, len_limit, tokenized):
        if tokenized:
            return all(len(t) <= len_limit for t in texts)
        return all(len(t.split()) <= len_limit for t in texts)

    @staticmethod
    def _check_input_lst_str(texts):
        if not isinstance(texts, list):
            raise TypeError('"%s" must be %s, but received %s' % (texts, type([]), type(texts)))
        if not len(texts):
            raise ValueError('"%s" must be a non-empty list, but received %s with %d elements'
                             % (texts, type(texts), len(texts)))
        for idx, s in enumerate(texts):
            if not isinstance(s, str):
                raise TypeError('all elements in the list must be %s, but element %d is %s' % (type(''), idx, type(s)))
            if not s.strip():
                raise ValueError('all elements in the list must be non-empty string, but element %d is %s'
                                 % (idx, repr(s)))

    @staticmethod
    def _check_input_lst_lst_str(texts):
        if not isinstance(texts, list):
            raise TypeError('"texts" must be %s, but received %s' % (type([]), type(texts)))
        if not len(texts):
            raise ValueError('"texts" must be a non-empty list, but received %s with %d elements'
                             % (type(texts), len(texts)))
        for s in texts:
            BertClient._check_input_lst_str(s)

    @staticmethod
    def _print_dict(x, title=None):
        if title:
            print(title)
        for k, v in x.items():
            print('%30s\t=\t%-30s' % (k, v))


class ConcurrentBertClient(BertClient):
    """bert-as-service kept a pool of clients for threads; one HTTP client is already thread-safe."""

    def __init__(self, max_concurrency=10, **kwargs):
        super(ConcurrentBertClient, self).__init__(**kwargs)
        self.max_concurrency = max_concurrency
