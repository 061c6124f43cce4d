"""Seafile 13 thumbnail-server: checking the formula's settings, building the service's
environment, the env file and the docker compose file. Plain functions without Salt,
shared by ``_modules/thumbnail_server.py`` and the tests.

Upstream facts used here, and where they come from (haiwen/seafile-thumbnail-server
and haiwen/seafile-admin-docs, Seafile 13.0):

- The official compose file (``manual/repo/docker/thumbnail-server.yml`` and the
  standalone ``manual/repo/docker/thumbnail-server/thumbnail-server.yml``): image
  ``seafileltd/thumbnail-server:13.0-latest``, ``restart: always``, the volume
  ``${SEAFILE_VOLUME:-/opt/seafile-data}:/shared``, the container's port 80, and the
  environment ``TIME_ZONE``, ``SEAFILE_MYSQL_DB_HOST/PORT/USER/PASSWORD``,
  ``SEAFILE_MYSQL_DB_CCNET_DB_NAME``, ``SEAFILE_MYSQL_DB_SEAFILE_DB_NAME``,
  ``NON_ROOT``, ``JWT_PRIVATE_KEY``, ``SEAFILE_LOG_TO_STDOUT``, ``SITE_ROOT``,
  ``INNER_SEAHUB_SERVICE_URL``, ``THUMBNAIL_IMAGE_ORIGINAL_SIZE_LIMIT``,
  ``SEAF_SERVER_STORAGE_TYPE`` and ``S3_COMMIT_BUCKET``, ``S3_FS_BUCKET``,
  ``S3_BLOCK_BUCKET``, ``S3_KEY_ID``, ``S3_SECRET_KEY``, ``S3_USE_V4_SIGNATURE``,
  ``S3_AWS_REGION``, ``S3_HOST``, ``S3_USE_HTTPS``, ``S3_PATH_STYLE_REQUEST``,
  ``S3_SSE_C_KEY``. ``SEAFILE_MYSQL_DB_PASSWORD`` and ``JWT_PRIVATE_KEY`` are required
  there (``${...:?Variable is not set or empty}``).
- ``manual/config/env.md``: ``JWT_PRIVATE_KEY`` is "a random string with a length of no
  less than 32 characters"; ``SEAF_SERVER_STORAGE_TYPE`` is ``disk``, ``s3``,
  ``multiple`` or empty (seafile.conf decides); ``SEAFILE_MYSQL_DB_SEAHUB_DB_NAME``
  defaults to ``seahub_db``.
- ``seafile_thumbnail/settings.py``: the app reads ``THUMBNAIL_TASK_WORKERS`` (default
  3; a thread each for the image, PDF, video and SeaDoc queues per worker),
  ``THUMBNAIL_IMAGE_SIZE_LIMIT`` (MB, default 30), ``THUMBNAIL_IMAGE_ORIGINAL_SIZE_LIMIT``
  (MB, default 256), ``CONF_DIR``, ``LOG_DIR``, ``THUMBNAIL_ROOT``,
  ``INNER_SEAHUB_SERVICE_URL``, ``SITE_ROOT``, ``JWT_PRIVATE_KEY`` and the
  ``SEAFILE_MYSQL_DB_*`` variables.
- ``seafile_thumbnail/thumbnail_task_manager.py``: ``THUMBNAIL_MEMORY_LIMIT`` (MB,
  default 4096) is the app's own limit: once a minute its monitor thread reads the
  process's resident memory (``/proc/self/statm``) and exits with status 1 above it, for
  its supervisor to restart it. opskit sets the same value for the kernel
  (``MemoryMax=``/``mem_limit``) and its memory guard; the default is upstream's 4096,
  as production showed: steady state stays under 2 GiB, and 2048 restarted the service
  too often under bursts of large images.
- ``seafile_thumbnail/thumbnail.py``: an image whose file is larger than
  ``THUMBNAIL_IMAGE_SIZE_LIMIT`` MB, or whose ``width * height * 4`` bytes exceed
  ``THUMBNAIL_IMAGE_ORIGINAL_SIZE_LIMIT`` MB, is refused instead of decoded; PDF pages
  are rendered by poppler's ``pdftoppm`` (and ``pdfinfo``), video frames by ``ffprobe``
  and ``ffmpeg``, all run as programs: upstream's ``docker/Dockerfile`` installs
  ``poppler-utils`` and ``ffmpeg`` for them, so systemd mode installs them too
  (``systemd:media_packages``).
- ``seafile_thumbnail/http_request.py`` (``parse_url``): the app routes on the request
  path with ``SITE_ROOT`` cut off the front, so under a ``SITE_ROOT`` other than ``/`` it
  answers ``<SITE_ROOT>ping``, not ``/ping``: the health URL and the nginx site's ping
  location follow ``seafile:site_root``.
- ``main.py``: uvicorn serves the app on port 8088 (``uvicorn.Config(app, port=8088)``,
  uvicorn's default host 127.0.0.1); ``app.py`` answers ``GET <SITE_ROOT>ping`` with
  ``pong``. In the image, runit starts it (``docker/scripts/thumbnail-runit.sh``: ``cd
  /opt/seafile/thumbnail-server``, ``exec python3 main.py``, with ``CONF_DIR``,
  ``LOG_DIR``, ``THUMBNAIL_ROOT`` and ``SEAFILE_CONF_DIR`` under ``/opt/seafile`` and
  ``PYTHONPATH=/opt/seafile/seafile/lib/python3/site-packages``, where
  ``docker/Dockerfile`` puts seafobj, the storage library the app imports): systemd mode
  sets ``PYTHONPATH`` from ``systemd:python_path``, directories inside the release.
- ``docker/scripts/default`` is the site of the container's own nginx on port 80
  (``/etc/nginx/sites-enabled/default``). Revisions of it (2b3320a) proxy to
  ``http://localhost:8088``, which resolves to ``::1`` first where nothing listens (a
  later one, 2d2e30a, to ``127.0.0.1``), and all keep nginx's 60 s proxy timeouts, shorter
  than slow PDF and video jobs: docker mode mounts its own site over that directory,
  proxying to ``127.0.0.1:8088`` with the host site's timeouts, whichever image runs.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import urllib.parse

import yaml

UPSTREAM_PORT = 8088
CONTAINER_PORT = 80
COMPOSE_SERVICE = "thumbnail-server"
ENV_FILE_NAME = "thumbnail-server.env"
COMPOSE_FILE_NAME = "thumbnail-server.yml"
OVERRIDE_FILE_NAME = "thumbnail-server.opskit-jemalloc.yml"
# The container's nginx reads its sites from here (upstream docker/Dockerfile moves
# docker/scripts/default there); docker mode mounts <project_dir>/nginx-sites over it,
# a directory rather than the file, so that a rewritten file (a new inode) is what the
# container sees.
CONTAINER_SITES_DIR = "/etc/nginx/sites-enabled"
SITES_DIR_NAME = "nginx-sites"
MIN_JWT_KEY = 32

# Secret variables: only ever written to the 0600 env file.
SECRETS = {
    "jwt_private_key": "JWT_PRIVATE_KEY",
    "db_password": "SEAFILE_MYSQL_DB_PASSWORD",
    "s3_key_id": "S3_KEY_ID",
    "s3_secret_key": "S3_SECRET_KEY",
    "s3_sse_c_key": "S3_SSE_C_KEY",
}
SECRET_ENV = frozenset(SECRETS.values())
# Variables the formula writes itself; pillar `env` may not set them.
MANAGED_ENV = frozenset(
    {
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
STORAGE_TYPES = ("", "disk", "s3", "multiple")
RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")
MODES = ("systemd", "docker")
# (minimum, maximum) of the tuning knobs; see the README for the reasoning.
RANGES = {
    "task_workers": (1, 256),
    "image_size_limit": (1, 10240),
    "image_original_size_limit": (16, 65536),
    "memory_limit": (256, 1048576),
}
TOP_KEYS = {
    "mode",
    "port",
    *RANGES,
    "seafile",
    "database",
    "storage",
    "secrets",
    "env",
    "config_dir",
    "jemalloc",
    "health",
    "nginx",
    "systemd",
    "docker",
}

ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.$-]{0,63}$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
UNIT_RE = re.compile(r"^[A-Za-z0-9_.-]+\.service$")
SITE_RE = re.compile(r"^[A-Za-z0-9._-]+$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]{0,63}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
ARG_RE = re.compile(r"^[A-Za-z0-9_./:=,+@-]+$")
TZ_RE = re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")
HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
SERVER_NAME_RE = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$|^_$")
PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
CONTAINER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
IMAGE_NAME_RE = re.compile(
    r"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$"
)
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


class InvalidSettings(ValueError):
    """The settings have problems; ``problems`` lists each one ("key: what is wrong")."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class _Problems:
    def __init__(self):
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(f"thumbnail_server:{key}: {message}")


