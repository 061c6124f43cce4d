"""From options to a desired exporter installation (validated, rendered, no I/O).

``build(name, options, machine)`` checks the options an operator gives for one
exporter (module keyword arguments, state arguments or formula pillar: the same
schema everywhere), and returns a ``Desired``: the release to download or package to
install, the system user, the systemd unit text, and the files to write with their
modes and owners. Secrets (redis password, PostgreSQL DSN, basic-auth hashes) only
ever go into files of mode 0600 owned by the exporter's user; the unit and the
process's arguments never hold them. Errors are ``ValueError`` with a message that
names the exporter, the option and the value's problem.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import posixpath
import re
import tempfile
import urllib.parse

try:
    import opskit_exporters as catalog  # synced from file_roots, or module_dirs
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_exporters as catalog

INSTALL_ROOT = "/opt/opskit/exporters"
CONFIG_ROOT = "/etc/opskit/exporters"
STATE_ROOT = "/var/lib/opskit/exporters"
CACHE_ROOT = "/var/cache/opskit/exporters"
UNIT_DIR = "/etc/systemd/system"
NGINX_CONF_DIR = "/etc/nginx/conf.d"
STUB_STATUS_CONF = "opskit-nginx-exporter-stub-status.conf"
NODE_TEXTFILE_DEFAULT = "/var/lib/node_exporter/textfile_collector"
# systemd puts LoadCredential= files here (systemd.exec(5), $CREDENTIALS_DIRECTORY);
# used where a file written by opskit has to name them (%d only works in unit files).
CREDENTIALS_DIR = "/run/credentials/{unit}"

COMMON_OPTIONS = {
    "version",
    "source",
    "base_url",
    "proxy",
    "ca_bundle",
    "sha256",
    "listen_address",
    "flags",
    "env",
    "web",
    "verify_up",
    "verify_timeout",
    "target_host",
    "ensure",
}
EXTRA_OPTIONS = {
    "node_exporter": {"textfile_directory"},
    "redis_exporter": {"redis"},
    "postgres_exporter": {"postgres"},
    "nginx_exporter": {"nginx"},
    "dcgm_exporter": {"dcgm"},
}
SOURCES = ("archive", "package")
PATH_RE = re.compile(r"^/[^\0\n]*$")


@dataclasses.dataclass
class FileSpec:
    """A file opskit writes for an exporter."""

    path: str
    content: str
    mode: int
    owner: str
    group: str
    secret: bool = False  # content never shown in changes, logs or returns


@dataclasses.dataclass
class Desired:
    """One exporter as the options say it should be."""

    name: str
    exporter: catalog.Exporter
    source: str
    version: str | None  # None: whatever the package repository has (source: package)
    release: catalog.Release | None
    base_url: str | None
    proxy: str | None
    ca_bundle: str | None
    sha256: str | None
    listen_host: str
    listen_port: int
    user: str
    exec_path: str
    unit_path: str
    unit: str
    files: list[FileSpec]
    config_dir: str
    secrets: list[str]
    scheme: str
    basic_auth: bool
    client_auth: bool
    verify_up: bool
    verify_timeout: int
    target_host: str | None
    textfile_directory: str | None = None
    stub_status: FileSpec | None = None
    postgres_major: int | None = None
    dcgm: dict | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def install_dir(self) -> str:
        return f"{INSTALL_ROOT}/{self.name}"

    @property
    def current_link(self) -> str:
        return f"{INSTALL_ROOT}/{self.name}/current"

    @property
    def listen(self) -> str:
        return catalog.format_listen(self.listen_host, self.listen_port)

    def public(self) -> dict:
        """What may be shown: everything but secret file contents."""
        return {
            "name": self.name,
            "source": self.source,
            "version": self.version,
            "listen": self.listen,
            "user": self.user,
            "unit": self.unit_path,
            "files": {
                f.path: {
                    "mode": f"{f.mode:04o}",
                    "owner": f.owner,
                    "group": f.group,
                    "content": "<secret: hidden>" if f.secret else f.content,
                }
                for f in self.files
            },
        }


@dataclasses.dataclass
class Probe:
    """How to reach and judge one exporter's /metrics."""

    name: str
    exporter: catalog.Exporter
    version: str | None
    listen_host: str
    listen_port: int
    scheme: str = "http"
    basic_auth: bool = False
    client_auth: bool = False
    verify_up: bool = True

    @classmethod
    def of(cls, d: Desired) -> Probe:
        return cls(
            name=d.name,
            exporter=d.exporter,
            version=d.version,
            listen_host=d.listen_host,
            listen_port=d.listen_port,
            scheme=d.scheme,
            basic_auth=d.basic_auth,
            client_auth=d.client_auth,
            verify_up=d.verify_up,
        )


