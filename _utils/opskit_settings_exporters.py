"""Settings of the ``exporters`` formula (pillar ``exporters``) and of one exporter's
options (``exporter.install``'s keyword arguments, ``exporter.installed``'s state
arguments): the one declaration both are validated against, with ``opskit_schema``.

``map.jinja`` calls ``opskit.settings("exporters", ...)`` with the pillar (over the
formula's defaults), and ``exporter.validate`` calls ``opskit.check`` with a mapping it
is given: the same path. :func:`prepare` merges each exporter's options (``defaults``
under the exporter's own, the ``versions`` entry where an archive install names none),
then :data:`SCHEMA` checks every key and value (exporter names, types, ``ensure``,
patterns anchored at both ends, paths, URLs without credentials except where a secret
may carry them, listen addresses) and, per exporter, every rule across options that
needs no host facts (a version that lacks an option, PostgreSQL and DCGM pairs, web
configuration support, mirror URL templates): one error lists every problem of every
exporter. The host's own facts (its CPU architecture, its GPU) are checked by
``exporter.installed`` on the minion. The execution module validates its keyword
arguments with :func:`validate_options`, the same per-exporter schema, before it plans
anything.

Options marked secret are never rendered into state arguments; the module reads them
from pillar on the minion (:data:`SECRET_OPTIONS`, derived from the schema).
"""

from __future__ import annotations

import copy

import salt.utils.dictupdate

# The plan imports this module too (a cycle that is fine: neither uses the other's
# names at import time). It is imported here, not when SCHEMA validates: opskit.settings
# puts the synced _utils directory on sys.path only while it imports this module.
try:
    import opskit_exporter_catalog as catalog  # synced from file_roots, or module_dirs
    import opskit_exporter_plan as plan
    import opskit_schema as s
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_exporter_catalog as catalog
    from saltext.opskit.utils import opskit_exporter_plan as plan
    from saltext.opskit.utils import opskit_schema as s

SEMVER = r"[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}"
SHA256 = r"(?:sha256[:=])?[0-9A-Fa-f]{64}"
NAME = r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}"
PACKAGE = r"[a-z0-9][a-z0-9+.-]{1,127}"
SEGMENTS = r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)*"
# Absolute, no "." or ".." component, no ":" (nginx-prometheus-exporter splits on it).
UNIX_SOCKET = r"(?:/(?!\.{1,2}(?:[/:]|\Z))[A-Za-z0-9._-]+)+"
REQUEST_PATH = r"/[A-Za-z0-9._/-]*"
NODE_TEXTFILE_DEFAULT = "/var/lib/node_exporter/textfile_collector"


class PgMajor(s.Type):
    """A PostgreSQL major as PostgreSQL names it: ``15``, or ``9.6`` before 10 (YAML
    reads ``9.6`` as a number: accepted)."""

    name = "PostgreSQL major"

    def describe(self):
        return "a PostgreSQL major version (15, or 9.6 before PostgreSQL 10)"

    def convert(self, value, path, problems, secret):
        try:
            return catalog.postgres_major(value)
        except catalog.CompatibilityError:
            return self.fail(problems, path, value, secret)


def _flag_value(**kw):
    scalar = s.OneOf(s.Bool(), s.Int(), s.Float(), s.Str(max_len=4096))
    return s.OneOf(scalar, s.List(scalar, max_items=64), nullable=True, **kw)


def _files(*names: str, **more) -> s.Map:
    """An optional block of optional file paths (certificates, keys), plus ``more``."""
    return s.Map({**{name: s.Path(nullable=True) for name in names}, **more}, nullable=True)


