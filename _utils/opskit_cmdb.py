"""Client, cache and webhook checks for reading minion pillars from a CMDB over HTTP(S).

Shared by the ``cmdb`` ext_pillar (``_pillar/cmdb.py``) and the ``cmdb`` runner
(``_runners/cmdb.py``). Nothing here is a Salt loader module: it is imported as a plain
module, so its per-process state (one pooled ``requests.Session`` per configured entry)
survives the loader re-creating the modules that use it.

What lives here:

- ``Entry``: one validated ``ext_pillar: - cmdb: {...}`` configuration block.
- ``record_url()``: the minion id goes into exactly one path segment, percent-encoded;
  ids that could change the URL's structure are refused.
- ``Client``: GET with bounded retries and backoff, same-origin redirects only, a body
  size limit, JSON-object validation and human-readable failures (``CmdbError``).
- ``DiskCache``: per-minion copies under the master's cachedir (atomic writes, mode
  0600) used for the TTL cache, ETag revalidation and the last-known-good copy, plus
  invalidation markers that other processes (``cmdb.invalidate``) can set.
- ``pillar_for()``: the ext_pillar's logic (cache, fetch, fail closed or serve stale).
- ``verify_webhook()`` for the runner (masking lives in ``opskit_redact``).

Secrets (passwords, tokens, header values) never go into log records, exception
messages or files written here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import hmac
import json
import logging
import math
import os
import pathlib
import re
import socket
import ssl
import tempfile
import threading
import time
import unicodedata
import urllib.parse

from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

try:
    import opskit_redact  # synced from file_roots, or module_dirs
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_redact

try:
    import requests
    import requests.adapters

    HAS_REQUESTS = True
except ImportError:  # pragma: no cover - requests is a Salt dependency
    HAS_REQUESTS = False

log = logging.getLogger(__name__)

USER_AGENT = "opskit-cmdb/1"
PLACEHOLDER = "{minion_id}"
LEGACY_PLACEHOLDER = "%s"
CACHE_DIRNAME = "opskit-cmdb"

# Defaults. The read timeout is well under Salt's 60 s request timeout, and so is the
# worst case of all attempts together (checked in Entry.from_config).
DEFAULT_CONNECT_TIMEOUT = 3.0
DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF = 0.5
MAX_BACKOFF = 5.0
MAX_RETRIES = 5
WORST_CASE_BUDGET = 55.0
DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_STALE_MAX_AGE = 3600
MAX_REDIRECTS = 3
SECRET_CACHE_SECONDS = 60.0

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# Characters a minion id may not contain: each could change the URL's path or query
# even after percent-encoding, when a proxy or framework decodes the path once more.
FORBIDDEN_ID_CHARS = frozenset("/\\%?#")
MAX_ID_BYTES = 255

OPTIONS = (
    "url",
    "name",
    "username",
    "password",
    "password_file",
    "token",
    "token_file",
    "headers",
    "verify",
    "ca_bundle",
    "cert",
    "key",
    "timeout",
    "retries",
    "backoff",
    "nesting_key",
    "max_bytes",
    "missing",
    "allow_insecure_http",
    "cache_ttl",
    "on_error",
    "stale_max_age",
)


class CmdbConfigError(SaltInvocationError):
    """An ext_pillar ``cmdb`` entry (or a minion id) cannot be used; the message says why."""


class CmdbError(CommandExecutionError):
    """Reading a minion's record failed. ``stale_ok``: a last-known-good copy may stand in."""

    stale_ok = True


class CmdbMissing(CmdbError):
    """The CMDB has no record for the minion (HTTP 404) and ``missing: error`` is set."""

    stale_ok = False


class WebhookRejected(CommandExecutionError):
    """A CMDB webhook was not accepted (unsigned, badly signed, too old, replayed...)."""


# Minion ids and URLs -------------------------------------------------------------------
def check_minion_id(minion_id) -> str:
    """Return ``minion_id`` if it can fill one URL path segment safely, else raise.

    Refused: empty ids, ``.`` and ``..``, ids longer than 255 bytes, and ids containing
    ``/ \\ % ? #``, whitespace or control/format characters. Everything else is
    percent-encoded by ``record_url``.
    """
    if not isinstance(minion_id, str) or not minion_id:
        raise CmdbConfigError(f"minion id {minion_id!r} is empty or not a string")
    if minion_id in (".", ".."):
        raise CmdbConfigError(
            f"minion id {minion_id!r} cannot be used in a CMDB URL: it is a relative path "
            "segment, so the request would go to another resource"
        )
    for char in minion_id:
        if char in FORBIDDEN_ID_CHARS or unicodedata.category(char)[0] in ("C", "Z"):
            raise CmdbConfigError(
                f"minion id {minion_id!r} cannot be used in a CMDB URL: it contains "
                f"{char!r}, which could move the request out of its path segment (or "
                "hide in logs). Rename the minion: opskit only puts ids made of "
                "printable characters other than / \\ % ? # into the CMDB URL."
            )
    if len(minion_id.encode("utf-8")) > MAX_ID_BYTES:
        raise CmdbConfigError(
            f"minion id {minion_id[:40]!r}... is longer than {MAX_ID_BYTES} bytes; "
            "refusing to put it into a CMDB URL"
        )
    return minion_id


