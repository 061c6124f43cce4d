#!/usr/bin/python3
"""opskit lab STAND-IN for Anubis (TecharoHQ/anubis). This program is NOT Anubis.

Why it exists: Anubis is a Go binary that upstream ships only as GitHub release
downloads (``anubis_<v>_<arch>.deb``, ``anubis-<v>-linux-<arch>.tar.gz``); Debian does
not package it, and the machines that build and test opskit cannot reach GitHub. The
opskit ``anubis`` formula still has to be exercised for real: its install path
(download from a mirror, sha256 check, ``apt-get install``), its systemd unit
(upstream's ``anubis@.service`` template, ``DynamicUser=``, ``StateDirectory=``,
``LoadCredential=``), its env and policy files, and the nginx configuration in front.
So the lab mirror serves this program packaged under upstream's asset names
(``tests/lab/anubis_artifacts.py``), and the formula installs and runs it exactly as it
would install and run Anubis.

Every behaviour below was read from upstream v1.27.0 (the file is named next to the
code that imitates it) and is kept as strict as upstream's:

- configuration from the same environment variables and defaults (``cmd/anubis/main.go``),
  with upstream's fatal start-up errors: both key variables set, a key that is not 32
  hex bytes, an unreadable key file, COOKIE_DOMAIN with COOKIE_DYNAMIC_DOMAIN, a
  REDIRECT_DOMAINS entry Go's ``url.Parse`` refuses, an invalid policy;
- the policy file, checked as ``lib/config/config.go`` / ``threshold.go`` do (shared with
  the formula: ``opskit_anubis_policy.py``), regexes in Go's RE2 syntax
  (``opskit_goregexp.py``), CIDRs as ``netip.ParsePrefix`` reads them, ``.*`` header
  rules meaning "header present" (``lib/policy/checker.go``), WEIGH rules and
  thresholds, upstream's default threshold when none is given;
- path rules in subrequest mode: ``X-Original-URI``, else ``X-Forwarded-URI``, else the
  request path (``lib/policy/checker.go`` PathChecker);
- cookies named ``<COOKIE_PREFIX>-auth`` / ``-cookie-verification`` (prefix
  ``techaro.lol-anubis``) plus the settings-hash suffix, with ``Partitioned``,
  ``SameSite`` and ``Expires`` as Go's ``http.SetCookie`` writes them (``lib/http.go``);
- the challenge page: ``anubis_challenge`` JSON with ``rules`` and ``challenge``
  (``web/index.go``), gzip'd for clients that accept gzip, and one render in 64 refused
  with a 500 for clients that do not (``lib/http.go`` RenderIndex);
- ``pass-challenge`` in upstream's order (``lib/anubis.go`` PassChallenge, proof of work
  from ``lib/challenge/proofofwork/proofofwork.go``): redirect checks, the verification
  cookie, the challenge, ``nonce``, ``elapsedTime`` and ``response`` all required;
- redirect domains compared as host[:port] with globs (``lib/http.go``
  matchRedirectDomain, ``internal/glob``);
- the bbolt store's exclusive lock: a second process opening the same database waits
  for it (bbolt ``Open`` with no timeout retries ``flock`` every 50 ms), so it never
  starts serving (``lib/store/bbolt/factory.go``, go.etcd.io/bbolt ``bolt_unix.go``);
- subrequest mode (``/.within.website/x/cmd/anubis/api/check``: 200, 401, or the DENY
  status), reverse-proxy mode with upstream's ``X-Forwarded-For`` handling
  (``internal/headers.go``), the metrics listener's ``/metrics`` and ``/healthz``.

What it does not do: the browser JavaScript, CEL ``expression`` rules (thresholds: only
``weight <op> <number>``), ``import`` of upstream's bundled rule sets, the metarefresh
and preact challenges, DNSBL/Thoth, valkey/s3 stores, Unix sockets, ``\\p{...}`` regex
classes. Its pass cookie is an HS256 token keyed with the configured Ed25519 seed
(Python's standard library has no Ed25519); its bbolt "database" is a JSON file. What
it does not implement is refused at start-up, so a test can never pass by accident.

Run: ``anubis`` (configured by environment), ``anubis --version``, ``anubis --healthcheck``.
Only the Python standard library, python3-yaml and the two opskit rule modules shipped
beside it (``../lib/anubis-standin/``) are used.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import fcntl
import gzip
import hashlib
import hmac
import html
import http.client
import http.server
import ipaddress
import json
import os
import pathlib
import random
import re
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.parse
from typing import ClassVar

import yaml  # python3-yaml, the package's one dependency

# The rule modules: beside the program when packaged (bin/../lib/anubis-standin), the
# repository's _utils when the tests import this file.
_HERE = pathlib.Path(__file__).resolve().parent
for _lib in (_HERE.parent / "lib" / "anubis-standin", _HERE.parents[1] / "_utils"):
    if (_lib / "opskit_goregexp.py").exists() and str(_lib) not in sys.path:
        sys.path.insert(0, str(_lib))
import opskit_anubis_policy  # noqa: E402
import opskit_goregexp  # noqa: E402

VERSION = "1.27.0"
STANDIN_NOTE = "opskit lab stand-in; not Anubis"
API_PREFIX = "/.within.website/x/cmd/anubis/api/"
STATIC_PREFIX = "/.within.website/x/cmd/anubis/"
CHALLENGE_PATH = "/.within.website/"
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
}
CGNAT = ipaddress.ip_network("100.64.0.0/10")
# Go's netip.Addr.IsPrivate: RFC 1918 and RFC 4193 only (Python's is_private is wider).
PRIVATE = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
# net/http's SameSite values (SameSiteDefaultMode = 1 ...), as hashed into cookie names.
SAME_SITE = {"default": 1, "lax": 2, "strict": 3, "none": 4}
# proofofwork.go registers these two; metarefresh and preact are not implemented here.
ALGORITHMS = ("fast", "slow")


def is_private(addr) -> bool:
    return any(addr.version == net.version and addr in net for net in PRIVATE)


def random_chance(n: int) -> bool:
    """lib/http.go randomChance: true one time in n."""
    return random.randrange(n) == 0


class Fatal(Exception):
    """A start-up error: logged, then the process exits 1 (upstream: log.Fatalf)."""


class Reply(Exception):
    """Raised by request handling to answer at once (upstream: respondWithStatus/Error)."""

    def __init__(self, status: int, title: str, text: str, headers=()):
        super().__init__(f"{status} {text}")
        self.status, self.body, self.headers = status, page(title, text), list(headers)


# Logging: one JSON object per line on stderr, like upstream's slog handler. -----------
def log(level: str, msg: str, **fields) -> None:
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "level": level, "msg": msg}
    record.update(fields)
    print(json.dumps(record, default=str), file=sys.stderr, flush=True)


# Configuration (flagenv: each flag can be set by its upper-case env variable). --------
def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    # Go's strconv.ParseBool
    if raw in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if raw in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise Fatal(f'invalid boolean value "{raw}" for {name}')


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


class Settings:
    """cmd/anubis/main.go flags (each settable by its upper-case env variable)."""

    def __init__(self):
        self.bind = env_str("BIND", ":8923")
        self.bind_network = env_str("BIND_NETWORK", "tcp")
        self.target = env_str("TARGET", "http://localhost:3923")
        self.metrics_bind = env_str("METRICS_BIND", ":9090")
        self.metrics_bind_network = env_str("METRICS_BIND_NETWORK", "tcp")
        self.policy_fname = env_str("POLICY_FNAME", "")
        self.key_hex = env_str("ED25519_PRIVATE_KEY_HEX", "")
        self.key_hex_file = env_str("ED25519_PRIVATE_KEY_HEX_FILE", "")
        self.hs512_secret = env_str("HS512_SECRET", "")
        self.cookie_domain = env_str("COOKIE_DOMAIN", "")
        self.cookie_dynamic_domain = env_bool("COOKIE_DYNAMIC_DOMAIN", False)
        if self.cookie_domain and self.cookie_dynamic_domain:
            raise Fatal("you can't set COOKIE_DOMAIN and COOKIE_DYNAMIC_DOMAIN at the same time")
        self.cookie_prefix = env_str("COOKIE_PREFIX", "techaro.lol-anubis")
        self.cookie_partitioned = env_bool("COOKIE_PARTITIONED", True)
        self.cookie_secure = env_bool("COOKIE_SECURE", True)
        self.cookie_http_only = env_bool("COOKIE_HTTP_ONLY", False)
        same_site = env_str("COOKIE_SAME_SITE", "None")
        if same_site.lower() not in SAME_SITE:
            raise Fatal(
                f"invalid cookie same-site mode: {same_site}, valid values are None, Lax, "
                "Strict, and Default"
            )
        self.cookie_same_site = SAME_SITE[same_site.lower()]
        self.cookie_expiration = parse_duration(env_str("COOKIE_EXPIRATION_TIME", "168h"))
        self.redirect_domains = []
        raw = env_str("REDIRECT_DOMAINS", "")
        for domain in raw.split(",") if raw else []:
            problem = opskit_anubis_policy.redirect_domain_problem(domain)
            if problem:
                raise Fatal(f'cannot parse redirect-domain "{domain}": parse "{domain}": {problem}')
            self.redirect_domains.append(domain.strip())
        try:
            self.difficulty = int(env_str("DIFFICULTY", "4"))
        except ValueError as err:
            raise Fatal(f"invalid value for DIFFICULTY: {err}") from err
        self.serve_robots_txt = env_bool("SERVE_ROBOTS_TXT", False)
        self.xff_strip_private = env_bool("XFF_STRIP_PRIVATE", True)
        self.custom_real_ip_header = env_str("CUSTOM_REAL_IP_HEADER", "")
        self.use_remote_address = env_bool("USE_REMOTE_ADDRESS", False)
        self.jwt_restriction_header = env_str("JWT_RESTRICTION_HEADER", "X-Real-IP")
        self.socket_mode = env_str("SOCKET_MODE", "0770")
        self.base_prefix = env_str("BASE_PREFIX", "")
        if self.base_prefix:
            raise Fatal("BASE_PREFIX is not implemented by the opskit lab stand-in")

    @property
    def subrequest_mode(self) -> bool:
        # main.go: "set to an empty string [a space under systemd] to disable proxying"
        return self.target.strip() == ""


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration for the h/m/s units upstream's defaults use."""
    total, rest = 0.0, text.strip()
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", rest):
        total += float(number) * units[unit]
    if not re.fullmatch(r"(\d+(?:\.\d+)?(ms|h|m|s))+", rest):
        raise Fatal(f'time: invalid duration "{text}"')
    return total


