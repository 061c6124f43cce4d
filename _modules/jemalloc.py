"""Run services under jemalloc: where the library is, what opskit's systemd drop-in
says, and whether a running process really has jemalloc mapped.

The dynamic loader only prints a warning when ``LD_PRELOAD`` names a library it cannot
load, and starts the program anyway; statically linked programs and services that
reset their environment ignore it silently. So the only proof that a service runs
under jemalloc is ``/proc/<MainPID>/maps``: ``jemalloc.is_loaded`` reads it.

The states in ``_states/jemalloc.py`` (``jemalloc.enabled`` / ``jemalloc.disabled`` for
systemd units, ``jemalloc.compose_enabled`` / ``jemalloc.compose_disabled`` for
docker compose services) build on these functions.
"""

from __future__ import annotations

import contextlib
import os
import time

import salt.utils.files
import salt.utils.platform
import salt.utils.systemd
from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

try:
    import opskit_files  # synced from file_roots, or module_dirs
    import opskit_formats
    import opskit_health
    import opskit_jemalloc
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_files
    from saltext.opskit.utils import opskit_formats
    from saltext.opskit.utils import opskit_health
    from saltext.opskit.utils import opskit_jemalloc

__virtualname__ = "jemalloc"

SYSTEMD_DIR = "/etc/systemd/system"
# Executables a freshly forked service process still runs before it execs its own.
_SYSTEMD_EXECUTABLES = ("systemd", "systemd-executor")


def __virtual__():
    if not salt.utils.platform.is_linux():
        return (False, "jemalloc: LD_PRELOAD and /proc/<pid>/maps are Linux-only")
    return __virtualname__


def _minion() -> str:
    return __opts__.get("id", "this minion")


def _invalid(err: Exception) -> SaltInvocationError:
    return SaltInvocationError(f"{_minion()}: {err}")


def package_name() -> str:
    """
    Return the OS package that ships ``libjemalloc.so.2`` on this minion
    (``libjemalloc2`` on Debian/Ubuntu, ``jemalloc`` on the RHEL family).

    CLI Example:

    .. code-block:: bash

        salt '*' jemalloc.package_name
    """
    try:
        return opskit_jemalloc.package_name(__grains__.get("os_family", ""))
    except opskit_jemalloc.JemallocValueError as err:
        raise _invalid(err) from err


def library_path() -> str:
    """
    Return where this minion's OS package installs ``libjemalloc.so.2``, from the
    minion's OS family and architecture (grains ``os_family``, ``osarch``, ``cpuarch``).
    It does not check that the file exists (see ``jemalloc.status``).

    CLI Example:

    .. code-block:: bash

        salt '*' jemalloc.library_path
    """
    try:
        return opskit_jemalloc.library_path(
            __grains__.get("os_family", ""),
            __grains__.get("osarch", ""),
            __grains__.get("cpuarch", ""),
        )
    except opskit_jemalloc.JemallocValueError as err:
        raise _invalid(err) from err


def unit_name(name: str) -> str:
    """
    Return the canonical unit name (``foo`` → ``foo.service``); refuse invalid names.

    CLI Example:

    .. code-block:: bash

        salt '*' jemalloc.unit_name thumbnail-server
    """
    try:
        return opskit_jemalloc.canonical_unit(name)
    except opskit_jemalloc.JemallocValueError as err:
        raise _invalid(err) from err


def dropin_path(unit: str) -> str:
    """
    Return the path of opskit's jemalloc drop-in for ``unit``.

    CLI Example:

    .. code-block:: bash

        salt '*' jemalloc.dropin_path thumbnail-server.service
    """
    return os.path.join(SYSTEMD_DIR, f"{unit_name(unit)}.d", opskit_jemalloc.DROPIN_NAME)


def dropin(unit: str) -> dict | None:
    """
    Return the environment opskit's drop-in for ``unit`` sets, or None if there is none.

    CLI Example:

    .. code-block:: bash

        salt '*' jemalloc.dropin thumbnail-server.service
    """
    path = dropin_path(unit)
    try:
        with salt.utils.files.fopen(path, "r") as handle:
            return opskit_jemalloc.parse_dropin(handle.read())
    except FileNotFoundError:
        return None
    except OSError as err:
        raise CommandExecutionError(f"{_minion()}: cannot read {path}: {err}") from err


def render_dropin(unit: str, malloc_conf: str | None = None, library: str | None = None) -> str:
    """
    Return the drop-in opskit would write for ``unit`` (nothing is written).
    ``malloc_conf`` is validated: whitespace, quotes, ``%`` and ``$`` are refused.

    CLI Example:

    .. code-block:: bash

        salt '*' jemalloc.render_dropin thumbnail-server malloc_conf=background_thread:true
    """
    conf = validate_malloc_conf(malloc_conf)["malloc_conf"]
    try:
        return opskit_jemalloc.render_dropin(unit_name(unit), library or library_path(), conf)
    except opskit_formats.UnsafeValue as err:
        raise _invalid(err) from err