def safe_url(url: str) -> str:
    """``scheme://host[:port]/path`` of ``url`` for messages: no password, query or fragment."""
    return opskit_redact.redact_url(url, query=False)


def origin(url: str) -> tuple[str, str, int]:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


# Configuration ----------------------------------------------------------------------
def _number(config, option, default, minimum, maximum, *, integer=False):
    value = config.get(option, default)
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise CmdbConfigError(f"`{option}` must be a number, got {value!r}")
    if not minimum <= value <= maximum:
        raise CmdbConfigError(f"`{option}` must be between {minimum} and {maximum}, got {value}")
    return value


def _existing_file(config, option):
    value = config.get(option)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise CmdbConfigError(f"`{option}` must be a file path, got {value!r}")
    if not os.path.isfile(value):
        raise CmdbConfigError(f"`{option}` file {value} does not exist (or is not a file)")
    return value


@dataclasses.dataclass(frozen=True)
class Entry:
    """One validated ``cmdb`` ext_pillar entry. See README "ext_pillar cmdb" for options."""

    url: str  # template with PLACEHOLDER
    name: str
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    password_file: str | None = None
    token: str | None = dataclasses.field(default=None, repr=False)
    token_file: str | None = None
    headers: tuple = dataclasses.field(default=(), repr=False)
    verify: bool = True
    ca_bundle: str | None = None
    cert: str | None = None
    key: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    retries: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF
    nesting_key: str | None = None
    max_bytes: int = DEFAULT_MAX_BYTES
    missing: str = "error"
    allow_insecure_http: bool = False
    cache_ttl: float = 0
    on_error: str = "fail"
    stale_max_age: float = DEFAULT_STALE_MAX_AGE

    @classmethod
    def from_config(cls, config) -> Entry:
        """Validate one entry's options; raise CmdbConfigError naming the bad option."""
        if not isinstance(config, dict):
            raise CmdbConfigError(
                f"the cmdb ext_pillar takes a mapping of options, got {type(config).__name__}"
            )
        unknown = sorted(set(config) - set(OPTIONS))
        if unknown:
            raise CmdbConfigError(
                f"unknown cmdb ext_pillar option(s): {', '.join(map(str, unknown))}; "
                f"known options: {', '.join(OPTIONS)}"
            )
        kwargs = {}
        for option in ("allow_insecure_http", "verify"):
            if option in config:
                if not isinstance(config[option], bool):
                    raise CmdbConfigError(f"`{option}` must be true or false")
                kwargs[option] = config[option]
        kwargs["url"] = _template(config.get("url"), kwargs.get("allow_insecure_http", False))
        parts = urllib.parse.urlsplit(kwargs["url"])
        kwargs["name"] = str(config.get("name") or f"{parts.netloc}{parts.path}")
        kwargs.update(_auth_options(config))
        kwargs.update(_tls_options(config, kwargs.get("verify", True)))
        kwargs.update(_timing_options(config))
        kwargs.update(_behaviour_options(config))
        return cls(**kwargs)

    # Derived values ------------------------------------------------------------------
    def record_url(self, minion_id: str) -> str:
        """The record URL of ``minion_id`` (validated, percent-encoded into its segment)."""
        segment = urllib.parse.quote(check_minion_id(minion_id), safe="")
        return self.url.replace(PLACEHOLDER, segment)

    @property
    def cache_id(self) -> str:
        """Directory name of this entry's cache: changes when url/user/name change."""
        ident = "\0".join((self.url, self.username or "", self.name))
        return hashlib.sha256(ident.encode()).hexdigest()[:16]

    @property
    def session_key(self) -> tuple:
        return (self.url, self.verify, self.ca_bundle, self.cert, self.key)

    def persists(self) -> bool:
        """True if copies on disk can be used: TTL cache or last-known-good copies."""
        return self.cache_ttl > 0 or self.on_error == "stale"