def _fail(name: str, message: str) -> None:
    raise ValueError(f"{name}: {message}")


def _mapping(name: str, key: str, value, allowed: set[str]) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail(name, f"{key} must be a mapping, got {type(value).__name__} {value!r}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        _fail(
            name,
            f"unknown {key} option(s) {', '.join(map(str, unknown))}; "
            f"known: {', '.join(sorted(allowed))}",
        )
    return value


def _string(name: str, key: str, value, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            _fail(name, f"{key} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        _fail(name, f"{key} must be a string, got {type(value).__name__}")
    text = str(value)
    if "\n" in text or "\0" in text:
        _fail(name, f"{key} must be one line")
    return text


def _path(name: str, key: str, value, required: bool = False) -> str | None:
    text = _string(name, key, value, required)
    if text is not None and (not PATH_RE.match(text) or "/../" in f"{text}/"):
        _fail(name, f"{key} must be an absolute path, got {text!r}")
    return text


def _bool(name: str, key: str, value, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        _fail(name, f"{key} must be true or false, got {value!r}")
    return value


def _url(name: str, key: str, value, schemes=("http", "https")) -> str | None:
    text = _string(name, key, value)
    if text is None:
        return None
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in schemes or not parts.hostname:
        _fail(
            name,
            f"{key} must be a {'/'.join(schemes)} URL, got {catalog.redact_url(text)!r}",
        )
    return text


@dataclasses.dataclass
class _Parts:
    """What the option sections contribute to the unit and files while being read."""

    name: str
    exporter: catalog.Exporter
    version: str | None
    user: str
    config_dir: str
    secret_env: dict = dataclasses.field(default_factory=dict)  # -> 0600 env file
    plain_env: dict = dataclasses.field(default_factory=dict)  # -> unit (may name %d)
    credentials: dict = dataclasses.field(default_factory=dict)  # LoadCredential id -> path
    args: list = dataclasses.field(default_factory=list)  # opskit's own (may name %d)
    secrets: list = dataclasses.field(default_factory=list)  # values to keep out of output
    after: list = dataclasses.field(default_factory=list)
    requires: list = dataclasses.field(default_factory=list)
    files: list = dataclasses.field(default_factory=list)
    warnings: list = dataclasses.field(default_factory=list)
    scheme: str = "http"
    basic_auth: bool = False
    client_auth: bool = False

    @property
    def release_version(self) -> str | None:
        return self.exporter.release_version(self.version) if self.version else None

    @property
    def unit_name(self) -> str:
        return f"{self.name}.service"

    def fail(self, message: str) -> None:
        _fail(self.name, message)


def build(name: str, options: dict | None, machine: str) -> Desired:
    """Validate ``options`` for exporter ``name`` and render what it needs."""
    if name not in catalog.CATALOG:
        raise ValueError(
            f"unknown exporter {name!r}; opskit knows: {', '.join(sorted(catalog.CATALOG))}"
        )
    exporter = catalog.CATALOG[name]
    options = {k: v for k, v in (options or {}).items() if not str(k).startswith("__")}
    allowed = COMMON_OPTIONS | EXTRA_OPTIONS[name]
    unknown = sorted(set(options) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed))
        _fail(name, f"unknown option(s) {', '.join(map(str, unknown))}; known: {known}")
    source, version = _source_and_version(exporter, options)
    base_url = _url(name, "base_url", options.get("base_url"))
    sha256 = options.get("sha256")
    if sha256 is not None:
        if source != "archive":
            _fail(name, "sha256 pins an archive; it has no meaning with source: package")
        sha256 = catalog.normalise_sha256(sha256, f"{name}: sha256")
    release = None
    try:
        if source == "archive":
            release = catalog.release(exporter, version, machine, base_url)
        listen_host, listen_port = catalog.parse_listen(
            options.get("listen_address"), exporter.port
        )
    except ValueError as err:
        if str(err).startswith(name):
            raise
        _fail(name, str(err))

    parts = _Parts(
        name=name,
        exporter=exporter,
        version=version,
        user="root" if exporter.run_as_root else name,
        config_dir=f"{CONFIG_ROOT}/{name}",
    )
    _user_env(parts, options.get("env"))
    _web(parts, options.get("web"))
    textfile_directory, stub_status, postgres_major, dcgm = _specific(parts, options)

    # opskit's own arguments may name the credentials directory (%d); user values in
    # them had "%" doubled where they were built. Extra flags are quoted completely.
    listen = catalog.format_listen(listen_host, listen_port)
    args = [f"{exporter.listen_flag}={listen}", *parts.args]
    args = [catalog.systemd_quote(arg, specifiers=True) for arg in args]
    extra = catalog.flag_args(exporter, parts.release_version or "999.0.0", options.get("flags"))
    args += [catalog.systemd_quote(arg) for arg in extra]

    env_path = None
    if parts.secret_env:
        env_path = f"{parts.config_dir}/env"
        content = catalog.env_file(parts.secret_env)
        parts.files.insert(0, FileSpec(env_path, content, 0o600, parts.user, parts.user, True))
    if source == "archive":
        exec_path = f"{INSTALL_ROOT}/{name}/current/{exporter.binary}"
    else:
        exec_path = exporter.package_binary
    spec = catalog.UnitSpec(
        exporter=exporter,
        version=version or "(OS package)",
        exec_path=exec_path,
        args=args,
        user=parts.user,
        environment=parts.plain_env,
        environment_file=env_path,
        credentials=parts.credentials,
        after=parts.after,
        requires=parts.requires,
        source=source,
    )
    verify_timeout = _seconds(name, "verify_timeout", options.get("verify_timeout", 30))
    return Desired(
        name=name,
        exporter=exporter,
        source=source,
        version=version,
        release=release,
        base_url=base_url,
        proxy=_url(name, "proxy", options.get("proxy")),
        ca_bundle=_path(name, "ca_bundle", options.get("ca_bundle")),
        sha256=sha256,
        listen_host=listen_host,
        listen_port=listen_port,
        user=parts.user,
        exec_path=exec_path,
        unit_path=f"{UNIT_DIR}/{parts.unit_name}",
        unit=catalog.unit_text(spec),
        files=parts.files,
        config_dir=parts.config_dir,
        secrets=parts.secrets,
        scheme=parts.scheme,
        basic_auth=parts.basic_auth,
        client_auth=parts.client_auth,
        verify_up=_bool(name, "verify_up", options.get("verify_up"), True),
        verify_timeout=verify_timeout,
        target_host=_string(name, "target_host", options.get("target_host")),
        textfile_directory=textfile_directory,
        stub_status=stub_status,
        postgres_major=postgres_major,
        dcgm=dcgm,
        warnings=parts.warnings,
    )


def _seconds(name: str, key: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(name, f"{key} must be whole seconds, got {value!r}")
    if not 1 <= value <= 600:
        _fail(name, f"{key} must be 1-600 seconds, got {value}")
    return value


def _source_and_version(exporter: catalog.Exporter, options: dict) -> tuple[str, str | None]:
    name = exporter.name
    if options.get("ensure", "present") != "present":
        _fail(name, f"ensure: {options['ensure']!r} is for the formula; use exporter.absent/remove")
    source = options.get("source") or "archive"
    if source not in SOURCES:
        _fail(name, f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    version = _string(name, "version", options.get("version"))
    if source == "archive" and version is None:
        _fail(name, "version is required with source: archive (opskit installs pinned releases)")
    if version is not None and not exporter.version_re.match(version):
        example = "4.5.3-4.8.2" if name == "dcgm_exporter" else "1.5.0"
        _fail(name, f"version {version!r} is not an exact release version like {example}")
    if source == "package" and not exporter.package:
        _fail(name, "has no OS package opskit knows; use source: archive")
    return source, version


def _user_env(parts: _Parts, value) -> None:
    """Extra environment variables: all go to the 0600 file, values are never shown."""
    env = _mapping(parts.name, "env", value, {str(k) for k in (value or {})})
    for key, item in env.items():
        if not catalog.ENV_NAME_RE.match(str(key)):
            parts.fail(f"env: {key!r} is not an environment variable name")
        text = _string(parts.name, f"env.{key}", item)
        if text is not None:
            parts.secret_env[str(key)] = text
            parts.secrets.append(text)


def _web(parts: _Parts, value) -> None:
    """TLS and basic auth for /metrics (exporter-toolkit web configuration)."""
    name = parts.name
    web = _mapping(name, "web", value, {"basic_auth_users", "tls"})
    users = web.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        parts.fail("web.basic_auth_users must map user names to bcrypt hashes")
    tls = _mapping(name, "web.tls", web.get("tls"), {"cert", "key", "client_ca"})
    cert = _path(name, "web.tls.cert", tls.get("cert"))
    key = _path(name, "web.tls.key", tls.get("key"))
    client_ca = _path(name, "web.tls.client_ca", tls.get("client_ca"))
    if bool(cert) != bool(key):
        parts.fail("web.tls needs both cert and key")
    if client_ca and not cert:
        parts.fail("web.tls.client_ca needs web.tls.cert and key")
    if not (users or cert):
        return
    if parts.version is None:
        parts.fail("web options need an explicit version (flag support depends on it)")
    parts.scheme = "https" if cert else "http"
    parts.basic_auth = bool(users)
    parts.client_auth = bool(client_ca)
    parts.secrets += [str(digest) for digest in users.values()]
    if cert:
        parts.credentials["web-tls.crt"] = cert
        parts.credentials["web-tls.key"] = key
        if client_ca:
            parts.credentials["web-client-ca.crt"] = client_ca
    if name == "redis_exporter":
        _redis_web(parts, users, cert, client_ca)
        return
    flag = parts.exporter.web_config_flag(parts.version)
    if flag is None:
        parts.fail(
            f"{parts.version} cannot serve TLS or basic auth (no web configuration file "
            "support in this version); upgrade it or drop the web options"
        )
    creds_dir = CREDENTIALS_DIR.format(unit=parts.unit_name)
    try:
        content = catalog.web_config_yaml(
            users,
            f"{creds_dir}/web-tls.crt" if cert else None,
            f"{creds_dir}/web-tls.key" if cert else None,
            f"{creds_dir}/web-client-ca.crt" if client_ca else None,
        )
    except ValueError as err:
        parts.fail(str(err))
    path = f"{parts.config_dir}/web-config.yml"
    parts.files.append(FileSpec(path, content, 0o600, parts.user, parts.user, secret=True))
    parts.args.append(f"{flag}={path}")


def _specific(parts: _Parts, options: dict):
    """The exporter's own options; returns (textfile dir, stub_status, pg major, dcgm)."""
    name = parts.name
    textfile_directory = stub_status = postgres_major = dcgm = None
    if name == "node_exporter":
        textfile = options.get("textfile_directory", NODE_TEXTFILE_DEFAULT)
        if textfile is not False:
            textfile_directory = _path(name, "textfile_directory", textfile, required=True)
            escaped = textfile_directory.replace("%", "%%")
            parts.args.append(f"--collector.textfile.directory={escaped}")
    elif name == "redis_exporter":
        _redis(parts, options.get("redis"))
    elif name == "postgres_exporter":
        postgres_major = _postgres(parts, options.get("postgres"))
        if postgres_major is not None and parts.version is not None:
            try:
                parts.warnings += catalog.postgres_compatibility(parts.version, postgres_major)
            except catalog.CompatibilityError as err:
                parts.fail(str(err))
    elif name == "nginx_exporter":
        scrape_args, stub_status = _nginx(name, options.get("nginx"))
        parts.args += scrape_args
        if stub_status is not None:
            parts.after.append("nginx.service")
    elif name == "dcgm_exporter":
        dcgm, dcgm_args = _dcgm(name, options.get("dcgm"), parts.version)
        parts.args += dcgm_args
        parts.after.append("nvidia-dcgm.service")
        parts.requires.append("nvidia-dcgm.service")
    return textfile_directory, stub_status, postgres_major, dcgm


def _redis_web(parts: _Parts, users: dict, cert: str | None, client_ca: str | None) -> None:
    """redis_exporter has no web configuration file: TLS flags and basic-auth env."""
    version = parts.release_version
    if cert:
        if not catalog.version_at_least(version, catalog.REDIS_TLS_SERVER_SINCE):
            parts.fail(f"{version} cannot serve TLS; needs {catalog.REDIS_TLS_SERVER_SINCE}+")
        parts.args += [
            f"--tls-server-cert-file={catalog.credential_arg('web-tls.crt')}",
            f"--tls-server-key-file={catalog.credential_arg('web-tls.key')}",
        ]
        if client_ca:
            ca_arg = catalog.credential_arg("web-client-ca.crt")
            parts.args.append(f"--tls-server-ca-cert-file={ca_arg}")
    if users:
        if not catalog.version_at_least(version, catalog.REDIS_BASIC_AUTH_SINCE):
            parts.fail(
                f"{version} cannot check bcrypt basic-auth hashes; redis_exporter does from "
                f"{catalog.REDIS_BASIC_AUTH_SINCE} (REDIS_EXPORTER_BASIC_AUTH_HASH_PASSWORD)"
            )
        if len(users) != 1:
            parts.fail("redis_exporter supports exactly one basic-auth user")
        user, digest = next(iter(users.items()))
        if not catalog.BCRYPT_RE.match(str(digest)):
            parts.fail(f"web.basic_auth_users.{user} must be a bcrypt hash ($2y$...)")
        parts.secret_env["REDIS_EXPORTER_BASIC_AUTH_USERNAME"] = str(user)
        parts.secret_env["REDIS_EXPORTER_BASIC_AUTH_HASH_PASSWORD"] = str(digest)


def _redis(parts: _Parts, value) -> None:
    name = parts.name
    opts = _mapping(name, "redis", value, {"addr", "user", "password", "tls"})
    addr = _string(name, "redis.addr", opts.get("addr")) or "redis://localhost:6379"
    url = urllib.parse.urlsplit(addr if "://" in addr else f"redis://{addr}")
    if url.scheme not in ("redis", "rediss", "unix"):
        parts.fail(f"redis.addr must be redis://, rediss:// or unix://, got {url.scheme!r}")
    if url.password or url.username:
        parts.fail(
            "redis.addr must not carry credentials (they would be visible in the unit); "
            "put them in redis.user and redis.password"
        )
    parts.plain_env["REDIS_ADDR"] = addr.replace("%", "%%")
    redis_user = _string(name, "redis.user", opts.get("user"))
    if redis_user:
        parts.plain_env["REDIS_USER"] = redis_user.replace("%", "%%")
    password = _string(name, "redis.password", opts.get("password"))
    if password:
        parts.secret_env["REDIS_PASSWORD"] = password
        parts.secrets.append(password)
    tls = _mapping(name, "redis.tls", opts.get("tls"), {"ca", "cert", "key", "skip_verify"})
    if tls and url.scheme != "rediss":
        parts.fail("redis.tls needs redis.addr to use rediss://")
    ca = _path(name, "redis.tls.ca", tls.get("ca"))
    cert = _path(name, "redis.tls.cert", tls.get("cert"))
    key = _path(name, "redis.tls.key", tls.get("key"))
    if bool(cert) != bool(key):
        parts.fail("redis.tls needs both cert and key for a client certificate")
    if ca:
        parts.credentials["redis-ca.crt"] = ca
        parts.args.append(f"--tls-ca-cert-file={catalog.credential_arg('redis-ca.crt')}")
    if cert:
        parts.credentials["redis-client.crt"] = cert
        parts.credentials["redis-client.key"] = key
        parts.args += [
            f"--tls-client-cert-file={catalog.credential_arg('redis-client.crt')}",
            f"--tls-client-key-file={catalog.credential_arg('redis-client.key')}",
        ]
    if _bool(name, "redis.tls.skip_verify", tls.get("skip_verify"), False):
        parts.args.append("--skip-tls-verification")


SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
POSTGRES_OPTIONS = {
    "dsn",
    "host",
    "port",
    "dbname",
    "user",
    "password",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "server_major",
}


def _postgres(parts: _Parts, value) -> int | None:
    name = parts.name
    opts = _mapping(name, "postgres", value, POSTGRES_OPTIONS)
    dsn = _string(name, "postgres.dsn", opts.get("dsn"))
    if dsn and {"host", "port", "dbname", "user", "password", "sslmode"} & set(opts):
        parts.fail("give either postgres.dsn or host/port/dbname/user/password/sslmode")
    if dsn is None:
        dsn = _postgres_dsn(parts, opts)
    parts.secrets.append(dsn)
    parts.secret_env["DATA_SOURCE_NAME"] = dsn
    # TLS files reach the exporter as systemd credentials; lib/pq reads their paths
    # from the libpq environment variables, which may name %d in the unit.
    for option, env_name, cred in (
        ("sslrootcert", "PGSSLROOTCERT", "postgres-ca.crt"),
        ("sslcert", "PGSSLCERT", "postgres-client.crt"),
        ("sslkey", "PGSSLKEY", "postgres-client.key"),
    ):
        path = _path(name, f"postgres.{option}", opts.get(option))
        if path:
            parts.credentials[cred] = path
            parts.plain_env[env_name] = catalog.credential_arg(cred)
    if bool(opts.get("sslcert")) != bool(opts.get("sslkey")):
        parts.fail("postgres.sslcert and postgres.sslkey go together")
    major = opts.get("server_major")
    if major is not None and (isinstance(major, bool) or not isinstance(major, int)):
        parts.fail(f"postgres.server_major must be a number like 15, got {major!r}")
    if major is not None and not 9 <= major <= 99:
        parts.fail(f"postgres.server_major {major} is not a PostgreSQL major version")
    return major


def _postgres_dsn(parts: _Parts, opts: dict) -> str:
    name = parts.name
    sslmode = _string(name, "postgres.sslmode", opts.get("sslmode")) or "require"
    if sslmode not in SSLMODES:
        parts.fail(f"postgres.sslmode must be one of {', '.join(SSLMODES)}, got {sslmode!r}")
    host = _string(name, "postgres.host", opts.get("host")) or "localhost"
    port = opts.get("port", 5432)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        parts.fail(f"postgres.port must be 1-65535, got {port!r}")
    dbname = _string(name, "postgres.dbname", opts.get("dbname")) or "postgres"
    user = _string(name, "postgres.user", opts.get("user"), required=True)
    password = _string(name, "postgres.password", opts.get("password"))
    userinfo = urllib.parse.quote(user, safe="")
    if password:
        userinfo += ":" + urllib.parse.quote(password, safe="")
        parts.secrets.append(password)
    netloc = f"[{host}]" if ":" in host else host
    query = urllib.parse.urlencode({"sslmode": sslmode})
    return f"postgresql://{userinfo}@{netloc}:{port}/{urllib.parse.quote(dbname, safe='')}?{query}"


def _nginx(name, value) -> tuple[list[str], FileSpec | None]:
    opts = _mapping(name, "nginx", value, {"scrape_uri", "stub_status"})
    stub = opts.get("stub_status", {})
    stub_spec = None
    scrape_uri = _url(name, "nginx.scrape_uri", opts.get("scrape_uri"), ("http", "https", "unix"))
    if stub is not False and stub is not None:
        stub_opts = _mapping(name, "nginx.stub_status", stub, {"listen", "path", "allow"})
        try:
            host, port = catalog.parse_listen(stub_opts.get("listen") or "127.0.0.1:8080", 8080)
        except ValueError as err:
            _fail(name, f"nginx.stub_status.{err}")
        path = _string(name, "nginx.stub_status.path", stub_opts.get("path")) or "/stub_status"
        allow = stub_opts.get("allow", ["127.0.0.1", "::1"])
        if not isinstance(allow, list):
            _fail(name, "nginx.stub_status.allow must be a list of addresses")
        try:
            content = catalog.stub_status_conf(host, port, path, [str(a) for a in allow])
        except ValueError as err:
            _fail(name, str(err))
        stub_spec = FileSpec(
            posixpath.join(NGINX_CONF_DIR, STUB_STATUS_CONF), content, 0o644, "root", "root"
        )
        if scrape_uri is None:
            scrape_uri = f"http://{catalog.format_listen(catalog.probe_host(host), port)}{path}"
    if scrape_uri is None:
        _fail(name, "set nginx.scrape_uri, or let opskit manage nginx.stub_status")
    return [f"--nginx.scrape-uri={scrape_uri.replace('%', '%%')}"], stub_spec


def _dcgm(name, value, version) -> tuple[dict, list[str]]:
    allowed = {"dcgm_version", "cuda_major", "repo", "hostengine", "collectors", "packages"}
    opts = _mapping(name, "dcgm", value, allowed)
    if version is None:
        _fail(name, "version (the release tag <DCGM>-<exporter>, e.g. 4.5.3-4.8.2) is required")
    try:
        dcgm_version, _ = catalog.dcgm_pair(version)
        pinned = _string(name, "dcgm.dcgm_version", opts.get("dcgm_version"))
        if pinned:
            catalog.check_dcgm_pair(version, pinned, "dcgm.dcgm_version in the pillar")
    except catalog.CompatibilityError as err:
        _fail(name, str(err))
    cuda = opts.get("cuda_major", 12)
    if isinstance(cuda, bool) or not isinstance(cuda, int) or not 11 <= cuda <= 99:
        _fail(name, f"dcgm.cuda_major must be the CUDA major version (e.g. 12), got {cuda!r}")
    repo = _mapping(
        name,
        "dcgm.repo",
        opts.get("repo"),
        {"manage", "base_url", "keyring_source", "keyring_sha256"},
    )
    if _bool(name, "dcgm.repo.manage", repo.get("manage"), True):
        source = _string(name, "dcgm.repo.keyring_source", repo.get("keyring_source"))
        digest = repo.get("keyring_sha256")
        if not source or not digest:
            _fail(
                name,
                "NVIDIA's repository needs dcgm.repo.keyring_source (path, salt:// or "
                "http(s) URL of the key) and dcgm.repo.keyring_sha256 (the sha256 of the key "
                "file you vetted), or dcgm.repo.manage: false if the host has it already",
            )
        catalog.normalise_sha256(digest, f"{name}: dcgm.repo.keyring_sha256")
        _url(name, "dcgm.repo.base_url", repo.get("base_url"))
    hostengine = _string(name, "dcgm.hostengine", opts.get("hostengine")) or "localhost:5555"
    collectors = _path(name, "dcgm.collectors", opts.get("collectors"))
    packages = opts.get("packages") or [
        "datacenter-gpu-manager-4-core",
        "datacenter-gpu-manager-4-proprietary",
        f"datacenter-gpu-manager-4-cuda{cuda}",
    ]
    if not isinstance(packages, list) or not all(
        isinstance(p, str) and re.match(r"^[a-z0-9][a-z0-9+.-]+$", p) for p in packages
    ):
        _fail(name, f"dcgm.packages must be a list of package names, got {packages!r}")
    args = [f"--remote-hostengine-info={hostengine.replace('%', '%%')}"]
    if collectors:
        args.append(f"--collectors={collectors.replace('%', '%%')}")
    return {
        "dcgm_version": dcgm_version,
        "cuda_major": cuda,
        "repo": repo,
        "packages": list(packages),
        "hostengine": hostengine,
    }, args


def write_file(path: str, content: str | bytes, mode: int, uid: int, gid: int) -> None:
    """Write a file whole or not at all: a temporary file in the same directory is
    created private (mkstemp: 0600), given its final mode and owner before any byte is
    written, then renamed over the target. A secret is never readable by others, not
    even for a moment, and a crash never leaves half a file."""
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        os.fchown(fd, uid, gid)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