def validate_malloc_conf(malloc_conf: str | None) -> dict:
    """
    Check a ``MALLOC_CONF`` value; return it with warnings about options jemalloc 5.x
    does not document. Raises ``SaltInvocationError`` for syntax opskit will not write.

    CLI Example:

    .. code-block:: bash

        salt '*' jemalloc.validate_malloc_conf background_thread:true,dirty_decay_ms:1000
    """
    try:
        conf, warnings = opskit_jemalloc.validate_malloc_conf(malloc_conf)
    except opskit_jemalloc.JemallocValueError as err:
        raise _invalid(err) from err
    return {"malloc_conf": conf, "warnings": warnings}


def probe(library: str | None = None, malloc_conf: str | None = None) -> bool:
    """
    Preload ``library`` with ``malloc_conf`` into ``/bin/true`` and fail if the dynamic
    loader or jemalloc complains (a library that cannot be loaded, an invalid
    ``MALLOC_CONF`` pair). Returns True when both load silently.

    CLI Example:

    .. code-block:: bash

        salt '*' jemalloc.probe malloc_conf=background_thread:true
    """
    library = library or library_path()
    env = opskit_jemalloc.environment(library, malloc_conf)
    result = __salt__["cmd.run_all"](
        ["/bin/true"], env=env, python_shell=False, ignore_retcode=True, output_loglevel="quiet"
    )
    complaints = [
        line
        for line in (result.get("stderr") or "").splitlines()
        if "ld.so" in line or "<jemalloc>" in line or "LD_PRELOAD" in line
    ]
    if result.get("retcode") != 0 or complaints:
        shown = "; ".join(complaints) or f"exit {result.get('retcode')}"
        raise CommandExecutionError(
            f"{_minion()}: preloading {library} with MALLOC_CONF={malloc_conf or ''!s} "
            f"into /bin/true failed: {shown}. Fix the library path or MALLOC_CONF before "
            "any service is restarted with it."
        )
    return True


def _write(path: str, content: str, mode: int = 0o644) -> bool:
    """Write ``content`` to ``path`` atomically (``opskit_files``); True if it changed."""
    try:
        return opskit_files.write_atomic(path, content, mode, makedirs=True)
    except OSError as err:
        raise CommandExecutionError(f"{_minion()}: cannot write {path}: {err}") from err


def write_dropin(unit: str, malloc_conf: str | None = None, library: str | None = None) -> bool:
    """
    Write opskit's drop-in for ``unit`` (``Environment=LD_PRELOAD=...`` and
    ``MALLOC_CONF`` if given). Returns True if the file changed. Does not reload
    systemd or restart anything; the ``jemalloc.enabled`` state does.

    CLI Example:

    .. code-block:: bash

        salt '*' jemalloc.write_dropin thumbnail-server malloc_conf=background_thread:true
    """
    return _write(dropin_path(unit), render_dropin(unit, malloc_conf, library))


def remove_dropin(unit: str) -> bool:
    """
    Remove opskit's drop-in for ``unit`` (and its ``.d`` directory if that is then
    empty). Returns True if there was one. Does not reload systemd.

    CLI Example:

    .. code-block:: bash

        salt '*' jemalloc.remove_dropin thumbnail-server
    """
    path = dropin_path(unit)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise CommandExecutionError(f"{_minion()}: cannot remove {path}: {err}") from err
    with contextlib.suppress(OSError):  # other drop-ins live there
        os.rmdir(os.path.dirname(path))
    return True


def _require_systemd() -> None:
    if not salt.utils.systemd.booted(__context__):
        raise CommandExecutionError(
            f"{_minion()}: systemd is not running as init here; jemalloc.enabled and "
            "jemalloc.is_loaded <unit> need a systemd host (use a PID for other processes)"
        )


def unit_status(unit: str) -> dict:
    """
    Return what systemd says about ``unit``: load and active state, MainPID, whether it
    needs ``daemon-reload``, its drop-ins and the environment systemd will give it.

    CLI Example:

    .. code-block:: bash

        salt '*' jemalloc.unit_status thumbnail-server.service
    """
    _require_systemd()
    unit = unit_name(unit)
    props = __salt__["service.show"](unit)
    try:
        main_pid = int(props.get("MainPID") or 0)
    except ValueError:
        main_pid = 0
    return {
        "unit": unit,
        "load_state": props.get("LoadState", ""),
        "active_state": props.get("ActiveState", ""),
        "sub_state": props.get("SubState", ""),
        "main_pid": main_pid,
        "need_daemon_reload": props.get("NeedDaemonReload") == "yes",
        "dropin_paths": (props.get("DropInPaths") or "").split(),
        "environment": opskit_jemalloc.parse_environment_property(props.get("Environment", "")),
        "active_enter_timestamp": props.get("ActiveEnterTimestamp", ""),
    }


