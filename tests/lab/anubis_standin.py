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
(``tests/lab/artifacts.py``), and the formula installs and runs it exactly as it would
install and run Anubis.

What it implements (facts read from upstream v1.27.0: ``cmd/anubis/main.go``,
``lib/anubis.go``, ``lib/http.go``, ``internal/headers.go``, ``lib/metrics/metrics.go``,
``lib/config/config.go``, ``lib/store/bbolt/factory.go``, ``docs/docs/admin/``):

- configuration from the same environment variables (``BIND``, ``BIND_NETWORK``,
  ``TARGET``, ``METRICS_BIND``, ``POLICY_FNAME``, ``ED25519_PRIVATE_KEY_HEX`` /
  ``ED25519_PRIVATE_KEY_HEX_FILE``, ``COOKIE_*``, ``REDIRECT_DOMAINS``, ``DIFFICULTY``,
  ``SERVE_ROBOTS_TXT``, ``XFF_STRIP_PRIVATE``, ``CUSTOM_REAL_IP_HEADER``,
  ``USE_REMOTE_ADDRESS``, ``JWT_RESTRICTION_HEADER``), with upstream's defaults and its
  fatal start-up errors (both key variables set, a key that is not 32 hex bytes, an
  unreadable key file, an invalid policy, a bbolt path whose directory is not writable);
- the policy file (YAML or JSON): ``bots`` with ``user_agent_regex``, ``path_regex``
  (``X-Original-URI`` in subrequest mode), ``headers_regex``, ``remote_addresses`` and
  the actions ALLOW / DENY / CHALLENGE / WEIGH; ``thresholds`` on ``weight``;
  ``status_codes``; ``store`` (``memory``, or ``bbolt`` with its exclusive file lock);
- ``/.within.website/x/cmd/anubis/api/check`` (subrequest mode): 200 for a request that
  passes, 401 when a challenge is needed, the DENY status code for a denied request;
- the challenge page, ``.../api/pass-challenge`` (a sha256 proof of work), the signed
  pass cookie bound to ``X-Real-IP`` (``JWT_RESTRICTION_HEADER``), and the redirect
  back to ``redir``;
- reverse-proxy mode (``TARGET`` set) with upstream's ``X-Forwarded-For`` handling:
  flatten to one address, always strip loopback/link-local/CGNAT, strip RFC 1918 unless
  ``XFF_STRIP_PRIVATE=false``;
- the metrics listener (``METRICS_BIND``): ``/metrics`` (Prometheus text) and ``/healthz``.

What it does not do: the browser JavaScript, CEL ``expression`` rules, ``import`` of
upstream's bundled rule sets, DNSBL/Thoth lookups, valkey/s3 stores, Unix sockets. Its
pass cookie is an HS256 token keyed with the configured Ed25519 seed (Python's standard
library has no Ed25519); the key handling around it is upstream's. Anything it does not
implement is refused at start-up, so a test can never pass by accident.

Run: ``anubis`` (configured by environment), ``anubis --version``, ``anubis --healthcheck``.
Only the Python standard library and python3-yaml are used.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import html
import http.client
import http.server
import ipaddress
import json
import os
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

VERSION = "1.27.0"
STANDIN_NOTE = "opskit lab stand-in; not Anubis"
API_PREFIX = "/.within.website/x/cmd/anubis/api/"
STATIC_PREFIX = "/.within.website/x/cmd/anubis/"
CHALLENGE_PATH = "/.within.website/"
RULES = ("ALLOW", "DENY", "CHALLENGE", "WEIGH", "DEBUG_BENCHMARK")
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


def is_private(addr) -> bool:
    return any(addr.version == net.version and addr in net for net in PRIVATE)


class Fatal(Exception):
    """A start-up error: logged, then the process exits 1 (upstream: log.Fatalf)."""


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
        self.cookie_prefix = env_str("COOKIE_PREFIX", "anubis-cookie")
        self.cookie_secure = env_bool("COOKIE_SECURE", True)
        self.cookie_http_only = env_bool("COOKIE_HTTP_ONLY", False)
        self.cookie_expiration = parse_duration(env_str("COOKIE_EXPIRATION_TIME", "168h"))
        self.redirect_domains = [
            d.strip() for d in env_str("REDIRECT_DOMAINS", "").split(",") if d.strip()
        ]
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
DEFAULT_POLICY = {
    "bots": [
        {"name": "well-known", "path_regex": "^/.well-known/.*$", "action": "ALLOW"},
        {"name": "favicon", "path_regex": "^/favicon.ico$", "action": "ALLOW"},
        {"name": "robots-txt", "path_regex": "^/robots.txt$", "action": "ALLOW"},
        {"name": "generic-browser", "user_agent_regex": "Mozilla", "action": "CHALLENGE"},
    ]
}