def load_key(cfg: Settings) -> bytes:
    """The signing seed, with upstream's rules and messages (cmd/anubis/main.go)."""
    if cfg.hs512_secret and (cfg.key_hex or cfg.key_hex_file):
        raise Fatal("do not specify both HS512 and ED25519 secrets")
    if cfg.hs512_secret:
        return cfg.hs512_secret.encode()
    if cfg.key_hex and cfg.key_hex_file:
        raise Fatal("do not specify both ED25519_PRIVATE_KEY_HEX and ED25519_PRIVATE_KEY_HEX_FILE")
    if cfg.key_hex:
        return key_from_hex(cfg.key_hex, "failed to parse and validate ED25519_PRIVATE_KEY_HEX")
    if cfg.key_hex_file:
        try:
            with open(cfg.key_hex_file, "rb") as handle:
                raw = handle.read().strip().decode("ascii", "replace")
        except OSError as err:
            raise Fatal(
                f"failed to read ED25519_PRIVATE_KEY_HEX_FILE {cfg.key_hex_file}: {err}"
            ) from err
        return key_from_hex(
            raw, "failed to parse and validate content of ED25519_PRIVATE_KEY_HEX_FILE"
        )
    log(
        "WARN",
        "generating random key, Anubis will have strange behavior when multiple instances "
        "are behind the same load balancer target",
    )
    return secrets.token_bytes(32)


