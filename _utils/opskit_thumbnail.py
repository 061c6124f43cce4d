"""Seafile 13 thumbnail-server: what the formula derives from its validated settings
(``opskit.settings`` with ``_utils/opskit_settings_thumbnail_server.py``): paths, the
systemd units, the nginx sites, the compose file and its command lines, and the
service's environment and env file. Every file is rendered through ``opskit_formats``
(one quoting rule per format); commands are argv lists. Plain functions without Salt,
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

try:
    import opskit_formats  # synced from file_roots, or module_dirs
    import opskit_net
    import opskit_settings_thumbnail_server as settings_schema
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_formats
    from saltext.opskit.utils import opskit_net
    from saltext.opskit.utils import opskit_settings_thumbnail_server as settings_schema

UPSTREAM_PORT = settings_schema.UPSTREAM_PORT
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
GUARD_SCRIPT = "/usr/local/lib/opskit/thumbnail-server-memory-guard"
# node_exporter's textfile collector directory as the exporters formula sets it up by
# default: the guard writes the service's memory and restarts there when it exists
# (read by the monitoring formula's ServiceMemoryNearLimit and ServiceRestarting).
NODE_TEXTFILE_DIR = "/var/lib/node_exporter/textfile_collector"
HEADER = "Managed by Salt (opskit thumbnail-server formula); local changes are lost."
SECRET_ENV = frozenset(settings_schema.SECRETS.values())


class PlanError(ValueError):
    """Settings that are valid alone but clash with another formula's pillar."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def plan(settings: dict, minion: str, tuning=None) -> dict:
    """What the states and files need, derived from the validated ``settings``.

    The result carries no secret and no ``env`` value (the env file state reads those
    from pillar on the minion), only the names of the variables they set. Raises
    :class:`PlanError` when another formula's pillar would manage the same files.
    """
    out = copy.deepcopy(settings)
    out.pop("secrets", None)
    out["env_names"] = sorted(out.pop("env", {}) or {})
    out["secret_env"] = sorted(
        variable
        for key, variable in settings_schema.SECRETS.items()
        if (settings.get("secrets") or {}).get(key)
    )
    mode, root = out["mode"], out["seafile"]["site_root"]
    out["env_syntax"] = "systemd" if mode == "systemd" else "compose"
    out["env_file"] = f"{out['config_dir']}/{ENV_FILE_NAME}"
    out["backend"] = f"http://127.0.0.1:{out['port']}"
    # The app routes on the path after SITE_ROOT (http_request.py parse_url): its
    # health path lives under the site root.
    out["health"]["url"] = f"{out['backend']}{root}{out['health']['path'][1:]}"
    ngx = out["nginx"]
    ngx["server_name"] = ngx["server_name"] or [minion]
    host, port = opskit_net.parse_listen(ngx["listen"])
    ngx["listen"] = opskit_net.format_listen(host, port) if host else str(port)
    if mode == "systemd":
        out.pop("docker", None)
        _systemd(out)
    else:
        out.pop("systemd", None)
        _docker(out)
    out["site"] = site_conf(out)
    problems = list(_conflicts(out, tuning))
    if problems:
        raise PlanError(problems)
    return out


def _systemd(out: dict) -> None:
    sd = out["systemd"]
    install, version = sd["install_dir"], sd["release"]["version"]
    sd["release"]["sha256"] = sd["release"]["sha256"].lower()
    sd["release"]["source_hash"] = f"sha256={sd['release']['sha256']}"
    sd["release_dir"] = f"{install}/releases/{version}"
    sd["current"] = f"{install}/current"
    sd["working_directory"] = "/".join(p for p in (sd["current"], sd["workdir"].strip("/")) if p)
    sd["python_path"] = [p.strip("/") for p in sd["python_path"]]
    sd["packages"] = list(dict.fromkeys(sd["packages"] + sd["media_packages"]))
    base = sd["seafile_dir"]
    sd["log_dir"] = f"{base}/logs"
    sd["thumbnail_root"] = f"{base}/seahub-data/thumbnail"
    sd["memory_max"] = f"{out['memory_limit']}M"
    sd["guard_unit"] = f"{sd['unit'].removesuffix('.service')}-memory-guard.service"
    sd["guard_script"] = GUARD_SCRIPT
    sd["unit_file"] = unit_file(out)
    sd["guard_unit_file"] = guard_unit_file(out)


