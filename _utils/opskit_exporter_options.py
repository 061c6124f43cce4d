"""The options an operator gives for one exporter, read section by section.

``opskit_exporter_plan.build`` hands each section of the options (``env``, ``web``,
``textfile_directory``, ``redis``, ``postgres``, ``nginx``, ``dcgm``, ``flags``) to the
readers here. They check the values and record in ``Parts`` what the section adds to
the unit (arguments, environment, credentials), to the 0600 secret files, and to the
list of secret values that must never be shown. Errors are ``ValueError`` naming the
exporter, the option and the problem. No I/O.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import urllib.parse

try:
    import opskit_exporter_catalog as catalog  # synced from file_roots, or module_dirs
    from opskit_exporter_templates import Word
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_exporter_catalog as catalog
    from saltext.opskit.utils.opskit_exporter_templates import Word

PATH_RE = re.compile(r"/[^\0\n]*\Z")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
FLAG_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
BCRYPT_RE = re.compile(r"\$2[aby]?\$\d{2}\$[./A-Za-z0-9]{53}\Z")
NODE_TEXTFILE_DEFAULT = "/var/lib/node_exporter/textfile_collector"
# systemd puts LoadCredential= files here (systemd.exec(5), $CREDENTIALS_DIRECTORY);
# used where a file written by opskit has to name them (%d only works in unit files).
CREDENTIALS_DIR = "/run/credentials/{unit}"


def credential(cred_id: str) -> str:
    """How a flag or Environment= names a LoadCredential= file (%d: systemd's
    credentials directory specifier)."""
    return f"%d/{cred_id}"


def redact_url(url: str) -> str:
    """Drop user:password from a URL before it goes into a message."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, ""))


# ---------------------------------------------------------------------------------------
# Value checks
# ---------------------------------------------------------------------------------------
def fail(name: str, message: str) -> None:
    raise ValueError(f"{name}: {message}")


def mapping(name: str, key: str, value, allowed: set[str] | None) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail(name, f"{key} must be a mapping, got {type(value).__name__} {value!r}")
    unknown = sorted(set(map(str, value)) - allowed) if allowed is not None else []
    if unknown:
        fail(
            name,
            f"unknown {key} option(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}",
        )
    return value