def mapped(pid: int) -> list:
    """
    Return the jemalloc shared objects mapped into process ``pid`` (empty: none).

    CLI Example:

    .. code-block:: bash

        salt '*' jemalloc.mapped 1234
    """
    path = f"/proc/{int(pid)}/maps"
    try:
        with salt.utils.files.fopen(path, "r") as handle:
            return opskit_jemalloc.mapped_jemalloc(handle.read())
    except FileNotFoundError as err:
        raise CommandExecutionError(f"{_minion()}: process {pid} does not exist") from err
    except OSError as err:
        raise CommandExecutionError(f"{_minion()}: cannot read {path}: {err}") from err


def _main_pid(unit: str) -> int:
    status = unit_status(unit)
    if not status["main_pid"]:
        raise CommandExecutionError(
            f"{_minion()}: {status['unit']} has no main process "
            f"(LoadState={status['load_state']}, ActiveState={status['active_state']})"
        )
    return status["main_pid"]


def is_loaded(target) -> bool:
    """
    Return True if jemalloc is mapped into ``target``: a PID (any process, also one in
    a container) or a systemd unit (its MainPID).

    CLI Example:

    .. code-block:: bash

        salt '*' jemalloc.is_loaded thumbnail-server.service
        salt '*' jemalloc.is_loaded 1234
    """
    text = str(target).strip()
    pid = int(text) if text.isdigit() else _main_pid(text)
    return bool(mapped(pid))


