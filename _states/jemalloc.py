"""Run services under jemalloc, and stop doing so.

``jemalloc.enabled`` / ``jemalloc.disabled`` target a systemd unit: they install the
library, manage opskit's drop-in ``/etc/systemd/system/<unit>.d/50-opskit-jemalloc.conf``
(``Environment=LD_PRELOAD=...`` and optionally ``MALLOC_CONF``), reload systemd,
restart the unit when that changed what it runs with, and verify in
``/proc/<MainPID>/maps`` that jemalloc is (or is no longer) mapped.

``jemalloc.compose_enabled`` / ``jemalloc.compose_disabled`` manage a docker compose
override file instead (environment plus a read-only bind mount of the host's library);
recreating the containers is left to the compose formula, which can ``watch`` them.

.. code-block:: yaml

    thumbnail-server-under-jemalloc:
      jemalloc.enabled:
        - name: thumbnail-server.service
        - malloc_conf: background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0
        - restart: true
"""

from __future__ import annotations

import os

from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

try:
    import opskit_jemalloc  # synced from file_roots, or module_dirs
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_jemalloc

__virtualname__ = "jemalloc"


def __virtual__():
    if "jemalloc.library_path" in __salt__:
        return __virtualname__
    return (False, "jemalloc: the jemalloc execution module is not available")


def _ret(name: str) -> dict:
    return {"name": name, "result": False, "changes": {}, "comment": ""}


def _ensure_library(library: str, package: str) -> dict:
    """Install ``package`` if ``library`` is missing; return the change, if any."""
    if os.path.isfile(library):
        return {}
    installed = __salt__["pkg.install"](package)
    if not os.path.isfile(library):
        raise CommandExecutionError(
            f"{__opts__.get('id')}: package {package} is installed but {library} does not "
            f"exist; check where the package puts the library (dpkg -L {package} / "
            f"rpm -ql {package}) and pass `library`"
        )
    version = (installed.get(package) or {}).get("new") or __salt__["pkg.version"](package)
    return {package: {"old": None, "new": version}}


def _process(pid: int, loaded: bool) -> dict:
    return {"main_pid": pid, "jemalloc": loaded}


def _inspect_enabled(unit: str, malloc_conf, library, package) -> dict:
    """Everything ``enabled`` needs to decide, read before any change."""
    checked = __salt__["jemalloc.validate_malloc_conf"](malloc_conf)
    library = library or __salt__["jemalloc.library_path"]()
    status = __salt__["jemalloc.unit_status"](unit)
    running = status["main_pid"] != 0
    return {
        "conf": checked["malloc_conf"],
        "notes": list(checked["warnings"]),
        "library": library,
        "package": package or __salt__["jemalloc.package_name"](),
        "path": __salt__["jemalloc.dropin_path"](unit),
        "have": __salt__["jemalloc.dropin"](unit),
        "want": opskit_jemalloc.environment(library, checked["malloc_conf"]),
        "status": status,
        "running": running,
        "loaded": running and bool(__salt__["jemalloc.mapped"](status["main_pid"])),
    }


def _quiet_comment(unit: str, plan: dict) -> str:
    pid = plan["status"]["main_pid"]
    if not plan["running"]:
        return f"{plan['path']} is in place; {unit} is not running (jemalloc when it starts)"
    if plan["loaded"]:
        return f"{unit} runs under jemalloc (PID {pid})"
    return (
        f"{plan['path']} is in place; {unit} (PID {pid}) does not have jemalloc yet and "
        "restart is false: it gets it at its next restart"
    )


def _unit_missing(ret: dict, unit: str, plan: dict) -> dict:
    """``enabled`` on a unit systemd does not know: fail, except in test mode, where an
    earlier state of the same run may be what installs it, so predict instead."""
    if __opts__.get("test"):
        ret["result"] = None
        ret["changes"] = {plan["path"]: {"old": plan["have"], "new": plan["want"]}}
        ret["comment"] = (
            f"{unit} does not exist yet on {__opts__.get('id')}; if the states before this "
            f"one install it, {plan['path']} would be written for it (a real run fails "
            "here if the unit is still missing)"
        )
        return ret
    ret["comment"] = (
        f"{unit} is not a unit systemd knows on {__opts__.get('id')} "
        f"(LoadState={plan['status']['load_state']}); install the service first "
        "(require its state)"
    )
    return ret