def _common(exporter: catalog.Exporter) -> dict:
    version = (
        rf"{SEMVER}-{SEMVER}" if exporter.version_kind == "dcgm_pair" else SEMVER,
        f"an exact release version like {exporter.version_example}",
    )
    return {
        "ensure": s.Enum("present", "absent", default="present", doc="absent: remove it"),
        "version": s.Str(version[0], hint=version[1], nullable=True, doc="exact release"),
        "source": s.Enum("archive", "package", default="archive"),
        "base_url": s.Url(credentials=True, nullable=True, doc="releases laid out like GitHub's"),
        "url_template": s.Str(
            r"(?:https?://|\{base_url\})[^\s]+",
            hint="an http(s) URL with {file} and other placeholders",
            max_len=2048,
            secret=True,
            nullable=True,
            doc="a mirror with another layout",
        ),
        "proxy": s.Url(credentials=True, nullable=True, doc="HTTP(S) proxy for downloads"),
        "ca_bundle": s.Path(nullable=True, doc="CA file for an HTTPS mirror"),
        "sha256": s.Str(SHA256, hint="a sha256 hex digest", nullable=True, doc="archive pin"),
        "listen_address": s.Listen(exporter.port, allow_hostname=True, nullable=True),
        "flags": s.DictOf(
            s.Str(r"-{0,2}[A-Za-z0-9][A-Za-z0-9._-]{0,127}", hint="a flag name"),
            _flag_value(),
            max_items=128,
            nullable=True,
            placeholder="<flag>",
            doc="extra flags (not secrets: they show in the process list)",
        ),
        "env": s.DictOf(
            s.Str(r"[A-Za-z_][A-Za-z0-9_]{0,127}", hint="an environment variable name"),
            s.Secret(max_len=4096),
            max_items=64,
            secret=True,
            nullable=True,
            placeholder="<VAR>",
            doc="extra environment (0600 file)",
        ),
        "web": s.Map(
            {
                "basic_auth_users": s.DictOf(
                    s.Str(NAME, hint="a user name"),
                    s.Secret(
                        r"\$2[aby]?\$[0-9]{2}\$[./A-Za-z0-9]{53}",
                        hint="a bcrypt hash ($2y$...), never a plain password",
                    ),
                    max_items=32,
                    secret=True,
                    nullable=True,
                    placeholder="<user>",
                ),
                "tls": _files("cert", "key", "client_ca"),
            },
            nullable=True,
            doc="TLS and basic auth for /metrics",
        ),
        "verify_up": s.Bool(default=True, doc="require *_up 1 after a (re)start"),
        "verify_timeout": s.Int(1, 600, default=30, doc="seconds to wait for healthy /metrics"),
        "target_host": s.Host(nullable=True, doc="host published to the mine"),
    }


def _redis() -> s.Type:
    return s.Map(
        {
            "addr": s.OneOf(
                s.Url(("redis", "rediss")),
                s.Str(rf"unix://{UNIX_SOCKET}", hint="unix://<socket path>"),
                s.Str(r"[A-Za-z0-9.-]{1,253}:[0-9]{1,5}", hint="host:port"),
                nullable=True,
            ),
            "user": s.Str(NAME, hint="a Redis ACL user name", nullable=True),
            "password": s.Secret(max_len=1024, nullable=True),
            "tls": _files("ca", "cert", "key", skip_verify=s.Bool(default=False)),
        },
        nullable=True,
        doc="redis: addr, user, password, tls",
    )


def _postgres() -> s.Type:
    return s.Map(
        {
            "dsn": s.Secret(max_len=4096, nullable=True),
            "host": s.Host(nullable=True),
            "port": s.Int(1, 65535, nullable=True),
            "dbname": s.Str(r"[A-Za-z0-9_.-]{1,63}", hint="a database name", nullable=True),
            "user": s.Str(NAME, hint="a PostgreSQL role name", nullable=True),
            "password": s.Secret(max_len=1024, nullable=True),
            "sslmode": s.Enum(
                "disable", "allow", "prefer", "require", "verify-ca", "verify-full", nullable=True
            ),
            "sslrootcert": s.Path(nullable=True),
            "sslcert": s.Path(nullable=True),
            "sslkey": s.Path(nullable=True),
            "server_major": PgMajor(nullable=True),
        },
        nullable=True,
        doc="the PostgreSQL server: host, port, dbname, user, password, sslmode, TLS files, "
        "or a whole dsn; server_major for the compatibility check",
    )


def _nginx() -> s.Type:
    stub_status = s.Map(
        {
            "listen": s.OneOf(
                s.Listen(8080),
                s.Str(rf"unix:{UNIX_SOCKET}", hint="unix:<socket path>"),
                nullable=True,
            ),
            "path": s.Str(REQUEST_PATH, hint="a path like /stub_status", default="/stub_status"),
            "allow": s.List(s.Network(), default=["127.0.0.1", "::1"]),
        }
    )
    return s.Map(
        {
            "scrape_uri": s.OneOf(
                s.Url(credentials=True),
                s.Str(rf"unix:{UNIX_SOCKET}:{REQUEST_PATH}", hint="unix:<socket>:<path>"),
                secret=True,
                nullable=True,
            ),
            "stub_status": s.OneOf(s.Enum(False), stub_status, default={}, nullable=True),
        },
        nullable=True,
        doc="stub_status: the block opskit manages (or false); scrape_uri",
    )


