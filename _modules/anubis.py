"""Anubis (TecharoHQ/anubis) instances on this minion: the formula's plan, env files,
signing keys, health and scrape targets.

The ``anubis`` formula's ``map.jinja`` validates pillar ``anubis`` with
``opskit.settings("anubis", ...)`` (schema ``_utils/opskit_settings_anubis.py``) and then
calls :py:func:`plan`, which adds what only this host can tell (its CPU architecture,
listen addresses in other formulas' pillar, sockets listening now) and returns what
the templates use (``_utils/opskit_anubis_plan.py``). Files are written with the shared
renderers and writer (``opskit_formats``, ``opskit_files``); signing keys are read from
pillar here, on the minion, and never pass through state arguments or return values.

Facts about Anubis used here come from upstream v1.27.0: the systemd template
``run/anubis@.service`` (``EnvironmentFile=/etc/anubis/%i.env``, ``DynamicUser=yes``,
``StateDirectory=anubis/%i``), ``ED25519_PRIVATE_KEY_HEX_FILE`` in ``cmd/anubis/main.go``
and ``/healthz`` in ``lib/metrics/metrics.go``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import stat

import salt.utils.data
import salt.utils.path
from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

try:  # synced from file_roots, or module_dirs
    import opskit_anubis_plan
    import opskit_files
    import opskit_formats
    import opskit_health
    import opskit_net
    import opskit_schema
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_anubis_plan
    from saltext.opskit.utils import opskit_files
    from saltext.opskit.utils import opskit_formats
    from saltext.opskit.utils import opskit_health
    from saltext.opskit.utils import opskit_net
    from saltext.opskit.utils import opskit_schema

__virtualname__ = "anubis"

HEX64_RE = re.compile(r"[0-9a-fA-F]{64}")
ENV_MODE = 0o640
ENV_HEADER = (
    "Managed by Salt (opskit anubis formula); local changes are overwritten.\n"
    "Read by upstream's anubis@.service (EnvironmentFile=/etc/anubis/%i.env). The signing\n"
    "key is not here: systemd passes it to the service as a credential (see the drop-in)."
)
# How values the formula does not set itself (pillar `env`) show in changes.
HIDDEN, HIDDEN_CHANGED = "<hidden>", "<hidden, changed>"


def __virtual__():
    if not os.path.isdir("/proc/net"):
        return (False, "anubis: needs Linux (/proc/net)")
    return __virtualname__


def _minion() -> str:
    return __grains__.get("id") or "this minion"


def plan(settings, pillar=None, listeners=None):
    """
    Turn the ``anubis`` formula's validated settings (what ``opskit.settings anubis``
    returns) into what its SLS files and templates use, after the checks only this host
    can make: the CPU architecture has an upstream package, no Anubis listener collides
    with a listen address in the pillar of ``exporters``, ``thumbnail_server`` or
    ``nginx`` (``pillar``, default this minion's), nor with a socket listening now
    (``listeners``, default: read with psutil when ``check_listening_ports`` is true),
    unless a configured instance (or nginx, for a site port) holds it. Raises
    ``CommandExecutionError`` naming each key path. Signing keys are not in the result.

    CLI Example:

    .. code-block:: bash

        salt web-01 anubis.plan "$(salt-call --out=json opskit.settings anubis \\
            "$(salt-call --out=json pillar.get anubis)")"
    """
    if not isinstance(settings, dict) or not isinstance(settings.get("instances"), dict):
        raise SaltInvocationError(
            "anubis.plan takes the settings opskit.settings('anubis', ...) returns"
        )
    containers = ()
    if listeners is None and settings.get("check_listening_ports") and settings["instances"]:
        listeners = opskit_net.listening_sockets()
        if settings.get("runtime") == "docker":
            containers = _project_containers(settings)
    try:
        return opskit_anubis_plan.plan(
            settings,
            minion=_minion(),
            cpu=__grains__.get("osarch") or __grains__.get("cpuarch"),
            pillar=__pillar__ if pillar is None else pillar,
            live=listeners,
            containers=containers,
        )
    except (opskit_schema.SettingsError, opskit_formats.UnsafeValue) as err:
        raise CommandExecutionError(f"{_minion()}: {err}") from err


def _project_containers(settings) -> set[str]:
    """Ids of the containers of the formula's compose project (none without docker)."""
    if not salt.utils.path.which("docker"):
        return set()
    label = f"label=com.docker.compose.project={settings['docker']['project']}"
    out = __salt__["cmd.run_all"](
        ["docker", "ps", "--all", "--quiet", "--no-trunc", "--filter", label],
        python_shell=False,
        ignore_retcode=True,
        output_loglevel="debug",
    )
    if out["retcode"] != 0:
        raise CommandExecutionError(
            f"{_minion()}: docker ps failed (exit {out['retcode']}): "
            f"{(out.get('stderr') or '').strip()[-300:]}; is dockerd running?"
        )
    return set(out["stdout"].split())