def _predict_enabled(unit: str, plan: dict) -> dict:
    changes = {}
    if plan["library_missing"]:
        changes[plan["package"]] = {"old": None, "new": "installed"}
    if plan["dropin_changes"]:
        changes[plan["path"]] = {"old": plan["have"], "new": plan["want"]}
    if plan["restart_needed"]:
        changes[unit] = {
            "old": _process(plan["status"]["main_pid"], plan["loaded"]),
            "new": "restarted with jemalloc",
        }
    return changes


def _apply_enabled(unit: str, plan: dict, verify_timeout: float, changes: dict) -> str:
    """Install, probe, write, reload, restart, verify; record into ``changes`` as it
    goes (so a failure half-way still reports what was done); return the comment."""
    changes.update(_ensure_library(plan["library"], plan["package"]))
    __salt__["jemalloc.probe"](plan["library"], plan["conf"])
    if __salt__["jemalloc.write_dropin"](unit, plan["conf"], plan["library"]):
        changes[plan["path"]] = {"old": plan["have"], "new": plan["want"]}
    if plan["reload_needed"]:
        __salt__["service.systemctl_reload"]()
    effective = __salt__["jemalloc.unit_status"](unit)["environment"]
    if effective.get("LD_PRELOAD") != plan["library"]:
        raise CommandExecutionError(
            f"after daemon-reload systemd starts {unit} with "
            f"LD_PRELOAD={effective.get('LD_PRELOAD', '(unset)')}, not {plan['library']}: a "
            f"drop-in sorting after {opskit_jemalloc.DROPIN_NAME} or the unit itself "
            f"overrides it (systemctl show -p DropInPaths -p Environment {unit})"
        )
    pid = plan["status"]["main_pid"]
    if plan["restart_needed"]:
        __salt__["service.restart"](unit)
        after = __salt__["jemalloc.wait_for_main_process"](unit, True, verify_timeout)
        changes[unit] = {
            "old": _process(pid, plan["loaded"]),
            "new": _process(after["main_pid"], True),
        }
        return f"{unit} restarted; jemalloc is mapped into PID {after['main_pid']}"
    if not plan["running"]:
        return f"{plan['path']} written; {unit} is not running (jemalloc when it starts)"
    if plan["loaded"] and not plan["dropin_changes"]:
        return f"{unit} runs under jemalloc (PID {pid})"
    return (
        f"{plan['path']} written; {unit} (PID {pid}) was not restarted (restart: false): "
        "it runs under the new settings after its next restart"
    )


