"""What each section of an exporter's options adds to its installation.

``opskit_exporter_plan.build`` validates the options first (the schema in
``_utils/opskit_settings_exporters.py``: types, patterns, paths, URLs), then hands each
section (``env``, ``web``, ``textfile_directory``, ``redis``, ``postgres``, ``nginx``,
``dcgm``, ``flags``) to the readers here. They apply the rules that span options (a
client certificate needs its key, a version that lacks a flag is refused, ...) and
record in ``Parts`` what the section adds to the unit (arguments, environment,
credentials), to the 0600 secret files, and to the list of secret values that must
never be shown. Errors are ``ValueError`` naming the exporter and the option. No I/O.
"""

from __future__ import annotations

import dataclasses
import urllib.parse

try:
    import opskit_exporter_catalog as catalog  # synced from file_roots, or module_dirs
    import opskit_net
    import opskit_redact
    from opskit_exporter_templates import Word
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_exporter_catalog as catalog
    from saltext.opskit.utils import opskit_net
    from saltext.opskit.utils import opskit_redact
    from saltext.opskit.utils.opskit_exporter_templates import Word

NODE_TEXTFILE_DEFAULT = "/var/lib/node_exporter/textfile_collector"
# systemd puts LoadCredential= files here (systemd.exec(5), $CREDENTIALS_DIRECTORY);
# used where a file written by opskit has to name them (%d only works in unit files).
CREDENTIALS_DIR = "/run/credentials/{unit}"


def credential(cred_id: str) -> str:
    """How a flag or Environment= names a LoadCredential= file (%d: systemd's
    credentials directory specifier)."""
    return f"%d/{cred_id}"


def redact_url(url: str) -> str:
    """A URL for a message: its password (and secret query parameters) masked."""
    return opskit_redact.redact_url(url)


def fail(name: str, message: str) -> None:
    raise ValueError(f"{name}: {message}")


def normalise_sha256(value, what: str) -> str:
    """Accept '<hex>' or 'sha256:<hex>' (any case); return lowercase hex."""
    text = str(value).strip().lower().removeprefix("sha256:").removeprefix("sha256=")
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"{what} must be a sha256 hex digest (64 hex characters), got {value!r}")
    return text


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
    archive_dir: str | None = None  # the installed release (archive installs only)
    secret_env: dict = dataclasses.field(default_factory=dict)  # -> 0600 env file
    plain_env: dict = dataclasses.field(default_factory=dict)  # -> unit: name -> Word
    credentials: dict = dataclasses.field(default_factory=dict)  # LoadCredential id -> path
    args: list = dataclasses.field(default_factory=list)  # Words after the listen flag
    secrets: list = dataclasses.field(default_factory=list)  # values to keep out of output
    after: list = dataclasses.field(default_factory=list)
    requires: list = dataclasses.field(default_factory=list)
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

    def secret(self, name: str, value: str) -> None:
        """An environment variable for the 0600 file, its value kept out of output."""
        self.secret_env[name] = value
        self.secrets.append(value)


def user_env(parts: Parts, env: dict | None) -> None:
    """Extra environment variables: all go to the 0600 file, values are never shown."""
    for key, value in (env or {}).items():
        parts.secret(key, str(value))


def web(parts: Parts, options: dict | None) -> None:
    """TLS and basic auth for /metrics (exporter-toolkit web configuration)."""
    options = options or {}
    users = options.get("basic_auth_users") or {}
    tls = options.get("tls") or {}
    cert, key, client_ca = tls.get("cert"), tls.get("key"), tls.get("client_ca")
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
    parts.secrets += list(users.values())
    if cert:
        parts.credentials["web-tls.crt"] = cert
        parts.credentials["web-tls.key"] = key
        if client_ca:
            parts.credentials["web-client-ca.crt"] = client_ca
    if parts.name == "redis_exporter":
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
        "basic_auth_users": dict(users),
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
        parts.secret("REDIS_EXPORTER_BASIC_AUTH_USERNAME", user)
        parts.secret("REDIS_EXPORTER_BASIC_AUTH_HASH_PASSWORD", digest)


def textfile(parts: Parts, value) -> None:
    """node_exporter's textfile collector directory (False switches it off)."""
    if value is False:
        return
    parts.textfile_directory = value or NODE_TEXTFILE_DEFAULT
    parts.arg(f"--collector.textfile.directory={parts.textfile_directory}")


