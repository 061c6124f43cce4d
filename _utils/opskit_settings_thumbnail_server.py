"""Settings schema of the ``thumbnail-server`` formula (pillar ``thumbnail_server``).

``salt["opskit.settings"]("thumbnail-server", merged)`` in
``salt/thumbnail-server/map.jinja`` validates the merged settings (defaults, OS map,
pillar ``thumbnail_server:lookup`` and ``thumbnail_server``) with :data:`SCHEMA` and
:func:`check` before anything renders; a bad CMDB value stops the run naming the key,
its value (secrets and ``env`` values masked) and what to do.

Every value that reaches a file, a path or a command is a constrained type: paths are
absolute, normalised and not ``/`` or a system directory (``config_dir: /etc`` is
refused: the formula makes ``config_dir`` 0700 root); names, versions and image
references match whole-string patterns; URLs carry no credentials; strings carry no
control or line-separator characters. What goes into the env file must also survive
its reader's quoting rule (``opskit_formats``: systemd's ``EnvironmentFile=`` in
systemd mode, docker compose's ``env_file:`` in docker mode).

Secrets (``secrets:*``) and every ``env`` value are validated here too, then dropped from
what the states receive (``opskit_thumbnail.plan``): the env file state reads them from
pillar on the minion and checks them again with :func:`check_private`.

Upstream facts (variables, defaults, limits) are cited in ``_utils/opskit_thumbnail.py``.
"""

from __future__ import annotations

import re

try:
    import opskit_formats  # synced from file_roots, or module_dirs
    import opskit_schema as s
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_formats
    from saltext.opskit.utils import opskit_schema as s

# The pillar key the formula reads, the root of every key path in messages and in the
# docs' option table (the formula's name has a dash, the pillar key does not).
ROOT = "thumbnail_server"
UPSTREAM_PORT = 8088
MIN_JWT_KEY = 32

# secrets:<key> -> the variable it becomes (only ever in the 0600 env file).
SECRETS = {
    "jwt_private_key": "JWT_PRIVATE_KEY",
    "db_password": "SEAFILE_MYSQL_DB_PASSWORD",
    "s3_key_id": "S3_KEY_ID",
    "s3_secret_key": "S3_SECRET_KEY",
    "s3_sse_c_key": "S3_SSE_C_KEY",
}
# Variables the formula sets from its own settings; pillar env may not set them.
MANAGED_ENV = frozenset(
    {
        *SECRETS.values(),
        "TIME_ZONE",
        "TZ",
        "SEAFILE_MYSQL_DB_HOST",
        "SEAFILE_MYSQL_DB_PORT",
        "SEAFILE_MYSQL_DB_USER",
        "SEAFILE_MYSQL_DB_CCNET_DB_NAME",
        "SEAFILE_MYSQL_DB_SEAFILE_DB_NAME",
        "SEAFILE_MYSQL_DB_SEAHUB_DB_NAME",
        "SITE_ROOT",
        "INNER_SEAHUB_SERVICE_URL",
        "THUMBNAIL_TASK_WORKERS",
        "THUMBNAIL_IMAGE_SIZE_LIMIT",
        "THUMBNAIL_IMAGE_ORIGINAL_SIZE_LIMIT",
        "THUMBNAIL_MEMORY_LIMIT",
        "SEAF_SERVER_STORAGE_TYPE",
        "S3_COMMIT_BUCKET",
        "S3_FS_BUCKET",
        "S3_BLOCK_BUCKET",
        "S3_AWS_REGION",
        "S3_HOST",
        "S3_USE_HTTPS",
        "S3_USE_V4_SIGNATURE",
        "S3_PATH_STYLE_REQUEST",
        "CONF_DIR",
        "LOG_DIR",
        "THUMBNAIL_ROOT",
        "SEAFILE_CONF_DIR",
        "SEAFILE_CENTRAL_CONF_DIR",
        "LD_PRELOAD",
        "MALLOC_CONF",
        "PYTHONPATH",
    }
)