def _executable(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def wait_for_main_process(unit: str, loaded: bool, timeout: float = 15) -> dict:
    """
    Wait until ``unit``'s main process runs its own program (not systemd's fork before
    exec) and has jemalloc mapped (``loaded=True``) or not (``loaded=False``). Returns
    ``{"main_pid", "executable", "loaded", "mapped"}``; raises ``CommandExecutionError``
    naming the unit, the PID and what to check if that does not happen within
    ``timeout`` seconds.

    CLI Example:

    .. code-block:: bash

        salt '*' jemalloc.wait_for_main_process thumbnail-server.service loaded=True
    """
    unit = unit_name(unit)
    last = {"main_pid": 0, "executable": "", "loaded": None, "mapped": []}

    def look(left):
        status = unit_status(unit)
        pid = status["main_pid"]
        if status["active_state"] == "failed":
            raise CommandExecutionError(
                f"{_minion()}: {unit} failed after its restart; see journalctl -u {unit}"
            )
        if not pid:
            return False, last
        exe = _executable(pid)
        settled = exe and os.path.basename(exe) not in _SYSTEMD_EXECUTABLES
        try:
            paths = mapped(pid)
        except CommandExecutionError:
            paths, settled = [], False  # exited meanwhile; systemd may restart it
        last.update(main_pid=pid, executable=exe, loaded=bool(paths), mapped=paths)
        if not settled or bool(paths) != loaded:
            return False, last
        if loaded:
            return True, last
        # The loader maps preloads right after exec: look once more.
        time.sleep(0.3)
        return not mapped(pid), last

    if opskit_health.wait_until(look, timeout=float(timeout), interval=0.2).done:
        return dict(last)
    if loaded:
        raise CommandExecutionError(
            f"{_minion()}: jemalloc is not mapped into {unit}'s main process "
            f"(PID {last['main_pid'] or 'none'}, {last['executable'] or 'no executable'}) "
            f"{timeout:g}s after its restart. The dynamic loader only warns about an "
            f"LD_PRELOAD it cannot load and starts the service anyway: look for "
            f"'ld.so: object ... cannot be preloaded' in journalctl -u {unit}. A statically "
            "linked program, or one that execs with a cleared environment, ignores "
            "LD_PRELOAD altogether."
        )
    raise CommandExecutionError(
        f"{_minion()}: jemalloc is still mapped into {unit}'s main process "
        f"(PID {last['main_pid']}: {', '.join(last['mapped'])}) {timeout:g}s after its "
        f"restart without opskit's drop-in; something else preloads it: check "
        f"systemctl show -p Environment {unit} and the unit's other drop-ins"
    )


def status(unit: str) -> dict:
    """
    Return a summary for people: the library and whether it exists, opskit's drop-in,
    the unit's MainPID and whether jemalloc is mapped into it.

    CLI Example:

    .. code-block:: bash

        salt '*' jemalloc.status thumbnail-server.service
    """
    library = library_path()
    state = unit_status(unit)
    loaded = bool(state["main_pid"]) and bool(mapped(state["main_pid"]))
    return {
        "library": library,
        "library_present": os.path.isfile(library),
        "dropin": dropin_path(unit),
        "dropin_environment": dropin(unit),
        "main_pid": state["main_pid"],
        "active_state": state["active_state"],
        "loaded": loaded,
    }


def compose_override(
    services,
    malloc_conf: str | None = None,
    library: str | None = None,
    target: str = opskit_jemalloc.CONTAINER_LIBRARY,
) -> dict:
    """
    Return the docker compose override that runs ``services`` under the host's
    jemalloc: per service ``environment`` (``LD_PRELOAD`` = ``target``, ``MALLOC_CONF``
    if given) and a read-only bind mount of the host's library at ``target``. Nothing is
    written; ``jemalloc.compose_enabled`` writes it to a file.

    CLI Example:

    .. code-block:: bash

        salt '*' jemalloc.compose_override '[thumbnail]' malloc_conf=background_thread:true
    """
    if isinstance(services, str):
        services = [s.strip() for s in services.split(",") if s.strip()]
    conf = validate_malloc_conf(malloc_conf)["malloc_conf"]
    if not str(target).startswith("/"):
        raise _invalid(ValueError(f"target {target!r} must be an absolute path"))
    try:
        return opskit_jemalloc.compose_override(services, library or library_path(), conf, target)
    except opskit_jemalloc.JemallocValueError as err:
        raise _invalid(err) from err


def _compose_path(path: str) -> str:
    if not isinstance(path, str) or not os.path.isabs(path) or not path.endswith((".yml", ".yaml")):
        raise _invalid(
            ValueError(f"compose override {path!r} must be an absolute path ending in .yml/.yaml")
        )
    return path


def read_compose_override(path: str) -> dict | None:
    """
    Return the override opskit wrote to ``path`` (parsed), or None if there is no file.
    Raises ``CommandExecutionError`` if the file exists but opskit did not write it.

    CLI Example:

    .. code-block:: bash

        salt '*' jemalloc.read_compose_override /opt/seafile/docker-compose.opskit-jemalloc.yml
    """
    import yaml

    path = _compose_path(path)
    try:
        text = opskit_files.read_text(path)
    except OSError as err:
        raise CommandExecutionError(f"{_minion()}: cannot read {path}: {err}") from err
    if text is None:
        return None
    if not text.startswith(opskit_jemalloc.MARKER):
        raise CommandExecutionError(
            f"{_minion()}: {path} exists and was not written by opskit (its first line is "
            f"not {opskit_jemalloc.MARKER!r}); opskit will not overwrite or remove it. "
            "Choose another file name for the jemalloc override, or move that file away."
        )
    try:
        return opskit_formats.yaml_load(text, compose=True) or {}
    except yaml.YAMLError as err:
        raise CommandExecutionError(f"{_minion()}: {path} is not valid YAML: {err}") from err


def write_compose_override(path: str, override: dict) -> bool:
    """
    Write ``override`` (from ``jemalloc.compose_override``) to ``path`` as YAML with
    opskit's header. Returns True if the file changed. Refuses to overwrite a file
    opskit did not write.

    CLI Example:

    .. code-block:: bash

        salt '*' jemalloc.write_compose_override /srv/app/jemalloc.yml '{"services": {}}'
    """
    path = _compose_path(path)
    if read_compose_override(path) == override:
        return False
    header = (
        f"{opskit_jemalloc.MARKER.removeprefix('# ')}; local edits are overwritten.\n"
        "Runs these services under the host's jemalloc: pass this file to docker compose\n"
        "after the main file (docker compose -f compose.yml -f THIS_FILE up -d)."
    )
    try:
        text = opskit_formats.yaml_document(override, header=header, compose=True)
    except opskit_formats.UnsafeValue as err:
        raise _invalid(err) from err
    _write(path, text)
    if read_compose_override(path) != override:
        raise CommandExecutionError(f"{_minion()}: {path} does not read back as written")
    return True


def remove_compose_override(path: str) -> bool:
    """
    Remove the compose override opskit wrote at ``path``. Returns True if there was one.

    CLI Example:

    .. code-block:: bash

        salt '*' jemalloc.remove_compose_override /opt/seafile/docker-compose.opskit-jemalloc.yml
    """
    if read_compose_override(path) is None:
        return False
    try:
        os.unlink(path)
    except OSError as err:
        raise CommandExecutionError(f"{_minion()}: cannot remove {path}: {err}") from err
    return True
