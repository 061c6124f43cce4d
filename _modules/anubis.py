"""Anubis (TecharoHQ/anubis) instances on this minion: settings, keys, scrape targets.

The ``anubis`` formula calls :py:func:`validate` while it renders: it checks the
formula's settings (defaults merged with pillar ``anubis``) and returns them in the
shape the templates use, or raises ``SaltInvocationError`` listing every problem, so
that a bad pillar stops the run before anything is written. It also refuses listen
addresses that collide with each other, with nginx sites, with ports reserved in
pillar, with listen addresses found in other opskit formulas' pillar, or with sockets
already listening on this host that belong to something else.

Facts about Anubis used here come from upstream v1.27.0: the systemd template
``run/anubis@.service`` (``EnvironmentFile=/etc/anubis/%i.env``, ``DynamicUser=yes``,
``StateDirectory=anubis/%i``), the environment variables in ``cmd/anubis/main.go`` and
``docs/docs/admin/installation.mdx``, the policy schema in ``lib/config/config.go``
(``bots``, ``thresholds``, ``status_codes``, ``store``), the bbolt backend's rule that
the database's directory must be writable (``lib/store/bbolt/factory.go``), and the
release asset names produced by ``yeetfile.js``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import secrets
import stat
import time
import urllib.error
import urllib.request

import salt.utils.data
import salt.utils.dictupdate
from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

try:  # synced from file_roots, or module_dirs
    import opskit_anubis_policy
    import opskit_net
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_anubis_policy
    from saltext.opskit.utils import opskit_net

log = logging.getLogger(__name__)

__virtualname__ = "anubis"

# Upstream builds Linux packages for these architectures (yeetfile.js).
ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
ARCHES.update({"ppc64le": "ppc64le", "riscv64": "riscv64"})
MODES = ("sidecar", "proxy")
# lib/challenge/*: the algorithms upstream registers (proofofwork: fast, slow).
CHALLENGE_ALGORITHMS = ("fast", "slow", "metarefresh", "preact")
POLICY_KEYS = {"bots", "thresholds", "status_codes", "store", "dnsbl", "openGraph"}
POLICY_KEYS |= {"impressum", "logging", "dns_ttl"}
STORES = ("bbolt", "memory")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
ENV_NAME_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
HEX64_RE = re.compile(r"^[0-9a-fA-F]{64}$")
SERVER_NAME_RE = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
SIZE_RE = re.compile(r"^[0-9]+[kKmMgG]?$")
# nginx settings for `location /` by application (site.profile), with the default
# client_max_body_size of each: see the site templates.
SITE_PROFILES = {"default": "1m", "gitlab": "0"}
# A REDIRECT_DOMAINS entry: a host name or glob, with the port when it is not 443.
REDIRECT_RE = re.compile(r"\A[A-Za-z0-9*]([A-Za-z0-9*.-]*[A-Za-z0-9*])?(:[0-9]{1,5})?\Z")
# Variables the formula writes itself; pillar `env` may not set them.
MANAGED_ENV = (
    "BIND",
    "BIND_NETWORK",
    "METRICS_BIND",
    "METRICS_BIND_NETWORK",
    "TARGET",
    "POLICY_FNAME",
    "COOKIE_DOMAIN",
    "REDIRECT_DOMAINS",
    "CUSTOM_REAL_IP_HEADER",
    "XFF_STRIP_PRIVATE",
    "DIFFICULTY",
    "SERVE_ROBOTS_TXT",
    "ED25519_PRIVATE_KEY_HEX_FILE",
)
# Secrets never go into an env file: the key reaches the service as a credential.
SECRET_ENV = ("ED25519_PRIVATE_KEY_HEX", "HS512_SECRET", "THOTH_TOKEN")
# Keys (anywhere under these pillar trees) whose HOST:PORT values other opskit formulas
# listen on.
OTHER_FORMULAS = ("exporters", "thumbnail_server", "nginx")
LISTEN_KEY_RE = re.compile(r"(listen|bind|address|port)", re.IGNORECASE)


def __virtual__():
    if not os.path.isdir("/proc/net"):
        return (False, "anubis: needs Linux (/proc/net)")
    return __virtualname__


class _Problems:
    """Collects every problem in the settings, so one run reports them all."""

    def __init__(self):
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")

    def raise_if_any(self, minion: str) -> None:
        if self.items:
            lines = "\n  - ".join(self.items)
            raise SaltInvocationError(
                f"anubis formula on {minion}: pillar 'anubis' is not valid; nothing was "
                f"changed. Fix these and apply again:\n  - {lines}"
            )


def _bool(value, where, problems, default=None):
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    problems.add(where, f"must be true or false, not {value!r}")
    return default


def _int(value, where, problems, low, high):
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(where, f"must be a whole number from {low} to {high}, not {value!r}")
        return None
    if not low <= value <= high:
        problems.add(where, f"must be from {low} to {high}, not {value}")
        return None
    return value


def _str_list(value, where, problems):
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.add(where, f"must be a list of non-empty strings, not {value!r}")
        return []
    return value


def _endpoint(value, where, problems):
    try:
        return opskit_net.parse_endpoint(value)
    except ValueError as err:
        problems.add(where, str(err))
        return None


def _url(value, where, problems):
    match = re.match(r"^(https?)://([^/\s:]+|\[[0-9a-fA-F:]+\])(:\d{1,5})?(/\S*)?$", str(value))
    if not isinstance(value, str) or not match:
        problems.add(where, f"must be an http:// or https:// URL, not {value!r}")
        return None
    return value


def _validate_rules(policy, where, problems):
    """bots and thresholds: upstream's load-time rules (opskit_anubis_policy, read from
    v1.27.0), plus opskit's: challenge algorithms that upstream can issue, and no
    ``import`` (the bundled rule files are not on the minion's disk to check)."""
    # status codes: opskit's own rule (_validate_status_codes) is the stricter one
    upstream = {key: value for key, value in policy.items() if key != "status_codes"}
    for path, message in opskit_anubis_policy.policy_problems(upstream, where):
        note = f" ({opskit_anubis_policy.CEL_NOTE})" if ".expression" in path else ""
        problems.add(path, message + note)
    rules = [("bots", r) for r in policy.get("bots") or [] if isinstance(r, dict)]
    rules += [("thresholds", r) for r in policy.get("thresholds") or [] if isinstance(r, dict)]
    for kind, rule in rules:
        label = f"{where}.{kind}[{rule.get('name', '?')}]"
        challenge = rule.get("challenge")
        algorithm = challenge.get("algorithm") if isinstance(challenge, dict) else None
        if algorithm and algorithm not in CHALLENGE_ALGORITHMS:
            problems.add(
                f"{label}.challenge.algorithm",
                f"{algorithm!r} is not a challenge upstream registers "
                f"({', '.join(CHALLENGE_ALGORITHMS)}): every challenge would fail with a 500",
            )
        if "import" in rule:
            problems.add(
                label,
                "import is not supported by the formula: write the rules out (upstream's "
                "bundled files are not on this minion to be checked)",
            )


def _validate_status_codes(policy, where, mode, problems):
    codes = policy.get("status_codes") or {}
    if not isinstance(codes, dict) or set(codes) - {"CHALLENGE", "DENY"}:
        problems.add(f"{where}.status_codes", "must be a mapping with CHALLENGE and DENY")
        return
    for key in ("CHALLENGE", "DENY"):
        if key in codes:
            _int(codes[key], f"{where}.status_codes.{key}", problems, 100, 599)
    if mode == "sidecar" and codes.get("DENY") != 403:
        problems.add(
            f"{where}.status_codes.DENY",
            f"must be 403 in sidecar mode, not {codes.get('DENY')!r}: nginx's auth_request "
            "lets a 2xx answer through and turns 401 into a challenge, so only 403 denies",
        )


def _validate_store(policy, where, state_dir, problems):
    """Default: a bbolt file in the instance's StateDirectory (persistent, writable)."""
    store = policy.get("store") or {"backend": "bbolt"}
    if not isinstance(store, dict) or store.get("backend") not in STORES:
        problems.add(
            f"{where}.store.backend",
            f"must be one of {', '.join(STORES)}, not {store!r} (the policy file is "
            "world-readable, so backends whose parameters carry credentials are not offered)",
        )
        return store
    if store["backend"] == "bbolt":
        params = store.get("parameters") or {}
        path = params.setdefault("path", f"{state_dir}/anubis.bdb")
        store["parameters"] = params
        if not isinstance(path, str) or os.path.dirname(os.path.normpath(path)) != state_dir:
            problems.add(
                f"{where}.store.parameters.path",
                f"{path!r} must be a file directly in the instance's StateDirectory "
                f"{state_dir}/ (the only place the service's dynamic user can write; "
                "bbolt needs its directory writable)",
            )
    return store


def _validate_policy(policy, name, mode, state_dir, problems):
    """The policy file's content, checked and completed (store path, status codes)."""
    where = f"instances.{name}.policy"
    if not isinstance(policy, dict):
        problems.add(where, f"must be a mapping, not {policy!r}")
        return {}
    policy = copy.deepcopy(policy)
    unknown = sorted(set(policy) - POLICY_KEYS)
    if "metrics" in unknown:
        problems.add(
            where,
            "metrics: set the instance's metrics_bind instead (the formula checks it for "
            "collisions and health; a policy metrics block would override it)",
        )
        unknown.remove("metrics")
    if unknown:
        problems.add(where, f"unknown keys {unknown}; allowed: {sorted(POLICY_KEYS)}")
    policy["store"] = _validate_store(policy, where, state_dir, problems)
    _validate_rules(policy, where, problems)
    _validate_status_codes(policy, where, mode, problems)
    return policy


def _validate_site(site, name, problems):
    where = f"instances.{name}.site"
    if not isinstance(site, dict):
        problems.add(where, f"must be a mapping, not {site!r}")
        return {}
    site = copy.deepcopy(site)
    names = _str_list(site.get("server_name"), f"{where}.server_name", problems)
    if not names:
        problems.add(f"{where}.server_name", "needs at least one host name")
    for server in names:
        if not SERVER_NAME_RE.match(server):
            problems.add(f"{where}.server_name", f"{server!r} is not a host name")
    site["server_name"] = names
    site["listen"] = _int(site.get("listen", 443), f"{where}.listen", problems, 1, 65535)
    site["http_redirect_port"] = site.get("http_redirect_port")
    if site["http_redirect_port"] is not None:
        site["http_redirect_port"] = _int(
            site["http_redirect_port"], f"{where}.http_redirect_port", problems, 1, 65535
        )
    tls = site.get("tls")
    if not isinstance(tls, dict) or not all(
        isinstance(tls.get(k), str) and tls[k].startswith("/") for k in ("certificate", "key")
    ):
        problems.add(
            f"{where}.tls",
            "needs absolute paths `certificate` and `key` (the files must exist on the "
            "minion before nginx can load the site)",
        )
    site["listen_ipv6"] = _bool(site.get("listen_ipv6"), f"{where}.listen_ipv6", problems, True)
    site["profile"] = site.get("profile") or "default"
    if site["profile"] not in SITE_PROFILES:
        problems.add(
            f"{where}.profile",
            f"must be one of {', '.join(SITE_PROFILES)}, not {site['profile']!r}",
        )
    # GitLab takes uploads of any size (its own limits apply); others default to 1m
    size = site.get("client_max_body_size")
    size = str(size if size is not None else SITE_PROFILES.get(site["profile"], "1m"))
    if not SIZE_RE.match(size):
        problems.add(f"{where}.client_max_body_size", f"{size!r} is not an nginx size (64m)")
    site["client_max_body_size"] = size
    return site


def _env_value(value):
    """Quote a value for a systemd EnvironmentFile (double quotes, backslash escapes)."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _validate_env(extra, where, problems):
    """Further upstream variables from pillar ``env``: no secrets, nothing the formula sets."""
    if not isinstance(extra, dict):
        problems.add(f"{where}.env", "must map upstream variable names to values")
        return {}
    for var, value in extra.items():
        if not isinstance(var, str) or not ENV_NAME_RE.match(var):
            problems.add(f"{where}.env", f"{var!r} is not an environment variable name")
        elif var in SECRET_ENV:
            problems.add(
                f"{where}.env.{var}",
                "secrets do not go into env files; set ed25519_private_key_hex (passed to "
                "the service as a systemd credential) or let the formula generate a key",
            )
        elif var in MANAGED_ENV:
            problems.add(f"{where}.env.{var}", "is set by the formula; use the instance setting")
        elif not isinstance(value, (str, int, bool)) or "\n" in str(value):
            problems.add(f"{where}.env.{var}", "must be a one-line string, number or boolean")
    return extra


def _validate_key(inst, where, problems):
    key = inst.get("ed25519_private_key_hex")
    if key is not None and (not isinstance(key, str) or not HEX64_RE.match(key)):
        length = len(key) if isinstance(key, str) else type(key).__name__
        problems.add(
            f"{where}.ed25519_private_key_hex",
            f"must be exactly 64 hex characters (got {length}); generate one with "
            "`openssl rand -hex 32` (the value is not shown here)",
        )
    return key is not None


def _validate_instance(name, inst, settings, problems):
    where = f"instances.{name}"
    if not NAME_RE.match(name):
        problems.add(
            where,
            "instance names are 1-32 characters: lower-case letters, digits, '-', '_' "
            "(the name becomes anubis@<name>.service and file names)",
        )
    if not isinstance(inst, dict):
        problems.add(where, f"must be a mapping, not {inst!r}")
        return None
    mode = inst.get("mode", "sidecar")
    if mode not in MODES:
        problems.add(f"{where}.mode", f"must be sidecar or proxy, not {mode!r}")
    state_dir = f"{settings['state_dir']}/{name}"
    out = {
        "name": name,
        "mode": mode,
        "unit": f"anubis@{name}.service",
        "env_file": f"{settings['config_dir']}/{name}.env",
        "policy_file": f"{settings['config_dir']}/{name}.botPolicies.yaml",
        "key_file": f"{settings['key_dir']}/{name}.key",
        "dropin_file": f"/etc/systemd/system/anubis@{name}.service.d/opskit.conf",
        "state_dir": state_dir,
        "nginx_site": f"anubis-{name}",
        "key_from_pillar": _validate_key(inst, where, problems),
        "key_pillar_path": f"anubis:instances:{name}:ed25519_private_key_hex",
        "metrics_target_host": inst.get("metrics_target_host"),
    }
    for field in ("bind", "metrics_bind"):
        out[field] = None
        if field not in inst:
            problems.add(
                f"{where}.{field}",
                "is required (upstream's defaults :8923 and :9090 collide between instances "
                "and with Prometheus)",
            )
        else:
            out[field] = _endpoint(inst[field], f"{where}.{field}", problems)
    out["upstream"] = _url(inst.get("upstream"), f"{where}.upstream", problems)
    out["difficulty"] = _int(inst.get("difficulty", 4), f"{where}.difficulty", problems, 1, 16)
    out["serve_robots_txt"] = _bool(
        inst.get("serve_robots_txt"), f"{where}.serve_robots_txt", problems, False
    )
    # Proxy mode keeps RFC 1918 clients' addresses: upstream strips private addresses
    # from X-Forwarded-For by default (XFF_STRIP_PRIVATE, docs/docs/admin/caveats-xff.mdx).
    out["xff_strip_private"] = _bool(
        inst.get("xff_strip_private"), f"{where}.xff_strip_private", problems, mode != "proxy"
    )
    out["custom_real_ip_header"] = inst.get("custom_real_ip_header", "X-Real-IP")
    if not re.match(r"^[A-Za-z0-9-]+$", str(out["custom_real_ip_header"])):
        problems.add(f"{where}.custom_real_ip_header", "must be an HTTP header name")
    out["cookie_domain"] = inst.get("cookie_domain")
    if out["cookie_domain"] is not None and not SERVER_NAME_RE.match(str(out["cookie_domain"])):
        problems.add(f"{where}.cookie_domain", f"{out['cookie_domain']!r} is not a domain")
    out["site"] = _validate_site(inst.get("site"), name, problems)
    out["redirect_domains"] = _redirect_domains(inst.get("redirect_domains"), out, problems)
    if mode == "proxy" and out["site"].get("profile") not in (None, "default"):
        problems.add(
            f"{where}.site.profile",
            f"{out['site']['profile']} needs sidecar mode: there nginx proxies to the "
            "application itself; in proxy mode every request passes through Anubis's own "
            "reverse proxy, which these nginx settings do not reach",
        )
    out["policy"] = _validate_policy(inst.get("policy"), name, mode, state_dir, problems)
    extra = _validate_env(inst.get("env") or {}, where, problems)
    out["env"] = _build_env(out, extra) if not problems.items else {}
    return out


def _redirect_domains(given, inst, problems):
    """REDIRECT_DOMAINS: the site's names, with the port when it is not 443 -- upstream
    compares the redirect URL's host *and port* (lib/http.go matchRedirectDomain), so a
    site on 8443 needs ``name:8443`` -- or the pillar's list, which must still cover
    the site's names. An empty list leaves the variable unset (any domain)."""
    where = f"instances.{inst['name']}.redirect_domains"
    site = inst["site"]
    port = site.get("listen")
    wanted = [n if port == 443 else f"{n}:{port}" for n in site.get("server_name") or []]
    domains = wanted if given is None else _str_list(given, where, problems)
    for domain in domains:
        problem = opskit_anubis_policy.redirect_domain_problem(domain)
        if not REDIRECT_RE.match(domain) or problem:
            problems.add(
                where,
                f"{domain!r} cannot be a REDIRECT_DOMAINS entry"
                + (
                    f": Anubis parses each with Go's url.Parse and would not start ({problem})"
                    if problem
                    else " (a host name or *-glob, and :port when not 443)"
                )
                + "; set redirect_domains to names that start with a letter, or to [] "
                "to allow any domain",
            )
    missing = [
        w for w in wanted if domains and not opskit_anubis_policy.match_redirect_domain(domains, w)
    ]
    if given is not None and missing:
        problems.add(
            where,
            f"does not allow {', '.join(missing)}: visitors of the site would get "
            "'Redirect domain not allowed' after solving the challenge (upstream compares "
            "host:port); add them",
        )
    return domains


def _build_env(inst, extra):
    env = {
        "BIND": inst["bind"].text,
        "BIND_NETWORK": "tcp",
        "METRICS_BIND": inst["metrics_bind"].text,
        "METRICS_BIND_NETWORK": "tcp",
        # Subrequest mode: TARGET must be a single space (docs: subrequest-auth.mdx);
        # systemd keeps the space because the value is quoted.
        "TARGET": inst["upstream"] if inst["mode"] == "proxy" else " ",
        "POLICY_FNAME": inst["policy_file"],
        "CUSTOM_REAL_IP_HEADER": inst["custom_real_ip_header"],
        "XFF_STRIP_PRIVATE": inst["xff_strip_private"],
        "DIFFICULTY": inst["difficulty"],
        "SERVE_ROBOTS_TXT": inst["serve_robots_txt"],
    }
    if inst["cookie_domain"]:
        env["COOKIE_DOMAIN"] = inst["cookie_domain"]
    if inst["redirect_domains"]:
        env["REDIRECT_DOMAINS"] = ",".join(inst["redirect_domains"])
    env.update(extra)
    return {key: _env_value(value) for key, value in env.items()}


def _pillar_endpoints(tree, path=""):
    """(pillar path, Endpoint) for HOST:PORT strings under listen/bind/address keys."""
    found = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            here = f"{path}:{key}" if path else str(key)
            if isinstance(value, str) and LISTEN_KEY_RE.search(str(key)):
                try:
                    found.append((here, opskit_net.parse_endpoint(value)))
                except ValueError:
                    continue
            else:
                found.extend(_pillar_endpoints(value, here))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            found.extend(_pillar_endpoints(value, f"{path}:{index}"))
    return found


def _wanted_endpoints(instances):
    """(label, Endpoint, is_nginx) for everything the formula will make listen."""
    wanted = []
    for inst in instances:
        for field in ("bind", "metrics_bind"):
            if inst.get(field):
                wanted.append((f"instances.{inst['name']}.{field}", inst[field], False))
    ports = {}
    for inst in instances:
        site = inst.get("site") or {}
        for field in ("listen", "http_redirect_port"):
            if site.get(field):
                ports.setdefault(site[field], f"instances.{inst['name']}.site.{field}")
    wanted += [(label, opskit_net.Endpoint("", port), True) for port, label in ports.items()]
    return wanted


def _check_collisions(instances, settings, pillar, problems):
    """Refuse Anubis listen addresses that collide with each other, with the nginx
    sites, with ports reserved in pillar, or with other formulas' pillar addresses."""
    wanted = _wanted_endpoints(instances)
    others = [(f"nginx's {label}", endpoint) for label, endpoint, is_nginx in wanted if is_nginx]
    others += [
        (
            f"port {port} reserved for {owner} (anubis:reserved_ports)",
            opskit_net.Endpoint("", int(port)),
        )
        for port, owner in (settings.get("reserved_ports") or {}).items()
    ]
    for tree in OTHER_FORMULAS:
        others += [
            (f"pillar {where} {endpoint.text}", endpoint)
            for where, endpoint in _pillar_endpoints(pillar.get(tree) or {}, tree)
        ]
    ours = [(label, endpoint) for label, endpoint, is_nginx in wanted if not is_nginx]
    for index, (label, endpoint) in enumerate(ours):
        for other_label, other in ours[index + 1 :]:
            if endpoint.collides(other):
                problems.add(label, f"{endpoint.text} collides with {other_label} {other.text}")
        for other_label, other in others:
            if endpoint.collides(other):
                problems.add(label, f"{endpoint.text} collides with {other_label}")


def _check_live(instances, live, problems):
    """Refuse addresses that a socket already listening on this host holds, unless an
    instance configured here (or nginx, for the sites' ports) is the one holding it."""
    configured = {f"anubis@{inst['name']}.service" for inst in instances}
    for label, endpoint, is_nginx in _wanted_endpoints(instances):
        for sock in live:
            listening = opskit_net.Endpoint.from_socket(sock["address"], sock["port"])
            if not endpoint.collides(listening):
                continue
            unit = sock.get("unit")
            if unit in configured or (is_nginx and unit == "nginx.service"):
                continue
            owner = unit or (sock.get("command") and f"process {sock['command']}")
            problems.add(
                label,
                f"{endpoint.text} is already in use on this host by "
                f"{owner or 'a process that could not be identified'} "
                f"(listening on {listening.text}, pid {sock.get('pid')}); choose another "
                "port or stop that service",
            )


def validate(config, pillar=None, minion=None, listeners=None):
    """
    Check the ``anubis`` formula's settings and return them ready for its templates.

    ``config`` is the formula's merged settings (``map.jinja``: defaults, per-OS
    parameters, pillar ``anubis:lookup`` and pillar ``anubis``). ``pillar`` (default:
    this minion's pillar) is searched for other formulas' listen addresses.
    ``listeners`` replaces the live listening sockets (default: read from ``/proc``
    when ``check_listening_ports`` is true). Raises ``SaltInvocationError`` listing every
    problem. Signing keys are checked but never returned.

    CLI Example:

    .. code-block:: bash

        salt web-01 anubis.validate "$(salt-call --out=json pillar.get anubis)"
    """
    minion = minion or __grains__.get("id", "this minion")
    pillar = __pillar__ if pillar is None else pillar
    problems = _Problems()
    if not isinstance(config, dict):
        raise SaltInvocationError(f"anubis formula on {minion}: settings must be a mapping")
    settings = copy.deepcopy(config)
    raw = settings.get("instances") or {}
    if not isinstance(raw, dict):
        problems.add("instances", "must map instance names to their settings")
        raw = {}
    # Without instances the formula installs nothing, so the release needs no pin.
    release = _validate_release(settings.get("release") or {}, problems) if raw else {}
    defaults = settings.get("instance_defaults") or {}
    instances = []
    for name in sorted(raw):
        inst = raw[name]
        merged = (
            salt.utils.dictupdate.update(copy.deepcopy(defaults), copy.deepcopy(inst))
            if isinstance(inst, dict)
            else inst
        )
        result = _validate_instance(str(name), merged, settings, problems)
        if result:
            instances.append(result)
    if settings.get("check_listening_ports", True) and listeners is None:
        listeners = opskit_net.listening_sockets()
    _check_collisions(instances, settings, pillar or {}, problems)
    _check_live(instances, listeners or [], problems)
    _check_sites(instances, problems)
    problems.raise_if_any(minion)
    host = settings.get("target_host") or minion
    for inst in instances:
        metrics = inst["metrics_bind"]
        target_host = inst.get("metrics_target_host") or (
            host if metrics.wildcard else metrics.local_url_host
        )
        inst["health_url"] = f"http://{metrics.local_url_host}:{metrics.port}/healthz"
        inst["anubis_url"] = f"http://{inst['bind'].local_url_host}:{inst['bind'].port}"
        inst["target"] = {
            "targets": [f"{target_host}:{metrics.port}"],
            "labels": {"job": "anubis", "anubis_instance": inst["name"], "minion": minion},
        }
        inst["bind"] = inst["bind"].text
        inst["metrics_bind"] = metrics.text
    settings["release"] = release
    settings["instances"] = instances
    settings["targets"] = [inst["target"] for inst in instances]
    settings.pop("instance_defaults", None)
    return settings


def _check_sites(instances, problems):
    seen = {}
    for inst in instances:
        site = inst.get("site") or {}
        for server in site.get("server_name") or []:
            key = (site.get("listen"), server.lower())
            if key in seen:
                problems.add(
                    f"instances.{inst['name']}.site.server_name",
                    f"{server} on port {key[0]} is already served by instance {seen[key]}",
                )
            seen[key] = inst["name"]


def _validate_release(release, problems):
    """Where the package or tarball comes from and how it is verified."""
    out = dict(release)
    method = release.get("method", "deb")
    if method not in ("deb", "tarball"):
        problems.add("release.method", f"must be deb or tarball, not {method!r}")
    version = str(release.get("version") or "")
    if not re.match(r"^[0-9]+\.[0-9]+\.[0-9]+$", version):
        problems.add(
            "release.version", f"must be an upstream version such as 1.27.0, not {version!r}"
        )
    cpu = __grains__.get("osarch") or __grains__.get("cpuarch")
    arch = release.get("arch") or ARCHES.get(cpu)
    if arch not in set(ARCHES.values()):
        problems.add("release.arch", f"upstream builds no Linux package for {cpu!r}")
    sha256, sums = release.get("sha256"), release.get("checksums_url")
    if sha256 and not (isinstance(sha256, str) and HEX64_RE.match(sha256)):
        problems.add("release.sha256", f"must be 64 hex characters, not {sha256!r}")
    if sha256 and sums:
        problems.add("release", "set sha256 or checksums_url, not both")
    if not sha256 and not sums:
        problems.add(
            "release",
            "needs sha256 (the pinned sha256 of the asset) or checksums_url (a file of "
            "`<sha256>  <asset>` lines on your mirror); upstream publishes no checksum file, "
            "and nothing is installed unverified",
        )
    if sums:
        _url(sums, "release.checksums_url", problems)
    base = str(release.get("base_url") or "").rstrip("/")
    _url(base, "release.base_url", problems)
    if method == "deb":
        asset = f"anubis_{version}_{arch}.deb"
    else:
        asset = f"anubis-{version}-linux-{arch}.tar.gz"
    out.update(
        {
            "method": method,
            "version": version,
            "arch": arch,
            "asset": asset,
            "url": f"{base}/v{version}/{asset}",
            "source_hash": f"sha256={sha256.lower()}" if sha256 else sums,
            "top_dir": asset.removesuffix(".tar.gz"),
        }
    )
    return out


def listeners():
    """
    List the TCP sockets listening on this host, with the process and systemd unit
    that own each one (what :py:func:`validate` checks new listen addresses against).

    CLI Example:

    .. code-block:: bash

        salt web-01 anubis.listeners
    """
    return opskit_net.listening_sockets()


def targets(registry="/etc/anubis/opskit-targets.json"):
    """
    Return this minion's Anubis metrics targets, as the formula recorded them, in
    Prometheus ``file_sd`` shape (``[{"targets": [...], "labels": {...}}]``).

    ``opskit.targets`` (the mine function ``opskit_targets``, published by the ``common``
    formula) includes them.

    CLI Example:

    .. code-block:: bash

        salt web-01 anubis.targets
        salt monitoring-01 mine.get 'roles:anubis' opskit_targets tgt_type=pillar
    """
    try:
        with open(registry, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as err:
        raise CommandExecutionError(
            f"cannot read the Anubis target registry {registry} on "
            f"{__grains__.get('id')}: {err}; re-apply the anubis formula to rewrite it"
        ) from err
    return data.get("targets", [])


def _public_key(seed_hex):
    """The Ed25519 public key of a seed (safe to show), or a hash when no library."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        digest = hashlib.sha256(bytes.fromhex(seed_hex)).hexdigest()[:16]
        return f"sha256:{digest}"
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"ed25519:{raw.hex()}"


def key_info(path):
    """
    Describe a signing key file without revealing the key: whether it exists, whether
    it holds 64 hex characters, its mode and owner, and the Ed25519 public key.

    CLI Example:

    .. code-block:: bash

        salt web-01 anubis.key_info /etc/anubis/keys/gitlab.key
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {"path": path, "exists": False}
    except OSError as err:
        raise CommandExecutionError(f"cannot stat {path}: {err}") from err
    with open(path, "rb") as handle:
        content = handle.read().strip().decode("ascii", "replace")
    valid = bool(HEX64_RE.match(content))
    return {
        "path": path,
        "exists": True,
        "valid": valid,
        "mode": f"{stat.S_IMODE(st.st_mode):04o}",
        "uid": st.st_uid,
        "gid": st.st_gid,
        "public_key": _public_key(content) if valid else None,
    }


def _pillar_key(pillar_path):
    # Read __pillar__ itself: since Salt 3008, pillar.get outside template rendering
    # returns masked values ("**********") unless asked to unmask.
    value = salt.utils.data.traverse_dict_and_list(__pillar__, pillar_path, None, ":")
    if value is None:
        return None
    if not isinstance(value, str) or not HEX64_RE.match(value):
        raise SaltInvocationError(
            f"pillar {pillar_path} on {__grains__.get('id')} must be 64 hex characters "
            "(the value is not shown)"
        )
    return value.lower()


def write_key(path, pillar_path=None):
    """
    Write a signing key file (mode 0400, root, in a 0700 directory), atomically:
    the key from pillar ``pillar_path`` when given and set, else a new random key.

    The key never appears in arguments, return values or logs; the return value holds
    the public key only. Used by the ``anubis.key_managed`` state.

    CLI Example:

    .. code-block:: bash

        salt web-01 anubis.write_key /etc/anubis/keys/gitlab.key
        salt web-01 anubis.write_key /etc/anubis/keys/app.key \
            pillar_path=anubis:instances:app:ed25519_private_key_hex
    """
    key = _pillar_key(pillar_path) if pillar_path else None
    if key is None:
        key = secrets.token_hex(32)
    directory = os.path.dirname(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(key + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chown(tmp, 0, 0)
        os.replace(tmp, path)
    except OSError as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise CommandExecutionError(f"cannot write the Anubis key file {path}: {err}") from err
    return key_info(path)


def fix_key_mode(path):
    """
    Set a key file back to mode 0400, owner root:root (its directory to 0700).

    CLI Example:

    .. code-block:: bash

        salt web-01 anubis.fix_key_mode /etc/anubis/keys/gitlab.key
    """
    try:
        os.chmod(os.path.dirname(path), 0o700)
        os.chown(path, 0, 0)
        os.chmod(path, 0o400)
    except OSError as err:
        raise CommandExecutionError(f"cannot fix the mode of {path}: {err}") from err
    return key_info(path)


def pillar_key_matches(path, pillar_path):
    """
    Tell whether the key file holds the key in pillar ``pillar_path`` (``None`` when
    that pillar is not set). Compares in memory; returns only True, False or None.

    CLI Example:

    .. code-block:: bash

        salt web-01 anubis.pillar_key_matches /etc/anubis/keys/app.key \
            anubis:instances:app:ed25519_private_key_hex
    """
    key = _pillar_key(pillar_path)
    if key is None:
        return None
    try:
        with open(path, "rb") as handle:
            content = handle.read().strip().decode("ascii", "replace").lower()
    except FileNotFoundError:
        return False
    return secrets.compare_digest(content, key)


def health(url, timeout=2.0):
    """
    Query an Anubis metrics listener's ``/healthz`` once (no proxy; loopback is fine).

    Returns ``{"url", "status", "body"}``; ``status`` is ``None`` (with ``error``) when
    nothing answered. Upstream answers 200 ``OK`` once the instance serves
    (``lib/metrics/metrics.go``).

    CLI Example:

    .. code-block:: bash

        salt web-01 anubis.health http://127.0.0.1:9201/healthz
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return {
                "url": url,
                "status": resp.status,
                "body": resp.read(200).decode(errors="replace"),
            }
    except urllib.error.HTTPError as err:
        return {"url": url, "status": err.code, "body": err.read(200).decode(errors="replace")}
    except (OSError, ValueError) as err:
        return {"url": url, "status": None, "body": "", "error": str(err)}


def wait_healthy(url, timeout=30, interval=0.5):
    """
    Poll ``url`` until it answers 200, for at most ``timeout`` seconds; return the last
    answer (see :py:func:`health`) with ``healthy`` and ``waited`` (seconds) added.

    CLI Example:

    .. code-block:: bash

        salt web-01 anubis.wait_healthy http://127.0.0.1:9201/healthz timeout=10
    """
    started = time.monotonic()
    while True:
        answer = health(url, timeout=min(2.0, float(timeout)))
        waited = time.monotonic() - started
        if answer["status"] == 200 or waited >= float(timeout):
            answer.update({"healthy": answer["status"] == 200, "waited": round(waited, 1)})
            return answer
        time.sleep(float(interval))