class Rule:
    def __init__(self, spec: dict, index: int, subrequest: bool, difficulty: int):
        if not isinstance(spec, dict):
            raise Fatal(f"bot {index}: must be a mapping")
        for unsupported in ("import", "expression"):
            if unsupported in spec:
                raise Fatal(
                    f"bot {index}: {unsupported!r} is not implemented by the opskit lab stand-in"
                )
        self.name = spec.get("name") or ""
        self.action = spec.get("action") or ""
        self.checks = []
        errors = self._validate(spec)
        weight = spec.get("weight") or {}
        self.adjust = int(weight.get("adjust", 0)) if isinstance(weight, dict) else 0
        challenge = spec.get("challenge") or {}
        self.difficulty = int(challenge.get("difficulty", difficulty))
        self.algorithm = challenge.get("algorithm", "fast")
        self.subrequest = subrequest
        if errors:
            raise Fatal(f"bot {index}: " + "; ".join(errors))
        self.hash = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def _validate(self, spec: dict) -> list[str]:
        """lib/config/config.go BotConfig.Valid, for the matchers the stand-in knows."""
        errors = []
        if not self.name:
            errors.append("config.Bot: must set name")
        if self.action not in RULES:
            errors.append(f"config.Bot: unknown action {self.action!r}")
        ua, path = spec.get("user_agent_regex"), spec.get("path_regex")
        headers, cidrs = spec.get("headers_regex") or {}, spec.get("remote_addresses") or []
        if ua is None and path is None and not headers and not cidrs:
            errors.append(
                "config.Bot: must set one of user_agent_regex, path_regex, headers_regex, "
                "remote_addresses, expression, or Thoth keyword"
            )
        if ua is not None and path is not None:
            errors.append("config.Bot: must set either user_agent_regex, path_regex, and not both")
        try:
            if ua is not None:
                self.checks.append(("header", "User-Agent", re.compile(ua.strip())))
            if path is not None:
                self.checks.append(("path", None, re.compile(path.strip())))
            for header, expr in headers.items():
                self.checks.append(("header", header, re.compile(str(expr).strip())))
            if cidrs:
                nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
                self.checks.append(("cidr", None, nets))
        except (re.error, ValueError) as err:
            errors.append(f"config.Bot: invalid rule: {err}")
        return errors

    def matches(self, handler: Handler) -> bool:
        for kind, header, test in self.checks:
            if kind == "header":
                if not test.search(handler.headers.get(header, "")):
                    return False
            elif kind == "path":
                # lib/policy/checker.go: in subrequest mode X-Original-URI is checked first
                original = handler.headers.get("X-Original-Uri", "") if self.subrequest else ""
                candidates = [urllib.parse.urlsplit(original).path] if original else []
                candidates.append(urllib.parse.urlsplit(handler.path).path)
                if not any(test.search(p) for p in candidates):
                    return False
            elif kind == "cidr":
                try:
                    addr = ipaddress.ip_address(handler.headers.get("X-Real-Ip", ""))
                except ValueError:
                    return False
                if not any(addr in net for net in test):
                    return False
        return True


class Threshold:
    EXPR = re.compile(r"^\s*weight\s*(<=|>=|==|!=|<|>)\s*(-?\d+)\s*$")

    def __init__(self, spec: dict, index: int, difficulty: int):
        self.name = spec.get("name") or f"threshold-{index}"
        self.action = spec.get("action")
        if self.action not in RULES:
            raise Fatal(f"threshold {index}: unknown action {self.action!r}")
        self.expression = spec.get("expression")
        self._compile(self.expression, index)
        challenge = spec.get("challenge") or {}
        self.difficulty = int(challenge.get("difficulty", difficulty))
        self.algorithm = challenge.get("algorithm", "fast")
        self.hash = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def _compile(self, expr, index):
        if isinstance(expr, str):
            if not self.EXPR.match(expr):
                raise Fatal(
                    f"threshold {index}: the opskit lab stand-in only evaluates "
                    f"'weight <op> <number>' expressions, not {expr!r}"
                )
        elif isinstance(expr, dict) and set(expr) <= {"all", "any"} and expr:
            for sub in [*expr.get("all", []), *expr.get("any", [])]:
                self._compile(sub, index)
        else:
            raise Fatal(f"threshold {index}: invalid expression {expr!r}")

    def holds(self, weight: int, expr=None) -> bool:
        expr = self.expression if expr is None else expr
        if isinstance(expr, str):
            op, number = self.EXPR.match(expr).groups()
            number = int(number)
            return {
                "<": weight < number,
                "<=": weight <= number,
                ">": weight > number,
                ">=": weight >= number,
                "==": weight == number,
                "!=": weight != number,
            }[op]
        if "all" in expr:
            return all(self.holds(weight, e) for e in expr["all"])
        return any(self.holds(weight, e) for e in expr["any"])