def listeners():
    """
    List the TCP sockets listening on this host, with the process and systemd unit
    that own each one (what :py:func:`plan` checks new listen addresses against).

    CLI Example:

    .. code-block:: bash

        salt web-01 anubis.listeners
    """
    return opskit_net.listening_sockets()


def targets(registry="/etc/anubis/opskit-targets.json"):
    """
    Return this minion's Anubis metrics targets, as the formula recorded them, in
    Prometheus ``file_sd`` shape (``[{"targets": [...], "labels": {...}}]``).

    ``opskit.targets`` (the mine function ``opskit_targets``, published by the ``common``
    formula) includes them.

    CLI Example:

    .. code-block:: bash

        salt web-01 anubis.targets
        salt monitoring-01 mine.get 'roles:anubis' opskit_targets tgt_type=pillar
    """
    try:
        with open(registry, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as err:
        raise CommandExecutionError(
            f"cannot read the Anubis target registry {registry} on {_minion()}: {err}; "
            "re-apply the anubis formula to rewrite it"
        ) from err
    return data.get("targets", [])


# ---------------------------------------------------------------------------------------
# Env files
# ---------------------------------------------------------------------------------------
ENV_FORMATS = {
    "systemd": (
        opskit_formats.systemd_env_file,
        opskit_formats.parse_systemd_env_file,
        ENV_HEADER,
    ),
    "compose": (
        opskit_formats.compose_env_file,
        opskit_formats.parse_compose_env_file,
        "Managed by Salt (opskit anubis formula, runtime docker); local changes are "
        "overwritten.\nRead by docker compose (env_file:). The signing key is not here: "
        "the container\nreads it from a read-only file (ED25519_PRIVATE_KEY_HEX_FILE).",
    ),
}


def _env_format(syntax):
    if syntax not in ENV_FORMATS:
        raise SaltInvocationError(f"env file syntax must be one of {', '.join(ENV_FORMATS)}")
    return ENV_FORMATS[syntax]


def _env_text(variables, extra, syntax="systemd"):
    for name in extra or {}:
        if name in variables:
            raise SaltInvocationError(f"env variable {name} is set by the formula")
    env = {**variables, **(extra or {})}
    render, _, header = _env_format(syntax)
    try:
        return render(env, header=header, path="env")
    except opskit_formats.UnsafeValue as err:
        raise SaltInvocationError(f"cannot write the Anubis env file: {err}") from err


def _shown(old, new, visible):
    if visible:
        return {"old": old, "new": new}
    return {
        "old": None if old is None else HIDDEN,
        "new": None if new is None else (HIDDEN_CHANGED if old is not None else HIDDEN),
    }


def env_diff(path, variables, extra=None, syntax="systemd"):
    """
    Compare the env file ``path`` with what ``variables`` (set by the formula) and
    ``extra`` (pillar ``env``) make of it: ``{"path", "needs_write", "changes"}``, the
    changes by variable, ``mode``/``owner`` when those differ (0640 root:root). Values
    from ``extra`` (and of variables the formula does not set) are hidden. ``syntax``:
    ``systemd`` (``EnvironmentFile=``) or ``compose`` (docker compose ``env_file:``).

    CLI Example:

    .. code-block:: bash

        salt web-01 anubis.env_diff /etc/anubis/app.env '{"BIND": "127.0.0.1:8923"}'
    """
    text = _env_text(variables, extra, syntax)
    parse = _env_format(syntax)[1]
    now = opskit_files.current(path)
    old = {}
    if now.content is not None:
        old = parse(now.content.decode("utf-8", "replace"))
    new = parse(text)
    changes = {
        name: _shown(old.get(name), new.get(name), name in variables)
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    }
    if now.content is not None and now.mode != ENV_MODE:
        changes["mode"] = {"old": f"{now.mode:04o}", "new": f"{ENV_MODE:04o}"}
    if now.content is not None and (now.uid, now.gid) != (0, 0):
        changes["owner"] = {"old": f"{now.uid}:{now.gid}", "new": "0:0"}
    needs = opskit_files.needs_write(path, text, ENV_MODE, 0, 0)
    if needs and not changes:
        changes["file"] = {"old": "(differs in layout)", "new": "(rewritten)"}
    return {
        "path": path,
        "exists": now.content is not None,
        "needs_write": needs,
        "changes": changes,
    }


def write_env(path, variables, extra=None, syntax="systemd"):
    """
    Write the env file ``path`` (mode 0640, root:root, atomically) from ``variables``
    and ``extra``, each value quoted for systemd's ``EnvironmentFile=``
    (``opskit_formats.systemd_env_file``) or, with ``syntax=compose``, for docker
    compose's ``env_file:`` (``opskit_formats.compose_env_file``). Returns
    :py:func:`env_diff`'s view of what changed (values from ``extra`` hidden).

    CLI Example:

    .. code-block:: bash

        salt web-01 anubis.write_env /etc/anubis/app.env '{"BIND": "127.0.0.1:8923"}'
    """
    before = env_diff(path, variables, extra, syntax)
    if before["needs_write"]:
        try:
            opskit_files.write_atomic(path, _env_text(variables, extra, syntax), ENV_MODE, 0, 0)
        except (OSError, LookupError) as err:
            raise CommandExecutionError(
                f"cannot write the Anubis env file {path} on {_minion()}: {err}"
            ) from err
    return before


# ---------------------------------------------------------------------------------------
# Signing keys
# ---------------------------------------------------------------------------------------
def _public_key(seed_hex):
    """The Ed25519 public key of a seed (safe to show), or a hash when no library."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        digest = hashlib.sha256(bytes.fromhex(seed_hex)).hexdigest()[:16]
        return f"sha256:{digest}"
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"ed25519:{raw.hex()}"


def key_info(path):
    """
    Describe a signing key file without revealing the key: whether it exists, whether
    it holds 64 hex characters, its mode and owner, and the Ed25519 public key.

    CLI Example:

    .. code-block:: bash

        salt web-01 anubis.key_info /etc/anubis/keys/gitlab.key
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {"path": path, "exists": False}
    except OSError as err:
        raise CommandExecutionError(f"cannot stat {path} on {_minion()}: {err}") from err
    with open(path, "rb") as handle:
        content = handle.read().strip().decode("ascii", "replace")
    valid = bool(HEX64_RE.fullmatch(content))
    return {
        "path": path,
        "exists": True,
        "valid": valid,
        "mode": f"{stat.S_IMODE(st.st_mode):04o}",
        "uid": st.st_uid,
        "gid": st.st_gid,
        "public_key": _public_key(content) if valid else None,
    }


def _pillar_key(pillar_path):
    # Read __pillar__ itself: since Salt 3008, pillar.get outside template rendering
    # returns masked values ("**********") unless asked to unmask.
    value = salt.utils.data.traverse_dict_and_list(__pillar__, pillar_path, None, ":")
    if value is None:
        return None
    if not isinstance(value, str) or not HEX64_RE.fullmatch(value):
        raise SaltInvocationError(
            f"pillar {pillar_path} on {_minion()} must be 64 hex characters "
            "(the value is not shown)"
        )
    return value.lower()


def _owner(owner):
    """(uid, gid) from ``owner`` (``[uid, gid]``; default root)."""
    try:
        uid, gid = (0, 0) if owner is None else (int(owner[0]), int(owner[1]))
    except (TypeError, ValueError, IndexError) as err:
        raise SaltInvocationError(f"owner must be [uid, gid], not {owner!r}") from err
    return uid, gid


def write_key(path, pillar_path=None, owner=None):
    """
    Write a signing key file (mode 0400, root or ``owner`` ``[uid, gid]``, in a 0700
    directory), atomically: the key from pillar ``pillar_path`` when given and set,
    else a new random key. (The docker runtime gives the file to the container's user,
    which reads it through a read-only bind mount.)

    The key never appears in arguments, return values or logs; the return value holds
    the public key only. Used by the ``anubis.key_managed`` state.

    CLI Example:

    .. code-block:: bash

        salt web-01 anubis.write_key /etc/anubis/keys/gitlab.key
        salt web-01 anubis.write_key /etc/anubis/keys/app.key \\
            pillar_path=anubis:instances:app:ed25519_private_key_hex owner='[1000, 1000]'
    """
    uid, gid = _owner(owner)
    key = _pillar_key(pillar_path) if pillar_path else None
    if key is None:
        key = secrets.token_hex(32)
    try:
        opskit_files.write_atomic(path, key + "\n", 0o400, uid, gid, makedirs=True, dir_mode=0o700)
        os.chmod(os.path.dirname(path), 0o700)
    except OSError as err:
        raise CommandExecutionError(
            f"cannot write the Anubis key file {path} on {_minion()}: {err}"
        ) from err
    return key_info(path)


def fix_key_mode(path, owner=None):
    """
    Set a key file back to mode 0400, owner root:root or ``owner`` ``[uid, gid]`` (its
    directory to 0700).

    CLI Example:

    .. code-block:: bash

        salt web-01 anubis.fix_key_mode /etc/anubis/keys/gitlab.key
    """
    uid, gid = _owner(owner)
    try:
        os.chmod(os.path.dirname(path), 0o700)
        os.chown(path, uid, gid)
        os.chmod(path, 0o400)
    except OSError as err:
        raise CommandExecutionError(f"cannot fix the mode of {path} on {_minion()}: {err}") from err
    return key_info(path)


def pillar_key_matches(path, pillar_path):
    """
    Tell whether the key file holds the key in pillar ``pillar_path`` (``None`` when
    that pillar is not set). Compares in memory; returns only True, False or None.

    CLI Example:

    .. code-block:: bash

        salt web-01 anubis.pillar_key_matches /etc/anubis/keys/app.key \\
            anubis:instances:app:ed25519_private_key_hex
    """
    key = _pillar_key(pillar_path)
    if key is None:
        return None
    content = opskit_files.read_text(path)
    if content is None:
        return False
    return secrets.compare_digest(content.strip().lower(), key)


# ---------------------------------------------------------------------------------------
# Health
# ---------------------------------------------------------------------------------------
def health(url, timeout=2.0):
    """
    Query an Anubis metrics listener's ``/healthz`` once (no proxy; loopback is fine).

    Returns ``{"url", "status", "body", "healthy"}``; ``status`` is ``None`` (with
    ``error``) when nothing answered. Upstream answers 200 ``OK`` once the instance
    serves (``lib/metrics/metrics.go``).

    CLI Example:

    .. code-block:: bash

        salt web-01 anubis.health http://127.0.0.1:9201/healthz
    """
    return opskit_health.probe(url, timeout=float(timeout))


def wait_healthy(url, timeout=30, interval=0.5):
    """
    Poll ``url`` until it answers 200, for at most ``timeout`` seconds; return the last
    answer (see :py:func:`health`) with ``healthy``, ``waited`` (seconds) and
    ``attempts``.

    CLI Example:

    .. code-block:: bash

        salt web-01 anubis.wait_healthy http://127.0.0.1:9201/healthz timeout=10
    """
    return opskit_health.wait_healthy(
        url,
        timeout=float(timeout),
        interval=float(interval),
        raise_error=False,
        request_timeout=2.0,
    )


# ---------------------------------------------------------------------------------------
# Runtime docker: the compose project (argv lists from anubis.plan, never a shell)
# ---------------------------------------------------------------------------------------
def _run(argv, what):
    out = __salt__["cmd.run_all"](
        list(argv), python_shell=False, ignore_retcode=True, output_loglevel="debug"
    )
    if out["retcode"] != 0:
        detail = (out.get("stderr") or out.get("stdout") or "no output").strip()[-600:]
        raise CommandExecutionError(
            f"{_minion()}: {what} failed (exit {out['retcode']}): {' '.join(argv)}: {detail}"
        )
    return out["stdout"]


def store_dir_info(path):
    """
    Describe a directory: whether it exists, its mode, uid and gid.

    CLI Example:

    .. code-block:: bash

        salt dock-01 anubis.store_dir_info /var/lib/anubis/app
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {"path": path, "exists": False}
    except OSError as err:
        raise CommandExecutionError(f"cannot stat {path} on {_minion()}: {err}") from err
    return {
        "path": path,
        "exists": True,
        "directory": stat.S_ISDIR(st.st_mode),
        "mode": f"{stat.S_IMODE(st.st_mode):04o}",
        "uid": st.st_uid,
        "gid": st.st_gid,
    }


def store_dir(path, owner):
    """
    Make ``path`` a directory of mode 0700 owned by ``owner`` (``[uid, gid]``; its
    parent is made root's, 0755, when missing): the docker runtime's bbolt store, which
    the container's user writes. Returns :py:func:`store_dir_info`.

    CLI Example:

    .. code-block:: bash

        salt dock-01 anubis.store_dir /var/lib/anubis/app '[1000, 1000]'
    """
    uid, gid = _owner(owner)
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        if not os.path.isdir(path) or os.path.islink(path):
            os.mkdir(path, 0o700)
        os.chown(path, uid, gid)
        os.chmod(path, 0o700)
    except OSError as err:
        raise CommandExecutionError(
            f"cannot make the Anubis store directory {path} on {_minion()}: {err}"
        ) from err
    return store_dir_info(path)


_DRY_RUN_RE = re.compile(r"Container \S+\s+([A-Za-z]+)")


def container_status(compose_argv, service):
    """
    The compose service's container: ``exists``, ``running``, ``current`` (what
    ``docker compose --dry-run up --no-deps <service>`` would do is only ``Running``,
    i.e. compose would leave it as it is; ``None`` when compose cannot load the project,
    e.g. before its files exist).

    CLI Example:

    .. code-block:: bash

        salt dock-01 anubis.container_status \\
            '[docker, compose, --project-name, anubis, --file, /opt/anubis-docker/compose.yaml]' app
    """
    argv = list(compose_argv)
    ids = _run([*argv, "ps", "--all", "--quiet", service], "docker compose ps").split()
    if not ids:
        return {"service": service, "exists": False, "running": False, "current": False}
    inspect = _run(["docker", "inspect", "--format", "{{json .State}}", ids[0]], "docker inspect")
    # Compose decides whether a container is current by its config-hash label, computed
    # from the project as `up` loads it (`config --hash` prints another value in 2.26):
    # ask `up` itself, in dry-run mode.
    dry = __salt__["cmd.run_all"](
        [*argv, "--dry-run", "up", "--detach", "--no-deps", service],
        python_shell=False,
        ignore_retcode=True,
        output_loglevel="debug",
    )
    current = None
    if dry["retcode"] == 0:
        actions = _DRY_RUN_RE.findall(f"{dry.get('stdout', '')}\n{dry.get('stderr', '')}")
        current = bool(actions) and all(action == "Running" for action in actions)
    return {
        "service": service,
        "exists": True,
        "id": ids[0][:12],
        "running": bool(json.loads(inspect).get("Running")),
        "current": current,
    }


def compose_up(compose_argv, service=None, recreate=False):
    """
    ``docker compose ... up --detach --remove-orphans`` for one service (or all), with
    ``--force-recreate`` when ``recreate``.

    CLI Example:

    .. code-block:: bash

        salt dock-01 anubis.compose_up "$COMPOSE_ARGV" app recreate=True
    """
    args = ["up", "--detach", "--remove-orphans"]
    args += ["--force-recreate"] if recreate else []
    args += [service] if service else []
    _run([*compose_argv, *args], "docker compose up")
    return {"command": " ".join([*compose_argv, *args])}


def compose_down(compose_argv):
    """
    ``docker compose ... down --remove-orphans`` for the formula's project.

    CLI Example:

    .. code-block:: bash

        salt dock-01 anubis.compose_down "$COMPOSE_ARGV"
    """
    args = ["down", "--remove-orphans"]
    _run([*compose_argv, *args], "docker compose down")
    return {"command": " ".join([*compose_argv, *args])}
