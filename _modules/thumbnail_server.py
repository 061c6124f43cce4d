"""Seafile 13 thumbnail-server hosts: settings, the env file with the secrets, the compose
file, and the health of the service.

The ``thumbnail-server`` formula calls :py:func:`validate` while it renders: it checks
the formula's settings (defaults merged with pillar ``thumbnail_server``) and returns
them in the shape the templates use, or raises ``SaltInvocationError`` listing every
problem with its pillar key, so a bad pillar stops the run before anything is written.
Secrets (pillar ``thumbnail_server:secrets``) are checked there but never returned:
:py:func:`write_env` reads them from pillar itself and writes them only to the env file
(mode 0600, root), through a private temporary file renamed into place.

Upstream facts (ports, variables, limits) and their sources are listed in
``_utils/opskit_thumbnail.py``.
"""

from __future__ import annotations

import os
import stat
import time

import salt.utils.data
from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

try:
    import opskit_thumbnail  # synced from file_roots, or module_dirs
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_thumbnail

__virtualname__ = "thumbnail_server"

SECRETS_PILLAR = "thumbnail_server:secrets"
HIDDEN = "<secret>"
HIDDEN_CHANGED = "<secret, changed>"


def __virtual__():
    if not os.path.isdir("/proc"):
        return (False, "thumbnail_server: needs Linux (/proc)")
    return __virtualname__


def _minion() -> str:
    return __opts__.get("id", "this minion")


def validate(config, pillar=None, minion=None) -> dict:
    """
    Check the ``thumbnail-server`` formula's settings and return them ready for its
    templates (without secrets).

    ``config`` is the formula's merged settings (``map.jinja``: defaults, per-OS
    parameters, pillar ``thumbnail_server:lookup`` and pillar ``thumbnail_server``).
    ``pillar`` (default: this minion's) is checked for a ``tuning`` formula that would
    manage the same unit's jemalloc drop-in. Raises ``SaltInvocationError`` listing every
    problem; secret values never appear in it.

    CLI Example:

    .. code-block:: bash

        salt-call thumbnail_server.validate "$(salt-call --out=json pillar.get thumbnail_server)"
    """
    minion = minion or _minion()
    pillar = __pillar__ if pillar is None else pillar
    try:
        return opskit_thumbnail.validate(config, minion=minion, tuning=pillar.get("tuning"))
    except opskit_thumbnail.InvalidSettings as err:
        lines = "\n  - ".join(err.problems)
        raise SaltInvocationError(
            f"thumbnail-server formula on {minion}: pillar 'thumbnail_server' is not valid; "
            f"nothing was changed. Fix these and apply again:\n  - {lines}"
        ) from err


def _secrets() -> dict:
    value = salt.utils.data.traverse_dict_and_list(__pillar__, SECRETS_PILLAR, {})
    return value if isinstance(value, dict) else {}


def _environment(settings: dict) -> dict:
    """The environment, secrets included (never returned by a public function)."""
    secrets = _secrets()
    problems = opskit_thumbnail.check_secrets(
        secrets, settings["storage"]["type"], settings["env_syntax"]
    )
    if problems:
        raise SaltInvocationError(
            f"{_minion()}: pillar {SECRETS_PILLAR} is not valid: " + "; ".join(problems)
        )
    return opskit_thumbnail.environment(settings, secrets)


def _read(path: str) -> tuple[str | None, os.stat_result | None]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read(), os.fstat(handle.fileno())
    except FileNotFoundError:
        return None, None
    except OSError as err:
        raise CommandExecutionError(f"{_minion()}: cannot read {path}: {err}") from err


def _shown(name: str, value: str | None, changed: bool = False) -> str | None:
    """What may be shown of a variable's value: secrets are hidden."""
    if value is None or name not in opskit_thumbnail.SECRET_ENV:
        return value
    return HIDDEN_CHANGED if changed else HIDDEN