class Policy:
    def __init__(self, data: dict, cfg: Settings):
        if not isinstance(data, dict):
            raise Fatal("config is not valid: the policy document must be a mapping")
        bots = data.get("bots") or []
        if not bots:
            raise Fatal("config is not valid: config: must define at least one (1) bot rule")
        self.rules = [Rule(b, i, cfg.subrequest_mode, cfg.difficulty) for i, b in enumerate(bots)]
        self.thresholds = [
            Threshold(t, i, cfg.difficulty) for i, t in enumerate(data.get("thresholds") or [])
        ]
        codes = data.get("status_codes") or {}
        self.challenge_status = int(codes.get("CHALLENGE", 200))
        self.deny_status = int(codes.get("DENY", 200))
        for label, code in (("challenge", self.challenge_status), ("deny", self.deny_status)):
            if not 100 <= code <= 599:
                raise Fatal(
                    "config is not valid: status codes not valid: config.StatusCode: status "
                    f"code not valid, must be between 100 and 599: {label} is {code}"
                )
        if data.get("dnsbl"):
            log("WARN", "dnsbl is set; the opskit lab stand-in does not query DNS blocklists")
        self.metrics = data.get("metrics")
        store = data.get("store") or {"backend": "memory"}
        self.store = Store.open(store)

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
    """memory, or a file at the bbolt path held under an exclusive lock."""

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
        if not path:
            raise Fatal("config is not valid: bbolt: path is missing from config")
        directory = os.path.dirname(path) or "."
        if not os.access(directory, os.W_OK):
            raise Fatal(f"config is not valid: bbolt: can't write to path {directory}")
        try:
            store.handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open
            os.chmod(path, 0o600)
            fcntl.flock(store.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            raise Fatal(f"can't open bbolt database {path}: {err}") from err
        store.path = path
        store.handle.seek(0)
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
    if claims.get("exp", 0) < time.time():
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
        self.cookie_name = f"{cfg.cookie_prefix}-auth"
        self.test_cookie_name = f"{cfg.cookie_prefix}-cookie-verification"
        target = cfg.target.strip()
        self.target = urllib.parse.urlsplit(target) if target else None

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
        except ValueError as err:
            log("ERROR", "check failed", err=str(err))
            h.discard_body()
            h.respond(500, f"Internal Server Error: {html.escape(str(err))}\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def serve_check(self, h: Handler, status_only: bool) -> None:
        """lib/anubis.go maybeReverseProxy."""
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
                page("Access Denied", f"Access Denied: error code {code}"),
                headers=[("Set-Cookie", self.clear_cookie())],
            )
        if action == "DEBUG_BENCHMARK":
            h.discard_body()
            return h.respond(200, page("Benchmark", "benchmark page (stand-in)"))
        # CHALLENGE
        if self.cookie_valid(h, rule):
            h.headers["X-Anubis-Status"] = "PASS"
            return self.next(h, status_only)
        h.discard_body()
        if status_only:
            # RenderIndex with returnHTTPStatusOnly and no PUBLIC_URL
            return h.respond(401, "Authorization required", "text/plain; charset=utf-8")
        return self.render_challenge(h, name, rule)

    def cookie_valid(self, h: Handler, rule) -> bool:
        claims = None
        for part in h.headers.get("Cookie", "").split(";"):
            cname, _, value = part.strip().partition("=")
            if cname == self.cookie_name:
                claims = verify(self.key, value)
        if not claims:
            return False
        if rule is not None and claims.get("policyRule") != rule.hash:
            return False
        header = self.cfg.jwt_restriction_header
        if header:
            expected = hashlib.sha256(h.headers.get(header, "").encode()).hexdigest()
            if claims.get("restriction") != expected:
                return False
        return True

    def next(self, h: Handler, status_only: bool) -> None:
        """lib/http.go ServeHTTPNext."""
        if status_only:
            h.discard_body()
            return h.respond(200, "", "text/plain; charset=utf-8")
        if self.target is None:
            h.discard_body()
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(h.path).query)
            redir = (query.get("redir") or [""])[0]
            if redir:
                problem = self.redirect_problem(redir)
                if problem:
                    return h.respond(400, page("Error", problem))
                return h.respond(302, "", headers=[("Location", redir)])
            return h.respond(200, page("OK", "You are not a bot!"))
        return self.proxy(h)

    def redirect_problem(self, redir: str) -> str:
        parsed = urllib.parse.urlsplit(redir)
        if parsed.scheme not in ("", "http", "https") or (
            not parsed.scheme and redir.startswith("//")
        ):
            return "Invalid redirect"
        host = (parsed.hostname or "").lower()
        if (
            host
            and self.cfg.redirect_domains
            and host not in [d.lower() for d in self.cfg.redirect_domains]
        ):
            return "Redirect domain not allowed"
        return ""

    # Challenge -------------------------------------------------------------------------
    def render_challenge(self, h: Handler, rule_name: str, rule) -> None:
        difficulty = rule.difficulty if rule is not None else self.cfg.difficulty
        chall = {
            "id": secrets.token_hex(16),
            "randomData": secrets.token_hex(32),
            "difficulty": difficulty,
            "policyRule": rule.hash if rule is not None else "",
            "spent": False,
        }
        self.policy.store.set("challenge:" + chall["id"], chall, 30 * 60)
        METRICS.inc("anubis_challenges_issued", method="embedded")
        data = json.dumps(
            {
                "challenge": {k: chall[k] for k in ("id", "randomData", "difficulty")},
                "rule": rule_name,
            }
        )
        body = page(
            "Making sure you're not a bot!",
            "opskit lab stand-in for Anubis: solve sha256(randomData + nonce) with "
            f"{difficulty} leading zeroes and call {API_PREFIX}pass-challenge.",
            f'<script id="anubis_challenge" type="application/json">{data}</script>',
        )
        h.respond(
            self.policy.challenge_status,
            body,
            headers=[("Set-Cookie", self.make_cookie(self.test_cookie_name, chall["id"], 30 * 60))],
        )

    def pass_challenge(self, h: Handler) -> None:
        """lib/anubis.go PassChallenge (proof of work only)."""
        h.discard_body()
        query = {
            k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(h.path).query).items()
        }
        redir = query.get("redir", "")
        problem = self.redirect_problem(redir) if redir else "Invalid redirect"
        if problem:
            return h.respond(400, page("Error", problem))
        if f"{self.test_cookie_name}=" not in h.headers.get("Cookie", ""):
            return h.respond(500, page("Error", "Your browser is configured to disable cookies."))
        chall = self.policy.store.get("challenge:" + query.get("id", ""))
        if chall is None or chall.get("spent"):
            return h.respond(
                500, page("Error", "Internal Server Error: invalid or spent challenge")
            )
        nonce, response = query.get("nonce", ""), query.get("response", "")
        computed = hashlib.sha256((chall["randomData"] + nonce).encode()).hexdigest()
        if not hmac.compare_digest(computed, response) or not response.startswith(
            "0" * chall["difficulty"]
        ):
            METRICS.inc("anubis_failed_validations", method="fast")
            return h.respond(
                403,
                page("Error", "Invalid response"),
                headers=[("Set-Cookie", self.clear_cookie())],
            )
        header = self.cfg.jwt_restriction_header
        claims = {
            "challenge": chall["id"],
            "method": "fast",
            "policyRule": chall["policyRule"],
            "action": "CHALLENGE",
            "iat": int(time.time()),
            "exp": int(time.time() + self.cfg.cookie_expiration),
        }
        if header:
            if not h.headers.get(header):
                return h.respond(500, page("Error", "failed to sign JWT"))
            claims["restriction"] = hashlib.sha256(h.headers[header].encode()).hexdigest()
        chall["spent"] = True
        self.policy.store.set("challenge:" + chall["id"], chall, 30 * 60)
        METRICS.inc("anubis_challenges_validated", method="fast")
        cookie = self.make_cookie(
            self.cookie_name, sign(self.key, claims), self.cfg.cookie_expiration
        )
        return h.respond(302, "", headers=[("Set-Cookie", cookie), ("Location", redir)])

    def make_cookie(self, name: str, value: str, max_age: float) -> str:
        parts = [f"{name}={value}", "Path=/", f"Max-Age={int(max_age)}"]
        if self.cfg.cookie_domain:
            parts.append(f"Domain={self.cfg.cookie_domain}")
        if self.cfg.cookie_secure:
            parts += ["Secure", "SameSite=None"]
        else:
            parts.append("SameSite=Lax")
        if self.cfg.cookie_http_only:
            parts.append("HttpOnly")
        return "; ".join(parts)

    def clear_cookie(self) -> str:
        return self.make_cookie(self.cookie_name, "", -1)

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