def _template(url, allow_insecure_http: bool) -> str:
    if not isinstance(url, str) or not url:
        raise CmdbConfigError(
            "`url` is required, e.g. https://cmdb.example.com/assets/salt/{minion_id}/pillars/"
        )
    count = url.count(PLACEHOLDER) + url.count(LEGACY_PLACEHOLDER)
    if count != 1:
        raise CmdbConfigError(
            f"`url` {safe_url(url)!r} must contain the minion id placeholder exactly once "
            f"({PLACEHOLDER}, or {LEGACY_PLACEHOLDER} as in older configurations); "
            f"found it {count} times"
        )
    template = url.replace(LEGACY_PLACEHOLDER, PLACEHOLDER)
    parts = urllib.parse.urlsplit(template.replace(PLACEHOLDER, "MINIONID"))
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise CmdbConfigError(f"`url` {safe_url(url)!r} must be an https:// URL with a host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise CmdbConfigError(
            f"`url` {safe_url(url)!r} carries credentials (user:password@host); put them "
            "in `username` and `password_file` instead, so they stay out of logs"
        )
    if parts.scheme == "http" and not allow_insecure_http:
        raise CmdbConfigError(
            f"`url` {safe_url(url)!r} is plain http: credentials and pillar data would cross "
            "the network unencrypted. Use https, or set `allow_insecure_http: true`"
        )
    if "MINIONID" not in parts.path:
        raise CmdbConfigError(
            f"`url` {safe_url(url)!r}: the minion id placeholder must be in the path"
        )
    return template


def _auth_options(config) -> dict:
    kwargs = {}
    for option in ("username", "password", "token"):
        value = config.get(option)
        if value is not None and (not isinstance(value, str) or not value):
            raise CmdbConfigError(f"`{option}` must be a non-empty string")
        kwargs[option] = value
    for option in ("password_file", "token_file"):
        kwargs[option] = _existing_file(config, option)
    if kwargs["password"] is not None and kwargs["password_file"] is not None:
        raise CmdbConfigError("set `password` or `password_file`, not both")
    if kwargs["token"] is not None and kwargs["token_file"] is not None:
        raise CmdbConfigError("set `token` or `token_file`, not both")
    basic = kwargs["password"] is not None or kwargs["password_file"] is not None
    bearer = kwargs["token"] is not None or kwargs["token_file"] is not None
    if basic and not kwargs["username"]:
        raise CmdbConfigError("`password`/`password_file` need a `username`")
    if kwargs["username"] and not basic:
        raise CmdbConfigError("`username` needs `password` or `password_file`")
    if basic and bearer:
        raise CmdbConfigError(
            "set either basic auth (`username` + `password`/`password_file`) or a "
            "bearer token (`token`/`token_file`), not both"
        )
    kwargs["headers"] = _header_options(config)
    return kwargs


def _header_options(config) -> tuple:
    headers = config.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise CmdbConfigError("`headers` must be a mapping of header names to strings")
    for header in headers:
        if header.lower() == "authorization":
            raise CmdbConfigError(
                "`headers` may not set Authorization: use `username` + `password_file`, or `token`"
            )
        if header.lower() in ("host", "if-none-match"):
            raise CmdbConfigError(f"`headers` may not set {header}: opskit manages it")
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", header):
            raise CmdbConfigError(f"`headers`: {header!r} is not a valid header name")
    return tuple(sorted(headers.items()))


def _tls_options(config, verify: bool) -> dict:
    kwargs = {option: _existing_file(config, option) for option in ("ca_bundle", "cert", "key")}
    if kwargs["key"] and not kwargs["cert"]:
        raise CmdbConfigError("`key` needs `cert` (the client certificate)")
    if kwargs["ca_bundle"] and not verify:
        raise CmdbConfigError("`ca_bundle` is set but `verify: false` disables checking")
    return kwargs


def _timing_options(config) -> dict:
    timeout = config.get("timeout", [DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT])
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        timeout = [timeout, timeout]
    if not (
        isinstance(timeout, (list, tuple))
        and len(timeout) == 2
        and all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in timeout)
        and all(0 < t <= 50 for t in timeout)
    ):
        raise CmdbConfigError(
            f"`timeout` must be seconds (0 < t <= 50) or [connect, read], got {timeout!r}"
        )
    kwargs = {"connect_timeout": float(timeout[0]), "read_timeout": float(timeout[1])}
    kwargs["retries"] = _number(config, "retries", DEFAULT_RETRIES, 0, MAX_RETRIES, integer=True)
    kwargs["backoff"] = _number(config, "backoff", DEFAULT_BACKOFF, 0, MAX_BACKOFF)
    worst = (kwargs["retries"] + 1) * (kwargs["connect_timeout"] + kwargs["read_timeout"])
    worst += sum(_backoff_delay(kwargs["backoff"], n) for n in range(1, kwargs["retries"] + 1))
    if worst > WORST_CASE_BUDGET:
        raise CmdbConfigError(
            f"`timeout` and `retries` allow one pillar fetch to take {worst:.0f}s, more "
            f"than the {WORST_CASE_BUDGET:.0f}s budget under Salt's 60s request timeout: "
            "lower `timeout` or `retries`"
        )
    return kwargs