def redis(parts: Parts, opts: dict | None) -> None:
    opts = opts or {}
    addr = opts.get("addr") or "redis://localhost:6379"
    scheme = addr.split("://", 1)[0] if "://" in addr else "redis"
    parts.plain_env["REDIS_ADDR"] = Word(addr)
    if opts.get("user"):
        parts.require("redis.user")
        parts.plain_env["REDIS_USER"] = Word(opts["user"])
    if opts.get("password"):
        parts.secret("REDIS_PASSWORD", opts["password"])
    tls = opts.get("tls") or {}
    if any(v for k, v in tls.items() if k != "skip_verify") and scheme != "rediss":
        parts.fail("redis.tls needs redis.addr to use rediss://")
    ca, cert, key = tls.get("ca"), tls.get("cert"), tls.get("key")
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
    if tls.get("skip_verify"):
        parts.arg("--skip-tls-verification")


DSN_PARTS = ("host", "port", "dbname", "user", "password", "sslmode")


def postgres(parts: Parts, opts: dict | None) -> None:
    opts = opts or {}
    dsn = opts.get("dsn")
    if dsn and any(opts.get(k) is not None for k in DSN_PARTS):
        parts.fail("give either postgres.dsn or host/port/dbname/user/password/sslmode")
    if dsn is None:
        dsn = _postgres_dsn(parts, opts)
    parts.secret("DATA_SOURCE_NAME", dsn)
    # TLS files reach the exporter as systemd credentials; lib/pq reads their paths
    # from the libpq environment variables, which name %d in the unit.
    for option, env_name, cred in (
        ("sslrootcert", "PGSSLROOTCERT", "postgres-ca.crt"),
        ("sslcert", "PGSSLCERT", "postgres-client.crt"),
        ("sslkey", "PGSSLKEY", "postgres-client.key"),
    ):
        if opts.get(option):
            parts.credentials[cred] = opts[option]
            parts.plain_env[env_name] = Word(credential(cred), specifiers=True)
    if bool(opts.get("sslcert")) != bool(opts.get("sslkey")):
        parts.fail("postgres.sslcert and postgres.sslkey go together")
    major = opts.get("server_major")
    if major is None:
        return
    try:
        parts.postgres_major = catalog.postgres_major(major)
        if parts.version is not None:
            parts.warnings += catalog.postgres_compatibility(parts.release_version, major)
    except catalog.CompatibilityError as err:
        parts.fail(f"postgres.server_major: {err}")


def _postgres_dsn(parts: Parts, opts: dict) -> str:
    user = opts.get("user")
    if not user:
        parts.fail("postgres.user is required (or a whole postgres.dsn)")
    host = opts.get("host") or "localhost"
    userinfo = urllib.parse.quote(user, safe="")
    if opts.get("password"):
        userinfo += ":" + urllib.parse.quote(opts["password"], safe="")
        parts.secrets.append(opts["password"])
    netloc = f"[{host}]" if ":" in host else host
    port = opts.get("port") or 5432
    dbname = urllib.parse.quote(opts.get("dbname") or "postgres", safe="")
    query = urllib.parse.urlencode({"sslmode": opts.get("sslmode") or "require"})
    return f"postgresql://{userinfo}@{netloc}:{port}/{dbname}?{query}"


def nginx(parts: Parts, opts: dict | None) -> None:
    opts = opts or {}
    stub = opts.get("stub_status", {})
    scrape_uri = opts.get("scrape_uri")
    if stub is not False and stub is not None:
        derived = _stub_status(parts, stub)
        scrape_uri = scrape_uri or derived
        parts.after.append("nginx.service")
    if scrape_uri is None:
        parts.fail("set nginx.scrape_uri, or let opskit manage nginx.stub_status")
    if scrape_uri.startswith("unix:"):
        # nginx-prometheus-exporter's parseUnixSocketAddress (exporter.go, read at
        # v0.11.0 and v1.5.3): "unix:<socket path>:<request path>", split on every
        # ":"; the schema allows no ":" inside either path.
        parts.require("nginx.scrape_uri.unix")
    if urllib.parse.urlsplit(scrape_uri).password is not None:
        # Credentials (user:password@) stay out of the unit and the process list: the
        # exporter reads its URI from SCRAPE_URI too (exporter.go: getEnv("SCRAPE_URI")
        # at v0.11.0, kingpin .Envar("SCRAPE_URI") at v1.5.3), here from the 0600 file.
        parts.secret("SCRAPE_URI", scrape_uri)
        return
    parts.arg(f"--nginx.scrape-uri={scrape_uri}")