def enabled(  # noqa: PLR0917 - Salt passes state arguments by keyword
    name: str,
    malloc_conf: str | None = None,
    restart: bool = True,
    library: str | None = None,
    package: str | None = None,
    verify_timeout: float = 15,
) -> dict:
    """
    Run systemd unit ``name`` under jemalloc.

    name
        The unit (``foo`` means ``foo.service``). It must exist; it is not started if
        it is stopped (then it gets jemalloc when it starts).
    malloc_conf
        Optional ``MALLOC_CONF`` for the service, e.g.
        ``background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0``. Checked by
        preloading it into ``/bin/true`` before anything is written.
    restart
        Restart the running unit when the drop-in changed, or when its running process
        does not have jemalloc yet (default True). With False the drop-in is written
        and the comment says the change waits for the next restart.
    library, package
        Override the library path and the package that provides it (defaults per OS
        family and architecture: ``jemalloc.library_path``, ``jemalloc.package_name``).
    verify_timeout
        Seconds to wait after a restart for jemalloc to show up in
        ``/proc/<MainPID>/maps``; the state fails if it does not.
    """
    ret = _ret(name)
    try:
        unit = __salt__["jemalloc.unit_name"](name)
        plan = _inspect_enabled(unit, malloc_conf, library, package)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["comment"] = str(err)
        return ret
    if plan["status"]["load_state"] != "loaded":
        return _unit_missing(ret, unit, plan)
    plan["library_missing"] = not os.path.isfile(plan["library"])
    plan["dropin_changes"] = plan["have"] != plan["want"]
    plan["reload_needed"] = plan["dropin_changes"] or plan["status"]["need_daemon_reload"]
    plan["restart_needed"] = (
        plan["running"] and restart and (plan["dropin_changes"] or not plan["loaded"])
    )
    if not any(
        plan[k] for k in ("library_missing", "dropin_changes", "reload_needed", "restart_needed")
    ):
        ret["result"] = True
        ret["comment"] = "; ".join([_quiet_comment(unit, plan), *plan["notes"]])
        return ret

    if __opts__.get("test"):
        pending = [f"{unit} would run under jemalloc"]
        if plan["reload_needed"]:
            pending.append("systemd would be reloaded")
        if plan["running"] and not plan["restart_needed"] and plan["dropin_changes"]:
            pending.append(f"{unit} would not be restarted (restart: false)")
        ret["changes"] = _predict_enabled(unit, plan)
        ret["result"] = None
        ret["comment"] = "; ".join([*pending, *plan["notes"]])
        return ret

    try:
        comment = _apply_enabled(unit, plan, verify_timeout, ret["changes"])
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["comment"] = str(err)
        return ret
    ret["result"] = True
    ret["comment"] = "; ".join([comment, *plan["notes"]])
    return ret


def disabled(name: str, restart: bool = True, verify_timeout: float = 15) -> dict:
    """
    Stop running systemd unit ``name`` under jemalloc: remove opskit's drop-in, reload
    systemd, restart the unit if its running process has jemalloc mapped (unless
    ``restart`` is False), and verify that jemalloc is gone from its main process.

    A unit that does not exist is fine (nothing runs under jemalloc). If jemalloc is
    still configured by something other than opskit's drop-in the state fails rather
    than restart the unit for nothing.
    """
    ret = _ret(name)
    try:
        unit = __salt__["jemalloc.unit_name"](name)
        path = __salt__["jemalloc.dropin_path"](unit)
        have = __salt__["jemalloc.dropin"](unit)
        status = __salt__["jemalloc.unit_status"](unit)
        running = status["main_pid"] != 0
        loaded_now = running and bool(__salt__["jemalloc.mapped"](status["main_pid"]))
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["comment"] = str(err)
        return ret

    remove = have is not None or os.path.exists(path)
    reload_needed = remove or status["need_daemon_reload"]
    restart_needed = running and restart and loaded_now
    if not (remove or reload_needed or restart_needed):
        ret["result"] = True
        ret["comment"] = (
            f"{unit} does not run under jemalloc"
            if not loaded_now
            else f"{unit} (PID {status['main_pid']}) still has jemalloc mapped and "
            "restart is false: it loses it at its next restart"
        )
        return ret

    if __opts__.get("test"):
        if remove:
            ret["changes"][path] = {"old": have, "new": None}
        if restart_needed:
            ret["changes"][unit] = {
                "old": _process(status["main_pid"], loaded_now),
                "new": "restarted without jemalloc",
            }
        ret["result"] = None
        ret["comment"] = f"{unit} would stop running under jemalloc"
        return ret

    try:
        if __salt__["jemalloc.remove_dropin"](unit):
            ret["changes"][path] = {"old": have, "new": None}
        if reload_needed:
            __salt__["service.systemctl_reload"]()
        effective = __salt__["jemalloc.unit_status"](unit)["environment"]
        if "libjemalloc" in effective.get("LD_PRELOAD", ""):
            ret["comment"] = (
                f"{path} is gone, but systemd still starts {unit} with "
                f"LD_PRELOAD={effective['LD_PRELOAD']}: another drop-in or the unit itself "
                f"preloads jemalloc (systemctl show -p DropInPaths -p Environment {unit})"
            )
            return ret
        if restart_needed:
            __salt__["service.restart"](unit)
            after = __salt__["jemalloc.wait_for_main_process"](unit, False, verify_timeout)
            ret["changes"][unit] = {
                "old": _process(status["main_pid"], loaded_now),
                "new": _process(after["main_pid"], False),
            }
            comment = f"{unit} restarted; jemalloc is no longer mapped (PID {after['main_pid']})"
        elif loaded_now:
            comment = (
                f"{path} removed; {unit} (PID {status['main_pid']}) keeps jemalloc until "
                "its next restart (restart: false)"
            )
        else:
            comment = f"{path} removed; {unit} does not run under jemalloc"
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["comment"] = str(err)
        return ret
    ret["result"] = True
    ret["comment"] = comment
    return ret