def _name(**kw) -> s.Str:
    """A database, bucket or region name."""
    return s.Str(
        r"[A-Za-z0-9_][A-Za-z0-9_.$-]{0,63}", hint="a name: letters, digits, _ . $ -", **kw
    )


def _user(**kw) -> s.Str:
    return s.Str(r"[a-z_][a-z0-9_-]{0,31}", hint="a user or group name", **kw)


PACKAGE = s.Str(r"[a-z0-9][a-z0-9.+-]{0,99}", hint="a package name")


def _in_release(**kw) -> s.Str:
    """A directory or file inside the release (relative, no ``..`` component)."""
    return s.Str(
        r"(?!/)(?!(?:.*/)?\.\.(?:/|$))[A-Za-z0-9._/-]{0,255}",
        hint="a path inside the release (relative, no ..)",
        **kw,
    )


ARG = s.Str(r"[A-Za-z0-9_./:=,+@-]{1,255}", hint="an argument: letters, digits and _./:=,+@-")
TIMEOUT = s.Int(1, 3600)


def _secret(doc: str, min_len: int = 0) -> s.Type:
    return s.Secret(nullable=True, max_len=4096, min_len=min_len, doc=doc)


def _pinned_image(text: str):
    """A pinned image reference: a release tag or a digest, never a moving tag alone."""
    name, _, digest = text.partition("@")
    tag = None
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    name_re = (
        r"(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*"
        r"(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    )
    if not re.fullmatch(name_re, name) or (
        tag is not None and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag)
    ):
        return "is not an image reference"
    if digest:
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            return "has a bad digest: a digest is sha256:<64 hex digits>"
        return None
    if tag is None or tag == "latest" or tag.endswith("-latest"):
        moving = "no tag" if tag is None else f"tag {tag!r}"
        return (
            f"is not pinned: {moving} moves with every release. Pin a release tag "
            "(seafileltd/thumbnail-server:13.0.<n>) or a digest (<image>@sha256:<64 hex>)"
        )
    return None


ENV_VALUE = s.OneOf(
    s.Str(max_len=4096), s.Int(), s.Bool(), secret=True, doc="treated as secret in output"
)

