"""Settings schema of the ``anubis`` formula (pillar ``anubis``).

``salt/anubis/map.jinja`` validates the merged settings (defaults, OS map, pillar) with
``opskit.settings("anubis", ...)`` before anything renders, then hands them to
``anubis.plan`` (host-dependent checks and derived values, ``opskit_anubis_plan``).

``instance_defaults`` are merged under every instance (``salt.utils.dictupdate``: the
instance wins, lists are replaced) before the instances are validated. Every value that
reaches a file is a constrained type: paths of ``[A-Za-z0-9._@+,=:~-]`` components,
listen addresses without scope ids, URLs without credentials, quotes, ``$``, ``;`` or
braces, DNS names, names matched as a whole (``re.fullmatch``). The policy is data (a
YAML file): its keys are names, its strings one-line; :func:`check` applies upstream's
load-time rules (``opskit_anubis_policy``) and opskit's own. The signing key is secret:
masked in every message, and not part of the plan.
"""

from __future__ import annotations

import copy
import math
import re

import salt.utils.dictupdate

try:  # synced from file_roots, or module_dirs
    import opskit_anubis_plan as plan
    import opskit_anubis_policy
    import opskit_schema as s
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_anubis_plan as plan
    from saltext.opskit.utils import opskit_anubis_policy
    from saltext.opskit.utils import opskit_schema as s

ROOT = "anubis"
MODES = ("sidecar", "proxy")
# lib/challenge/*: the algorithms upstream registers (proofofwork: fast, slow).
CHALLENGE_ALGORITHMS = ("fast", "slow", "metarefresh", "preact")
POLICY_KEYS = ("bots", "thresholds", "status_codes", "store", "dnsbl", "openGraph")
POLICY_KEYS += ("impressum", "logging", "dns_ttl")
STORES = ("bbolt", "memory")
RUNTIMES = ("systemd", "docker")
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
# Upstream's secret variables (cmd/anubis/main.go), and names that look like secrets.
SECRET_ENV = ("ED25519_PRIVATE_KEY_HEX", "HS512_SECRET", "THOTH_TOKEN")
SECRET_ENV_RE = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|PRIVATE_KEY")
MAX_POLICY_TEXT = 8192
MAX_POLICY_DEPTH = 12
MAX_POLICY_ITEMS = 1000
_POLICY_KEY_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def _dns_name(value):
    name = value[2:] if value.startswith("*.") else value
    if not s.valid_hostname(name):
        return "is not a host name (a DNS name, or *.example.org)"
    return None


def _redirect_domain(value):
    problem = opskit_anubis_policy.redirect_domain_problem(value)
    if problem:
        return (
            f"Anubis parses each entry with Go's url.Parse and would not start ({problem}); "
            "use names that start with a letter, or [] to allow any domain"
        )
    return None


class PolicyData(s.Type):
    """The policy file's content, as data: a mapping of upstream's policy keys whose
    keys (at every level) are names and whose strings are one line of at most 8192
    characters. Upstream's rules are applied by :func:`check`."""

    name = "policy"

    def describe(self):
        return "an Anubis policy: a mapping with " + ", ".join(POLICY_KEYS)

    def convert(self, value, path, problems, secret):
        if not isinstance(value, dict):
            return self.fail(problems, path, value, secret)
        for key in value:
            where = s.key_path(path, key)
            if key == "metrics":
                problems.add(
                    where,
                    value[key],
                    "set the instance's metrics_bind instead (the formula checks it for "
                    "collisions and health; a policy metrics block would override it)",
                )
            elif key not in POLICY_KEYS:
                problems.add(where, value[key], f"unknown key (known: {', '.join(POLICY_KEYS)})")
        self._walk(value, path, problems, 0)
        return copy.deepcopy(value)

    def _walk(self, node, path, problems, depth):
        if depth > MAX_POLICY_DEPTH:
            problems.add(path, node, f"is nested more than {MAX_POLICY_DEPTH} levels deep")
        elif isinstance(node, dict):
            for key, value in node.items():
                where = s.key_path(path, key)
                if not isinstance(key, str) or not _POLICY_KEY_RE.fullmatch(key):
                    problems.add(
                        where, key, "is not a policy key (a letter, then letters, digits, _ or -)"
                    )
                else:
                    self._walk(value, where, problems, depth + 1)
        elif isinstance(node, list):
            if len(node) > MAX_POLICY_ITEMS:
                problems.add(path, node, f"has more than {MAX_POLICY_ITEMS} entries")
            for index, value in enumerate(node[:MAX_POLICY_ITEMS]):
                self._walk(value, f"{path}:{index}", problems, depth + 1)
        elif isinstance(node, str):
            s.Str(max_len=MAX_POLICY_TEXT).validate(node, path, problems)
        elif isinstance(node, float) and not math.isfinite(node):
            problems.add(path, node, "must be a finite number")
        elif node is not None and not isinstance(node, (bool, int, float)):
            problems.add(path, node, "must be text, a number, true/false, a list or a mapping")