def compose_enabled(  # noqa: PLR0917 - Salt passes state arguments by keyword
    name: str,
    services,
    malloc_conf: str | None = None,
    library: str | None = None,
    package: str | None = None,
    target: str = opskit_jemalloc.CONTAINER_LIBRARY,
) -> dict:
    """
    Write a docker compose override file ``name`` that runs compose ``services`` under
    the host's jemalloc: each service gets ``LD_PRELOAD=<target>``, ``MALLOC_CONF`` if
    given, and a read-only bind mount of the host's library at ``target``.

    The host library is installed if missing and checked by preloading it (with
    ``malloc_conf``) into ``/bin/true`` on the host. The file is opskit's alone: an
    existing file that opskit did not write is never overwritten. Containers are not
    recreated here: pass the file to ``docker compose -f ... -f <name> up -d`` in the
    compose formula and ``watch`` this state there. The container's image must use
    glibc (not musl) no older than the host's, or the loader will refuse the library;
    check with ``jemalloc.is_loaded <container's host PID>``.
    """
    ret = _ret(name)
    try:
        checked = __salt__["jemalloc.validate_malloc_conf"](malloc_conf)
        conf = checked["malloc_conf"]
        library = library or __salt__["jemalloc.library_path"]()
        package = package or __salt__["jemalloc.package_name"]()
        want = __salt__["jemalloc.compose_override"](services, conf, library, target)
        have = __salt__["jemalloc.read_compose_override"](name)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["comment"] = str(err)
        return ret
    library_missing = not os.path.isfile(library)
    notes = list(checked["warnings"])
    if have == want and not library_missing:
        ret["result"] = True
        ret["comment"] = "; ".join([f"{name} is up to date", *notes])
        return ret
    if __opts__.get("test"):
        if library_missing:
            ret["changes"][package] = {"old": None, "new": "installed"}
        if have != want:
            ret["changes"][name] = {"old": have, "new": want}
        ret["result"] = None
        ret["comment"] = "; ".join([f"{name} would be written", *notes])
        return ret
    try:
        ret["changes"].update(_ensure_library(library, package))
        __salt__["jemalloc.probe"](library, conf)
        if __salt__["jemalloc.write_compose_override"](name, want):
            ret["changes"][name] = {"old": have, "new": want}
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["comment"] = str(err)
        return ret
    ret["result"] = True
    ret["comment"] = "; ".join(
        [f"{name} written; recreate the containers to apply it", *notes]
        if name in ret["changes"]
        else [f"{name} is up to date", *notes]
    )
    return ret


def compose_disabled(name: str) -> dict:
    """
    Remove the docker compose override ``name`` that ``jemalloc.compose_enabled`` wrote
    (a file opskit did not write is left alone, and the state fails). Containers keep
    jemalloc until the compose formula recreates them.
    """
    ret = _ret(name)
    try:
        have = __salt__["jemalloc.read_compose_override"](name)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["comment"] = str(err)
        return ret
    if have is None:
        ret["result"] = True
        ret["comment"] = f"{name} does not exist"
        return ret
    ret["changes"][name] = {"old": have, "new": None}
    if __opts__.get("test"):
        ret["result"] = None
        ret["comment"] = f"{name} would be removed"
        return ret
    try:
        __salt__["jemalloc.remove_compose_override"](name)
    except CommandExecutionError as err:
        ret["changes"] = {}
        ret["comment"] = str(err)
        return ret
    ret["result"] = True
    ret["comment"] = f"{name} removed; recreate the containers to apply it"
    return ret