def _behaviour_options(config) -> dict:
    nesting_key = config.get("nesting_key")
    if nesting_key is not None and (not isinstance(nesting_key, str) or not nesting_key):
        raise CmdbConfigError("`nesting_key` must be a non-empty string")
    kwargs = {"nesting_key": nesting_key}
    kwargs["max_bytes"] = _number(
        config, "max_bytes", DEFAULT_MAX_BYTES, 1024, 64 * 1024 * 1024, integer=True
    )
    kwargs["missing"] = config.get("missing", "error")
    if kwargs["missing"] not in ("error", "empty"):
        raise CmdbConfigError(f"`missing` must be error or empty, got {kwargs['missing']!r}")
    kwargs["cache_ttl"] = _number(config, "cache_ttl", 0, 0, 86400)
    kwargs["on_error"] = config.get("on_error", "fail")
    if kwargs["on_error"] not in ("fail", "stale"):
        raise CmdbConfigError(f"`on_error` must be fail or stale, got {kwargs['on_error']!r}")
    kwargs["stale_max_age"] = _number(config, "stale_max_age", DEFAULT_STALE_MAX_AGE, 1, 30 * 86400)
    return kwargs


def _backoff_delay(backoff: float, attempt: int) -> float:
    """Delay before retry number ``attempt`` (1-based): backoff, 2*backoff, ... capped."""
    return min(backoff * 2 ** (attempt - 1), MAX_BACKOFF)


# Secrets -----------------------------------------------------------------------------
_SECRET_CACHE: dict = {}
_SECRET_LOCK = threading.Lock()


def resolve_secret(value: str, opts) -> str:
    """``sdb://`` URIs are looked up (and kept for a minute per process); others as is."""
    if not value.startswith("sdb://"):
        return value
    now = time.monotonic()
    with _SECRET_LOCK:
        cached = _SECRET_CACHE.get(value)
    if cached and now - cached[0] < SECRET_CACHE_SECONDS:
        return cached[1]
    import salt.utils.sdb

    try:
        resolved = salt.utils.sdb.sdb_get(value, opts or {})
    except Exception as err:  # sdb drivers raise anything; the URI is named, never a value
        raise CmdbConfigError(f"cannot look up {value}: {err}") from err
    if not isinstance(resolved, str) or not resolved or resolved == value:
        raise CmdbConfigError(f"{value} did not resolve to a non-empty string")
    with _SECRET_LOCK:
        _SECRET_CACHE[value] = (now, resolved)
    return resolved


def read_secret_file(path: str, option: str) -> str:
    try:
        mode = os.stat(path).st_mode
        if mode & 0o007:
            raise CmdbConfigError(
                f"`{option}` {path} is accessible to every user (mode {mode & 0o777:04o}); "
                f"chmod 600 it (owned by the user salt-master runs as)"
            )
        with open(path, encoding="utf-8") as handle:
            secret = handle.read().strip("\r\n")
    except OSError as err:
        raise CmdbConfigError(f"cannot read `{option}` {path}: {err.strerror}") from err
    if not secret:
        raise CmdbConfigError(f"`{option}` {path} is empty")
    return secret


def request_auth(entry: Entry, opts=None):
    """(auth tuple or None, extra headers) for a request; secrets resolved now."""
    headers = {name: resolve_secret(value, opts) for name, value in entry.headers}
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise CmdbConfigError(f"`headers`: the value of {name} contains a line break")
    auth = None
    if entry.username:
        password = (
            read_secret_file(entry.password_file, "password_file")
            if entry.password_file
            else resolve_secret(entry.password, opts)
        )
        auth = (resolve_secret(entry.username, opts), password)
    elif entry.token or entry.token_file:
        token = (
            read_secret_file(entry.token_file, "token_file")
            if entry.token_file
            else resolve_secret(entry.token, opts)
        )
        if any(char.isspace() for char in token):
            raise CmdbConfigError("the bearer token contains whitespace or a line break")
        headers["Authorization"] = f"Bearer {token}"
    return auth, headers


# HTTP client -------------------------------------------------------------------------
_SESSIONS: dict = {}
_SESSIONS_LOCK = threading.Lock()


def session_for(entry: Entry):
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
            adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=16)
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