def _dcgm() -> s.Type:
    return s.Map(
        {
            "dcgm_version": s.Str(SEMVER, hint="a DCGM version like 4.5.3", nullable=True),
            "cuda_major": s.Int(11, 99, default=12),
            "repo": s.Map(
                {
                    "manage": s.Bool(default=True),
                    "base_url": s.Url(nullable=True),
                    "keyring_source": s.OneOf(
                        s.Path(),
                        s.Url(),
                        s.Str(r"salt://[A-Za-z0-9._/-]+", hint="a salt:// URL"),
                        nullable=True,
                    ),
                    "keyring_sha256": s.Str(SHA256, hint="a sha256 hex digest", nullable=True),
                },
                default={},
            ),
            "hostengine": s.Str(
                r"[A-Za-z0-9.-]{1,253}:[0-9]{1,5}|unix:" + UNIX_SOCKET,
                hint="host:port or unix:<socket>",
                default="localhost:5555",
            ),
            "collectors": s.Path(nullable=True),
            "packages": s.List(s.Str(PACKAGE, hint="a package name"), nullable=True),
        },
        nullable=True,
        doc="DCGM: dcgm_version, cuda_major, repo, hostengine, collectors, packages",
    )


EXTRA = {
    "node_exporter": lambda: {
        "textfile_directory": s.OneOf(s.Enum(False), s.Path(), default=NODE_TEXTFILE_DEFAULT)
    },
    "redis_exporter": lambda: {"redis": _redis()},
    "postgres_exporter": lambda: {"postgres": _postgres()},
    "nginx_exporter": lambda: {"nginx": _nginx()},
    "dcgm_exporter": lambda: {"dcgm": _dcgm()},
}


class Options(s.Map):
    """The options of one exporter. With ``rules=True`` (the formula's pillar), options
    that are valid one by one are then checked against the rules across options (the
    plan's: a version that lacks an option, PostgreSQL and DCGM pairs, web configuration
    support, mirror URL templates; no host facts), unless ``ensure`` is ``absent``, and a
    broken rule is reported under ``exporters:<name>``, next to every other exporter's
    problems."""

    def __init__(self, exporter: str, fields: dict, *, rules: bool = False, **kw):
        super().__init__(fields, **kw)
        self.exporter = exporter
        self.rules = rules

    def describe(self):
        return f"a mapping of {self.exporter}'s options"

    def convert(self, value, path, problems, secret):
        before = len(problems.items)
        result = super().convert(value, path, problems, secret)
        if not self.rules or len(problems.items) > before or result.get("ensure") == "absent":
            return result
        try:
            plan.build(self.exporter, result, None)
        except ValueError as err:
            problems.items.append((path, "", str(err).removeprefix(f"{self.exporter}: ")))
        return result


def exporter_schema(name: str, rules: bool = False, **kw) -> Options:
    """The options of exporter ``name`` (a catalog name); ``rules``: see :class:`Options`."""
    exporter = catalog.CATALOG[name]
    fields = {**_common(exporter), **EXTRA[name]()}
    return Options(name, fields, rules=rules, doc=exporter.description, **kw)


# What the plan validates options with (the rules across options are the plan's own).
EXPORTER_SCHEMAS = {name: exporter_schema(name) for name in catalog.CATALOG}


def _secret_paths(kind, path=()) -> list[tuple[str, ...]]:
    if kind.secret:
        return [path]
    if isinstance(kind, s.Map):
        return [p for key, sub in kind.fields.items() for p in _secret_paths(sub, (*path, key))]
    return []


# Option paths whose values are secrets, per exporter: ("redis", "password"), ...
SECRET_OPTIONS = {
    name: sorted(set(_secret_paths(schema))) for name, schema in EXPORTER_SCHEMAS.items()
}