def _stub_status(parts: Parts, stub: dict) -> str:
    """The stub_status block's context; returns the URI that scrapes it."""
    path = stub.get("path") or "/stub_status"
    listen = stub.get("listen")
    if listen is not None and listen.startswith("unix:"):
        # nginx's access module matches the clients of a unix socket with "unix:" only.
        parts.stub_status = {"listen": listen, "path": path, "allow": ["unix:"]}
        return f"{listen}:{path}"
    host, port = opskit_net.parse_listen(listen or "127.0.0.1:8080", 8080)
    allow = stub.get("allow")
    parts.stub_status = {
        "listen": opskit_net.format_listen(host or "127.0.0.1", port),
        "path": path,
        "allow": ["127.0.0.1", "::1"] if allow is None else list(allow),
    }
    return f"http://{opskit_net.format_listen(opskit_net.probe_host(host), port)}{path}"


DEFAULT_DCGM_PACKAGES = (
    "datacenter-gpu-manager-4-core",
    "datacenter-gpu-manager-4-proprietary",
    "datacenter-gpu-manager-4-cuda{cuda}",
)


def dcgm(parts: Parts, opts: dict | None) -> None:
    opts = opts or {}
    version = parts.version
    if version is None:
        parts.fail("version (the release tag <DCGM>-<exporter>, e.g. 4.5.3-4.8.2) is required")
    try:
        dcgm_version, _ = catalog.dcgm_pair(version)
        if opts.get("dcgm_version"):
            catalog.check_dcgm_pair(
                version, opts["dcgm_version"], "dcgm.dcgm_version in the pillar"
            )
    except catalog.CompatibilityError as err:
        parts.fail(str(err))
    cuda = opts.get("cuda_major") or 12
    repo = dict(opts.get("repo") or {})
    repo.setdefault("manage", True)
    if repo["manage"] and not (repo.get("keyring_source") and repo.get("keyring_sha256")):
        parts.fail(
            "NVIDIA's repository needs dcgm.repo.keyring_source (path, salt:// or http(s) "
            "URL of the key) and dcgm.repo.keyring_sha256 (the sha256 of the key file you "
            "vetted), or dcgm.repo.manage: false if the host has it already"
        )
    hostengine = opts.get("hostengine") or "localhost:5555"
    collectors = opts.get("collectors")
    if not collectors and parts.archive_dir:
        # Upstream's archive brings the default collectors CSV (installed next to the
        # binary); the binary's own default, /etc/dcgm-exporter/, holds none here.
        collectors = f"{parts.archive_dir}/etc/dcgm-exporter/default-counters.csv"
    parts.arg(f"--remote-hostengine-info={hostengine}")
    if collectors:
        parts.arg(f"--collectors={collectors}")
    parts.after.append("nvidia-dcgm.service")
    parts.requires.append("nvidia-dcgm.service")
    packages = opts.get("packages") or [p.format(cuda=cuda) for p in DEFAULT_DCGM_PACKAGES]
    parts.dcgm = {
        "dcgm_version": dcgm_version,
        "cuda_major": cuda,
        "repo": repo,
        "packages": list(packages),
        "hostengine": hostengine,
    }


# ---------------------------------------------------------------------------------------
# Extra flags
# ---------------------------------------------------------------------------------------
def flag_args(exporter: catalog.Exporter, version: str | None, flags: dict | None) -> list[str]:
    """Turn a validated {flag: value} mapping into command-line arguments.

    True -> --flag; False -> --no-flag (kingpin) or --flag=false; a list repeats the
    flag; None drops it. Flags opskit manages or that carry secrets are refused.
    """
    args = []
    style = exporter.flag_style(version)
    for raw_name, value in sorted((flags or {}).items()):
        name = str(raw_name).lstrip("-")
        if name in exporter.secret_flags or any(w in name for w in ("password", "secret", "token")):
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
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            if item is True:
                args.append(f"--{name}")
            elif item is False:
                args.append(f"--no-{name}" if style == "kingpin" else f"--{name}=false")
            else:
                args.append(f"--{name}={item}")
    return args