def string(name: str, key: str, value, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            fail(name, f"{key} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        fail(name, f"{key} must be a string, got {type(value).__name__}")
    text = str(value)
    if "\n" in text or "\0" in text:
        fail(name, f"{key} must be one line")
    return text


def path(name: str, key: str, value, required: bool = False) -> str | None:
    text = string(name, key, value, required)
    if text is not None and (not PATH_RE.match(text) or "/../" in f"{text}/"):
        fail(name, f"{key} must be an absolute path, got {text!r}")
    return text


def boolean(name: str, key: str, value, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        fail(name, f"{key} must be true or false, got {value!r}")
    return value


def url(name: str, key: str, value, schemes=("http", "https")) -> str | None:
    text = string(name, key, value)
    if text is None:
        return None
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in schemes or not parts.hostname:
        fail(name, f"{key} must be a {'/'.join(schemes)} URL, got {redact_url(text)!r}")
    return text


def seconds(name: str, key: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        fail(name, f"{key} must be whole seconds, got {value!r}")
    if not 1 <= value <= 600:
        fail(name, f"{key} must be 1-600 seconds, got {value}")
    return value


def parse_listen(listen: str | int | None, default_port: int) -> tuple[str, int]:
    """':9100', '0.0.0.0:9100', '[::1]:9100', '127.0.0.1', 9100 -> (host, port).

    An empty host means all addresses.
    """
    if listen is None or listen == "":
        return "", default_port
    if isinstance(listen, int) and not isinstance(listen, bool):
        host, port_text = "", str(listen)
    else:
        text = str(listen).strip()
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port_text = rest.removeprefix(":") or str(default_port)
        elif text.count(":") == 1:
            host, port_text = text.split(":")
        elif text.count(":") > 1:
            raise ValueError(f"listen address {listen!r}: write IPv6 addresses as [addr]:port")
        elif text.isdigit():
            host, port_text = "", text
        else:
            host, port_text = text, str(default_port)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"listen address {listen!r}: the port must be 1-65535")
    if host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not re.match(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?\Z", host):
                raise ValueError(f"listen address {listen!r}: {host!r} is not a host") from None
    return host, int(port_text)


def format_listen(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def probe_host(listen_host: str) -> str:
    """Where to reach an exporter on this host: wildcards mean loopback."""
    if listen_host in ("", "0.0.0.0", "::"):  # noqa: S104 - a comparison, not a bind
        return "127.0.0.1"
    return listen_host


# ---------------------------------------------------------------------------------------
# What the sections contribute
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class Parts:
    """What the option sections contribute to the unit and files while being read."""

    name: str
    exporter: catalog.Exporter
    version: str | None
    user: str
    config_dir: str
    secret_env: dict = dataclasses.field(default_factory=dict)  # -> 0600 env file
    plain_env: dict = dataclasses.field(default_factory=dict)  # -> unit: name -> Word
    credentials: dict = dataclasses.field(default_factory=dict)  # LoadCredential id -> path
    args: list = dataclasses.field(default_factory=list)  # Words after the listen flag
    secrets: list = dataclasses.field(default_factory=list)  # values to keep out of output
    after: list = dataclasses.field(default_factory=list)
    requires: list = dataclasses.field(default_factory=list)
    archive_dir: str | None = None  # the installed release (archive installs only)
    web_config: dict | None = None  # context of web-config.yml.jinja
    stub_status: dict | None = None  # context of stub_status.conf.jinja
    textfile_directory: str | None = None
    postgres_major: str | None = None  # as PostgreSQL names it: 15, 9.6
    dcgm: dict | None = None
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
        fail(self.name, message)

    def require(self, option: str) -> None:
        """Refuse ``option`` if this version of the exporter lacks what it needs."""
        try:
            catalog.require(self.exporter, option, self.version)
        except ValueError as err:
            self.fail(str(err))

    def arg(self, text: str, specifiers: bool = False) -> None:
        self.args.append(Word(text, specifiers))


def user_env(parts: Parts, value) -> None:
    """Extra environment variables: all go to the 0600 file, values are never shown."""
    env = mapping(parts.name, "env", value, None)
    for key, item in env.items():
        if not ENV_NAME_RE.match(str(key)):
            parts.fail(f"env: {key!r} is not an environment variable name")
        text = string(parts.name, f"env.{key}", item)
        if text is not None:
            parts.secret_env[str(key)] = text
            parts.secrets.append(text)


def web(parts: Parts, value) -> None:
    """TLS and basic auth for /metrics (exporter-toolkit web configuration)."""
    name = parts.name
    options = mapping(name, "web", value, {"basic_auth_users", "tls"})
    users = options.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        parts.fail("web.basic_auth_users must map user names to bcrypt hashes")
    tls = mapping(name, "web.tls", options.get("tls"), {"cert", "key", "client_ca"})
    cert = path(name, "web.tls.cert", tls.get("cert"))
    key = path(name, "web.tls.key", tls.get("key"))
    client_ca = path(name, "web.tls.client_ca", tls.get("client_ca"))
    if bool(cert) != bool(key):
        parts.fail("web.tls needs both cert and key")
    if client_ca and not cert:
        parts.fail("web.tls.client_ca needs web.tls.cert and key")
    if not (users or cert):
        return
    if parts.version is None:
        parts.fail("web options need an explicit version (flag support depends on it)")
    for user, digest in users.items():
        string(name, f"web.basic_auth_users.{user}", str(user), required=True)
        if not BCRYPT_RE.match(str(digest)):
            parts.fail(
                f"web.basic_auth_users.{user} must be a bcrypt hash ($2y$...); never a plain "
                "password (make one with: htpasswd -nBC 10 '' | tr -d ':')"
            )
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
    parts.web_config = {
        "tls": {
            "cert_file": f"{creds_dir}/web-tls.crt",
            "key_file": f"{creds_dir}/web-tls.key",
            "client_ca_file": f"{creds_dir}/web-client-ca.crt" if client_ca else None,
        }
        if cert
        else None,
        "basic_auth_users": {str(user): str(digest) for user, digest in users.items()},
    }
    parts.arg(f"{flag}={parts.config_dir}/web-config.yml")


def _redis_web(parts: Parts, users: dict, cert: str | None, client_ca: str | None) -> None:
    """redis_exporter has no web configuration file: TLS flags and basic-auth env."""
    if cert:
        parts.require("web.tls")
        parts.arg(f"--tls-server-cert-file={credential('web-tls.crt')}", True)
        parts.arg(f"--tls-server-key-file={credential('web-tls.key')}", True)
        if client_ca:
            parts.require("web.tls.client_ca")
            parts.arg(f"--tls-server-ca-cert-file={credential('web-client-ca.crt')}", True)
    if users:
        parts.require("web.basic_auth_users")
        if len(users) != 1:
            parts.fail("redis_exporter supports exactly one basic-auth user")
        user, digest = next(iter(users.items()))
        parts.secret_env["REDIS_EXPORTER_BASIC_AUTH_USERNAME"] = str(user)
        parts.secret_env["REDIS_EXPORTER_BASIC_AUTH_HASH_PASSWORD"] = str(digest)


def textfile(parts: Parts, value) -> None:
    """node_exporter's textfile collector directory (False switches it off)."""
    if value is False:
        return
    parts.textfile_directory = path(parts.name, "textfile_directory", value, required=True)
    parts.arg(f"--collector.textfile.directory={parts.textfile_directory}")


def redis(parts: Parts, value) -> None:
    name = parts.name
    opts = mapping(name, "redis", value, {"addr", "user", "password", "tls"})
    addr = string(name, "redis.addr", opts.get("addr")) or "redis://localhost:6379"
    parsed = urllib.parse.urlsplit(addr if "://" in addr else f"redis://{addr}")
    if parsed.scheme not in ("redis", "rediss", "unix"):
        parts.fail(f"redis.addr must be redis://, rediss:// or unix://, got {parsed.scheme!r}")
    if parsed.password or parsed.username:
        parts.fail(
            "redis.addr must not carry credentials (they would be visible in the unit); "
            "put them in redis.user and redis.password"
        )
    parts.plain_env["REDIS_ADDR"] = Word(addr)
    redis_user = string(name, "redis.user", opts.get("user"))
    if redis_user:
        parts.require("redis.user")
        parts.plain_env["REDIS_USER"] = Word(redis_user)
    password = string(name, "redis.password", opts.get("password"))
    if password:
        parts.secret_env["REDIS_PASSWORD"] = password
        parts.secrets.append(password)
    tls = mapping(name, "redis.tls", opts.get("tls"), {"ca", "cert", "key", "skip_verify"})
    if tls and parsed.scheme != "rediss":
        parts.fail("redis.tls needs redis.addr to use rediss://")
    ca = path(name, "redis.tls.ca", tls.get("ca"))
    cert = path(name, "redis.tls.cert", tls.get("cert"))
    key = path(name, "redis.tls.key", tls.get("key"))
    if bool(cert) != bool(key):
        parts.fail("redis.tls needs both cert and key for a client certificate")
    if ca:
        parts.require("redis.tls.ca")
        parts.credentials["redis-ca.crt"] = ca
        parts.arg(f"--tls-ca-cert-file={credential('redis-ca.crt')}", True)
    if cert:
        parts.credentials["redis-client.crt"] = cert
        parts.credentials["redis-client.key"] = key
        parts.arg(f"--tls-client-cert-file={credential('redis-client.crt')}", True)
        parts.arg(f"--tls-client-key-file={credential('redis-client.key')}", True)
    if boolean(name, "redis.tls.skip_verify", tls.get("skip_verify"), False):
        parts.arg("--skip-tls-verification")


SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
DSN_PARTS = {"host", "port", "dbname", "user", "password", "sslmode"}
POSTGRES_OPTIONS = DSN_PARTS | {"dsn", "sslrootcert", "sslcert", "sslkey", "server_major"}


def postgres(parts: Parts, value) -> None:
    name = parts.name
    opts = mapping(name, "postgres", value, POSTGRES_OPTIONS)
    dsn = string(name, "postgres.dsn", opts.get("dsn"))
    if dsn and DSN_PARTS & set(opts):
        parts.fail("give either postgres.dsn or host/port/dbname/user/password/sslmode")
    if dsn is None:
        dsn = _postgres_dsn(parts, opts)
    parts.secrets.append(dsn)
    parts.secret_env["DATA_SOURCE_NAME"] = dsn
    # TLS files reach the exporter as systemd credentials; lib/pq reads their paths
    # from the libpq environment variables, which name %d in the unit.
    for option, env_name, cred in (
        ("sslrootcert", "PGSSLROOTCERT", "postgres-ca.crt"),
        ("sslcert", "PGSSLCERT", "postgres-client.crt"),
        ("sslkey", "PGSSLKEY", "postgres-client.key"),
    ):
        file_path = path(name, f"postgres.{option}", opts.get(option))
        if file_path:
            parts.credentials[cred] = file_path
            parts.plain_env[env_name] = Word(credential(cred), specifiers=True)
    if bool(opts.get("sslcert")) != bool(opts.get("sslkey")):
        parts.fail("postgres.sslcert and postgres.sslkey go together")
    major = opts.get("server_major")
    if major is None:
        return
    try:
        parts.postgres_major = catalog.postgres_major(major)
        if parts.version is not None:
            exporter_version = parts.release_version
            parts.warnings += catalog.postgres_compatibility(exporter_version, major)
    except catalog.CompatibilityError as err:
        parts.fail(f"postgres.server_major: {err}")


def _postgres_dsn(parts: Parts, opts: dict) -> str:
    name = parts.name
    sslmode = string(name, "postgres.sslmode", opts.get("sslmode")) or "require"
    if sslmode not in SSLMODES:
        parts.fail(f"postgres.sslmode must be one of {', '.join(SSLMODES)}, got {sslmode!r}")
    host = string(name, "postgres.host", opts.get("host")) or "localhost"
    port = opts.get("port", 5432)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        parts.fail(f"postgres.port must be 1-65535, got {port!r}")
    dbname = string(name, "postgres.dbname", opts.get("dbname")) or "postgres"
    user = string(name, "postgres.user", opts.get("user"), required=True)
    password = string(name, "postgres.password", opts.get("password"))
    userinfo = urllib.parse.quote(user, safe="")
    if password:
        userinfo += ":" + urllib.parse.quote(password, safe="")
        parts.secrets.append(password)
    netloc = f"[{host}]" if ":" in host else host
    query = urllib.parse.urlencode({"sslmode": sslmode})
    return f"postgresql://{userinfo}@{netloc}:{port}/{urllib.parse.quote(dbname, safe='')}?{query}"


STUB_PATH_RE = re.compile(r"/[A-Za-z0-9._/-]*\Z")
# nginx-prometheus-exporter's unix scrape URIs (exporter.go parseUnixSocketAddress, read
# at v0.11.0 and v1.5.3): "unix:<socket path>:<request path>", split on every ":" (at
# most three parts), the request path fetched as http://unix<request path>. Neither
# path may hold a ":"; the request path must start with "/".
UNIX_SOCKET_RE = re.compile(r"/[A-Za-z0-9._/-]+\Z")


def unix_scrape_uri(name: str, text: str) -> tuple[str, str]:
    """(socket path, request path) of a ``unix:`` scrape URI, checked as upstream parses it."""
    parts = text.split(":")
    if len(parts) != 3 or not UNIX_SOCKET_RE.match(parts[1]) or "/../" in f"{parts[1]}/":
        fail(
            name,
            f"nginx.scrape_uri {text!r}: write unix:<absolute socket path>:<request path>, "
            "e.g. unix:/run/nginx-status.sock:/stub_status (no ':' inside either path)",
        )
    if not STUB_PATH_RE.match(parts[2]):
        fail(name, f"nginx.scrape_uri {text!r}: the request path must look like /stub_status")
    return parts[1], parts[2]


def nginx(parts: Parts, value) -> None:
    name = parts.name
    opts = mapping(name, "nginx", value, {"scrape_uri", "stub_status"})
    stub = opts.get("stub_status", {})
    scrape_uri = string(name, "nginx.scrape_uri", opts.get("scrape_uri"))
    if scrape_uri is not None and scrape_uri.startswith("unix:"):
        unix_scrape_uri(name, scrape_uri)
        parts.require("nginx.scrape_uri.unix")
    elif scrape_uri is not None:
        url(name, "nginx.scrape_uri", scrape_uri, ("http", "https", "unix"))
    if stub is not False and stub is not None:
        derived = _stub_status(parts, mapping(name, "nginx.stub_status", stub, STUB_OPTIONS))
        scrape_uri = scrape_uri or derived
        if scrape_uri.startswith("unix:"):
            parts.require("nginx.scrape_uri.unix")
        parts.after.append("nginx.service")
    if scrape_uri is None:
        fail(name, "set nginx.scrape_uri, or let opskit manage nginx.stub_status")
    parts.arg(f"--nginx.scrape-uri={scrape_uri}")


STUB_OPTIONS = {"listen", "path", "allow"}


def _stub_status(parts: Parts, opts: dict) -> str:
    """The stub_status block's context; returns the URI that scrapes it."""
    name = parts.name
    stub_path = string(name, "nginx.stub_status.path", opts.get("path")) or "/stub_status"
    if not STUB_PATH_RE.match(stub_path):
        parts.fail(f"nginx stub_status path {stub_path!r} must look like /stub_status")
    allow = opts.get("allow", ["127.0.0.1", "::1"])
    if not isinstance(allow, list):
        fail(name, "nginx.stub_status.allow must be a list of addresses")
    for address in allow:
        try:
            ipaddress.ip_network(str(address), strict=False)
        except ValueError as err:
            fail(name, f"nginx.stub_status.allow: {err}")
    listen = string(name, "nginx.stub_status.listen", opts.get("listen"))
    if listen is not None and listen.startswith("unix:"):
        socket_path = listen.removeprefix("unix:")
        if not UNIX_SOCKET_RE.match(socket_path) or "/../" in f"{socket_path}/":
            parts.fail(f"nginx.stub_status.listen {listen!r}: write unix:<absolute socket path>")
        # nginx's access module matches the clients of a unix socket with "unix:" only.
        parts.stub_status = {"listen": listen, "path": stub_path, "allow": ["unix:"]}
        return f"unix:{socket_path}:{stub_path}"
    try:
        host, port = parse_listen(listen or "127.0.0.1:8080", 8080)
    except ValueError as err:
        fail(name, f"nginx.stub_status.{err}")
    parts.stub_status = {
        "listen": format_listen(host or "127.0.0.1", port),
        "path": stub_path,
        "allow": [str(a) for a in allow],
    }
    return f"http://{format_listen(probe_host(host), port)}{stub_path}"


DCGM_OPTIONS = {"dcgm_version", "cuda_major", "repo", "hostengine", "collectors", "packages"}
PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+\Z")


def dcgm(parts: Parts, value) -> None:
    name, version = parts.name, parts.version
    opts = mapping(name, "dcgm", value, DCGM_OPTIONS)
    if version is None:
        fail(name, "version (the release tag <DCGM>-<exporter>, e.g. 4.5.3-4.8.2) is required")
    try:
        dcgm_version, _ = catalog.dcgm_pair(version)
        pinned = string(name, "dcgm.dcgm_version", opts.get("dcgm_version"))
        if pinned:
            catalog.check_dcgm_pair(version, pinned, "dcgm.dcgm_version in the pillar")
    except catalog.CompatibilityError as err:
        fail(name, str(err))
    cuda = opts.get("cuda_major", 12)
    if isinstance(cuda, bool) or not isinstance(cuda, int) or not 11 <= cuda <= 99:
        fail(name, f"dcgm.cuda_major must be the CUDA major version (e.g. 12), got {cuda!r}")
    repo_keys = {"manage", "base_url", "keyring_source", "keyring_sha256"}
    repo = mapping(name, "dcgm.repo", opts.get("repo"), repo_keys)
    if boolean(name, "dcgm.repo.manage", repo.get("manage"), True):
        source = string(name, "dcgm.repo.keyring_source", repo.get("keyring_source"))
        digest = repo.get("keyring_sha256")
        if not source or not digest:
            fail(
                name,
                "NVIDIA's repository needs dcgm.repo.keyring_source (path, salt:// or "
                "http(s) URL of the key) and dcgm.repo.keyring_sha256 (the sha256 of the key "
                "file you vetted), or dcgm.repo.manage: false if the host has it already",
            )
        normalise_sha256(digest, f"{name}: dcgm.repo.keyring_sha256")
        url(name, "dcgm.repo.base_url", repo.get("base_url"))
    hostengine = string(name, "dcgm.hostengine", opts.get("hostengine")) or "localhost:5555"
    collectors = path(name, "dcgm.collectors", opts.get("collectors"))
    packages = opts.get("packages") or [
        "datacenter-gpu-manager-4-core",
        "datacenter-gpu-manager-4-proprietary",
        f"datacenter-gpu-manager-4-cuda{cuda}",
    ]
    if not isinstance(packages, list) or not all(
        isinstance(p, str) and PACKAGE_RE.match(p) for p in packages
    ):
        fail(name, f"dcgm.packages must be a list of package names, got {packages!r}")
    if not collectors and parts.archive_dir:
        # Upstream's archive brings the default collectors CSV (installed next to the
        # binary); the binary's own default, /etc/dcgm-exporter/, holds none here.
        collectors = f"{parts.archive_dir}/etc/dcgm-exporter/default-counters.csv"
    parts.arg(f"--remote-hostengine-info={hostengine}")
    if collectors:
        parts.arg(f"--collectors={collectors}")
    parts.after.append("nvidia-dcgm.service")
    parts.requires.append("nvidia-dcgm.service")
    parts.dcgm = {
        "dcgm_version": dcgm_version,
        "cuda_major": cuda,
        "repo": repo,
        "packages": list(packages),
        "hostengine": hostengine,
    }


SHA256_RE = re.compile(r"[0-9a-f]{64}\Z")


def normalise_sha256(value, what: str) -> str:
    """Accept '<hex>' or 'sha256:<hex>' (any case); return lowercase hex."""
    text = str(value).strip().lower().removeprefix("sha256:").removeprefix("sha256=")
    if not SHA256_RE.match(text):
        raise ValueError(f"{what} must be a sha256 hex digest (64 hex characters), got {value!r}")
    return text


# ---------------------------------------------------------------------------------------
# Extra flags and the environment file
# ---------------------------------------------------------------------------------------
def flag_args(exporter: catalog.Exporter, version: str | None, flags: dict | None) -> list[str]:
    """Turn a {flag: value} mapping into command-line arguments, validated.

    True -> --flag; False -> --no-flag (kingpin) or --flag=false; a list repeats the
    flag; None drops it. Flags opskit manages or that carry secrets are refused.
    """
    args = []
    style = exporter.flag_style(version)
    for raw_name, value in sorted((flags or {}).items()):
        name = str(raw_name).lstrip("-")
        if not FLAG_NAME_RE.match(name):
            raise ValueError(f"{exporter.name}: {raw_name!r} is not a flag name")
        if name in exporter.secret_flags or re.search(r"password|secret|token", name):
            raise ValueError(
                f"{exporter.name}: flag --{name} would put a secret into the process's "
                "arguments (visible to every user); use the exporter's secret options "
                "(password, dsn, web.basic_auth_users), which go to a 0600 file"
            )
        if name in exporter.managed_flags:
            raise ValueError(
                f"{exporter.name}: --{name} is set by opskit from its own options "
                "(listen, web, redis, postgres, nginx, dcgm, textfile_directory); set it there"
            )
        values = value if isinstance(value, list) else [value]
        for item in values:
            if item is None:
                continue
            if item is True:
                args.append(f"--{name}")
            elif item is False:
                args.append(f"--no-{name}" if style == "kingpin" else f"--{name}=false")
            elif isinstance(item, (str, int, float)):
                args.append(f"--{name}={item}")
            else:
                raise ValueError(
                    f"{exporter.name}: flag --{name} has a {type(item).__name__} value; "
                    "use a string, number, boolean or list of those"
                )
    return args


def env_file(env: dict[str, str]) -> str:
    """Render a systemd EnvironmentFile: KEY="value" with \\, ", $ and ` escaped."""
    lines = ["# Managed by opskit; holds secrets: keep it 0600."]
    for key in sorted(env):
        if not ENV_NAME_RE.match(key):
            raise ValueError(f"{key!r} is not an environment variable name")
        text = str(env[key])
        if "\n" in text or "\r" in text or "\0" in text:
            raise ValueError(f"environment variable {key} contains a newline or NUL byte")
        for char in ("\\", '"', "$", "`"):
            text = text.replace(char, "\\" + char)
        lines.append(f'{key}="{text}"')
    return "\n".join(lines) + "\n"
