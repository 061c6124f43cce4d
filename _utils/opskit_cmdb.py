"""Entries, minion ids and secrets of the ``cmdb`` ext_pillar: the base the other
``opskit_cmdb_*`` helpers build on.

Shared by the ``cmdb`` ext_pillar (``_pillar/cmdb.py``) and the ``cmdb`` runner
(``_runners/cmdb.py``). Nothing here is a Salt loader module: it is imported as a plain
module, so its per-process state survives the loader re-creating the modules that use
it. The helpers, by concern:

- here: ``Entry`` (one validated ``ext_pillar: - cmdb: {...}`` block, memoised by
  ``entry_from_config``), ``record_url()`` (the minion id goes into exactly one path
  segment, percent-encoded; ids that could change the URL's structure are refused),
  the retry policy (urllib3's ``Retry``), secrets (``password_file``, ``sdb://``) and
  the errors every helper raises;
- ``opskit_cmdb_client``: GET with a deadline per attempt and over all attempts,
  retries, same-origin redirects only, a body size limit, JSON-object validation and
  human-readable failures (``CmdbError``);
- ``opskit_cmdb_cache``: per-minion copies under the master's cachedir (TTL cache, ETag
  revalidation, last-known-good copies), invalidation markers and the webhook replay
  guard;
- ``opskit_cmdb_webhook``: signing and verifying CMDB webhooks.

Masking of secrets in what the runner shows lives in ``opskit_redact``. Secrets
(passwords, tokens, header values) never go into log records, exception messages or
files written by these helpers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
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
    import requests  # noqa: F401 - HAS_REQUESTS tells the loader modules it is there
    from urllib3.util.retry import Retry

    HAS_REQUESTS = True
except ImportError:  # pragma: no cover - requests and urllib3 are Salt dependencies
    HAS_REQUESTS = False

PLACEHOLDER = "{minion_id}"
LEGACY_PLACEHOLDER = "%s"

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
SECRET_CACHE_SECONDS = 60.0

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

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
    worst += sum(backoff_delays(kwargs["retries"], kwargs["backoff"]))
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


def retry_policy(retries: int, backoff: float):
    """urllib3's ``Retry`` for one pillar fetch: ``retries`` retries in total, statuses
    429/500/502/503/504 retried, exponential backoff (``backoff`` factor) capped at
    MAX_BACKOFF. ``Client.get`` drives it (see there why not through the adapter)."""
    return Retry(
        total=retries,
        backoff_factor=backoff,
        backoff_max=MAX_BACKOFF,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=True,
    )


def backoff_delays(retries: int, backoff: float) -> list[float]:
    """The pauses ``retry_policy`` makes before retry 1..``retries`` (no Retry-After):
    urllib3 retries the first failure at once, then waits 2x, 4x ... ``backoff``."""
    policy, delays = retry_policy(retries, backoff), []
    for _ in range(retries):
        policy = policy.increment("GET", "/")
        delays.append(policy.get_backoff_time())
    return delays


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


# Entries of the master's ext_pillar list ------------------------------------------------
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


def configured_entries(opts) -> list[tuple[int, dict]]:
    """(position, options) of each ``cmdb`` entry in the master's ``ext_pillar`` list."""
    found = []
    for position, item in enumerate(opts.get("ext_pillar") or []):
        if isinstance(item, dict) and "cmdb" in item:
            found.append((position, item["cmdb"]))
    return found