def env_status(name: str, settings: dict) -> dict:
    """
    Compare the env file ``name`` with what ``settings`` and pillar's secrets make of it.
    Secret values are never returned: ``old`` and ``new`` show them as ``<secret>``.

    Returns ``{"path", "exists", "mode", "owner", "up_to_date", "old", "new"}``; ``old``
    and ``new`` hold only the variables that differ (``None`` for absent ones).

    CLI Example:

    .. code-block:: bash

        salt-call thumbnail_server.env_status /etc/seafile-thumbnail/thumbnail-server.env \\
            "$SETTINGS"   # the formula's validated settings (JSON)
    """
    want = _environment(settings)
    text, info = _read(name)
    have = opskit_thumbnail.parse_env(text, settings["env_syntax"]) if text is not None else {}
    rendered = opskit_thumbnail.render_env(want, settings["env_syntax"])
    old, new = {}, {}
    for var in sorted(set(want) | set(have)):
        if want.get(var) != have.get(var):
            changed = var in want and var in have
            old[var] = _shown(var, have.get(var))
            new[var] = _shown(var, want.get(var), changed)
    mode = f"{stat.S_IMODE(info.st_mode):04o}" if info else None
    owner = (info.st_uid, info.st_gid) if info else None
    return {
        "path": name,
        "exists": text is not None,
        "mode": mode,
        "owner": owner,
        "content_ok": text == rendered,
        "up_to_date": text == rendered and mode == "0600" and owner == (0, 0),
        "old": old,
        "new": new,
    }


def write_env(name: str, settings: dict) -> dict:
    """
    Write the env file ``name`` (mode 0600, root) from ``settings`` and pillar's secrets,
    whole or not at all: a private temporary file in the same directory is renamed over
    it. Returns :py:func:`env_status` from before the write.

    CLI Example:

    .. code-block:: bash

        salt-call thumbnail_server.write_env /etc/seafile-thumbnail/thumbnail-server.env \\
            "$SETTINGS"   # the formula's validated settings (JSON)
    """
    before = env_status(name, settings)
    content = opskit_thumbnail.render_env(_environment(settings), settings["env_syntax"])
    directory = os.path.dirname(name)
    if not os.path.isdir(directory):
        raise CommandExecutionError(f"{_minion()}: {directory} does not exist (for {name})")
    fd = None
    tmp = os.path.join(directory, f".{os.path.basename(name)}.{os.getpid()}.{time.time_ns()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.fchmod(fd, 0o600)
        os.fchown(fd, 0, 0)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            fd = None
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, name)
    except OSError as err:
        if fd is not None:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise CommandExecutionError(f"{_minion()}: cannot write {name}: {err}") from err
    return before


def render_compose(settings: dict) -> str:
    """
    The docker compose file for ``settings`` (docker mode). It holds no secrets: the
    service reads its environment from the env file (``env_file:``).

    CLI Example:

    .. code-block:: bash

        salt-call thumbnail_server.render_compose "$SETTINGS"   # validated settings (JSON)
    """
    if settings.get("mode") != "docker":
        raise SaltInvocationError("render_compose: the settings are not for docker mode")
    return opskit_thumbnail.render_compose(settings)


def health(url: str, timeout: float = 3.0) -> dict:
    """
    Query the thumbnail server's health URL once (no proxy): upstream answers
    ``GET /ping`` with 200 ``pong``.

    Returns ``{"url", "status", "body"}``; ``status`` is ``None`` (with ``error``) when
    nothing answered.

    CLI Example:

    .. code-block:: bash

        salt thumb-01 thumbnail_server.health http://127.0.0.1:8088/ping
    """
    import requests

    session = requests.Session()
    session.trust_env = False  # never through a proxy from the environment
    try:
        resp = session.get(url, timeout=timeout, allow_redirects=False)
    except requests.RequestException as err:
        return {"url": url, "status": None, "body": "", "error": str(err)}
    finally:
        session.close()
    return {"url": url, "status": resp.status_code, "body": resp.text[:200]}


def wait_healthy(url: str, timeout: float = 60, expect: str = "pong", interval: float = 0.5):
    """
    Poll ``url`` until it answers 200 with ``expect`` in the body, for at most
    ``timeout`` seconds; return the last answer with ``healthy`` and ``waited`` added.

    CLI Example:

    .. code-block:: bash

        salt thumb-01 thumbnail_server.wait_healthy http://127.0.0.1:8088/ping timeout=10
    """
    started = time.monotonic()
    while True:
        answer = health(url, timeout=min(3.0, float(timeout)))
        ok = answer["status"] == 200 and expect in answer["body"]
        waited = time.monotonic() - started
        if ok or waited >= float(timeout):
            answer.update({"healthy": ok, "waited": round(waited, 1)})
            return answer
        time.sleep(float(interval))