SCHEMA = s.Map(
    {
        "mode": s.Enum("systemd", "docker", default="systemd", doc="how the service runs"),
        "port": s.Int(1, 65535, default=UPSTREAM_PORT, doc="host port nginx proxies to"),
        "task_workers": s.Int(1, 256, default=32, doc="THUMBNAIL_TASK_WORKERS"),
        "image_size_limit": s.Int(1, 10240, default=100, doc="THUMBNAIL_IMAGE_SIZE_LIMIT (MB)"),
        "image_original_size_limit": s.Int(
            16, 65536, default=1024, doc="THUMBNAIL_IMAGE_ORIGINAL_SIZE_LIMIT (MB decoded)"
        ),
        "memory_limit": s.Int(
            256, 1048576, default=4096, doc="THUMBNAIL_MEMORY_LIMIT, MemoryMax=, mem_limit (MB)"
        ),
        "seafile": s.Map(
            {
                "inner_seahub_service_url": s.Url(doc="INNER_SEAHUB_SERVICE_URL"),
                "site_root": s.Str(
                    r"/(?:[A-Za-z0-9._~-]+/){0,16}",
                    default="/",
                    hint="a URL path starting and ending with /",
                    doc="SITE_ROOT",
                ),
                "time_zone": s.Str(
                    r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+){0,3}",
                    default="Etc/UTC",
                    hint="an IANA zone such as Etc/UTC or Europe/Berlin",
                    doc="TIME_ZONE",
                ),
            },
        ),
        "database": s.Map(
            {
                "host": s.Host(default="db", doc="SEAFILE_MYSQL_DB_HOST"),
                "port": s.Int(1, 65535, default=3306, doc="SEAFILE_MYSQL_DB_PORT"),
                "user": _name(default="seafile", doc="SEAFILE_MYSQL_DB_USER"),
                "ccnet_db_name": _name(default="ccnet_db", doc="SEAFILE_MYSQL_DB_CCNET_DB_NAME"),
                "seafile_db_name": _name(
                    default="seafile_db", doc="SEAFILE_MYSQL_DB_SEAFILE_DB_NAME"
                ),
                "seahub_db_name": _name(default="seahub_db", doc="SEAFILE_MYSQL_DB_SEAHUB_DB_NAME"),
            },
        ),
        "storage": s.Map(
            {
                "type": s.Enum(
                    "", "disk", "s3", "multiple", default="", doc="SEAF_SERVER_STORAGE_TYPE"
                ),
                "s3": s.Map(
                    {
                        "commit_bucket": _name(
                            nullable=True, doc="S3_COMMIT_BUCKET (s3: required)"
                        ),
                        "fs_bucket": _name(nullable=True, doc="S3_FS_BUCKET (s3: required)"),
                        "block_bucket": _name(nullable=True, doc="S3_BLOCK_BUCKET (s3: required)"),
                        "aws_region": _name(default="us-east-1", doc="S3_AWS_REGION"),
                        "host": s.Str(
                            r"[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?",
                            nullable=True,
                            hint="host or host:port",
                            doc="S3_HOST",
                        ),
                        "use_https": s.Bool(default=True, doc="S3_USE_HTTPS"),
                        "use_v4_signature": s.Bool(default=True, doc="S3_USE_V4_SIGNATURE"),
                        "path_style_request": s.Bool(default=False, doc="S3_PATH_STYLE_REQUEST"),
                    },
                ),
            },
        ),
        "secrets": s.Map(
            {
                # manual/config/env.md: "a random string with a length of no less than
                # 32 characters" (the manual suggests pwgen -s 40 1).
                "jwt_private_key": _secret("JWT_PRIVATE_KEY (required)", MIN_JWT_KEY),
                "db_password": _secret("SEAFILE_MYSQL_DB_PASSWORD (required)"),
                "s3_key_id": _secret("S3_KEY_ID (required with storage type s3)"),
                "s3_secret_key": _secret("S3_SECRET_KEY (required with storage type s3)"),
                "s3_sse_c_key": _secret("S3_SSE_C_KEY"),
            },
            secret=True,
            doc="only ever written to the 0600 env file",
        ),
        "env": s.DictOf(
            s.Str(r"[A-Z_][A-Z0-9_]{0,127}", hint="an environment variable name (A-Z, 0-9, _)"),
            ENV_VALUE,
            max_items=128,
            default={},
            placeholder="<NAME>",
            doc="further upstream variables; their values are treated as secrets",
        ),
        "config_dir": s.Path(
            default="/etc/seafile-thumbnail", doc="a directory of its own (0700 root)"
        ),
        "jemalloc": s.Map(
            {
                "enabled": s.Bool(default=True, doc="run the service under jemalloc"),
                "malloc_conf": s.Str(
                    r"[A-Za-z0-9_:,.]{1,512}",
                    nullable=True,
                    default="background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0",
                    hint="MALLOC_CONF key:value pairs",
                    doc="MALLOC_CONF; null: jemalloc's own defaults",
                ),
            },
        ),
        "health": s.Map(
            {
                "path": s.Str(
                    r"/[A-Za-z0-9/._-]{0,255}",
                    default="/ping",
                    hint="a URL path",
                    doc="below seafile:site_root",
                ),
                "timeout": s.Int(1, 600, default=60, doc="seconds to wait after apply"),
            },
        ),
        "nginx": s.Map(
            {
                "enabled": s.Bool(default=True, doc="the nginx site in front of the service"),
                "site_name": s.Str(
                    r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
                    default="thumbnail-server",
                    hint="a site name: letters, digits, . _ -",
                    doc="<sites_dir>/<site_name>.conf",
                ),
                "listen": s.Listen(default=":80", doc="a port or ADDRESS:PORT"),
                "server_name": s.List(
                    s.Str(
                        r"(?:\*\.)?[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|_",
                        hint="a host name (or *.domain, or _)",
                    ),
                    max_items=64,
                    default=[],
                    doc="default: the minion id",
                ),
                "proxy_connect_timeout": s.Int(1, 3600, default=5, doc="seconds"),
                "proxy_read_timeout": s.Int(
                    1, 3600, default=300, doc="seconds (slow PDF/video jobs; 60 answered 504)"
                ),
                "proxy_send_timeout": s.Int(1, 3600, default=300, doc="seconds"),
                "access_log": s.Path(
                    default="/var/log/nginx/thumbnail-server.access.log", doc="the site's log"
                ),
                "error_log": s.Path(
                    default="/var/log/nginx/thumbnail-server.error.log", doc="the site's log"
                ),
            },
        ),
        "systemd": s.Map(
            {
                "unit": s.Str(
                    r"[A-Za-z0-9_.-]{1,200}\.service",
                    default="thumbnail-server.service",
                    hint="NAME.service",
                    doc="the service's unit",
                ),
                "user": _user(default="seafile", doc="the system user it runs as"),
                "group": _user(default="seafile"),
                "manage_user": s.Bool(default=True, doc="create the user and group"),
                "install_dir": s.Path(
                    default="/opt/seafile-thumbnail", doc="releases/<version>/ and current"
                ),
                "release": s.Map(
                    {
                        "version": s.Str(
                            r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}",
                            nullable=True,
                            hint="the release's version, e.g. 13.0.7-site1",
                        ),
                        "source": s.Url(
                            ("http", "https", "salt", "ftp"), nullable=True, doc="the archive"
                        ),
                        "sha256": s.Str(
                            r"[0-9a-fA-F]{64}",
                            nullable=True,
                            hint="the archive's sha256",
                            doc="checked before anything is unpacked",
                        ),
                    },
                    doc="required in systemd mode: version, source and sha256",
                ),
                "workdir": _in_release(default="thumbnail-server", doc="where main.py is"),
                "command": s.List(
                    ARG,
                    min_items=1,
                    max_items=32,
                    default=["/usr/bin/python3", "main.py"],
                    doc="an absolute program and its arguments (no secrets)",
                ),
                "packages": s.List(
                    PACKAGE, max_items=64, default=["python3"], doc="what the release needs"
                ),
                "media_packages": s.List(
                    PACKAGE,
                    max_items=64,
                    default=["poppler-utils", "ffmpeg"],
                    doc="what PDF and video thumbnails run (upstream's image has them)",
                ),
                "python_path": s.List(
                    _in_release(min_len=1),
                    max_items=16,
                    default=["seafile/lib/python3/site-packages"],
                    doc="PYTHONPATH (seafobj, as in upstream's image)",
                ),
                "seafile_dir": s.Path(
                    default="/opt/seafile", doc="conf/, seafile-data/, seahub-data/, logs/"
                ),
                "restart_sec": s.Int(0, 3600, default=2, doc="RestartSec="),
                "memory_guard": s.Map(
                    {
                        "enabled": s.Bool(default=True, doc="restart above memory_limit"),
                        "interval": s.Int(1, 3600, default=10, doc="seconds between samples"),
                        "samples": s.Int(1, 100, default=3, doc="samples above the limit"),
                    },
                ),
            },
        ),
        "docker": s.Map(
            {
                "project_dir": s.Path(default="/opt/seafile-thumbnail", doc="the compose project"),
                "project_name": s.Str(
                    r"[a-z0-9][a-z0-9_-]{0,62}",
                    default="seafile-thumbnail",
                    hint="lower-case letters, digits, - and _",
                ),
                "image": s.Str(
                    r"[A-Za-z0-9._/:@-]{1,512}",
                    nullable=True,
                    check=_pinned_image,
                    hint="a pinned image reference",
                    doc="required in docker mode",
                ),
                "container_name": s.Str(
                    r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}",
                    default="thumbnail-server",
                    hint="a container name",
                ),
                "restart": s.Enum("no", "always", "on-failure", "unless-stopped", default="always"),
                "seafile_volume": s.Path(default="/opt/seafile-data", doc="mounted at /shared"),
                "compose_command": s.List(
                    ARG,
                    min_items=1,
                    max_items=8,
                    default=["docker", "compose"],
                    doc="how compose is run (v2)",
                    check=lambda argv: (
                        "must start with a program, not an option"
                        if argv[0].startswith("-")
                        else None
                    ),
                ),
                "manage_up": s.Bool(default=True, doc="run up -d from Salt"),
            },
        ),
    }
)