def _docker(out: dict) -> None:
    dk = out["docker"]
    project = dk["project_dir"]
    dk["compose_file"] = f"{project}/{COMPOSE_FILE_NAME}"
    dk["override_file"] = f"{project}/{OVERRIDE_FILE_NAME}"
    dk["sites_dir"] = f"{project}/{SITES_DIR_NAME}"
    dk["container_site"] = f"{dk['sites_dir']}/default"
    dk["service"] = COMPOSE_SERVICE
    files = [dk["compose_file"]]
    if out["jemalloc"]["enabled"]:
        files.append(dk["override_file"])
    argv = [*dk["compose_command"], "-p", dk["project_name"]]
    for path in files:
        argv += ["-f", path]
    dk["compose_argv"] = argv
    dk["compose_contents"] = render_compose(out)
    dk["container_site_contents"] = container_site_conf(out)


def _conflicts(out: dict, tuning):
    """Only one state may manage a unit's jemalloc drop-in (or a compose override)."""
    jm = tuning.get("jemalloc") if isinstance(tuning, dict) else None
    if not isinstance(jm, dict) or not out["jemalloc"]["enabled"]:
        return
    units = jm.get("units") if isinstance(jm.get("units"), dict) else {}
    compose_files = jm.get("compose") if isinstance(jm.get("compose"), dict) else {}
    if out["mode"] == "systemd":
        unit = out["systemd"]["unit"]
        named = {str(u) if "." in str(u) else f"{u}.service" for u in units}
        if unit in named:
            yield (
                f"pillar tuning:jemalloc:units also lists {unit}, whose jemalloc drop-in this "
                "formula manages (thumbnail_server:jemalloc); remove it from tuning:jemalloc:units"
            )
    elif out["docker"]["override_file"] in compose_files:
        yield (
            f"pillar tuning:jemalloc:compose also lists {out['docker']['override_file']}, "
            "which this formula writes (thumbnail_server:jemalloc); remove it from "
            "tuning:jemalloc:compose"
        )


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------
_SANDBOX = [
    ("UMask", "0027"),
    ("NoNewPrivileges", True),
    ("PrivateTmp", True),
    ("PrivateDevices", True),
    ("ProtectSystem", "full"),
    ("ProtectHome", True),
    ("ProtectKernelTunables", True),
    ("ProtectKernelModules", True),
    ("ProtectControlGroups", True),
    ("RestrictNamespaces", True),
    ("RestrictRealtime", True),
    ("LockPersonality", True),
    ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
]


def unit_file(out: dict) -> str:
    """The service's unit: no secrets (systemd reads them from the env file as root)."""
    sd = out["systemd"]
    header = (
        f"{HEADER}\nSeafile's thumbnail server from {sd['current']} "
        f"(-> {sd['release_dir']}), answering on {out['backend']}.\n"
        f"Secrets are in {out['env_file']} (0600, root); jemalloc, when enabled, comes "
        f"from the drop-in {sd['unit']}.d/50-opskit-jemalloc.conf.\n"
        f"{sd['guard_unit']} restarts it where the kernel does not enforce MemoryMax=."
    )
    service = [
        ("Type", "simple"),
        ("User", sd["user"]),
        ("Group", sd["group"]),
        ("WorkingDirectory", sd["working_directory"]),
        ("EnvironmentFile", out["env_file"]),
        ("ExecStart", sd["command"]),
        ("MemoryMax", sd["memory_max"]),
        ("OOMPolicy", "stop"),
        ("Restart", "always"),
        ("RestartSec", sd["restart_sec"]),
        *_SANDBOX,
    ]
    sections = {
        "Unit": [
            ("Description", f"Seafile thumbnail server (release {sd['release']['version']})"),
            ("After", "network-online.target"),
            ("Wants", "network-online.target"),
        ],
        "Service": service,
        "Install": [("WantedBy", "multi-user.target")],
    }
    return opskit_formats.systemd_unit(sections, header, "thumbnail_server:systemd")


def guard_unit_file(out: dict) -> str:
    """The memory guard's unit (see salt/thumbnail-server/files/memory-guard.py)."""
    sd, limit = out["systemd"], out["memory_limit"]
    guard = sd["memory_guard"]
    argv = [
        "/usr/bin/python3",
        GUARD_SCRIPT,
        "--unit",
        sd["unit"],
        "--limit-mb",
        limit,
        "--interval",
        guard["interval"],
        "--samples",
        guard["samples"],
        "--textfile",
        f"{NODE_TEXTFILE_DIR}/opskit-memory-guard-{sd['unit']}.prom",
    ]
    header = (
        f"{HEADER}\nRestarts {sd['unit']} when its resident memory stays above {limit} MiB, "
        "for hosts where\nthe kernel does not enforce its MemoryMax= (no cgroup memory "
        "controller). It also\nwrites the unit's memory and restart count for "
        f"node_exporter's textfile collector\n(monitoring formula) when {NODE_TEXTFILE_DIR} "
        "exists."
    )
    sections = {
        "Unit": [
            ("Description", f"opskit memory guard for {sd['unit']} ({limit} MiB)"),
            ("After", sd["unit"]),
        ],
        "Service": [
            ("Type", "simple"),
            ("ExecStart", argv),
            ("Restart", "always"),
            ("RestartSec", 5),
            ("NoNewPrivileges", True),
            ("PrivateTmp", True),
            ("ProtectSystem", "strict"),
            ("ReadWritePaths", f"-{NODE_TEXTFILE_DIR}"),
            ("ProtectHome", True),
        ],
        "Install": [("WantedBy", "multi-user.target")],
    }
    return opskit_formats.systemd_unit(sections, header, "thumbnail_server:systemd:memory_guard")


def _nginx(name: str, *params, path: str = "thumbnail_server:nginx") -> str:
    return opskit_formats.nginx_directive(name, *params, path=f"{path}:{name}")


_PROXY_HEADERS = [
    "proxy_set_header Host $host;",
    "proxy_set_header X-Real-IP $remote_addr;",
    "proxy_set_header X-Forwarded-For $remote_addr;",
    "proxy_set_header X-Forwarded-Proto $scheme;",
]


def _timeouts(ngx: dict) -> list[str]:
    return [
        _nginx(key, f"{ngx[key]}s")
        for key in ("proxy_connect_timeout", "proxy_read_timeout", "proxy_send_timeout")
    ]


def site_conf(out: dict) -> str:
    """The host's nginx site: everything to the backend on 127.0.0.1 (not localhost,
    which resolves to ::1 first where the service does not listen), and
    ``<site_root>thumbnail/ping`` to the service's ``<site_root>ping`` (upstream's Caddy
    labels rewrite /thumbnail/ping to /ping). PDF, video and large-image thumbnails can
    take minutes under load: nginx's 60 s default answered 504 in production."""
    ngx, root, backend = out["nginx"], out["seafile"]["site_root"], out["backend"]
    lines = [
        opskit_formats.comment(f"{HEADER}\nSeafile's thumbnail server on {backend}.").rstrip(),
        "server {",
        f"    {_nginx('listen', ngx['listen'])}",
        f"    {_nginx('server_name', *ngx['server_name'])}",
        "",
        f"    {_nginx('access_log', ngx['access_log'])}",
        f"    {_nginx('error_log', ngx['error_log'])}",
        "",
        *(f"    {line}" for line in _timeouts(ngx)),
        "",
        *(f"    {line}" for line in _PROXY_HEADERS),
        "",
        f"    location = {opskit_formats.nginx_param(root + 'thumbnail/ping')} {{",
        f"        {_nginx('proxy_pass', backend + root + 'ping')}",
        "    }",
        "",
        "    location / {",
        f"        {_nginx('proxy_pass', backend)}",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def container_site_conf(out: dict) -> str:
    """The site of the container's own nginx (mounted over the image's
    /etc/nginx/sites-enabled): upstream's proxies to localhost (::1 first) in some
    revisions and keeps nginx's 60 s timeouts (docker/scripts/default)."""
    lines = [
        opskit_formats.comment(
            f"{HEADER}\nThe thumbnail-server container's own nginx site, mounted read-only "
            f"over {CONTAINER_SITES_DIR}."
        ).rstrip(),
        "server {",
        f"    listen {CONTAINER_PORT} default_server;",
        "    server_name _;",
        "",
        *(f"    {line}" for line in _timeouts(out["nginx"])),
        "",
        "    location / {",
        f"        proxy_pass http://127.0.0.1:{UPSTREAM_PORT};",
        "        proxy_set_header Host $host;",
        "        proxy_set_header X-Real-IP $remote_addr;",
        "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "        proxy_set_header X-Forwarded-Proto $scheme;",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def compose(out: dict) -> dict:
    """The compose file (no secrets: the environment comes from the env file)."""
    dk = out["docker"]
    limit = f"{out['memory_limit']}m"
    return {
        "services": {
            COMPOSE_SERVICE: {
                "image": dk["image"],
                "container_name": dk["container_name"],
                "restart": dk["restart"],
                "env_file": [out["env_file"]],
                "volumes": [
                    f"{dk['seafile_volume']}:/shared",
                    f"{dk['sites_dir']}:{CONTAINER_SITES_DIR}:ro",
                ],
                "ports": [f"127.0.0.1:{out['port']}:{CONTAINER_PORT}"],
                # The kernel kills the container's processes above this (cgroup memory
                # controller); swap may not stretch it.
                "mem_limit": limit,
                "memswap_limit": limit,
            }
        }
    }


def render_compose(out: dict) -> str:
    header = (
        f"{HEADER}\nSecrets are not here: they are in the env file (0600).\n"
        f"Run: {' '.join(out['docker']['compose_argv'])} up -d"
    )
    return opskit_formats.yaml_document(
        compose(out), header, "thumbnail_server:docker", compose=True
    )


# ---------------------------------------------------------------------------------------
# The environment
# ---------------------------------------------------------------------------------------
def _flag(value: bool) -> str:
    return "true" if value else "false"


def environment(out: dict, secrets: dict, extra_env: dict) -> dict:
    """The service's environment (secrets and pillar env values included), in a stable
    order. ``secrets`` and ``extra_env`` come from pillar on the minion, checked with
    ``opskit_settings_thumbnail_server.check_private``."""
    sea, db, storage = out["seafile"], out["database"], out["storage"]
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
        "THUMBNAIL_TASK_WORKERS": str(out["task_workers"]),
        "THUMBNAIL_IMAGE_SIZE_LIMIT": str(out["image_size_limit"]),
        "THUMBNAIL_IMAGE_ORIGINAL_SIZE_LIMIT": str(out["image_original_size_limit"]),
        "THUMBNAIL_MEMORY_LIMIT": str(out["memory_limit"]),
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
                "S3_USE_HTTPS": _flag(s3["use_https"]),
                "S3_USE_V4_SIGNATURE": _flag(s3["use_v4_signature"]),
                "S3_PATH_STYLE_REQUEST": _flag(s3["path_style_request"]),
                "S3_SSE_C_KEY": secrets.get("s3_sse_c_key") or "",
            }
        )
    if out["mode"] == "systemd":
        sd = out["systemd"]
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
    for name, value in sorted((extra_env or {}).items()):
        env[name] = _flag(value) if isinstance(value, bool) else str(value)
    return {k: v for k, v in env.items() if v is not None}


def render_env(env: dict, syntax: str) -> str:
    """The env file in its reader's syntax (``opskit_formats``: systemd's
    ``EnvironmentFile=`` or docker compose v2's ``env_file:``)."""
    if syntax == "systemd":
        reader, writer = "systemd (EnvironmentFile=)", opskit_formats.systemd_env_file
    else:
        reader, writer = "docker compose v2 (env_file:)", opskit_formats.compose_env_file
    header = f"{HEADER}\nRead by {reader}. Mode 0600, root only: it holds secrets."
    return writer(env, header, "thumbnail_server:env_file")


def parse_env(text: str, syntax: str) -> dict:
    """Read an env file back the way its reader does (for diffs)."""
    if syntax == "systemd":
        return opskit_formats.parse_systemd_env_file(text)
    return opskit_formats.parse_compose_env_file(text)