def key_from_hex(value: str, context: str) -> bytes:
    try:
        seed = bytes.fromhex(value)
    except ValueError as err:
        raise Fatal(f"{context}: supplied key is not hex-encoded") from err
    if len(seed) != 32:
        raise Fatal(f"{context}: supplied key is not 32 bytes long, got {len(seed)} bytes")
    return seed


# Policy --------------------------------------------------------------------------------
# data/botPolicies.yaml is upstream's default; a few of its rules, for a run without a
# policy file (the formula always writes one).
DEFAULT_POLICY = {
    "bots": [
        {"name": "well-known", "path_regex": "^/.well-known/.*$", "action": "ALLOW"},
        {"name": "favicon", "path_regex": "^/favicon.ico$", "action": "ALLOW"},
        {"name": "robots-txt", "path_regex": "^/robots.txt$", "action": "ALLOW"},
        {"name": "generic-browser", "user_agent_regex": "Mozilla", "action": "CHALLENGE"},
    ]
}
# lib/config/threshold.go DefaultThresholds, used when a policy has no thresholds.
DEFAULT_THRESHOLDS = [
    {
        "name": "legacy-anubis-behaviour",
        "expression": "weight > 0",
        "action": "CHALLENGE",
        "challenge": {"algorithm": "fast", "difficulty": 4},
    }
]


def _compile(pattern: str, where: str):
    """A policy regex, trimmed as lib/policy/checker.go does, as a Python pattern."""
    try:
        return re.compile(opskit_goregexp.to_python(pattern.strip()))
    except opskit_goregexp.Unsupported as err:
        raise Fatal(f"{where}: {err} (not implemented by the opskit lab stand-in)") from err


def _challenge(spec, difficulty: int) -> dict:
    """lib/policy/policy.go: no block means fast at the default difficulty; a block
    without an algorithm means fast."""
    if spec is None:
        return {"algorithm": "fast", "difficulty": difficulty}
    challenge = {
        "algorithm": spec.get("algorithm") or "fast",
        "difficulty": spec.get("difficulty", 0),
    }
    if challenge["algorithm"] not in ALGORITHMS:
        raise Fatal(
            f"challenge algorithm {challenge['algorithm']!r} is not implemented by the opskit "
            "lab stand-in"
        )
    return challenge


class Rule:
    """One bot rule (lib/policy/policy.go ParseConfig, lib/policy/checker.go)."""

    def __init__(self, spec: dict, subrequest: bool, difficulty: int):
        for unsupported in ("import", "expression", "asns", "geoip"):
            if unsupported in spec:
                raise Fatal(
                    f"bot {spec.get('name')!r}: {unsupported!r} is not implemented by the "
                    "opskit lab stand-in"
                )
        self.name = spec["name"]
        self.action = spec["action"]
        self.checks = []
        where = f"bot {self.name}"
        if spec.get("remote_addresses"):
            nets = [opskit_anubis_policy.parse_prefix(c) for c in spec["remote_addresses"]]
            self.checks.append(("cidr", None, nets))
        if spec.get("user_agent_regex") is not None:
            self.checks.append(("header", "User-Agent", _compile(spec["user_agent_regex"], where)))
        if spec.get("path_regex") is not None:
            self.checks.append(("path", None, _compile(spec["path_regex"], where)))
        for header, expr in (spec.get("headers_regex") or {}).items():
            if expr == ".*":  # NewHeadersChecker: ".*" means the header is present
                self.checks.append(("exists", header.strip(), None))
            else:
                self.checks.append(("header", header, _compile(str(expr), where)))
        self.adjust = int((spec.get("weight") or {"adjust": 5}).get("adjust", 0))
        self.challenge = _challenge(spec.get("challenge"), difficulty)
        self.subrequest = subrequest
        self.hash = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def matches(self, handler: Handler) -> bool:
        for kind, header, test in self.checks:
            if kind == "header":
                if not test.search(handler.headers.get(header, "")):
                    return False
            elif kind == "exists":
                if not handler.headers.get(header):
                    return False
            elif kind == "path":
                if not self._path_matches(handler, test):
                    return False
            elif kind == "cidr":
                addr = ipaddress.ip_address(handler.headers.get("X-Real-Ip", ""))
                if addr.version == 6 and addr.ipv4_mapped:
                    addr = addr.ipv4_mapped
                if not any(addr.version == net.version and addr in net for net in test):
                    return False
        return True

    def _path_matches(self, handler: Handler, test) -> bool:
        """PathChecker.Check: in subrequest mode X-Original-Uri, else X-Forwarded-Uri
        (parsed as a request URI when possible), then the request's own path."""
        if self.subrequest:
            original = handler.headers.get("X-Original-Uri") or handler.headers.get(
                "X-Forwarded-Uri", ""
            )
            if original:
                if original.startswith("/") or re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", original):
                    original = urllib.parse.urlsplit(original).path
                if test.search(original):
                    return True
        return bool(test.search(urllib.parse.urlsplit(handler.path).path))