def _env_problems(name: str, value, mode: str) -> str | None:
    """Why ``value`` cannot go into the env file of ``mode``'s reader, if it cannot."""
    writer = (
        opskit_formats.systemd_env_file if mode == "systemd" else opskit_formats.compose_env_file
    )
    try:
        writer({name: value})
    except opskit_formats.UnsafeValue as err:
        return err.reason
    return None


def check_private(secrets: dict, env: dict, storage_type: str, mode: str):
    """Problems of the secrets and the extra env values, as ``(key path, message)``
    (values never shown): required secrets, names the formula manages, and values the
    env file's reader cannot take."""
    required = ["jwt_private_key", "db_password"]
    if storage_type == "s3":
        required += ["s3_key_id", "s3_secret_key"]
    for key, variable in SECRETS.items():
        value = (secrets or {}).get(key)
        path = f"{ROOT}:secrets:{key}"
        if value in (None, ""):
            if key in required:
                why = " with storage type s3" if key.startswith("s3_") else ""
                yield path, f"is required{why} (from the CMDB)"
            continue
        problem = _env_problems(variable, value, mode)
        if problem:
            yield path, f"cannot be written to the env file: it {problem}"
    for name, value in sorted((env or {}).items()):
        path = f"{ROOT}:env:{name}"
        if name in SECRETS.values():
            yield path, "is a secret: put it under thumbnail_server:secrets"
        elif name in MANAGED_ENV:
            yield path, "is set by the formula from its own settings; set those instead"
        else:
            text = ("true" if value else "false") if isinstance(value, bool) else value
            problem = _env_problems(name, text, mode)
            if problem:
                yield path, f"cannot be written to the env file: it {problem}"