def describe_transport_error(err: BaseException, url: str, entry: Entry) -> str:  # noqa: PLR0911
    """A sentence about why a connection failed, with what to do about it."""
    _, host, port = origin(url)
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
    """Reads records for one entry through this process's pooled session."""

    def __init__(self, entry: Entry, opts=None, sleep=time.sleep):
        self.entry = entry
        self.opts = opts
        self.sleep = sleep

    def _fail(self, minion_id, url, cause, error=CmdbError):
        return error(
            f"cannot read the pillar of minion {minion_id!r} from the CMDB at "
            f"{safe_url(url)}: {cause}"
        )

    def get(self, minion_id: str, etag: str | None = None) -> Answer:
        """GET the record of ``minion_id``; raise CmdbError with the cause on failure."""
        entry = self.entry
        url = entry.record_url(minion_id)
        try:
            auth, headers = request_auth(entry, self.opts)
        except CmdbConfigError as err:
            raise self._fail(minion_id, url, str(err), error=CmdbConfigError) from err
        if etag:
            headers["If-None-Match"] = etag
        session = session_for(entry)
        attempt = 0
        while True:
            attempt += 1
            retry_after = last_error = None
            try:
                answer = self._attempt(session, minion_id, url, auth, headers)
            except _Retryable as err:
                cause, retry_after = err.cause, err.retry_after
            except CmdbError:
                raise
            except requests.exceptions.SSLError as err:
                cause = describe_transport_error(err, url, entry)
                raise self._fail(minion_id, url, cause) from err  # retrying will not help
            except (requests.exceptions.RequestException, OSError) as err:
                cause, last_error = describe_transport_error(err, url, entry), err
            else:
                return answer
            if attempt > entry.retries:
                tries = f" (after {attempt} attempts)" if attempt > 1 else ""
                raise self._fail(minion_id, url, cause + tries) from last_error
            delay = _backoff_delay(entry.backoff, attempt)
            if retry_after is not None:
                delay = min(max(delay, retry_after), MAX_BACKOFF)
            log.debug(
                "cmdb: attempt %d for minion %s at %s failed (%s); retrying in %.1fs",
                attempt,
                minion_id,
                safe_url(url),
                cause,
                delay,
            )
            self.sleep(delay)

    def _attempt(self, session, minion_id, url, auth, headers) -> Answer:
        """One request, following same-origin redirects; the connection goes back to
        the pool whenever the answer's body could be read to its end."""
        entry = self.entry
        first = url
        for _ in range(MAX_REDIRECTS + 1):
            started = time.monotonic()
            response = session.get(
                url,
                auth=auth,
                headers=headers,
                timeout=(entry.connect_timeout, entry.read_timeout),
                allow_redirects=False,
                stream=True,
            )
            with response:
                try:
                    answer = self._interpret(response, minion_id, (first, url), headers, started)
                finally:
                    _drain(response)
            if isinstance(answer, Answer):
                return answer
            url = answer  # a same-origin redirect target
        raise self._fail(minion_id, first, f"more than {MAX_REDIRECTS} redirects")

    def _interpret(self, response, minion_id, urls, headers, started):
        """An Answer, a redirect target (str), or raise. ``urls``: (first, current)."""
        first, url = urls
        status = response.status_code
        if status == 200:
            body = self._read(response, minion_id, url, started)
            return Answer("ok", self._parse(body, minion_id, url), _etag(response))
        if status == 304 and "If-None-Match" in headers:
            return Answer("not_modified", etag=_etag(response) or headers["If-None-Match"])
        if status == 404:
            return Answer("missing")
        if status in REDIRECT_STATUSES:
            target = urllib.parse.urljoin(url, response.headers.get("Location", ""))
            if origin(target) != origin(first):
                raise self._fail(
                    minion_id,
                    first,
                    f"the CMDB redirected (HTTP {status}) to another origin "
                    f"({safe_url(target)}); opskit follows redirects only within the same "
                    "scheme, host and port, so credentials never go elsewhere. Point `url` "
                    "at the final location",
                )
            return target
        if status in RETRY_STATUSES:
            raise _Retryable(
                f"the CMDB answered HTTP {status} {response.reason or ''}".rstrip(),
                _retry_after(response),
            )
        raise self._fail(minion_id, url, _status_cause(response))

    def _read(self, response, minion_id, url, started) -> bytes:
        limit = self.entry.max_bytes
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > limit:
            raise self._fail(
                minion_id,
                url,
                f"the record is {int(length)} bytes, more than `max_bytes` ({limit}); raise "
                "`max_bytes` if records really are that large",
            )
        deadline = started + self.entry.connect_timeout + self.entry.read_timeout
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
            if time.monotonic() > deadline:
                raise requests.exceptions.ReadTimeout("body took too long")
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