class Threshold:
    EXPR = re.compile(r"^\s*weight\s*(<=|>=|==|!=|<|>)\s*(-?\d+)\s*$")

    def __init__(self, spec: dict, difficulty: int):
        self.name = spec["name"]
        self.action = spec["action"]
        self.expression = spec["expression"]
        self._compile(self.expression)
        self.challenge = spec.get("challenge") or {}
        if self.name == "legacy-anubis-behaviour":
            self.challenge = {**self.challenge, "difficulty": difficulty}
        self.hash = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def _compile(self, expr):
        for sub in (
            [expr] if isinstance(expr, str) else [*expr.get("all", []), *expr.get("any", [])]
        ):
            if not self.EXPR.match(sub):
                raise Fatal(
                    f"threshold {self.name}: the opskit lab stand-in only evaluates "
                    f"'weight <op> <number>' expressions, not {sub!r}"
                )

    def holds(self, weight: int) -> bool:
        expr = self.expression
        subs = [expr] if isinstance(expr, str) else expr.get("all") or expr.get("any")
        results = []
        for sub in subs:
            op, number = self.EXPR.match(sub).groups()
            number = int(number)
            results.append(
                {
                    "<": weight < number,
                    "<=": weight <= number,
                    ">": weight > number,
                    ">=": weight >= number,
                    "==": weight == number,
                    "!=": weight != number,
                }[op]
            )
        return any(results) if isinstance(expr, dict) and "any" in expr else all(results)


class Policy:
    def __init__(self, data: dict, cfg: Settings):
        problems = opskit_anubis_policy.policy_problems(data, "config")
        if problems:
            raise Fatal(
                "config is not valid:\n" + "\n".join(f"{where}: {what}" for where, what in problems)
            )
        self.rules = [Rule(b, cfg.subrequest_mode, cfg.difficulty) for b in data["bots"]]
        self.thresholds = [
            Threshold(t, cfg.difficulty) for t in data.get("thresholds") or DEFAULT_THRESHOLDS
        ]
        codes = data.get("status_codes") or {}
        self.challenge_status = int(codes.get("CHALLENGE", 200))
        self.deny_status = int(codes.get("DENY", 200))
        if data.get("dnsbl"):
            log("WARN", "dnsbl is set; the opskit lab stand-in does not query DNS blocklists")
        self.metrics = data.get("metrics")
        self.default_difficulty = cfg.difficulty
        self.store = Store.open(data.get("store") or {"backend": "memory"})

    def check(self, handler: Handler):
        """(name, action, rule-ish) for the request, as lib/anubis.go check() decides."""
        real_ip = handler.headers.get("X-Real-Ip", "")
        if not real_ip:
            raise ValueError("[misconfiguration] X-Real-Ip header is not set")
        try:
            ipaddress.ip_address(real_ip)
        except ValueError as err:
            raise ValueError(f"[misconfiguration] {real_ip!r} is not an IP address") from err
        weight = 0
        for rule in self.rules:
            if rule.matches(handler):
                if rule.action == "WEIGH":
                    METRICS.inc("anubis_policy_results", rule=f"bot/{rule.name}", action="WEIGH")
                    weight += rule.adjust
                    continue
                return f"bot/{rule.name}", rule.action, rule
        for threshold in self.thresholds:
            if threshold.holds(weight):
                return f"threshold/{threshold.name}", threshold.action, threshold
        return "default/allow", "ALLOW", None


class Store:
    """memory, or bbolt: a database file held under an exclusive flock for as long as
    the process runs (here JSON inside, not bbolt's format)."""

    LOCK_RETRY = 0.05  # bbolt bolt_unix.go flock: retry every 50 ms, forever (no timeout)

    def __init__(self):
        self.data: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.path = None
        self.handle = None

    @classmethod
    def open(cls, spec: dict) -> Store:
        store = cls()
        backend = spec.get("backend", "memory")
        if backend == "memory":
            return store
        if backend != "bbolt":
            raise Fatal(f"store backend {backend!r} is not implemented by the opskit lab stand-in")
        path = (spec.get("parameters") or {}).get("path") or ""
        # lib/store/bbolt/factory.go Config.Valid: the directory must take a test file
        probe = os.path.join(os.path.dirname(path) or ".", ".test-file")
        try:
            with open(probe, "w", encoding="utf-8"):
                pass
            os.chmod(probe, 0o600)
        except OSError as err:
            raise Fatal("config is not valid: bbolt: can't write to path") from err
        finally:
            with contextlib.suppress(OSError):
                os.unlink(probe)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise Fatal(f"can't open bbolt database {path}: {err}") from err
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    log("INFO", "waiting for the bbolt database lock", path=path)
                    waited = True
                time.sleep(cls.LOCK_RETRY)
        store.handle = os.fdopen(fd, "r+", encoding="utf-8")
        store.path = path
        with contextlib.suppress(ValueError):
            store.data = json.loads(store.handle.read() or "{}")
        return store

    def get(self, key: str):
        with self.lock:
            item = self.data.get(key)
            if item and item["expires"] < time.time():
                del self.data[key]
                return None
            return item

    def set(self, key: str, value: dict, ttl: float) -> None:
        with self.lock:
            self.data[key] = {**value, "expires": time.time() + ttl}
            if self.handle:
                self.handle.seek(0)
                self.handle.truncate()
                self.handle.write(json.dumps(self.data))
                self.handle.flush()


# Metrics --------------------------------------------------------------------------------
class Metrics:
    HELP: ClassVar[dict[str, str]] = {
        "anubis_policy_results": "The results of each policy rule",
        "anubis_challenges_issued": "The number of challenges issued",
        "anubis_challenges_validated": "The number of challenges validated",
        "anubis_failed_validations": "The number of failed validations",
        "anubis_proxied_requests_total": "Requests proxied to the target",
        "anubis_standin_info": "Marks this process as the opskit lab stand-in, not Anubis",
    }

    def __init__(self):
        self.lock = threading.Lock()
        self.values: dict[tuple, float] = {}

    def inc(self, name: str, **labels) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self.lock:
            self.values[key] = self.values.get(key, 0) + 1

    def render(self) -> str:
        lines = []
        with self.lock:
            values = dict(self.values)
        values[("anubis_standin_info", (("version", VERSION),))] = 1
        for name in sorted({k[0] for k in values}):
            kind = "gauge" if name == "anubis_standin_info" else "counter"
            lines += [f"# HELP {name} {self.HELP.get(name, name)}", f"# TYPE {name} {kind}"]
            for (metric, labels), value in sorted(values.items()):
                if metric != name:
                    continue
                text = ",".join(f'{k}="{v}"' for k, v in labels)
                lines.append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")
        return "\n".join(lines) + "\n"