def check(settings):
    """Rules across keys (the schema checked each value on its own)."""
    root, mode = ROOT, settings["mode"]
    original, limit = settings["image_original_size_limit"], settings["memory_limit"]
    if original >= limit:
        yield (
            f"{root}:image_original_size_limit",
            original,
            f"{original} MB is not below memory_limit ({limit} MB): one image could decode to "
            "more than the service may use, and it would be killed instead of refusing the image",
        )
    program = settings["systemd"]["command"][0]
    if not program.startswith("/") or any(p in (".", "..") for p in program.split("/")):
        yield (
            f"{root}:systemd:command:0",
            program,
            "must be an absolute program path (systemd runs it without a shell)",
        )
    if mode == "systemd":
        if settings["port"] != UPSTREAM_PORT:
            yield (
                f"{root}:port",
                settings["port"],
                f"must be {UPSTREAM_PORT} in systemd mode: upstream's main.py binds "
                f"127.0.0.1:{UPSTREAM_PORT} and has no setting for another port",
            )
        release = settings["systemd"]["release"]
        for key, what in (
            ("version", "the release's version, e.g. 13.0.7-site1"),
            ("source", "the archive's URL"),
            ("sha256", "the archive's sha256 (nothing is installed unverified)"),
        ):
            if not release.get(key):
                yield f"{root}:systemd:release:{key}", f"is required in systemd mode: {what}"
    elif not settings["docker"].get("image"):
        yield (
            f"{root}:docker:image",
            "is required in docker mode: a pinned image, e.g. "
            "seafileltd/thumbnail-server:13.0.<n> or ...@sha256:<digest>",
        )
    storage = settings["storage"]
    if storage["type"] == "s3":
        for key in ("commit_bucket", "fs_bucket", "block_bucket"):
            if not storage["s3"].get(key):
                yield f"{root}:storage:s3:{key}", "is required with storage type s3"
    for key in ("inner_seahub_service_url", "site_root", "time_zone"):
        problem = _env_problems("X", settings["seafile"][key], mode)
        if problem:
            yield f"{root}:seafile:{key}", settings["seafile"][key], problem
    yield from check_private(settings["secrets"], settings["env"], storage["type"], mode)