def _retry_after(response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


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


# Disk cache --------------------------------------------------------------------------
def _atomic_write(path: pathlib.Path, payload: bytes, mode: int) -> None:
    """Write ``payload`` to ``path`` atomically (temp file in the same dir, rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _private_dir(path: pathlib.Path, top: pathlib.Path) -> pathlib.Path:
    """Create ``path`` and its parents up to ``top`` (included) with mode 0700."""
    for directory in (*reversed(path.relative_to(top).parents), path.relative_to(top)):
        current = top / directory
        current.mkdir(mode=0o700, parents=current == top, exist_ok=True)
        if current.stat().st_mode & 0o077:
            current.chmod(0o700)
    return path


def _key(minion_id: str) -> str:
    return hashlib.sha256(minion_id.encode("utf-8")).hexdigest()


class DiskCache:
    """Per-minion copies and invalidation markers under ``<cachedir>/opskit-cmdb``.

    Layout::

        opskit-cmdb/entries/<entry cache id>/<sha256(minion id)>.json   copies, 0600
        opskit-cmdb/invalidated/<sha256(minion id)>                      marker: time
        opskit-cmdb/invalidated/all                                      marker: time
        opskit-cmdb/webhooks/<sha256(signature)>                          replay guard

    A copy records when the request that fetched (or revalidated) it was *sent*; it is
    fresh for ``cache_ttl`` seconds unless an invalidation marker is newer than that.
    Every process of the master (and ``salt-run``) shares these files; writes are atomic
    renames, so readers see the old or the new file, never a torn one.
    """

    def __init__(self, cachedir):
        self.root = pathlib.Path(cachedir) / CACHE_DIRNAME
        self._root = str(self.root)  # the hot paths (read, markers) use plain strings

    def _entry_dir(self, entry: Entry) -> pathlib.Path:
        return self.root / "entries" / entry.cache_id

    def read(self, entry: Entry, minion_id: str) -> dict | None:
        path = os.path.join(self._root, "entries", entry.cache_id, _key(minion_id) + ".json")
        try:
            with open(path, "rb") as handle:
                record = json.loads(handle.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            log.warning("cmdb: ignoring unreadable cache file %s: %s", path, err)
            return None
        if (
            not isinstance(record, dict)
            or record.get("minion_id") != minion_id
            or not isinstance(record.get("data"), dict)
            or not isinstance(record.get("requested_at"), (int, float))
        ):
            log.warning("cmdb: ignoring malformed cache file %s", path)
            return None
        return record

    def write(self, entry: Entry, minion_id: str, data: dict, etag, requested_at) -> None:
        record = {
            "minion_id": minion_id,
            "url": safe_url(entry.record_url(minion_id)),
            "etag": etag,
            "requested_at": requested_at,
            "data": data,
        }
        directory = _private_dir(self._entry_dir(entry), self.root)
        path = directory / f"{_key(minion_id)}.json"
        _atomic_write(path, json.dumps(record, sort_keys=True).encode(), 0o600)

    def delete(self, entry: Entry, minion_id: str) -> None:
        path = self._entry_dir(entry) / f"{_key(minion_id)}.json"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    # Invalidation markers -----------------------------------------------------------
    def _marker(self, minion_id: str | None) -> str:
        name = "all" if minion_id is None else _key(minion_id)
        return os.path.join(self._root, "invalidated", name)

    def invalidate(self, minion_id: str | None, now: float | None = None) -> float:
        """Mark copies of ``minion_id`` (None: every minion) as not fresh from now on."""
        stamp = time.time() if now is None else now
        directory = _private_dir(self.root / "invalidated", self.root)
        name = os.path.basename(self._marker(minion_id))
        _atomic_write(directory / name, repr(stamp).encode(), 0o600)
        return stamp

    def invalidated_at(self, minion_id: str) -> float:
        latest = 0.0
        for path in (self._marker(None), self._marker(minion_id)):
            try:
                with open(path, "rb") as handle:
                    latest = max(latest, float(handle.read()))
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as err:
                # Cannot tell when it was invalidated: treat it as just now (fetch again).
                log.warning("cmdb: unreadable invalidation marker %s: %s", path, err)
                return time.time()
        return latest

    def is_fresh(self, entry: Entry, record: dict, now: float) -> bool:
        requested_at = record["requested_at"]
        if entry.cache_ttl <= 0 or not requested_at <= now < requested_at + entry.cache_ttl:
            return False
        return requested_at > self.invalidated_at(record["minion_id"])

    # Webhook replay guard ----------------------------------------------------------------
    @contextlib.contextmanager
    def webhook_once(self, signature: str, max_age: float):
        """Act on the webhook with ``signature`` at most once; yields ``record()``.

        Inside the block the caller holds an exclusive lock for this signature (an
        ``flock``, released by the kernel even if the process dies), so a concurrent
        delivery of the same webhook is refused. A signature counts as processed only
        once the caller calls ``record()``, after the hook's effect was published: if
        acting on it fails, the CMDB's redelivery is acted on instead of being refused
        as a replay. Raises WebhookRejected for a recorded or concurrent signature.
        Records older than twice ``max_age`` are pruned: anything that old is refused
        by its timestamp anyway.
        """
        directory = _private_dir(self.root / "webhooks", self.root)
        now = time.time()
        for old in directory.iterdir():
            with contextlib.suppress(OSError):
                if now - old.stat().st_mtime > 2 * max_age:
                    old.unlink()
        done = directory / hashlib.sha256(signature.encode()).hexdigest()
        lock = os.open(f"{done}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WebhookRejected(
                    "this exact webhook is being processed by another delivery right now: "
                    "refused as a replay"
                ) from None
            if done.exists():
                raise WebhookRejected(
                    "this exact webhook was already processed: refused as a replay"
                )

            def record() -> None:
                os.close(os.open(done, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

            yield record
        finally:
            os.close(lock)


# The ext_pillar ------------------------------------------------------------------------
_ENTRIES: dict = {}


def entry_from_config(config) -> Entry:
    """``Entry.from_config`` memoised per process (options are checked once)."""
    try:
        key = json.dumps(config, sort_keys=True, default=str)
    except TypeError:
        return Entry.from_config(config)
    entry = _ENTRIES.get(key)
    if entry is None:
        entry = Entry.from_config(config)
        if len(_ENTRIES) > 64:
            _ENTRIES.clear()
        _ENTRIES[key] = entry
    return entry


def pillar_for(entry: Entry, minion_id: str, cachedir, opts=None, client=None) -> dict:
    """The pillar ``entry`` contributes for ``minion_id``; raises instead of guessing.

    Order: a fresh copy (``cache_ttl``, not invalidated) is served as is; otherwise the
    CMDB is asked, conditionally (If-None-Match) when a copy with an ETag exists. A 404
    follows ``missing``. Any other failure raises CmdbError, unless ``on_error: stale``
    and a copy confirmed by the CMDB at most ``stale_max_age`` seconds ago exists: then
    that copy is served and a warning names its age and the cause.
    """
    check_minion_id(minion_id)
    client = client or Client(entry, opts)
    cache = DiskCache(cachedir) if cachedir else None
    cached = cache.read(entry, minion_id) if cache else None
    now = time.time()
    if cached is not None and cache.is_fresh(entry, cached, now):
        return _nest(entry, cached["data"])

    requested_at = time.time()
    try:
        answer = client.get(minion_id, etag=cached.get("etag") if cached else None)
    except CmdbError as err:
        if entry.on_error != "stale" or not err.stale_ok:
            raise
        if cached is None:
            raise CmdbError(
                f"{err}. No last-known-good copy of this minion's record exists on the "
                "master to serve instead (on_error: stale)"
            ) from err
        age = now - cached["requested_at"]
        if age > entry.stale_max_age:
            raise CmdbError(
                f"{err}. The last-known-good copy is {age:.0f}s old, beyond `stale_max_age` "
                f"({entry.stale_max_age:g}s), so it is not served"
            ) from err
        log.warning(
            "cmdb: serving the last-known-good pillar of minion %s (%.0fs old, limit %gs) "
            "because the CMDB failed: %s",
            minion_id,
            age,
            entry.stale_max_age,
            err,
        )
        return _nest(entry, cached["data"])

    if answer.status == "missing":
        if cached is not None:
            cache.delete(entry, minion_id)  # the CMDB's answer: nothing to fall back on
        if entry.missing == "error":
            raise CmdbMissing(
                f"the CMDB has no record for minion {minion_id!r} (HTTP 404 from "
                f"{safe_url(entry.record_url(minion_id))}): add the host to the CMDB, or set "
                "`missing: empty` on this entry if hosts may exist before their record"
            )
        return _nest(entry, {})

    data = cached["data"] if answer.status == "not_modified" else answer.data
    keep = entry.persists() or (answer.etag is not None and answer.status == "ok")
    if cache is not None and keep:
        try:
            cache.write(entry, minion_id, data, answer.etag, requested_at)
        except OSError as err:
            log.warning(
                "cmdb: cannot keep a copy of minion %s's pillar under %s: %s",
                minion_id,
                cache.root,
                err,
            )
    return _nest(entry, data)


def _nest(entry: Entry, data: dict) -> dict:
    return {entry.nesting_key: data} if entry.nesting_key else data


def configured_entries(opts) -> list[tuple[int, dict]]:
    """(position, options) of each ``cmdb`` entry in the master's ``ext_pillar`` list."""
    found = []
    for position, item in enumerate(opts.get("ext_pillar") or []):
        if isinstance(item, dict) and "cmdb" in item:
            found.append((position, item["cmdb"]))
    return found


# Webhooks ---------------------------------------------------------------------------
SIGNATURE_HEADER = "X-CMDB-Signature"
WEBHOOK_EVENTS = ("asset.updated", "asset.deleted")
DEFAULT_WEBHOOK_MAX_AGE = 300
DEFAULT_WEBHOOK_MAX_BYTES = 64 * 1024
MAX_WEBHOOK_MAX_BYTES = 1024 * 1024


def sign_webhook(secret: bytes, body: bytes) -> str:
    """The ``X-CMDB-Signature`` value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def check_webhook_size(body, max_bytes: int = DEFAULT_WEBHOOK_MAX_BYTES) -> bytes:
    """``body`` as bytes if it is at most ``max_bytes`` long, else raise WebhookRejected.

    A str longer than ``max_bytes`` characters is refused before it is encoded: each
    character is at least one byte.
    """
    if isinstance(body, str):
        if len(body) > max_bytes:
            raise _oversize(len(body), max_bytes, "characters")
        body = body.encode("utf-8")
    if not isinstance(body, bytes) or not body:
        raise WebhookRejected("the webhook has no body")
    if len(body) > max_bytes:
        raise _oversize(len(body), max_bytes, "bytes")
    return body


def _oversize(size: int, max_bytes: int, unit: str) -> WebhookRejected:
    return WebhookRejected(
        f"the webhook body is {size} {unit} long, more than `cmdb_webhook:max_body_bytes` "
        f"({max_bytes} bytes): refused before checking its signature. CMDB change "
        "notifications are small; raise the limit only if yours really are that large"
    )


def _no_json_constants(name):
    raise ValueError(f"{name} is not valid JSON")


def verify_webhook(
    body,
    headers,
    secret: bytes,
    max_age: float,
    *,
    now: float | None = None,
    max_bytes: int = DEFAULT_WEBHOOK_MAX_BYTES,
):
    """Check a CMDB webhook; return ``(payload, signature)`` or raise WebhookRejected.

    ``body`` is the raw request body as salt-api passed it on (``data['body']`` of the
    ``salt/netapi/hook/...`` event); the signature covers exactly those bytes. Bodies
    over ``max_bytes`` are refused first, before the HMAC or JSON parser sees them. The
    payload must be a JSON object (no NaN/Infinity) with ``event`` (asset.updated or
    asset.deleted), ``minion_id`` and ``timestamp`` (finite Unix seconds, within
    ``max_age`` of now).
    """
    now = time.time() if now is None else now
    body = check_webhook_size(body, max_bytes)
    signature = _check_signature(body, headers, secret)
    try:
        payload = json.loads(body, parse_constant=_no_json_constants)
    except ValueError as err:
        raise WebhookRejected(f"the signed webhook body is not JSON: {err}") from None
    if not isinstance(payload, dict):
        raise WebhookRejected("the signed webhook body is not a JSON object")
    if payload.get("event") not in WEBHOOK_EVENTS:
        raise WebhookRejected(
            f"the webhook's event {payload.get('event')!r} is not one of "
            f"{', '.join(WEBHOOK_EVENTS)}"
        )
    skew = _timestamp_skew(payload.get("timestamp"), now)
    if abs(skew) > max_age:
        raise WebhookRejected(
            f"the webhook's timestamp is {skew:.0f}s away from the master's clock, "
            f"more than {max_age:g}s: refused as a possible replay (check both clocks)"
        )
    try:
        check_minion_id(payload.get("minion_id"))
    except CmdbConfigError as err:
        raise WebhookRejected(f"the webhook names an unusable minion id: {err}") from None
    return payload, signature


def _timestamp_skew(stamp, now: float) -> float:
    """``now - stamp`` for a finite numeric ``stamp``; raise WebhookRejected otherwise."""
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
        raise WebhookRejected("the webhook has no numeric `timestamp`")
    try:
        skew = now - float(stamp)
    except OverflowError:
        skew = math.inf
    if not math.isfinite(skew):
        raise WebhookRejected(
            f"the webhook's `timestamp` {str(stamp)[:40]!r} is not a finite number of Unix "
            "seconds: refused as a possible replay"
        )
    return skew


def _check_signature(body: bytes, headers, secret: bytes) -> str:
    signature = None
    for name, value in (headers or {}).items():
        if isinstance(name, str) and name.lower() == SIGNATURE_HEADER.lower():
            signature = value
    if not signature:
        raise WebhookRejected(f"the webhook is not signed (no {SIGNATURE_HEADER} header)")
    if not isinstance(signature, str) or not re.fullmatch(r"sha256=[0-9a-fA-F]{64}", signature):
        raise WebhookRejected(
            f"the webhook's {SIGNATURE_HEADER} header is malformed (expected sha256=<64 hex>)"
        )
    if not hmac.compare_digest(sign_webhook(secret, body), signature.lower()):
        raise WebhookRejected(
            "the webhook's signature does not match its body (wrong secret, or the body "
            "was altered)"
        )
    return signature.lower()