def _show(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _int(value, key, problems, low, high):
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(key, f"must be a whole number from {low} to {high}, not {_show(value)}")
        return None
    if not low <= value <= high:
        problems.add(key, f"must be from {low} to {high}, not {value}")
        return None
    return value


def _bool(value, key, problems):
    if isinstance(value, bool):
        return value
    problems.add(key, f"must be true or false, not {_show(value)}")
    return False


def _str(value, key, problems, pattern=None, *, hint="", required=True):
    if value is None or value == "":
        if required:
            problems.add(key, "is required" + (f" ({hint})" if hint else ""))
        return None
    if not isinstance(value, str):
        problems.add(key, f"must be a string, not {_show(value)}")
        return None
    if pattern is not None and not pattern.match(value):
        problems.add(key, f"{value!r} is not valid" + (f" ({hint})" if hint else ""))
        return None
    return value


def _abs_path(value, key, problems):
    path = _str(value, key, problems)
    if path is None:
        return None
    if not path.startswith("/") or "\n" in path or ".." in path.split("/") or " " in path:
        problems.add(key, f"must be an absolute path without spaces or '..', not {path!r}")
        return None
    return path.rstrip("/") or "/"


def _url(value, key, problems, schemes=("http", "https"), required=True):
    text = _str(value, key, problems, required=required, hint="for example https://host")
    if text is None:
        return None
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in schemes or not parsed.hostname or any(c in text for c in " \n'\""):
        problems.add(key, f"must be a {'/'.join(schemes)} URL, not {text!r}")
        return None
    if parsed.password:
        problems.add(key, "must not carry a password (credentials go under secrets)")
        return None
    return text


def _mapping(value, key, problems, known=None):
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(key, f"must be a mapping, not {_show(value)}")
        return {}
    if known is not None:
        for unknown in sorted(set(value) - set(known), key=str):
            problems.add(f"{key}:{unknown}", f"unknown key (known: {', '.join(sorted(known))})")
    return value


def _env_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _value_problem(value: str, syntax: str) -> str | None:
    """Why ``value`` cannot be written to an env file of ``syntax``, if it cannot."""
    if any(c in value for c in "\n\r\0"):
        return "must be a single line"
    if syntax == "compose" and "'" in value:
        return (
            "must not contain a single quote: the docker compose env file quotes values "
            "with single quotes (taken literally)"
        )
    if syntax == "compose" and value.endswith("\\"):
        return "must not end with a backslash: docker compose would read \\' as a quote"
    return None


def _image(value, problems):
    text = _str(
        value,
        "docker:image",
        problems,
        hint="a pinned image, e.g. seafileltd/thumbnail-server:13.0.<n> or ...@sha256:<digest>",
    )
    if text is None:
        return None
    name, _, digest = text.partition("@")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    if not IMAGE_NAME_RE.match(name) or (tag is not None and not TAG_RE.match(tag)):
        problems.add("docker:image", f"{text!r} is not an image reference")
        return None
    if digest:
        if not DIGEST_RE.match(digest):
            problems.add("docker:image", f"{text!r}: a digest is sha256:<64 hex digits>")
            return None
        return text
    if tag is None or tag == "latest" or tag.endswith("-latest"):
        problems.add(
            "docker:image",
            f"{text!r} is not pinned: {'no tag' if tag is None else 'tag ' + repr(tag)} "
            "moves with every release. Pin a release tag (seafileltd/thumbnail-server:"
            "13.0.<n>) or a digest (<image>@sha256:<64 hex digits>)",
        )
        return None
    return text


def _listen(value, problems):
    key = "nginx:listen"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(_int(value, key, problems, 1, 65535) or "")
    if isinstance(value, str) and value.rpartition(":")[2].isdigit():
        host, _, port = value.rpartition(":")
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            problems.add(key, f"{value!r}: {host!r} is not an IP address")
            return None
        if not 1 <= int(port) <= 65535:
            problems.add(key, f"{value!r}: the port must be from 1 to 65535")
            return None
        return value
    problems.add(key, f"must be a port or ADDRESS:PORT, not {_show(value)}")
    return None


def _check_tuning(config, problems):
    for key, (low, high) in RANGES.items():
        config[key] = _int(config.get(key), key, problems, low, high)
    original, limit = config["image_original_size_limit"], config["memory_limit"]
    if original is not None and limit is not None and original >= limit:
        problems.add(
            "image_original_size_limit",
            f"{original} MB is not below memory_limit ({limit} MB): one image could "
            "decode to more than the service may use, and it would be killed instead of "
            "refusing the image",
        )


def _check_seafile(config, problems):
    sea = _mapping(
        config.get("seafile"),
        "seafile",
        problems,
        ("inner_seahub_service_url", "site_root", "time_zone"),
    )
    url = _url(sea.get("inner_seahub_service_url"), "seafile:inner_seahub_service_url", problems)
    root = _str(sea.get("site_root"), "seafile:site_root", problems)
    if root is not None and not (root.startswith("/") and root.endswith("/") and " " not in root):
        problems.add("seafile:site_root", f"must start and end with '/', not {root!r}")
    zone = _str(
        sea.get("time_zone"),
        "seafile:time_zone",
        problems,
        TZ_RE,
        hint="an IANA zone such as Etc/UTC or Europe/Berlin",
    )
    config["seafile"] = {"inner_seahub_service_url": url, "site_root": root, "time_zone": zone}


def _check_database(config, problems):
    keys = ("host", "port", "user", "ccnet_db_name", "seafile_db_name", "seahub_db_name")
    db = _mapping(config.get("database"), "database", problems, keys)
    out = {
        "host": _str(db.get("host"), "database:host", problems, HOST_RE, hint="a host name or IP")
    }
    out["port"] = _int(db.get("port"), "database:port", problems, 1, 65535)
    for key in ("user", "ccnet_db_name", "seafile_db_name", "seahub_db_name"):
        out[key] = _str(db.get(key), f"database:{key}", problems, NAME_RE)
    config["database"] = out


def _check_storage(config, problems):
    storage = _mapping(config.get("storage"), "storage", problems, ("type", "s3"))
    kind = storage.get("type") if storage.get("type") is not None else ""
    if kind not in STORAGE_TYPES:
        problems.add("storage:type", f'must be one of disk, s3, multiple or "", not {kind!r}')
    s3_keys = (
        "commit_bucket",
        "fs_bucket",
        "block_bucket",
        "aws_region",
        "host",
        "use_https",
        "use_v4_signature",
        "path_style_request",
    )
    s3 = _mapping(storage.get("s3"), "storage:s3", problems, s3_keys)
    out = {"type": kind, "s3": {}}
    if kind == "s3":
        for key in ("commit_bucket", "fs_bucket", "block_bucket"):
            out["s3"][key] = _str(
                s3.get(key),
                f"storage:s3:{key}",
                problems,
                NAME_RE,
                hint="required with storage type s3",
            )
        out["s3"]["aws_region"] = _str(
            s3.get("aws_region"), "storage:s3:aws_region", problems, NAME_RE
        )
        out["s3"]["host"] = _str(
            s3.get("host"),
            "storage:s3:host",
            problems,
            re.compile(r"^[A-Za-z0-9.-]+(:[0-9]+)?$"),
            required=False,
        )
        for key in ("use_https", "use_v4_signature", "path_style_request"):
            out["s3"][key] = _bool(s3.get(key), f"storage:s3:{key}", problems)
    config["storage"] = out


def check_secrets(secrets, storage_type: str, syntax: str) -> list[str]:
    """Problems with the secrets (never showing a value)."""
    problems = _Problems()
    secrets = _mapping(secrets, "secrets", problems, SECRETS)
    required = ["jwt_private_key", "db_password"]
    if storage_type == "s3":
        required += ["s3_key_id", "s3_secret_key"]
    for key in SECRETS:
        value = secrets.get(key)
        if value is None or value == "":
            if key in required:
                why = " with storage type s3" if key.startswith("s3") else ""
                problems.add(f"secrets:{key}", f"is required{why} (from the CMDB)")
            continue
        if not isinstance(value, str):
            problems.add(f"secrets:{key}", f"must be a string, not a {type(value).__name__}")
            continue
        problem = _value_problem(value, syntax)
        if problem:
            problems.add(f"secrets:{key}", problem)
    key = secrets.get("jwt_private_key")
    if isinstance(key, str) and 0 < len(key) < MIN_JWT_KEY:
        problems.add(
            "secrets:jwt_private_key",
            f"must be at least {MIN_JWT_KEY} characters (it has {len(key)}); Seafile's "
            "manual: pwgen -s 40 1",
        )
    return problems.items


def _check_env(config, syntax, problems):
    env = _mapping(config.get("env"), "env", problems)
    out = {}
    for name, value in sorted(env.items(), key=lambda kv: str(kv[0])):
        key = f"env:{name}"
        if not isinstance(name, str) or not ENV_NAME_RE.match(name):
            problems.add(key, "is not an environment variable name (A-Z, 0-9, _)")
        elif name in SECRET_ENV:
            problems.add(key, "is a secret: put it under thumbnail_server:secrets")
        elif name in MANAGED_ENV:
            problems.add(key, "is set by the formula from its own settings; set those instead")
        elif isinstance(value, (dict, list)) or value is None:
            problems.add(key, f"must be a string, number or boolean, not {_show(value)}")
        else:
            text = _env_value(value)
            problem = _value_problem(text, syntax)
            if problem:
                problems.add(key, problem)
            else:
                out[name] = text
    config["env"] = out


def _check_jemalloc(config, problems):
    jm = _mapping(config.get("jemalloc"), "jemalloc", problems, ("enabled", "malloc_conf"))
    enabled = _bool(jm.get("enabled"), "jemalloc:enabled", problems)
    conf = jm.get("malloc_conf")
    if conf is not None and (
        not isinstance(conf, str) or not re.match(r"^[A-Za-z0-9_:,.]*$", conf)
    ):
        problems.add("jemalloc:malloc_conf", f"is not a MALLOC_CONF string: {_show(conf)}")
        conf = None
    config["jemalloc"] = {"enabled": enabled, "malloc_conf": conf or None}


def _check_health(config, problems):
    health = _mapping(config.get("health"), "health", problems, ("path", "timeout"))
    path = _str(health.get("path"), "health:path", problems, re.compile(r"^/[A-Za-z0-9/._-]*$"))
    timeout = _int(health.get("timeout"), "health:timeout", problems, 1, 600)
    port, root = config.get("port"), config["seafile"].get("site_root")
    # The app routes on the path after SITE_ROOT (http_request.py parse_url): its health
    # path lives under the site root.
    config["health"] = {
        "path": path,
        "timeout": timeout,
        "url": f"http://127.0.0.1:{port}{root}{path[1:]}" if port and path and root else None,
    }


def _check_nginx(config, minion, problems):
    keys = (
        "enabled",
        "site_name",
        "listen",
        "server_name",
        "proxy_connect_timeout",
        "proxy_read_timeout",
        "proxy_send_timeout",
        "access_log",
        "error_log",
    )
    ngx = _mapping(config.get("nginx"), "nginx", problems, keys)
    out = {"enabled": _bool(ngx.get("enabled"), "nginx:enabled", problems)}
    out["site_name"] = _str(ngx.get("site_name"), "nginx:site_name", problems, SITE_RE)
    out["listen"] = _listen(ngx.get("listen"), problems)
    names = ngx.get("server_name") or [minion]
    if not isinstance(names, list) or not all(
        isinstance(n, str) and SERVER_NAME_RE.match(n) for n in names
    ):
        problems.add("nginx:server_name", f"must be a list of host names, not {_show(names)}")
        names = []
    out["server_name"] = names
    for key in ("proxy_connect_timeout", "proxy_read_timeout", "proxy_send_timeout"):
        out[key] = _int(ngx.get(key), f"nginx:{key}", problems, 1, 3600)
    for key in ("access_log", "error_log"):
        out[key] = _abs_path(ngx.get(key), f"nginx:{key}", problems)
    config["nginx"] = out


def _check_release(release, problems):
    rel = _mapping(release, "systemd:release", problems, ("version", "source", "sha256"))
    version = _str(
        rel.get("version"),
        "systemd:release:version",
        problems,
        VERSION_RE,
        hint="the release's version, e.g. 13.0.7-site1",
    )
    source = _url(
        rel.get("source"),
        "systemd:release:source",
        problems,
        schemes=("http", "https", "salt", "ftp"),
    )
    digest = rel.get("sha256")
    if not isinstance(digest, str) or not SHA256_RE.match(digest.lower()):
        problems.add(
            "systemd:release:sha256",
            f"is required: the archive's sha256 (64 hex digits), not {_show(digest)}; "
            "nothing is installed unverified",
        )
        digest = None
    return {
        "version": version,
        "source": source,
        "sha256": digest and digest.lower(),
        "source_hash": digest and f"sha256={digest.lower()}",
    }


def _inside_release(path: str) -> bool:
    return (
        not path.startswith("/")
        and ".." not in path.split("/")
        and re.match(r"^[A-Za-z0-9._/-]*\Z", path) is not None
    )


def _check_systemd(config, problems):
    keys = (
        "unit",
        "user",
        "group",
        "manage_user",
        "install_dir",
        "release",
        "workdir",
        "command",
        "packages",
        "media_packages",
        "python_path",
        "seafile_dir",
        "restart_sec",
        "memory_guard",
    )
    sd = _mapping(config.get("systemd"), "systemd", problems, keys)
    out = {
        "unit": _str(sd.get("unit"), "systemd:unit", problems, UNIT_RE, hint="NAME.service"),
        "user": _str(sd.get("user"), "systemd:user", problems, USER_RE),
        "group": _str(sd.get("group"), "systemd:group", problems, USER_RE),
        "manage_user": _bool(sd.get("manage_user"), "systemd:manage_user", problems),
        "install_dir": _abs_path(sd.get("install_dir"), "systemd:install_dir", problems),
        "seafile_dir": _abs_path(sd.get("seafile_dir"), "systemd:seafile_dir", problems),
        "restart_sec": _int(sd.get("restart_sec"), "systemd:restart_sec", problems, 0, 3600),
        "release": _check_release(sd.get("release"), problems),
    }
    workdir = sd.get("workdir") or ""
    if not isinstance(workdir, str) or not _inside_release(workdir):
        problems.add("systemd:workdir", f"must be a path inside the release, not {workdir!r}")
        workdir = ""
    command = sd.get("command")
    if not (
        isinstance(command, list)
        and command
        and all(isinstance(a, str) and ARG_RE.match(a) for a in command)
        and command[0].startswith("/")
    ):
        problems.add(
            "systemd:command",
            "must be a list: an absolute program and its arguments (letters, digits and "
            f"_./:=,+@- only; no secrets), not {_show(command)}",
        )
        command = []
    packages = []
    for key in ("packages", "media_packages"):
        names = sd.get(key) or []
        if not isinstance(names, list) or not all(
            isinstance(p, str) and re.match(r"^[a-z0-9][a-z0-9.+-]*$", p) for p in names
        ):
            problems.add(f"systemd:{key}", f"must be a list of package names, not {names!r}")
            names = []
        packages += [p for p in names if p not in packages]
    python_path = sd.get("python_path") or []
    if not isinstance(python_path, list) or not all(
        isinstance(p, str) and _inside_release(p) and p.strip("/") for p in python_path
    ):
        problems.add(
            "systemd:python_path",
            f"must be a list of directories inside the release, not {_show(python_path)}",
        )
        python_path = []
    guard = _mapping(
        sd.get("memory_guard"), "systemd:memory_guard", problems, ("enabled", "interval", "samples")
    )
    out["memory_guard"] = {
        "enabled": _bool(guard.get("enabled"), "systemd:memory_guard:enabled", problems),
        "interval": _int(guard.get("interval"), "systemd:memory_guard:interval", problems, 1, 3600),
        "samples": _int(guard.get("samples"), "systemd:memory_guard:samples", problems, 1, 100),
    }
    out.update(
        workdir=workdir.strip("/"),
        command=command,
        packages=packages,
        python_path=[p.strip("/") for p in python_path],
    )
    config["systemd"] = out


def _check_docker(config, problems):
    keys = (
        "project_dir",
        "project_name",
        "image",
        "container_name",
        "restart",
        "seafile_volume",
        "compose_command",
        "manage_up",
    )
    dk = _mapping(config.get("docker"), "docker", problems, keys)
    out = {
        "project_dir": _abs_path(dk.get("project_dir"), "docker:project_dir", problems),
        "project_name": _str(
            dk.get("project_name"),
            "docker:project_name",
            problems,
            PROJECT_RE,
            hint="lower-case letters, digits, - and _",
        ),
        "image": _image(dk.get("image"), problems),
        "container_name": _str(
            dk.get("container_name"), "docker:container_name", problems, CONTAINER_RE
        ),
        "seafile_volume": _abs_path(dk.get("seafile_volume"), "docker:seafile_volume", problems),
        "manage_up": _bool(dk.get("manage_up"), "docker:manage_up", problems),
    }
    restart = dk.get("restart")
    if restart not in RESTART_POLICIES:
        problems.add(
            "docker:restart", f"must be one of {', '.join(RESTART_POLICIES)}, not {_show(restart)}"
        )
    out["restart"] = restart
    command = dk.get("compose_command")
    if not (
        isinstance(command, list)
        and command
        and all(isinstance(a, str) and ARG_RE.match(a) for a in command)
    ):
        problems.add(
            "docker:compose_command",
            f"must be a list such as [docker, compose], not {_show(command)}",
        )
        command = []
    out["compose_command"] = command
    config["docker"] = out


def _unit_name(name: str) -> str:
    return name if "." in name else f"{name}.service"


def _check_conflicts(settings, tuning, problems):
    """Only one state may manage a unit's jemalloc drop-in (or a compose override)."""
    jm = (tuning or {}).get("jemalloc") if isinstance(tuning, dict) else None
    if not isinstance(jm, dict) or not settings["jemalloc"]["enabled"]:
        return
    units = jm.get("units") if isinstance(jm.get("units"), dict) else {}
    compose = jm.get("compose") if isinstance(jm.get("compose"), dict) else {}
    if settings["mode"] == "systemd":
        unit = settings["systemd"]["unit"]
        if unit and any(_unit_name(str(u)) == unit for u in units):
            problems.add(
                "jemalloc",
                f"pillar tuning:jemalloc:units also lists {unit}, whose jemalloc drop-in "
                "this formula manages (thumbnail_server:jemalloc); remove it from "
                "tuning:jemalloc:units",
            )
    elif settings["docker"].get("override_file") in compose:
        problems.add(
            "jemalloc",
            f"pillar tuning:jemalloc:compose also lists {settings['docker']['override_file']}, "
            "which this formula writes (thumbnail_server:jemalloc); remove it from "
            "tuning:jemalloc:compose",
        )


def validate(config, minion: str, tuning=None) -> dict:
    """Check the formula's merged settings; return them ready for the templates.

    Secrets are checked but not returned (only the names of the secret variables that
    will be set). Raises :class:`InvalidSettings` listing every problem.
    """
    problems = _Problems()
    if not isinstance(config, dict):
        raise InvalidSettings([f"thumbnail_server: must be a mapping, not {_show(config)}"])
    settings = copy.deepcopy(config)
    settings.pop("lookup", None)
    for unknown in sorted(set(settings) - TOP_KEYS, key=str):
        problems.add(str(unknown), f"unknown key (known: {', '.join(sorted(TOP_KEYS))})")
    mode = settings.get("mode")
    if mode not in MODES:
        problems.add("mode", f"must be systemd or docker, not {_show(mode)}")
        raise InvalidSettings(problems.items)
    syntax = "systemd" if mode == "systemd" else "compose"
    settings["env_syntax"] = syntax
    settings["port"] = _int(settings.get("port"), "port", problems, 1, 65535)
    if mode == "systemd" and settings["port"] not in (None, UPSTREAM_PORT):
        problems.add(
            "port",
            f"must be {UPSTREAM_PORT} in systemd mode: upstream's main.py binds "
            f"127.0.0.1:{UPSTREAM_PORT} and has no setting for another port",
        )
    _check_tuning(settings, problems)
    _check_seafile(settings, problems)
    _check_database(settings, problems)
    _check_storage(settings, problems)
    secrets = settings.pop("secrets", None)
    problems.items += check_secrets(secrets, settings["storage"]["type"], syntax)
    settings["secret_env"] = sorted(
        env for key, env in SECRETS.items() if isinstance(secrets, dict) and secrets.get(key)
    )
    _check_env(settings, syntax, problems)
    for key in ("inner_seahub_service_url", "site_root", "time_zone"):
        value = settings["seafile"].get(key)
        problem = value and _value_problem(value, syntax)
        if problem:
            problems.add(f"seafile:{key}", problem)
    settings["config_dir"] = _abs_path(settings.get("config_dir"), "config_dir", problems)
    settings["env_file"] = f"{settings['config_dir']}/{ENV_FILE_NAME}"
    _check_jemalloc(settings, problems)
    _check_health(settings, problems)
    _check_nginx(settings, minion, problems)
    settings["backend"] = f"http://127.0.0.1:{settings['port']}"
    if mode == "systemd":
        _check_systemd(settings, problems)
        settings.pop("docker", None)
        _systemd_paths(settings)
    else:
        _check_docker(settings, problems)
        settings.pop("systemd", None)
        _docker_paths(settings)
    _check_conflicts(settings, tuning, problems)
    if problems.items:
        raise InvalidSettings(problems.items)
    return settings


def _systemd_paths(settings):
    sd = settings["systemd"]
    install, version = sd["install_dir"], sd["release"].get("version")
    sd["release_dir"] = f"{install}/releases/{version}"
    sd["current"] = f"{install}/current"
    sd["working_directory"] = "/".join(p for p in (sd["current"], sd["workdir"]) if p)
    sd["exec_start"] = " ".join(sd["command"])
    base = sd["seafile_dir"]
    sd["log_dir"] = f"{base}/logs"
    sd["thumbnail_root"] = f"{base}/seahub-data/thumbnail"
    sd["memory_max"] = f"{settings['memory_limit']}M"
    stem = (sd["unit"] or "thumbnail-server.service").removesuffix(".service")
    sd["guard_unit"] = f"{stem}-memory-guard.service"


def _docker_paths(settings):
    dk = settings["docker"]
    dk["compose_file"] = f"{dk['project_dir']}/{COMPOSE_FILE_NAME}"
    dk["override_file"] = f"{dk['project_dir']}/{OVERRIDE_FILE_NAME}"
    dk["service"] = COMPOSE_SERVICE
    dk["sites_dir"] = f"{dk['project_dir']}/{SITES_DIR_NAME}"
    dk["container_site"] = f"{dk['sites_dir']}/default"
    dk["container_backend"] = f"http://127.0.0.1:{UPSTREAM_PORT}"
    dk["container_port"] = CONTAINER_PORT
    files = [dk["compose_file"]]
    if settings["jemalloc"]["enabled"]:
        files.append(dk["override_file"])
    args = ["-p", dk["project_name"]]
    for path in files:
        args += ["-f", path]
    dk["compose_args"] = args
    dk["up"] = " ".join([*dk["compose_command"], *args, "up", "-d", "--remove-orphans"])
    # After a change: the container's nginx reads its site only when it starts.
    dk["recreate"] = f"{dk['up']} --force-recreate"
    dk["running_check"] = " ".join(
        [*dk["compose_command"], *args, "ps", "--status", "running", "-q", COMPOSE_SERVICE]
    )


def environment(settings: dict, secrets: dict) -> dict:
    """The service's environment (secrets included), in a stable order."""
    sea, db, storage = settings["seafile"], settings["database"], settings["storage"]
    env = {
        "TIME_ZONE": sea["time_zone"],
        "SITE_ROOT": sea["site_root"],
        "INNER_SEAHUB_SERVICE_URL": sea["inner_seahub_service_url"],
        "JWT_PRIVATE_KEY": secrets.get("jwt_private_key"),
        "SEAFILE_MYSQL_DB_HOST": db["host"],
        "SEAFILE_MYSQL_DB_PORT": str(db["port"]),
        "SEAFILE_MYSQL_DB_USER": db["user"],
        "SEAFILE_MYSQL_DB_PASSWORD": secrets.get("db_password"),
        "SEAFILE_MYSQL_DB_CCNET_DB_NAME": db["ccnet_db_name"],
        "SEAFILE_MYSQL_DB_SEAFILE_DB_NAME": db["seafile_db_name"],
        "SEAFILE_MYSQL_DB_SEAHUB_DB_NAME": db["seahub_db_name"],
        "THUMBNAIL_TASK_WORKERS": str(settings["task_workers"]),
        "THUMBNAIL_IMAGE_SIZE_LIMIT": str(settings["image_size_limit"]),
        "THUMBNAIL_IMAGE_ORIGINAL_SIZE_LIMIT": str(settings["image_original_size_limit"]),
        "THUMBNAIL_MEMORY_LIMIT": str(settings["memory_limit"]),
    }
    if storage["type"]:
        env["SEAF_SERVER_STORAGE_TYPE"] = storage["type"]
    if storage["type"] == "s3":
        s3 = storage["s3"]
        env.update(
            {
                "S3_COMMIT_BUCKET": s3["commit_bucket"],
                "S3_FS_BUCKET": s3["fs_bucket"],
                "S3_BLOCK_BUCKET": s3["block_bucket"],
                "S3_KEY_ID": secrets.get("s3_key_id"),
                "S3_SECRET_KEY": secrets.get("s3_secret_key"),
                "S3_AWS_REGION": s3["aws_region"],
                "S3_HOST": s3["host"] or "",
                "S3_USE_HTTPS": _env_value(s3["use_https"]),
                "S3_USE_V4_SIGNATURE": _env_value(s3["use_v4_signature"]),
                "S3_PATH_STYLE_REQUEST": _env_value(s3["path_style_request"]),
                "S3_SSE_C_KEY": secrets.get("s3_sse_c_key") or "",
            }
        )
    if settings["mode"] == "systemd":
        sd = settings["systemd"]
        env.update(
            {
                "TZ": sea["time_zone"],
                "CONF_DIR": f"{sd['seafile_dir']}/conf",
                "SEAFILE_CENTRAL_CONF_DIR": f"{sd['seafile_dir']}/conf",
                "SEAFILE_CONF_DIR": f"{sd['seafile_dir']}/seafile-data",
                "LOG_DIR": sd["log_dir"],
                "THUMBNAIL_ROOT": sd["thumbnail_root"],
            }
        )
        if sd["python_path"]:
            env["PYTHONPATH"] = ":".join(f"{sd['current']}/{p}" for p in sd["python_path"])
    env.update(settings.get("env") or {})
    return {k: v for k, v in env.items() if v is not None}


_SYSTEMD_ESCAPE = str.maketrans({c: "\\" + c for c in '"\\`$'})


def render_env(env: dict, syntax: str) -> str:
    """The env file: ``KEY="value"`` for systemd's EnvironmentFile= (backslash escapes
    for ``"``, ``\\``, `````` and ``$``, which systemd removes again: systemd's
    env-file parser unescapes exactly these inside double quotes), ``KEY='value'`` for
    docker compose v2's env_file ("single-quoted values are used literally", no
    interpolation: docs.docker.com/compose/env-file; only ``\\'`` is an escape there, so
    values with ``'`` or a trailing backslash are refused). Compose v1 differs: its
    python-dotenv expands ``${VAR}`` even in single quotes."""
    reader = (
        "systemd (EnvironmentFile=)" if syntax == "systemd" else "docker compose v2 (env_file:)"
    )
    lines = [
        "# Managed by Salt (opskit thumbnail-server formula); local changes are lost.",
        f"# Read by {reader}. Mode 0600, root only: it holds secrets.",
    ]
    for name, value in env.items():
        problem = _value_problem(value, syntax)
        if problem:  # validate() refuses these first; this guards direct callers
            raise ValueError(f"{name} {problem}")
        if syntax == "systemd":
            lines.append(f'{name}="{value.translate(_SYSTEMD_ESCAPE)}"')
        else:
            lines.append(f"{name}='{value}'")
    return "\n".join(lines) + "\n"


def parse_env(text: str, syntax: str) -> dict:
    """Read back an env file written by :func:`render_env` (for diffs). Lines it does not
    recognise are skipped."""
    env = {}
    for line in text.splitlines():
        name, sep, raw = line.partition("=")
        if not sep or line.startswith("#") or not ENV_NAME_RE.match(name):
            continue
        if syntax == "systemd" and len(raw) >= 2 and raw[0] == raw[-1] == '"':
            value, chars = [], iter(raw[1:-1])
            for c in chars:
                value.append(next(chars, "") if c == "\\" else c)
            env[name] = "".join(value)
        elif syntax == "compose" and len(raw) >= 2 and raw[0] == raw[-1] == "'":
            env[name] = raw[1:-1]
        else:
            env[name] = raw
    return env


def compose(settings: dict) -> dict:
    """The compose file (no secrets: the environment comes from the env file)."""
    dk = settings["docker"]
    limit = f"{settings['memory_limit']}m"
    return {
        "services": {
            COMPOSE_SERVICE: {
                "image": dk["image"],
                "container_name": dk["container_name"],
                "restart": dk["restart"],
                "env_file": [settings["env_file"]],
                "volumes": [
                    f"{dk['seafile_volume']}:/shared",
                    f"{dk['sites_dir']}:{CONTAINER_SITES_DIR}:ro",
                ],
                "ports": [f"127.0.0.1:{settings['port']}:{CONTAINER_PORT}"],
                # The kernel kills the container's processes above this (cgroup memory
                # controller); swap may not stretch it.
                "mem_limit": limit,
                "memswap_limit": limit,
            }
        }
    }


def render_compose(settings: dict) -> str:
    dk = settings["docker"]
    header = (
        "# Managed by Salt (opskit thumbnail-server formula); local changes are lost.\n"
        "# Secrets are not here: they are in the env file (0600).\n"
        f"# Run: {dk['up']}\n"
    )
    return header + yaml.safe_dump(compose(settings), sort_keys=False, default_flow_style=False)