def _defaults_schema() -> s.Map:
    """``defaults`` is merged under each listed exporter's options, so its keys are the
    options exporters know, checked here too: a bad value is reported as
    ``exporters:defaults:<option>`` (not only under each exporter it was merged into).
    An option whose form differs between exporters takes any of those forms here; the
    exporter's own schema checks the merged result."""
    variants: dict[str, list[s.Type]] = {}
    for schema in EXPORTER_SCHEMAS.values():
        for key, kind in schema.fields.items():
            known = variants.setdefault(key, [])
            if all(other.describe() != kind.describe() for other in known):
                known.append(kind)
    fields = {}
    for key, kinds in variants.items():
        if len(kinds) == 1:
            shared = copy.copy(kinds[0])
            shared.optional, shared.default = True, s.MISSING
        else:
            shared = s.OneOf(*kinds, optional=True)
        fields[key] = shared
    return s.Map(
        fields,
        default={},
        doc="options every listed exporter gets (merged under its own)",
    )


class Pillar(s.Map):
    """Pillar ``exporters``: an exporter's name (a catalog name) with its options, or
    one of the formula's own settings; any other key is refused, saying which names
    opskit knows."""

    def settings(self) -> list[str]:
        return [key for key in self.fields if key not in catalog.CATALOG]

    def describe(self):
        settings = ", ".join(self.settings())
        return f"a mapping of exporter names to their options, with the settings {settings}"

    def unknown(self, key) -> str:
        exporters, settings = ", ".join(sorted(catalog.CATALOG)), ", ".join(self.settings())
        return (
            f"unknown key: no exporter opskit knows ({exporters}) and no setting of the "
            f"formula ({settings})"
        )


MINE_DEPRECATED = (
    "since opskit 0.1.0 scrape targets are published by opskit.targets (the mine entry "
    "opskit_targets) from the common formula's common.mine, which the exporters formula "
    "includes; delete this key (a later release will refuse it)"
)

SCHEMA = Pillar(
    {
        "defaults": _defaults_schema(),
        "versions": s.Map(
            {
                name: s.Str(
                    rf"{SEMVER}-{SEMVER}" if e.version_kind == "dcgm_pair" else SEMVER,
                    hint=f"an exact release version like {e.version_example}",
                    nullable=True,
                )
                for name, e in catalog.CATALOG.items()
            },
            default={},
            doc="version installed when an archive install names none",
        ),
        "nginx_package": s.Str(PACKAGE, hint="a package name", nullable=True),
        "tofs": s.Map(
            {
                "files_switch": s.List(
                    s.Str(r"[A-Za-z0-9_][A-Za-z0-9_:.-]*", hint="a grain or pillar key"),
                    nullable=True,
                ),
                "path_prefix": s.Str(SEGMENTS, hint="a relative path", nullable=True),
                "dirs": s.Map(
                    {
                        "files": s.Str(SEGMENTS, hint="a relative path", nullable=True),
                        "default": s.Str(SEGMENTS, hint="a relative path", nullable=True),
                    },
                    default={},
                ),
                "source_files": s.DictOf(
                    s.Str(r"[A-Za-z0-9_.-]+", hint="a template name"),
                    s.List(s.Str(SEGMENTS, hint="a relative path")),
                    default={},
                    placeholder="<template>",
                ),
            },
            default={},
            doc="where site templates are looked up (TOFS)",
        ),
        **{name: exporter_schema(name, rules=True, nullable=True) for name in catalog.CATALOG},
    },
    deprecated={"mine": MINE_DEPRECATED},
)


def validate_options(name: str, options: dict) -> dict:
    """One exporter's options, validated and normalised (``SettingsError`` naming
    ``exporters:<name>:<option>`` for each problem)."""
    return s.validate(EXPORTER_SCHEMAS[name], options, root=f"exporters:{name}")


def prepare(pillar):
    """The pillar as the schema checks it, merged as the formula merges it: ``defaults``
    under each listed exporter's own options, then the ``versions`` entry where an
    archive install names no version. Values of the wrong type are left as they are, for
    the schema to refuse by key path. ``opskit.settings`` (``map.jinja``) and
    ``exporter.validate`` both go through here."""
    if not isinstance(pillar, dict):
        return pillar
    shared = pillar.get("defaults")
    shared = shared if isinstance(shared, dict) else {}
    versions = pillar.get("versions")
    versions = versions if isinstance(versions, dict) else {}
    merged = dict(pillar)
    for name in catalog.CATALOG:
        own = pillar.get(name)
        if name not in pillar or (own is not None and not isinstance(own, dict)):
            continue
        options = salt.utils.dictupdate.merge(shared, own or {}, strategy="recurse")
        if (
            options.get("ensure", "present") == "present"
            and options.get("source", "archive") == "archive"
            and options.get("version") is None
            and name in versions
        ):
            options["version"] = versions[name]
        merged[name] = options
    return merged