METRICS = Metrics()
HEALTH = {"serving": False}


# Request-header middleware (internal/headers.go), applied before the handler runs. ----
def compute_xff(remote_ip: str, original: str, strip_private: bool) -> str:
    """internal/headers.go computeXFFHeader: append the peer, walk right to left
    dropping private (if asked), loopback, link-local and CGNAT addresses, stop at the
    first unparsable entry, and flatten to the last address that is kept."""
    chain = [p.strip() for p in original.split(",")] if original else []
    chain.append(remote_ip)
    kept = []
    for item in reversed(chain):
        try:
            addr = ipaddress.ip_address(item)
        except ValueError:
            break
        if strip_private and is_private(addr):
            continue
        if addr.is_loopback or addr.is_link_local or (addr.version == 4 and addr in CGNAT):
            continue
        kept.append(str(addr))
    kept.reverse()
    return kept[-1] if kept else ""


def first_public(xff: str) -> str:
    for item in xff.split(","):
        try:
            addr = ipaddress.ip_address(item.strip())
        except ValueError:
            continue
        if not (is_private(addr) or addr.is_loopback or addr.is_link_local):
            return str(addr)
    return ""


def apply_header_middleware(handler: Handler, cfg: Settings) -> None:
    """The wrappers main.go installs, in the order they run on a request."""
    headers = handler.headers
    # XForwardedForUpdate
    if handler.peer_is_ip:
        value = compute_xff(
            handler.client_address[0], headers.get("X-Forwarded-For", ""), cfg.xff_strip_private
        )
        del headers["X-Forwarded-For"]
        if value:
            headers["X-Forwarded-For"] = value
    # XForwardedForToXRealIP: when X-Real-IP is unset, the first public address of
    # X-Forwarded-For (sebest/xff Parse), or an empty value
    xff = headers.get("X-Forwarded-For", "")
    if not headers.get("X-Real-Ip") and xff:
        del headers["X-Real-Ip"]
        headers["X-Real-Ip"] = first_public(xff)
    # RemoteXRealIP
    if cfg.use_remote_address:
        del headers["X-Real-Ip"]
        headers["X-Real-Ip"] = handler.client_address[0]
    # CustomRealIPHeader
    if cfg.custom_real_ip_header:
        value = headers.get(cfg.custom_real_ip_header, "")
        del headers["X-Real-Ip"]
        headers["X-Real-Ip"] = value


# Tokens ---------------------------------------------------------------------------------
def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, claims: dict) -> str:
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims, sort_keys=True).encode())
    mac = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def verify(key: bytes, token: str) -> dict | None:
    try:
        head, body, mac = token.split(".")
        expected = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, unb64(mac)):
            return None
        claims = json.loads(unb64(body))
    except (ValueError, json.JSONDecodeError):
        return None
    # jwt.WithExpirationRequired; nbf is checked when present (golang-jwt)
    if not isinstance(claims, dict) or claims.get("exp", 0) < time.time():
        return None
    if claims.get("nbf", 0) > time.time():
        return None
    return claims


