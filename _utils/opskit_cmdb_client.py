"""HTTP client of the ``cmdb`` ext_pillar and runner: reads one minion's record.

GET with same-origin redirects only (credentials never follow a redirect elsewhere), a
body size limit, JSON-object validation and failures that say what to do
(``CmdbError``). Retries and backoff follow urllib3's ``Retry``. Every attempt has a
wall-clock deadline and all attempts together end within WORST_CASE_BUDGET (55 s, under
Salt's 60 s request timeout), also when a server trickles its answer byte by byte.
One pooled ``requests.Session`` per configured entry and process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import itertools
import json
import logging
import os
import socket
import ssl
import threading
import time
import typing
import urllib.parse

try:
    import opskit_cmdb  # synced from file_roots, or module_dirs
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_cmdb

if opskit_cmdb.HAS_REQUESTS:
    import requests
    import requests.adapters
    import urllib3
    import urllib3.connection
    import urllib3.exceptions

log = logging.getLogger(__name__)

USER_AGENT = "opskit-cmdb/1"
MAX_REDIRECTS = 3
MIN_ATTEMPT = 1.0  # no retry is started with less time than this left of the budget
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


# HTTP client -------------------------------------------------------------------------
# Socket timeouts bound each wait for the next bytes, not an answer as a whole: a server
# that sends one byte a second never trips a 10 s read timeout. So every attempt also
# runs under an AttemptDeadline, a wall-clock limit enforced by the process's watchdog
# thread, which shuts the attempt's sockets down when it passes; the blocked read (TLS
# handshake, headers or body) then ends at once. The connection classes below hand each
# socket an attempt uses (new or taken from the pool) to the deadline active in the
# calling thread.
_ACTIVE = threading.local()


class _Watchdog:
    """One daemon thread per process that expires attempt deadlines when they are due.

    Arming a deadline is a heap push (no thread per attempt: starting one costs more
    than a pooled request). Deadlines that ended in time stay in the heap until they are
    due and are then skipped. After fork() the child starts with an empty watchdog.
    """

    def __init__(self):
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._heap: list = []
        self._order = itertools.count()
        self._thread = None

    def arm(self, deadline: AttemptDeadline, due: float) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="opskit-cmdb-deadlines", daemon=True
                )
                self._thread.start()
            heapq.heappush(self._heap, (due, next(self._order), deadline))
            if self._heap[0][2] is deadline:
                self._cond.notify()

    def _run(self) -> None:
        cond, heap = self._cond, self._heap
        while True:
            with cond:
                now = time.monotonic()
                while not heap or heap[0][0] > now:
                    cond.wait(heap[0][0] - now if heap else None)
                    now = time.monotonic()
                due = []
                while heap and heap[0][0] <= now:
                    due.append(heapq.heappop(heap)[2])
            for deadline in due:
                deadline.expire()


class AttemptDeadline:
    """A wall-clock limit of ``seconds`` for one attempt (a ``with`` block).

    ``expired`` tells afterwards whether the limit cut the attempt short. Sockets are
    watched through duplicates of their descriptors, which this object owns and closes:
    shutting a duplicate down ends the connection, and a descriptor number is never
    touched after the attempt ended and the number may have been reused.
    """

    def __init__(self, seconds: float):
        self.seconds = max(seconds, 0.0)
        self.expired = False
        self._lock = threading.Lock()
        self._watched: list = []
        self._active = False

    def __enter__(self) -> AttemptDeadline:
        self._active = True
        _ACTIVE.deadline = self
        _WATCHDOG.arm(self, time.monotonic() + self.seconds)
        return self

    def __exit__(self, *exc_info) -> None:
        _ACTIVE.deadline = None
        with self._lock:
            self._active = False
            watched, self._watched = self._watched, []
        for duplicate in watched:
            duplicate.close()

    def watch(self, sock) -> None:
        try:
            duplicate = socket.socket(fileno=os.dup(sock.fileno()))
        except OSError:
            return  # already closed: nothing left to wait on
        with self._lock:
            if self._active and not self.expired:
                self._watched.append(duplicate)
                return
            expired = self.expired
        if expired:  # a connection opened after the deadline passed
            _shutdown(duplicate)
        duplicate.close()

    def expire(self) -> None:
        """The deadline passed (the watchdog calls this): end the attempt's connections."""
        # Under the lock: __exit__ cannot close a duplicate while it is shut down.
        with self._lock:
            if not self._active:
                return
            self.expired = True
            for duplicate in self._watched:
                _shutdown(duplicate)


_WATCHDOG = _Watchdog()