class Partial(s.Type):
    """The fields of a :class:`opskit_schema.Map` that are present, each checked by its
    type (nested maps partially too); nothing is required or defaulted."""

    def __init__(self, schema: s.Map, **kw):
        super().__init__(**kw)
        self.schema = schema

    def describe(self):
        return "a mapping with any of the keys " + ", ".join(self.schema.fields)

    def empty(self):
        return {}

    def convert(self, value, path, problems, secret):
        if not isinstance(value, dict):
            return self.fail(problems, path, value, secret)
        out = {}
        for key, item in value.items():
            where = s.key_path(path, key)
            kind = self.schema.fields.get(key) if isinstance(key, str) else None
            if kind is None:
                problems.add(where, item, f"unknown key (known: {', '.join(self.schema.fields)})")
                continue
            if isinstance(kind, s.Map):  # keep what is valid below, too
                result = Partial(kind).convert(item, where, problems, secret)
                if isinstance(result, dict):
                    out[key] = result
                continue
            before = len(problems.items)
            result = kind.validate(item, where, problems, secret)
            if len(problems.items) == before:
                out[key] = result
        return out


class Settings(s.Map):
    """The formula's settings: ``instance_defaults`` merged under each instance first."""

    def convert(self, value, path, problems, secret):
        if isinstance(value, dict):
            value = dict(value)
            where = s.key_path(path, "instance_defaults")
            # the valid part is merged (problems are reported here, once)
            defaults = self.fields["instance_defaults"].convert(
                value.get("instance_defaults") or {}, where, problems, False
            )
            instances = value.get("instances")
            if isinstance(defaults, dict) and isinstance(instances, dict):
                value["instances"] = {
                    name: salt.utils.dictupdate.update(copy.deepcopy(defaults), copy.deepcopy(inst))
                    if isinstance(inst, dict)
                    else inst
                    for name, inst in instances.items()
                }
            value["instance_defaults"] = defaults if isinstance(defaults, dict) else {}
        return super().convert(value, path, problems, secret)


HOST_NAME = s.Str(check=_dns_name, max_len=253, hint="a host name such as gitlab.example.org")
SIZE = s.OneOf(
    s.Int(min=0, max=10**12),
    s.Str(r"[0-9]{1,12}[kKmMgG]?", hint="an nginx size such as 64m"),
    nullable=True,
    doc="upload limit of `location /`; null: 1m, or 0 (no limit) with profile gitlab",
)
SITE = s.Map(
    {
        "server_name": s.List(
            s.Str(check=_dns_name, max_len=253, hint="a host name (or *.example.org)"),
            min_items=1,
            max_items=64,
            unique=True,
            doc="the site's host names",
        ),
        "listen": s.Int(1, 65535, default=443, doc="TLS port"),
        "http_redirect_port": s.Int(
            1, 65535, nullable=True, doc="also answer plain HTTP here with a redirect to HTTPS"
        ),
        "listen_ipv6": s.Bool(default=True, doc="also listen on [::]"),
        "tls": s.Map(
            {
                "certificate": s.Path(doc="certificate (chain) file on the minion"),
                "key": s.Path(doc="its private key file on the minion"),
            },
        ),
        "profile": s.Str(
            choices=("default", "gitlab"),
            default="default",
            doc="nginx settings for `location /` (gitlab: websockets, no buffering; sidecar only)",
        ),
        "client_max_body_size": SIZE,
    },
    doc="the nginx site in front of the instance",
)
ENV_VALUE = s.OneOf(s.Str(max_len=4096), s.Bool(), s.Int())
INSTANCE_FIELDS = {
    "mode": s.Str(choices=MODES, default="sidecar", doc="sidecar (auth_request) or proxy"),
    "bind": s.Listen(doc="HOST:PORT Anubis listens on (BIND); nginx connects here"),
    "metrics_bind": s.Listen(doc="HOST:PORT of /metrics and /healthz (METRICS_BIND)"),
    "metrics_target_host": s.Host(nullable=True, doc="host name published in the mine"),
    "upstream": s.Url(
        forbid="$;'()#",
        doc="the application (nginx's proxy_pass in sidecar mode, TARGET in proxy mode)",
    ),
    "ed25519_private_key_hex": s.Secret(
        r"[0-9a-fA-F]{64}",
        nullable=True,
        hint="64 hex characters (openssl rand -hex 32)",
        doc="the signing key from the CMDB; unset: generated once on the host and kept",
    ),
    "cookie_domain": s.Str(
        check=_dns_name, max_len=253, nullable=True, hint="a domain", doc="COOKIE_DOMAIN"
    ),
    "redirect_domains": s.List(
        s.Str(
            r"[A-Za-z0-9*]([A-Za-z0-9*.-]{0,251}[A-Za-z0-9*])?(:[0-9]{1,5})?",
            check=_redirect_domain,
            hint="a host name or *-glob, with :port when not 443",
        ),
        max_items=64,
        nullable=True,
        default=None,
        doc="REDIRECT_DOMAINS; null: the site's names (with :port when not 443); []: any",
    ),
    "difficulty": s.Int(1, 16, default=4, doc="DIFFICULTY"),
    "serve_robots_txt": s.Bool(default=False, doc="SERVE_ROBOTS_TXT"),
    "xff_strip_private": s.Bool(
        nullable=True, doc="XFF_STRIP_PRIVATE; null: true in sidecar, false in proxy mode"
    ),
    "custom_real_ip_header": s.Str(
        r"[A-Za-z0-9-]{1,64}", default="X-Real-IP", hint="an HTTP header name"
    ),
    "policy": PolicyData(doc="the policy file (bots, thresholds, status_codes, store, ...)"),
    "site": SITE,
    "env": s.DictOf(
        s.Str(r"[A-Z][A-Z0-9_]{0,63}", hint="an upstream variable name (upper case)"),
        ENV_VALUE,
        max_items=64,
        default={},
        placeholder="<VARIABLE>",
        doc="further upstream variables (no secrets, none the formula sets)",
    ),
}
INSTANCE = s.Map(INSTANCE_FIELDS, doc="one Anubis per protected application")
# The signing key is per instance: a shared default would be generated per host anyway.
DEFAULTS = Partial(
    s.Map({k: v for k, v in INSTANCE_FIELDS.items() if k != "ed25519_private_key_hex"}),
    default={},
    doc="merged under every instance (the instance wins; lists are replaced)",
)

IMAGE_RE = (
    r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?){1,8}"
    r"(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[0-9a-f]{64})?"
)


def _image(value):
    name, _, digest = value.partition("@")
    tag = name.rpartition("/")[2].partition(":")[2]
    if not tag and not digest:
        return "needs a tag (ghcr.io/techarohq/anubis:v1.27.0) or a digest (@sha256:...)"
    if tag in ("latest", "main") and not digest:
        return f"must not be :{tag}: pin a release (:v1.27.0) so every host runs the same one"
    return None


DOCKER = s.Map(
    {
        "image": s.Str(
            IMAGE_RE,
            check=_image,
            nullable=True,
            max_len=400,
            hint="an image reference such as ghcr.io/techarohq/anubis:v1.27.0",
            doc="null: ghcr.io/techarohq/anubis:v<release:version>",
        ),
        "project": s.Str(
            r"[a-z0-9][a-z0-9_-]{0,62}", default="anubis", hint="a compose project name"
        ),
        "project_dir": s.Path(doc="the compose file and the instances' env files (0700 root)"),
        "user": s.Int(1, 65534, default=1000, doc="uid the containers run as (upstream: 1000)"),
        "group": s.Int(1, 65534, default=1000, doc="gid the containers run as (upstream: 1000)"),
        "restart": s.Str(
            choices=("always", "unless-stopped", "on-failure"),
            default="always",
            doc="the containers' restart policy",
        ),
    },
    doc="runtime docker: one container per instance in one compose project",
)

MINE_NAME_DEPRECATED = (
    "since opskit 0.1.0 Anubis metrics targets are published by opskit.targets (the mine "
    "entry opskit_targets) from the common formula's common.mine, which the anubis "
    "formula includes; delete this key (a later release will refuse it)"
)

SCHEMA = Settings(
    {
        "runtime": s.Str(
            choices=RUNTIMES,
            default="systemd",
            doc="systemd: upstream's package or tarball and anubis@.service; docker: "
            "upstream's image, one container per instance (docker compose v2)",
        ),
        "docker": DOCKER,
        "release": s.Map(
            {
                "version": s.Str(
                    r"[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}", hint="a version such as 1.27.0"
                ),
                "method": s.Str(choices=("deb", "tarball"), default="deb"),
                "base_url": s.Url(doc="<base_url>/v<version>/<asset>; your mirror"),
                "sha256": s.Str(
                    r"[0-9a-fA-F]{64}",
                    nullable=True,
                    hint="64 hex characters",
                    doc="the asset's pin",
                ),
                "checksums_url": s.Url(nullable=True, doc="a `<sha256>  <asset>` file"),
                "arch": s.Str(
                    choices=("amd64", "arm64", "ppc64le", "riscv64"),
                    nullable=True,
                    doc="null: from grains",
                ),
            },
        ),
        "cache_dir": s.Path(doc="downloaded packages"),
        "install_dir": s.Path(doc="unpacked tarballs"),
        "config_dir": s.Path(doc="env and policy files (upstream's unit reads /etc/anubis)"),
        "key_dir": s.Path(doc="signing keys (0700)"),
        "state_dir": s.Path(doc="upstream's StateDirectory root (/var/lib/anubis)"),
        "registry_file": s.Path(doc="the metrics targets anubis.targets reads"),
        "target_host": s.Host(nullable=True, doc="published for wildcard metrics binds"),
        "health_timeout": s.Int(1, 3600, default=30, doc="seconds to wait for /healthz"),
        "check_listening_ports": s.Bool(default=True, doc="refuse ports held on the host"),
        "reserved_ports": s.DictOf(
            s.Int(1, 65535),
            s.Str(max_len=200, hint="what uses the port"),
            default={},
            placeholder="<port>",
            doc="ports no Anubis listener may use",
        ),
        "instance_defaults": DEFAULTS,
        "instances": s.DictOf(
            s.Str(
                r"[a-z0-9][a-z0-9_-]{0,31}",
                hint="an instance name: 1-32 of a-z 0-9 _ - (it becomes anubis@<name>)",
            ),
            INSTANCE,
            default={},
            placeholder="<instance>",
        ),
    },
    deprecated={"mine_name": MINE_NAME_DEPRECATED},
)


# ---------------------------------------------------------------------------------------
# Rules across keys
# ---------------------------------------------------------------------------------------
def _release_problems(release):
    where = f"{ROOT}:release"
    if release.get("sha256") and release.get("checksums_url"):
        yield where, "set sha256 or checksums_url, not both"
    if not release.get("sha256") and not release.get("checksums_url"):
        yield (
            where,
            "needs sha256 (the pinned sha256 of the asset) or checksums_url (a file of "
            "`<sha256>  <asset>` lines on your mirror); upstream publishes no checksum "
            "file, and nothing is installed unverified",
        )


def _rule_problems(policy, where):
    """opskit's own rules for bots and thresholds: challenge algorithms upstream can
    issue, and no ``import`` (the bundled rule files are not on the minion to check)."""
    for kind in ("bots", "thresholds"):
        rules = policy.get(kind)
        for index, rule in enumerate(rules if isinstance(rules, list) else []):
            if not isinstance(rule, dict):
                continue
            path = f"{where}:{kind}:{index}"
            challenge = rule.get("challenge")
            algorithm = challenge.get("algorithm") if isinstance(challenge, dict) else None
            if algorithm and algorithm not in CHALLENGE_ALGORITHMS:
                yield (
                    f"{path}:challenge:algorithm",
                    algorithm,
                    "is not a challenge upstream registers "
                    f"({', '.join(CHALLENGE_ALGORITHMS)}): every challenge would fail with a 500",
                )
            if "import" in rule:
                yield (
                    f"{path}:import",
                    rule["import"],
                    "is not supported by the formula: write the rules out (upstream's "
                    "bundled files are not on this minion to be checked)",
                )


def _status_problems(policy, where, mode):
    codes = policy.get("status_codes")
    if codes is None:
        return
    if not isinstance(codes, dict) or set(codes) - {"CHALLENGE", "DENY"}:
        yield f"{where}:status_codes", codes, "must be a mapping with CHALLENGE and DENY"
        return
    for key, code in codes.items():
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            yield f"{where}:status_codes:{key}", code, "must be an HTTP status from 100 to 599"
    if mode == "sidecar" and codes.get("DENY") != 403:
        yield (
            f"{where}:status_codes:DENY",
            codes.get("DENY"),
            "must be 403 in sidecar mode: nginx's auth_request lets a 2xx answer through "
            "and turns 401 into a challenge, so only 403 denies",
        )


STORE_WHY = {
    False: "must be a file directly in the instance's StateDirectory {state_dir}/ (the only "
    "place the service's dynamic user can write; bbolt needs its directory writable)",
    True: "must be a file directly in {state_dir}/ (runtime docker: the store volume, the "
    "only place the container's user may write; bbolt needs its directory writable)",
}


def _store_problems(policy, where, state_dir, docker=False):
    store = policy.get("store")
    if store is None:
        return
    if not isinstance(store, dict):
        yield f"{where}:store", store, "must be a mapping with backend (bbolt or memory)"
        return
    backend = store.get("backend")
    if backend not in STORES:
        yield (
            f"{where}:store:backend",
            backend,
            f"must be one of {', '.join(STORES)} (the policy file is world-readable, so "
            "backends whose parameters carry credentials are not offered)",
        )
        return
    path = (store.get("parameters") or {}).get("path") if backend == "bbolt" else None
    if path is not None and (not isinstance(path, str) or path.rpartition("/")[0] != state_dir):
        yield (
            f"{where}:store:parameters:path",
            path,
            STORE_WHY[docker].format(state_dir=state_dir),
        )


_NONE = object()


def _at(policy, relative):
    """The scalar at ``:bots:0:user_agent_regex`` in ``policy`` (to show it), or _NONE."""
    node = policy
    for step in relative.split(":")[1:]:
        if isinstance(node, list) and step.isdigit() and int(step) < len(node):
            node = node[int(step)]
        elif isinstance(node, dict) and step in node:
            node = node[step]
        else:
            return _NONE
    return node if isinstance(node, (str, int, float)) else _NONE


def _policy_problems(settings, name, inst):
    where = plan.inst_path(name, "policy")
    policy = inst["policy"]
    state_dir = plan.policy_store_dir(settings, name)
    # as written (with the default bbolt path); status codes: opskit's rule
    # (_status_problems) is the stricter one
    written = plan.policy_file_data(inst, state_dir)
    upstream = {key: value for key, value in written.items() if key != "status_codes"}
    for path, message in opskit_anubis_policy.policy_problems(upstream, where):
        note = f" ({opskit_anubis_policy.CEL_NOTE})" if ":expression" in path else ""
        value = _at(written, path[len(where) :])
        yield (path, message + note) if value is _NONE else (path, value, message + note)
    yield from _rule_problems(policy, where)
    yield from _status_problems(policy, where, inst["mode"])
    yield from _store_problems(policy, where, state_dir, settings["runtime"] == "docker")


def _env_problems(name, inst):
    for var in inst["env"]:
        where = plan.inst_path(name, "env", var)
        if var in SECRET_ENV or SECRET_ENV_RE.search(var):
            yield (
                where,
                "secrets do not go into env files; set ed25519_private_key_hex (passed to "
                "the service as a systemd credential) or let the formula generate a key",
            )
        elif var in MANAGED_ENV:
            yield where, "is set by the formula; use the instance setting"


def _instance_problems(settings, name, inst):
    if inst["mode"] == "proxy" and inst["site"]["profile"] != "default":
        yield (
            plan.inst_path(name, "site", "profile"),
            inst["site"]["profile"],
            "needs sidecar mode: there nginx proxies to the application itself; in proxy "
            "mode every request passes through Anubis's own reverse proxy, which these "
            "nginx settings do not reach",
        )
    given = inst.get("redirect_domains")
    domains = plan.redirect_domains(inst)
    if given is None:
        for domain in domains:
            problem = _redirect_domain(domain)
            if problem:
                yield (
                    plan.inst_path(name, "redirect_domains"),
                    domain,
                    f"(from the site's names) {problem}",
                )
    elif given:
        missing = [
            host
            for host in plan.site_hosts(inst["site"])
            if not opskit_anubis_policy.match_redirect_domain(domains, host)
        ]
        if missing:
            yield (
                plan.inst_path(name, "redirect_domains"),
                given,
                f"does not allow {', '.join(missing)}: visitors of the site would get "
                "'Redirect domain not allowed' after solving the challenge (upstream "
                "compares host:port); add them",
            )
    yield from _env_problems(name, inst)
    yield from _policy_problems(settings, name, inst)


def _site_problems(instances):
    seen = {}
    for name, inst in sorted(instances.items()):
        site = inst["site"]
        for index, server in enumerate(site["server_name"]):
            key = (site["listen"], server.lower())
            if key in seen:
                yield (
                    plan.inst_path(name, "site", "server_name", index),
                    server,
                    f"port {key[0]} of this name is already served by instance {seen[key]}",
                )
            seen.setdefault(key, name)


def check(settings):
    """Rules across keys (see the module docstring); yields (path, [value,] message)."""
    instances = settings["instances"]
    if not instances:
        return
    if settings["runtime"] == "systemd":
        yield from _release_problems(settings["release"])
    for name, inst in sorted(instances.items()):
        yield from _instance_problems(settings, name, inst)
    yield from _site_problems(instances)
    yield from plan.collision_problems(settings)