# The Anubis HTTP handler ----------------------------------------------------------------
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"anubis-standin/{VERSION}"
    app: App  # set on the class by App

    def log_message(self, format, *args):
        pass

    @property
    def peer_is_ip(self) -> bool:
        return isinstance(self.client_address, tuple)

    def do_GET(self):
        self.app.dispatch(self)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def respond(self, status: int, body: str | bytes, ctype="text/html; charset=utf-8", headers=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def discard_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                break
            length -= len(chunk)


class App:
    def __init__(self, cfg: Settings, policy: Policy, key: bytes):
        self.cfg = cfg
        self.policy = policy
        self.key = key
        # main.go: CookieName = COOKIE_PREFIX + "-auth", TestCookieName = COOKIE_PREFIX +
        # "-cookie-verification"; lib/http.go adds the settings suffix
        self.cookie_name = self.suffixed(f"{cfg.cookie_prefix}-auth")
        self.test_cookie_name = self.suffixed(f"{cfg.cookie_prefix}-cookie-verification")
        target = cfg.target.strip()
        self.target = urllib.parse.urlsplit(target) if target else None

    def suffixed(self, base: str) -> str:
        """lib/http.go cookieName: base + "-" + the first 4 bytes (hex) of the sha256 of
        the cookie settings, so cookies written under other settings are ignored."""
        cfg = self.cfg

        def go_bool(value):
            return "true" if value else "false"

        settings = "|".join(
            (
                go_bool(cfg.cookie_http_only),
                go_bool(cfg.cookie_secure),
                go_bool(cfg.cookie_partitioned),
                str(cfg.cookie_same_site),
                cfg.cookie_domain,
                go_bool(cfg.cookie_dynamic_domain),
                cfg.base_prefix,
            )
        )
        return f"{base}-{hashlib.sha256(settings.encode()).hexdigest()[:8]}"

    # Routing (lib/config.go New, lib/http.go ServeHTTP) -------------------------------
    def dispatch(self, h: Handler) -> None:
        apply_header_middleware(h, self.cfg)
        path = urllib.parse.urlsplit(h.path).path
        try:
            if path == API_PREFIX + "check":
                self.serve_check(h, status_only=True)
            elif path == API_PREFIX + "pass-challenge" and h.command == "GET":
                self.pass_challenge(h)
            elif path.startswith(STATIC_PREFIX):
                h.discard_body()
                h.respond(404, "404 page not found\n", "text/plain; charset=utf-8")
            elif self.cfg.serve_robots_txt and path in ("/robots.txt", "/.well-known/robots.txt"):
                h.respond(200, "User-agent: *\nDisallow: /\n", "text/plain; charset=utf-8")
            else:
                self.serve_check(h, status_only=False)
        except Reply as reply:
            h.discard_body()
            h.respond(reply.status, reply.body, headers=reply.headers)
        except ValueError as err:
            log("ERROR", "check failed", err=str(err))
            h.discard_body()
            h.respond(500, page("Oh noes!", f'Internal Server Error "maybeReverseProxy": {err}'))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def serve_check(self, h: Handler, status_only: bool) -> None:
        """lib/anubis.go maybeReverseProxy and checkRules."""
        name, action, rule = self.policy.check(h)
        METRICS.inc("anubis_policy_results", rule=name, action=action)
        h.headers["X-Anubis-Rule"] = name
        h.headers["X-Anubis-Action"] = action
        if action == "ALLOW":
            return self.next(h, status_only)
        if action == "DENY":
            h.discard_body()
            code = rule.hash if rule else "default"
            return h.respond(
                self.policy.deny_status,
                page("Oh noes!", f"Access Denied: error code {code}"),
                headers=[("Set-Cookie", self.clear_cookie(self.cookie_name))],
            )
        if action == "DEBUG_BENCHMARK":
            h.discard_body()
            return h.respond(200, page("Benchmarking Anubis!", "benchmark page (stand-in)"))
        # CHALLENGE
        if self.cookie_valid(h, rule):
            h.headers["X-Anubis-Status"] = "PASS"
            return self.next(h, status_only)
        h.discard_body()
        clear = ("Set-Cookie", self.clear_cookie(self.cookie_name))
        if status_only:
            # RenderIndex with returnHTTPStatusOnly and no PUBLIC_URL
            return h.respond(401, "Authorization required", "text/plain; charset=utf-8", [clear])
        return self.render_challenge(h, rule, clear)

    def cookie_value(self, h: Handler, name: str) -> str | None:
        for part in h.headers.get("Cookie", "").split(";"):
            cname, sep, value = part.strip().partition("=")
            if sep and cname == name:
                return value
        return None

    def cookie_valid(self, h: Handler, rule) -> bool:
        value = self.cookie_value(h, self.cookie_name)
        claims = verify(self.key, value) if value is not None else None
        if not claims:
            return False
        if claims.get("policyRule") != (rule.hash if rule is not None else ""):
            return False
        header = self.cfg.jwt_restriction_header
        if header:
            expected = hashlib.sha256(h.headers.get(header, "").encode()).hexdigest()
            if claims.get("restriction") != expected:
                return False
        return True

    def next(self, h: Handler, status_only: bool) -> None:
        """lib/http.go ServeHTTPNext."""
        if status_only or self.target is None:
            h.discard_body()
        if status_only:
            h.respond(200, "", "text/plain; charset=utf-8")
        elif self.target is not None:
            self.proxy(h)
        else:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(h.path).query)
            redir = (query.get("redir") or [""])[0]
            parsed = urllib.parse.urlsplit(redir)
            if (parsed.scheme and not parsed.netloc and not parsed.path.startswith("/")) or (
                not parsed.scheme and redir.startswith("//")
            ):
                raise Reply(400, "Oh noes!", "Invalid redirect")
            self.check_redirect(parsed, domain_status=400)
            if redir:
                h.respond(302, "", headers=[("Location", redir)])
            else:
                h.respond(200, page("OK", "You are not a bot!"))

    def check_redirect(self, parsed, domain_status: int) -> None:
        """The scheme (http, https or none) and the host *with its port* against
        REDIRECT_DOMAINS (lib/http.go matchRedirectDomain)."""
        if parsed.scheme not in ("", "http", "https"):
            raise Reply(400, "Oh noes!", "Invalid redirect")
        if (
            parsed.netloc
            and self.cfg.redirect_domains
            and not opskit_anubis_policy.match_redirect_domain(
                self.cfg.redirect_domains, parsed.netloc
            )
        ):
            raise Reply(domain_status, "Oh noes!", "Redirect domain not allowed")

    # Challenge -------------------------------------------------------------------------
    def render_challenge(self, h: Handler, rule, clear) -> None:
        """lib/http.go RenderIndex (not status-only) and lib/anubis.go issueChallenge."""
        accepts_gzip = "gzip" in h.headers.get("Accept-Encoding", "")
        if not accepts_gzip and random_chance(64):
            log("ERROR", "client was given a challenge but does not support gzip compression")
            raise Reply(500, "Oh noes!", "Your browser is too old to be supported.", [clear])
        rules = dict(getattr(rule, "challenge", None) or {})
        rules.setdefault("algorithm", "fast")
        if not rules.get("difficulty"):
            rules["difficulty"] = self.policy.default_difficulty
        chall = {
            "issuedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "metadata": {
                "User-Agent": h.headers.get("User-Agent", ""),
                "X-Real-Ip": h.headers.get("X-Real-Ip", ""),
            },
            "id": uuid7(),
            "method": rules["algorithm"],
            "randomData": secrets.token_hex(64),
            "policyRuleHash": rule.hash if rule is not None else "",
            "difficulty": rules["difficulty"],
            "spent": False,
        }
        self.policy.store.set("challenge:" + chall["id"], chall, 30 * 60)
        METRICS.inc("anubis_challenges_issued", method="embedded")
        # web/index.go BaseWithChallengeAndOGTags: {"rules": ..., "challenge": ...};
        # Go's json drops a zero difficulty (omitempty)
        shown = {k: v for k, v in rules.items() if v}
        data = json.dumps({"rules": shown, "challenge": chall}).replace("<", "\\u003c")
        body = page(
            "Making sure you're not a bot!",
            "opskit lab stand-in for Anubis: solve sha256(randomData + nonce) with "
            f"{rules['difficulty']} leading zeroes and call {API_PREFIX}pass-challenge.",
            f'<script id="anubis_challenge" type="application/json">{data}</script>',
        ).encode()
        headers = [
            clear,
            ("Set-Cookie", self.make_cookie(self.test_cookie_name, chall["id"], 30 * 60)),
            ("Cache-Control", "no-store"),
        ]
        if accepts_gzip:  # internal/gzip.go GzipMiddleware
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        h.respond(self.policy.challenge_status, body, headers=headers)

    def pass_challenge(self, h: Handler) -> None:
        """lib/anubis.go PassChallenge with the proof-of-work validation of
        lib/challenge/proofofwork/proofofwork.go, in upstream's order."""
        h.discard_body()
        query = {
            k: v[0]
            for k, v in urllib.parse.parse_qs(
                urllib.parse.urlsplit(h.path).query, keep_blank_values=True
            ).items()
        }
        redir = query.get("redir", "")
        parsed = urllib.parse.urlsplit(redir)
        # url.ParseRequestURI: an absolute URL or an absolute path
        if not redir or not (parsed.scheme or redir.startswith("/")):
            raise Reply(400, "Oh noes!", "Invalid redirect")
        if parsed.scheme not in ("", "http", "https"):
            raise Reply(400, "Oh noes!", "Invalid redirect")
        clear_auth = ("Set-Cookie", self.clear_cookie(self.cookie_name))
        if self.cookie_value(h, self.test_cookie_name) is None:
            clear_test = ("Set-Cookie", self.clear_cookie(self.test_cookie_name))
            text = "Your browser is configured to disable cookies."
            raise Reply(500, "Oh noes!", text, [clear_auth, clear_test])
        self.check_redirect(parsed, domain_status=500)
        # the rule is the one the redirect target's path matches (r.URL = redirURL)
        h.path = urllib.parse.urlunsplit(("", "", parsed.path or "/", parsed.query, ""))
        _, action, rule = self.policy.check(h)
        chall = self.policy.store.get("challenge:" + query.get("id", ""))
        if chall is None:
            raise Reply(500, "Oh noes!", "Internal Server Error: fast")
        if chall.get("spent"):
            raise Reply(500, "Oh noes!", "Internal Server Error: double_spend")
        # hydrateChallengeRule: the rule's difficulty, or the challenge's when unset
        rules = dict(getattr(rule, "challenge", None) or {})
        status = self.validate_work(
            query, chall["randomData"], rules.get("difficulty") or chall["difficulty"]
        )
        if status:
            if status == 403:
                METRICS.inc("anubis_failed_validations", method=chall["method"])
            raise Reply(status, "Oh noes!", "invalid response", [clear_auth])
        header = self.cfg.jwt_restriction_header
        if header and not h.headers.get(header):
            raise Reply(500, "Oh noes!", "failed to sign JWT", [clear_auth])
        claims = {
            "challenge": chall["id"],
            "method": chall["method"],
            "policyRule": rule.hash if rule is not None else "",
            "action": action,
            "iat": int(time.time()),
            "nbf": int(time.time()) - 60,
            "exp": int(time.time() + self.cfg.cookie_expiration),
        }
        if header:
            claims["restriction"] = hashlib.sha256(h.headers[header].encode()).hexdigest()
        cookie = self.make_cookie(
            self.cookie_name, sign(self.key, claims), self.cfg.cookie_expiration
        )
        chall["spent"] = True
        self.policy.store.set("challenge:" + chall["id"], chall, 30 * 60)
        METRICS.inc("anubis_challenges_validated", method=chall["method"])
        h.respond(302, "", headers=[("Set-Cookie", cookie), ("Location", redir)])

    @staticmethod
    def validate_work(query: dict, random_data: str, difficulty: int) -> int:
        """proofofwork.go Validate: 0 when the work is right; 500 for a missing or
        malformed nonce, elapsedTime or response (respondWithError), 403 for a wrong one."""
        for name, valid in (("nonce", _go_atoi), ("elapsedTime", _go_float), ("response", bool)):
            value = query.get(name, "")
            if value == "" or not valid(value):
                return 500
        response = query["response"]
        computed = hashlib.sha256((random_data + query["nonce"]).encode()).hexdigest()
        if not hmac.compare_digest(computed.encode(), response.encode()):
            return 403
        if not response.startswith("0" * difficulty):
            return 403
        return 0

    def make_cookie(self, name: str, value: str, max_age: float) -> str:
        """Go's http.Cookie String() for SetCookie's fields (lib/http.go SetCookie)."""
        expires = email.utils.formatdate(time.time() + max_age, usegmt=True)
        parts = [f"{name}={value}", "Path=/"]
        if self.cfg.cookie_domain:
            parts.append(f"Domain={self.cfg.cookie_domain.lstrip('.')}")
        parts.append(f"Expires={expires}")
        if max_age < 0:
            parts.append("Max-Age=0")
        if self.cfg.cookie_http_only:
            parts.append("HttpOnly")
        if self.cfg.cookie_secure:
            parts.append("Secure")
        same_site = self.cfg.cookie_same_site
        if same_site == SAME_SITE["none"] and not self.cfg.cookie_secure:
            same_site = SAME_SITE["lax"]  # SetCookie downgrades None without Secure
        parts += {2: ["SameSite=Lax"], 3: ["SameSite=Strict"], 4: ["SameSite=None"]}.get(
            same_site, []
        )
        if self.cfg.cookie_partitioned:
            parts.append("Partitioned")
        return "; ".join(parts)

    def clear_cookie(self, name: str) -> str:
        return self.make_cookie(name, "", -60)

    # Reverse proxy (main.go makeReverseProxy) -------------------------------------------
    def proxy(self, h: Handler) -> None:
        target = self.target
        conn_cls = (
            http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
        )
        conn = conn_cls(target.hostname, target.port, timeout=60)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else None
        headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP_BY_HOP}
        headers.pop("Content-Length", None)
        path = urllib.parse.urlsplit(h.path)
        url = (target.path.rstrip("/") + path.path) + (f"?{path.query}" if path.query else "")
        try:
            conn.request(h.command, url, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as err:
            log("ERROR", "http: proxy error", err=str(err))
            return h.respond(502, "", "text/plain")
        finally:
            conn.close()
        METRICS.inc("anubis_proxied_requests_total", host=h.headers.get("Host", ""))
        out = [
            (k, v)
            for k, v in resp.getheaders()
            if k.lower() not in HOP_BY_HOP | {"content-length", "content-type"}
        ]
        return h.respond(
            resp.status, data, resp.getheader("Content-Type", "application/octet-stream"), out
        )


def _go_atoi(text: str) -> bool:
    """Whether Go's strconv.Atoi parses text."""
    return re.fullmatch(r"[+-]?[0-9]+", text) is not None


def _go_float(text: str) -> bool:
    """Whether Go's strconv.ParseFloat parses text (no spaces, no bare underscores)."""
    if text != text.strip() or "_" in text:
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def uuid7() -> str:
    """A UUIDv7 (upstream's challenge ids: uuid.NewV7): 48-bit milliseconds, random."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(secrets.token_bytes(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def page(title: str, text: str, extra: str = "") -> str:
    return (
        f"<!doctype html><html><head><title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{extra}"
        f"<p><small>{STANDIN_NOTE} {VERSION}</small></p></body></html>\n"
    )


# Metrics listener (lib/metrics/metrics.go) --------------------------------------------
class MetricsHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def _send(self, status: int, text: str, ctype="text/plain; charset=utf-8"):
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/metrics":
            return self._send(200, METRICS.render(), "text/plain; version=0.0.4; charset=utf-8")
        if path == "/healthz":
            return self._send(200, "OK\n") if HEALTH["serving"] else self._send(500, "NOT OK\n")
        return self._send(404, "404 page not found\n")


# Listeners ---------------------------------------------------------------------------
def listen(bind: str, network: str, handler) -> http.server.ThreadingHTTPServer:
    if network != "tcp":
        raise Fatal(f"network {network!r}: only tcp is implemented by the opskit lab stand-in")
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    try:
        port_number = int(port)
    except ValueError as err:
        raise Fatal(f"SetupListener({network!r}, {bind!r}): invalid port") from err

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        address_family = socket.AF_INET6 if (not host or ":" in host) else socket.AF_INET

        def server_bind(self):
            if self.address_family == socket.AF_INET6 and not host:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()

    try:
        return Server((host or "::", port_number), handler)
    except OSError as err:
        raise Fatal(
            f"SetupListener({network!r}, {bind!r}): listen tcp {bind}: {err.strerror}"
        ) from err


def main(argv: list[str]) -> int:
    if "--version" in argv or "-version" in argv:
        print(f"Anubis {VERSION} ({STANDIN_NOTE})")
        return 0
    try:
        cfg = Settings()
        if "--healthcheck" in argv or "-healthcheck" in argv:
            conn = http.client.HTTPConnection(
                "localhost", int(cfg.metrics_bind.rpartition(":")[2]), timeout=5
            )
            conn.request("GET", "/healthz")
            return 0 if conn.getresponse().status == 200 else 1
        log("INFO", "starting up Anubis (opskit lab stand-in)", version=VERSION)
        if cfg.policy_fname:
            log("INFO", "loading policy file", fname=cfg.policy_fname)
            try:
                with open(cfg.policy_fname, encoding="utf-8") as handle:
                    data = yaml.safe_load(handle)  # JSON is valid YAML too
            except (OSError, ValueError, yaml.YAMLError) as err:
                raise Fatal(f"can't parse policy file: {err}") from err
        else:
            data = DEFAULT_POLICY
        policy = Policy(data, cfg)
        if policy.store.path and not (cfg.key_hex or cfg.key_hex_file or cfg.hs512_secret):
            log(
                "WARN",
                "[misconfiguration] persistent storage backend is configured, "
                "but no private key is set.",
            )
        key = load_key(cfg)
        if not cfg.redirect_domains:
            log("WARN", "REDIRECT_DOMAINS is not set, Anubis will redirect to any domain")
        metrics_cfg = policy.metrics or {}
        metrics_bind = metrics_cfg.get("bind", cfg.metrics_bind)
        metrics_network = metrics_cfg.get("network", cfg.metrics_bind_network)
        Handler.app = App(cfg, policy, key)
        metrics_server = (
            listen(metrics_bind, metrics_network, MetricsHandler) if metrics_bind else None
        )
        server = listen(cfg.bind, cfg.bind_network, Handler)
    except Fatal as err:
        log("ERROR", str(err))
        print(f"anubis: {err}", file=sys.stderr, flush=True)
        return 1

    def stop(_signum, _frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if metrics_server:
        threading.Thread(target=metrics_server.serve_forever, daemon=True).start()
    HEALTH["serving"] = True
    log(
        "INFO",
        "listening",
        url=f"http://{cfg.bind}",
        metrics=metrics_bind,
        difficulty=cfg.difficulty,
        target=cfg.target,
        subrequest_mode=cfg.subrequest_mode,
        xff_strip_private=cfg.xff_strip_private,
        version=VERSION,
    )
    server.serve_forever()
    if metrics_server:
        metrics_server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