def _shutdown(sock) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _watch(sock) -> None:
    deadline = getattr(_ACTIVE, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.watch(sock)


if opskit_cmdb.HAS_REQUESTS:

    class _Watched:
        """Mixin for urllib3 connections: new sockets and reused ones are watched."""

        def _new_conn(self):
            sock = super()._new_conn()
            _watch(sock)
            return sock

        def request(self, *args, **kwargs):
            _watch(self.sock)
            return super().request(*args, **kwargs)

    class _HTTPConnection(_Watched, urllib3.connection.HTTPConnection):
        pass

    class _HTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
        pass

    class _HTTPPool(urllib3.HTTPConnectionPool):
        ConnectionCls = _HTTPConnection

    class _HTTPSPool(urllib3.HTTPSConnectionPool):
        ConnectionCls = _HTTPSConnection

    class _DeadlineAdapter(requests.adapters.HTTPAdapter):
        """requests' adapter, with connections whose sockets attempt deadlines watch."""

        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


_SESSIONS: dict = {}
_SESSIONS_LOCK = threading.Lock()


def session_for(entry: opskit_cmdb.Entry):
    """This process's pooled session for ``entry`` (created on first use).

    Keyed by PID as well: a session inherited across fork() would share its sockets
    with the parent process.
    """
    key = (os.getpid(), entry.session_key)
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            for stale_key in [k for k in _SESSIONS if k[0] != key[0]]:
                del _SESSIONS[stale_key]  # the parent's; not closed (its sockets are shared)
            session = requests.Session()
            # No proxies, CA bundles or .netrc credentials from the environment: the
            # entry's options are the whole truth about where and how requests go.
            session.trust_env = False
            session.verify = entry.ca_bundle or entry.verify
            if not entry.verify:
                log.warning(
                    "cmdb: TLS certificate verification is off for %s (verify: false); "
                    "anyone on the path can read and forge its pillars",
                    entry.name,
                )
            if entry.cert:
                session.cert = (entry.cert, entry.key) if entry.key else entry.cert
            adapter = _DeadlineAdapter(pool_connections=1, pool_maxsize=16)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
            _SESSIONS[key] = session
    return session


@dataclasses.dataclass
class Answer:
    """What the CMDB said: ``ok`` (``data`` is the record), ``not_modified``, ``missing``."""

    status: str
    data: dict | None = None
    etag: str | None = None


def _exception_chain(err: BaseException):
    """``err`` and the exceptions it wraps (cause, context, urllib3 ``reason``, args)."""
    seen, todo = [], [err]
    while todo:
        current = todo.pop(0)
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked.extend(getattr(current, "args", ()))
        todo.extend(e for e in linked if isinstance(e, BaseException))
    return seen


def describe_transport_error(err: BaseException, url: str, entry: opskit_cmdb.Entry) -> str:  # noqa: PLR0911
    """A sentence about why a connection failed, with what to do about it."""
    _, host, port = opskit_cmdb.origin(url)
    chain = _exception_chain(err)
    for exc in chain:
        if isinstance(exc, ssl.SSLCertVerificationError):
            reason = exc.verify_message or exc.reason or str(exc)
            if "mismatch" in reason.lower() or "hostname" in reason.lower():
                return (
                    f"TLS certificate verification failed ({reason}): the CMDB's "
                    f"certificate does not name {host}; use the name it was issued for in `url`"
                )
            return (
                f"TLS certificate verification failed ({reason}): set `ca_bundle` to the CA "
                "that signed the CMDB's certificate, or fix the server's certificate chain"
            )
    for exc in chain:
        if isinstance(exc, socket.gaierror):
            return (
                f"cannot resolve host {host!r} ({exc.strerror or exc}): check the host in "
                "`url` and the master's DNS"
            )
        if isinstance(exc, ConnectionRefusedError):
            return (
                f"connection refused by {host}:{port}: is the CMDB running, and is the port "
                "in `url` right?"
            )
    if isinstance(err, requests.exceptions.ConnectTimeout):
        return (
            f"no connection to {host}:{port} within {entry.connect_timeout:g}s "
            "(connect timeout): is the host up and reachable from the master?"
        )
    if isinstance(err, (requests.exceptions.ReadTimeout, TimeoutError)):
        return (
            f"no complete answer within {entry.read_timeout:g}s (read timeout): the CMDB "
            "is overloaded or stuck; raise `timeout` only if it is merely slow"
        )
    for exc in chain:
        if isinstance(exc, ssl.SSLError):
            return f"TLS handshake with {host}:{port} failed: {exc.reason or exc}"
    for exc in chain:
        if isinstance(exc, OSError) and exc.strerror:
            return f"connection to {host}:{port} failed: {exc.strerror}"
    return f"connection to {host}:{port} failed: {type(err).__name__}"


class Client:
    """Reads records for one entry through this process's pooled session.

    Retries and backoff follow urllib3's ``Retry`` (``retry_policy``), driven here
    rather than mounted on the adapter, because a pillar fetch needs what the adapter
    cannot do: retry failures that happen while the body is read (a stream), stop
    before a pause that would overrun the overall bound, cap a server's Retry-After,
    and never retry a failed certificate check. Each attempt (redirects included)
    has a wall-clock deadline of connect + read timeout (``AttemptDeadline``), and all
    attempts and pauses together end within ``budget`` seconds (WORST_CASE_BUDGET,
    under Salt's 60 s request timeout).
    """

    def __init__(
        self,
        entry: opskit_cmdb.Entry,
        opts=None,
        sleep=time.sleep,
        budget=opskit_cmdb.WORST_CASE_BUDGET,
    ):
        self.entry = entry
        self.opts = opts
        self.sleep = sleep
        self.budget = budget

    def _fail(self, minion_id, url, cause, error=opskit_cmdb.CmdbError):
        return error(
            f"cannot read the pillar of minion {minion_id!r} from the CMDB at "
            f"{opskit_cmdb.safe_url(url)}: {cause}"
        )

    def get(self, minion_id: str, etag: str | None = None) -> Answer:
        """GET the record of ``minion_id``; raise CmdbError with the cause on failure."""
        entry = self.entry
        started = time.monotonic()
        url = entry.record_url(minion_id)
        try:
            auth, headers = opskit_cmdb.request_auth(entry, self.opts)
        except opskit_cmdb.CmdbConfigError as err:
            raise self._fail(minion_id, url, str(err), error=opskit_cmdb.CmdbConfigError) from err
        if etag:
            headers["If-None-Match"] = etag
        fetch = _Fetch(minion_id, url, auth, headers, session_for(entry), started)
        policy = opskit_cmdb.retry_policy(entry.retries, entry.backoff)
        while True:
            try:
                return self._attempt(fetch, policy)
            except _Retryable as err:
                cause, retry_after, last_error = err.cause, err.retry_after, err.__cause__
            attempts = len(policy.history) + 1
            tries = f" (after {attempts} attempts)" if attempts > 1 else ""
            try:
                policy = policy.increment("GET", opskit_cmdb.safe_url(url))
            except urllib3.exceptions.MaxRetryError:
                raise self._fail(minion_id, url, cause + tries) from last_error
            delay = min(max(policy.get_backoff_time(), retry_after or 0.0), opskit_cmdb.MAX_BACKOFF)
            if self._left(fetch) - delay < MIN_ATTEMPT:
                raise self._fail(
                    minion_id,
                    url,
                    f"{cause}{tries}; no time is left for another attempt within the "
                    f"{self.budget:g}s deadline of one pillar fetch",
                ) from last_error
            log.debug(
                "cmdb: attempt %d for minion %s at %s failed (%s); retrying in %.1fs",
                attempts,
                minion_id,
                opskit_cmdb.safe_url(url),
                cause,
                delay,
            )
            self.sleep(delay)

    def _left(self, fetch) -> float:
        return self.budget - (time.monotonic() - fetch.started)

    def _attempt(self, fetch, policy) -> Answer:
        """One attempt, following same-origin redirects, within its deadline. Raises
        _Retryable for failures another attempt may fix, opskit_cmdb.CmdbError for the others."""
        entry = self.entry
        seconds = min(entry.connect_timeout + entry.read_timeout, self._left(fetch))
        try:
            with AttemptDeadline(seconds) as deadline:
                try:
                    return self._follow(fetch, policy)
                except (
                    opskit_cmdb.CmdbError,
                    requests.exceptions.RequestException,
                    OSError,
                ) as err:
                    if deadline.expired:
                        raise _Retryable(self._deadline_cause(seconds)) from err
                    raise
        except requests.exceptions.SSLError as err:
            cause = describe_transport_error(err, fetch.url, entry)
            raise self._fail(fetch.minion_id, fetch.url, cause) from err  # retrying won't help
        except (requests.exceptions.RequestException, OSError) as err:
            raise _Retryable(describe_transport_error(err, fetch.url, entry)) from err

    def _deadline_cause(self, seconds: float) -> str:
        entry = self.entry
        if seconds < entry.connect_timeout + entry.read_timeout:
            limit = f"the {seconds:.1f}s left of the {self.budget:g}s deadline of one pillar fetch"
        else:
            limit = (
                f"{seconds:g}s, the deadline of one attempt ({entry.connect_timeout:g}s "
                f"connect + {entry.read_timeout:g}s read timeout)"
            )
        return (
            f"no complete answer within {limit}: the deadline passed while the CMDB was "
            "still sending (a server trickling bytes never trips a read timeout); it is "
            "overloaded or stuck, raise `timeout` only if it is merely slow"
        )

    def _follow(self, fetch, policy) -> Answer:
        """Request the record, following same-origin redirects; the connection goes back
        to the pool whenever the answer's body could be read to its end."""
        entry = self.entry
        url = fetch.url
        for _ in range(MAX_REDIRECTS + 1):
            response = fetch.session.get(
                url,
                auth=fetch.auth,
                headers=fetch.headers,
                timeout=(entry.connect_timeout, entry.read_timeout),
                allow_redirects=False,
                stream=True,
            )
            with response:
                try:
                    answer = self._interpret(response, fetch, url, policy)
                finally:
                    _drain(response)
            if isinstance(answer, Answer):
                return answer
            url = answer  # a same-origin redirect target
        raise self._fail(fetch.minion_id, fetch.url, f"more than {MAX_REDIRECTS} redirects")

    def _interpret(self, response, fetch, url, policy):
        """An Answer, a redirect target (str), or raise."""
        minion_id, headers = fetch.minion_id, fetch.headers
        status = response.status_code
        if status == 200:
            body = self._read(response, minion_id, url)
            return Answer("ok", self._parse(body, minion_id, url), _etag(response))
        if status == 304 and "If-None-Match" in headers:
            return Answer("not_modified", etag=_etag(response) or headers["If-None-Match"])
        if status == 404:
            return Answer("missing")
        if status in REDIRECT_STATUSES:
            target = urllib.parse.urljoin(url, response.headers.get("Location", ""))
            if opskit_cmdb.origin(target) != opskit_cmdb.origin(fetch.url):
                raise self._fail(
                    minion_id,
                    fetch.url,
                    f"the CMDB redirected (HTTP {status}) to another origin "
                    f"({opskit_cmdb.safe_url(target)}); opskit follows redirects only within "
                    "the same scheme, host and port, so credentials never go elsewhere. Point "
                    "`url` at the final location",
                )
            return target
        if policy.is_retry("GET", status, "Retry-After" in response.headers):
            try:
                retry_after = policy.get_retry_after(response.raw)
            except urllib3.exceptions.InvalidHeader:  # neither seconds nor an HTTP date
                retry_after = None
            raise _Retryable(
                f"the CMDB answered HTTP {status} {response.reason or ''}".rstrip(), retry_after
            )
        raise self._fail(minion_id, url, _status_cause(response))

    def _read(self, response, minion_id, url) -> bytes:
        limit = self.entry.max_bytes
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > limit:
            raise self._fail(
                minion_id,
                url,
                f"the record is {int(length)} bytes, more than `max_bytes` ({limit}); raise "
                "`max_bytes` if records really are that large",
            )
        chunks, size = [], 0
        for chunk in response.iter_content(65536):
            size += len(chunk)
            if size > limit:
                raise self._fail(
                    minion_id,
                    url,
                    f"the record is more than `max_bytes` ({limit}) bytes (stopped reading); "
                    "raise `max_bytes` if records really are that large",
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _parse(self, body: bytes, minion_id, url) -> dict:
        def no_constants(name):
            raise ValueError(f"{name} is not valid JSON")

        try:
            data = json.loads(body.decode("utf-8"), parse_constant=no_constants)
        except (UnicodeDecodeError, ValueError) as err:
            snippet = "empty body" if not body.strip() else f"{err}"
            raise self._fail(
                minion_id, url, f"the CMDB did not return valid JSON ({snippet})"
            ) from None
        if not isinstance(data, dict):
            raise self._fail(
                minion_id,
                url,
                f"the CMDB returned a JSON {_json_type(data)}, not an object; a pillar "
                "must be a mapping of keys to values",
            )
        return data


class _Fetch(typing.NamedTuple):
    """What every attempt of one ``Client.get`` call shares."""

    minion_id: str
    url: str
    auth: tuple | None
    headers: dict
    session: object
    started: float  # time.monotonic() when the fetch began


class _Retryable(Exception):
    def __init__(self, cause, retry_after=None):
        super().__init__(cause)
        self.cause, self.retry_after = cause, retry_after


def _drain(response, limit: int = 65536) -> None:
    """Read what is left of a small body, so that closing the response returns its
    connection to the pool instead of closing it (requests closes unread responses)."""
    if response._content_consumed:
        return
    read = 0
    with contextlib.suppress(requests.exceptions.RequestException, OSError):
        for chunk in response.iter_content(8192):
            read += len(chunk)
            if read > limit:
                return


def _etag(response) -> str | None:
    return response.headers.get("ETag") or None


def _status_cause(response) -> str:
    status = response.status_code
    if status == 401:
        return (
            "the CMDB rejected the credentials (HTTP 401): check `username` and "
            "`password_file` (or `token`) for this entry"
        )
    if status == 403:
        return (
            "the CMDB refused access (HTTP 403): the credentials are valid but may not "
            "read this record; grant the account read access to minion records"
        )
    if status == 304:
        return "the CMDB answered 304 Not Modified to a request that was not conditional"
    return f"unexpected answer HTTP {status} {response.reason or ''}".rstrip()


def _json_type(value) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )
