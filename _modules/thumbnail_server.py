"""Seafile 13 thumbnail-server hosts: the formula's plan, the env file with the secrets,
the docker compose project, and the health of the service.

The ``thumbnail-server`` formula's ``map.jinja`` validates its settings with
``opskit.settings`` (schema: ``_utils/opskit_settings_thumbnail_server.py``) and then
calls :py:func:`plan`, which derives what the states need (paths, unit files, nginx
sites, compose file and command lines) and drops every secret and every ``env`` value.
:py:func:`write_env` reads those from pillar itself (``thumbnail_server:secrets`` and
``thumbnail_server:env``), checks them again, and writes them only to the env file
(mode 0600, root) through ``opskit_files``; what it reports shows them masked.

Every command runs as an argv list (``python_shell=False``); no pillar value reaches a
shell. Upstream facts (ports, variables, limits) and their sources are listed in
``_utils/opskit_thumbnail.py``.
"""

from __future__ import annotations

import os
import stat

import salt.utils.data
import salt.utils.dictupdate
from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

try:
    import opskit_files  # synced from file_roots, or module_dirs
    import opskit_formats
    import opskit_health
    import opskit_redact
    import opskit_schema
    import opskit_settings_thumbnail_server as schema
    import opskit_thumbnail
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_files
    from saltext.opskit.utils import opskit_formats
    from saltext.opskit.utils import opskit_health
    from saltext.opskit.utils import opskit_redact
    from saltext.opskit.utils import opskit_schema
    from saltext.opskit.utils import opskit_settings_thumbnail_server as schema
    from saltext.opskit.utils import opskit_thumbnail

__virtualname__ = "thumbnail_server"

ROOT = schema.ROOT
HIDDEN = opskit_redact.MASK
HIDDEN_CHANGED = f"{opskit_redact.MASK} (changed)"


def __virtual__():
    if not os.path.isdir("/proc"):
        return (False, "thumbnail_server: needs Linux (/proc)")
    return __virtualname__


def _minion() -> str:
    return __opts__.get("id", "this minion")


def plan(settings, pillar=None, minion=None) -> dict:
    """
    Derive what the ``thumbnail-server`` formula's states need from its validated
    settings (the result of ``opskit.settings thumbnail-server``): paths, the unit
    files, the nginx sites, the compose file and its command line. Secrets and ``env``
    values are dropped (their names stay). ``pillar`` (default: this minion's) is
    checked for a ``tuning`` formula that would manage the same jemalloc drop-in.

    CLI Example:

    .. code-block:: bash

        salt-call thumbnail_server.plan "$(salt-call --out=json opskit.settings \\
            thumbnail-server "$(salt-call --out=json pillar.get thumbnail_server)")"
    """
    minion = minion or _minion()
    pillar = __pillar__ if pillar is None else pillar
    try:
        return opskit_thumbnail.plan(settings, minion, tuning=pillar.get("tuning"))
    except opskit_thumbnail.PlanError as err:
        lines = "\n  - ".join(err.problems)
        raise SaltInvocationError(
            f"thumbnail-server formula on {minion}: nothing was changed. Fix these and apply "
            f"again:\n  - {lines}"
        ) from err
    except opskit_formats.UnsafeValue as err:
        raise SaltInvocationError(f"thumbnail-server formula on {minion}: {err}") from err


def _pillar_part(key: str) -> dict:
    """``thumbnail_server:lookup:<key>`` overlaid with ``thumbnail_server:<key>``, as
    map.jinja merges them."""
    merged = {}
    for path in (f"{ROOT}:lookup:{key}", f"{ROOT}:{key}"):
        value = salt.utils.data.traverse_dict_and_list(__pillar__, path, {})
        if value is not None and not isinstance(value, dict):
            raise SaltInvocationError(f"{_minion()}: pillar {path} must be a mapping")
        merged = salt.utils.dictupdate.update(merged, value or {})
    return merged


def _private(settings: dict) -> tuple[dict, dict]:
    """Secrets and extra env values from pillar, checked (values never shown)."""
    problems = opskit_schema.Problems()
    fields = schema.SCHEMA.fields
    secrets = fields["secrets"].validate(_pillar_part("secrets"), f"{ROOT}:secrets", problems)
    env = fields["env"].validate(_pillar_part("env"), f"{ROOT}:env", problems)
    if problems:
        raise SaltInvocationError(str(opskit_schema.SettingsError(ROOT, problems.items)))
    found = list(schema.check_private(secrets, env, settings["storage"]["type"], settings["mode"]))
    if found:
        lines = "\n  - ".join(f"{path}: {message}" for path, message in found)
        raise SaltInvocationError(f"{_minion()}: pillar is not valid:\n  - {lines}")
    return secrets, env


def _hidden(settings: dict) -> set:
    """Variables whose values never appear in output: secrets and every pillar env."""
    return set(opskit_thumbnail.SECRET_ENV) | set(settings.get("env_names") or ())


def env_status(name: str, settings: dict) -> dict:
    """
    Compare the env file ``name`` with what ``settings`` and pillar's secrets and env
    values make of it. Secrets and pillar ``env`` values are never returned: ``old`` and
    ``new`` show them masked.

    Returns ``{"path", "exists", "mode", "owner", "content_ok", "up_to_date", "old",
    "new"}``; ``old`` and ``new`` hold only the variables that differ (``None`` for
    absent ones).

    CLI Example:

    .. code-block:: bash

        salt-call thumbnail_server.env_status /etc/seafile-thumbnail/thumbnail-server.env \\
            "$SETTINGS"   # the formula's plan (JSON)
    """
    want = opskit_thumbnail.environment(settings, *_private(settings))
    rendered = opskit_thumbnail.render_env(want, settings["env_syntax"])
    now = opskit_files.current(name)
    text = None if now.content is None else now.content.decode("utf-8", errors="replace")
    have = opskit_thumbnail.parse_env(text, settings["env_syntax"]) if text is not None else {}
    hidden = _hidden(settings)
    old, new = {}, {}
    for var in sorted(set(want) | set(have)):
        if want.get(var) != have.get(var):
            masked = var in hidden or var not in want  # unknown variables may be secrets
            both = var in want and var in have
            old[var] = None if var not in have else (HIDDEN if masked else have[var])
            new[var] = (
                None
                if var not in want
                else ((HIDDEN_CHANGED if both else HIDDEN) if masked else want[var])
            )
    return {
        "path": name,
        "exists": text is not None,
        "mode": None if now.mode is None else f"{stat.S_IMODE(now.mode):04o}",
        "owner": None if now.uid is None else (now.uid, now.gid),
        "content_ok": text == rendered,
        "up_to_date": not opskit_files.needs_write(name, rendered, 0o600, 0, 0),
        "old": old,
        "new": new,
    }


def write_env(name: str, settings: dict) -> dict:
    """
    Write the env file ``name`` (mode 0600, root) from ``settings`` and pillar's secrets
    and env values, whole or not at all (``opskit_files.write_atomic``: mode and owner
    are set before the file appears). Returns :py:func:`env_status` from before.

    CLI Example:

    .. code-block:: bash

        salt-call thumbnail_server.write_env /etc/seafile-thumbnail/thumbnail-server.env \\
            "$SETTINGS"   # the formula's plan (JSON)
    """
    before = env_status(name, settings)
    env = opskit_thumbnail.environment(settings, *_private(settings))
    content = opskit_thumbnail.render_env(env, settings["env_syntax"])
    if not os.path.isdir(os.path.dirname(name)):
        raise CommandExecutionError(f"{_minion()}: {os.path.dirname(name)} does not exist")
    try:
        opskit_files.write_atomic(name, content, 0o600, 0, 0)
    except OSError as err:
        raise CommandExecutionError(f"{_minion()}: cannot write {name}: {err}") from err
    return before


def config_dir_status(name: str, keep: str = opskit_thumbnail.ENV_FILE_NAME) -> dict:
    """
    What stands in the way of making ``name`` the env file's own directory (0700,
    root): ``foreign`` lists entries other than ``keep`` (and its temporary files), so
    that a shared directory (``/etc/ssh``, ``/var/log/nginx``) is never locked away.

    CLI Example:

    .. code-block:: bash

        salt-call thumbnail_server.config_dir_status /etc/seafile-thumbnail
    """
    try:
        info = os.lstat(name)
    except FileNotFoundError:
        return {"exists": False, "foreign": [], "mode": None, "owner": None, "is_dir": False}
    is_dir = stat.S_ISDIR(info.st_mode)
    entries = sorted(os.listdir(name)) if is_dir else []
    foreign = [
        e for e in entries if e != keep and not (e.startswith(f".{keep}.") and e.endswith(".tmp"))
    ]
    return {
        "exists": True,
        "is_dir": is_dir,
        "foreign": foreign,
        "mode": f"{stat.S_IMODE(info.st_mode):04o}",
        "owner": (info.st_uid, info.st_gid),
    }


def health(url: str, timeout: float = 3.0, expect: str = "pong") -> dict:
    """
    Query the thumbnail server's health URL once (``opskit_health.probe``, no proxy, no
    redirects): upstream answers ``GET <SITE_ROOT>ping`` with 200 ``pong``.

    CLI Example:

    .. code-block:: bash

        salt thumb-01 thumbnail_server.health http://127.0.0.1:8088/ping
    """
    return opskit_health.probe(url, timeout=float(timeout), expect=expect)


def wait_healthy(url: str, timeout: float = 60, expect: str = "pong", interval: float = 0.5):
    """
    Probe ``url`` until it answers 200 with ``expect`` in the body, for at most
    ``timeout`` seconds (``opskit_health.wait_healthy``); returns the last answer with
    ``healthy`` and ``waited``.

    CLI Example:

    .. code-block:: bash

        salt thumb-01 thumbnail_server.wait_healthy http://127.0.0.1:8088/ping timeout=10
    """
    return opskit_health.wait_healthy(
        url, timeout=float(timeout), interval=float(interval), expect=expect, raise_error=False
    )


def _compose(settings: dict, *args: str) -> dict:
    dk = settings["docker"]
    argv = [*dk["compose_argv"], *args]
    out = __salt__["cmd.run_all"](
        argv,
        cwd=dk["project_dir"],
        python_shell=False,
        ignore_retcode=True,
        output_loglevel="debug",
    )
    if out.get("retcode") != 0:
        detail = opskit_redact.redact_text((out.get("stderr") or out.get("stdout") or "")[-600:])
        raise CommandExecutionError(
            f"{_minion()}: {' '.join(argv)} failed (exit {out.get('retcode')}) in "
            f"{dk['project_dir']}: {detail.strip() or 'no output'}"
        )
    return out


def compose_running(settings: dict) -> bool:
    """
    True when the project's ``thumbnail-server`` service has a running container
    (``docker compose ... ps --status running -q thumbnail-server``).

    CLI Example:

    .. code-block:: bash

        salt thumb-01 thumbnail_server.compose_running "$SETTINGS"
    """
    service = settings["docker"]["service"]
    out = _compose(settings, "ps", "--status", "running", "--quiet", service)
    return bool((out.get("stdout") or "").strip())


def compose_up(settings: dict, recreate: bool = False) -> dict:
    """
    ``docker compose ... up -d --remove-orphans`` for the formula's project; with
    ``recreate``, ``--force-recreate thumbnail-server``: that service's container only.

    CLI Example:

    .. code-block:: bash

        salt thumb-01 thumbnail_server.compose_up "$SETTINGS" recreate=True
    """
    args = ["up", "--detach", "--remove-orphans"]
    if recreate:
        args += ["--force-recreate", settings["docker"]["service"]]
    out = _compose(settings, *args)
    return {"command": " ".join([*settings["docker"]["compose_argv"], *args]), "retcode": 0} | {
        "output": opskit_redact.redact_text((out.get("stderr") or "")[-400:]).strip()
    }


def container_pid(name: str) -> int:
    """
    The PID of container ``name``'s main process as this host sees it
    (``docker inspect``); 0 when it does not run.

    CLI Example:

    .. code-block:: bash

        salt thumb-01 thumbnail_server.container_pid thumbnail-server
    """
    argv = ["docker", "inspect", "--type", "container", "--format", "{{.State.Pid}}", name]
    out = __salt__["cmd.run_all"](argv, python_shell=False, ignore_retcode=True)
    if out.get("retcode") != 0:
        raise CommandExecutionError(
            f"{_minion()}: {' '.join(argv)} failed (exit {out.get('retcode')}): "
            f"{(out.get('stderr') or out.get('stdout') or '').strip()[-300:] or 'no output'}"
        )
    text = (out.get("stdout") or "").strip()
    if not text.isdigit():
        raise CommandExecutionError(f"{_minion()}: docker inspect {name} gave no PID: {text!r}")
    return int(text)


def compose_down(settings: dict) -> dict:
    """
    ``docker compose ... down`` for the formula's project.

    CLI Example:

    .. code-block:: bash

        salt thumb-01 thumbnail_server.compose_down "$SETTINGS"
    """
    _compose(settings, "down")
    return {"command": " ".join([*settings["docker"]["compose_argv"], "down"]), "retcode": 0}
