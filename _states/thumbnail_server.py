"""States for Seafile thumbnail-server hosts: the env file that holds the secrets, its
directory, the docker compose project, and the health check after apply.

``thumbnail_server.env_file`` writes the service's environment file (mode 0600, root):
the settings come from the formula's plan (no secrets, no ``env`` values), the secrets
and ``env`` values from pillar (``thumbnail_server:secrets`` and ``:env``), read on the
minion while the state runs, so they are never part of the rendered states, the state's
arguments, its ``changes`` or its comment. ``changes`` name the variables that changed;
secrets and every pillar ``env`` value show masked.

``thumbnail_server.config_dir`` makes the env file's directory (0700, root), refusing a
directory that holds anything else. ``thumbnail_server.compose_running`` and
``compose_absent`` run the compose project with argv commands;
``thumbnail_server.healthy`` waits (bounded) until the service answers its health URL
and, for a systemd unit run under jemalloc, checks jemalloc in its main process.
"""

from __future__ import annotations

import os

from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

__virtualname__ = "thumbnail_server"
_ERRORS = (CommandExecutionError, SaltInvocationError)


def __virtual__():
    if "thumbnail_server.env_status" not in __salt__:
        return (False, "thumbnail_server: the thumbnail_server execution module is not available")
    return __virtualname__


def _ret(name):
    return {"name": name, "result": True, "changes": {}, "comment": ""}


def _fail(ret, err):
    ret["result"] = False
    ret["comment"] = str(err)
    return ret


def _changes(status: dict) -> dict:
    changes = {}
    if status["old"] or status["new"] or not status["content_ok"]:
        changes[status["path"]] = {
            "old": status["old"] if status["exists"] else None,
            "new": status["new"],
        }
    if status["exists"] and status["mode"] != "0600":
        changes["mode"] = {"old": status["mode"], "new": "0600"}
    if status["exists"] and status["owner"] != (0, 0):
        changes["owner"] = {"old": "{}:{}".format(*status["owner"]), "new": "0:0"}
    return changes


def env_file(name, settings, **kwargs):  # kwargs: state.single passes pillar=
    """
    Keep the thumbnail server's env file ``name`` (0600, root) in line with ``settings``
    (the formula's plan, which holds no secrets) and pillar ``thumbnail_server:secrets``
    and ``thumbnail_server:env``.

    .. code-block:: yaml

        thumbnail-server-config-env-thumbnail_server-env_file:
          thumbnail_server.env_file:
            - name: /etc/seafile-thumbnail/thumbnail-server.env
            - settings: {{ settings | json }}
    """
    ret = _ret(name)
    try:
        status = __salt__["thumbnail_server.env_status"](name, settings)
    except _ERRORS as err:
        return _fail(ret, err)
    if status["up_to_date"]:
        ret["comment"] = f"{name} is up to date ({settings['env_syntax']} syntax, mode 0600)"
        return ret
    changes = _changes(status)
    if __opts__["test"]:
        ret.update(result=None, changes=changes, comment=f"{name} would be written (0600, root)")
        return ret
    try:
        __salt__["thumbnail_server.write_env"](name, settings)
        after = __salt__["thumbnail_server.env_status"](name, settings)
    except _ERRORS as err:
        return _fail(ret, err)
    ret["changes"] = changes
    if not after["up_to_date"]:
        ret["result"] = False
        ret["comment"] = (
            f"{name} was written but reads back differently (mode {after['mode']}, "
            f"owner {after['owner']}); check what else writes it"
        )
        return ret
    ret["comment"] = f"{name} written (mode 0600, root)"
    return ret


def config_dir(name, **kwargs):
    """
    Make ``name`` the env file's own directory: created if missing, mode 0700, owned by
    root. A directory that already holds anything but the env file is refused instead
    of being locked away from its other users (``/etc/ssh``, ``/var/log/nginx``): give
    the thumbnail server a directory of its own (``thumbnail_server:config_dir``).

    .. code-block:: yaml

        thumbnail-server-config-dir:
          thumbnail_server.config_dir:
            - name: /etc/seafile-thumbnail
    """
    ret = _ret(name)
    status = __salt__["thumbnail_server.config_dir_status"](name)
    if status["exists"] and not status["is_dir"]:
        return _fail(
            ret,
            f"{name} exists and is not a directory; thumbnail_server:config_dir must name a "
            "directory of its own",
        )
    if status["foreign"]:
        shown = ", ".join(status["foreign"][:5]) + (" ..." if len(status["foreign"]) > 5 else "")
        return _fail(
            ret,
            f"{name} already holds other files ({shown}); the thumbnail server's env file "
            "needs a directory of its own (it is made 0700, root): set "
            "thumbnail_server:config_dir to a new directory such as /etc/seafile-thumbnail",
        )
    want = ("0700", (0, 0))
    if status["exists"] and (status["mode"], status["owner"]) == want:
        ret["comment"] = f"{name} is in place (0700, root)"
        return ret
    if status["exists"]:
        changes = {
            "mode": {"old": status["mode"], "new": "0700"},
            "owner": {"old": "{}:{}".format(*status["owner"]), "new": "0:0"},
        }
    else:
        changes = {name: {"old": None, "new": "directory 0700 root"}}
    if __opts__["test"]:
        ret.update(result=None, changes=changes, comment=f"{name} would be made 0700, root")
        return ret
    try:
        os.makedirs(name, mode=0o700, exist_ok=True)
        os.chown(name, 0, 0)
        os.chmod(name, 0o700)
    except OSError as err:
        return _fail(ret, f"cannot make {name} (0700, root): {err}")
    ret.update(changes=changes, comment=f"{name} is in place (0700, root)")
    return ret


def compose_running(name, settings, **kwargs):
    """
    Keep the formula's compose project up: ``up -d`` when its ``thumbnail-server``
    container is not running. A ``watch`` requisite that changed (compose file, env
    file, jemalloc override, the container's nginx site) recreates it instead
    (``mod_watch``: ``up -d --force-recreate``). ``name`` is the project directory.

    .. code-block:: yaml

        thumbnail-server-service-compose-running:
          thumbnail_server.compose_running:
            - name: /opt/seafile-thumbnail
            - settings: {{ settings | json }}
            - watch:
              - file: thumbnail-server-config-compose-file-managed
    """
    ret = _ret(name)
    if __opts__["test"]:
        settings = _as_written(settings)
    if settings is None:
        # A new host in test mode: the compose file is not written yet, so there is no
        # project to ask about (docker compose would fail on the missing file).
        ret.update(result=None, comment="the thumbnail-server container would be started")
        ret["changes"] = {"container": {"old": "not running", "new": "running"}}
        return ret
    try:
        if __salt__["thumbnail_server.compose_running"](settings):
            ret["comment"] = "the thumbnail-server container is running"
            return ret
        if __opts__["test"]:
            ret.update(result=None, comment="the thumbnail-server container would be started")
            ret["changes"] = {"container": {"old": "not running", "new": "running"}}
            return ret
        __salt__["thumbnail_server.compose_up"](settings)
        running = __salt__["thumbnail_server.compose_running"](settings)
    except _ERRORS as err:
        return _fail(ret, err)
    ret["changes"] = {"container": {"old": "not running", "new": "running"}}
    if not running:
        return _fail(ret, f"compose up ran in {name} but thumbnail-server is not running")
    ret["comment"] = "the thumbnail-server container was started"
    return ret


def mod_watch(name, sfun=None, settings=None, **kwargs):
    """A watched file changed: recreate the container (its nginx and its environment are
    read only when it starts)."""
    ret = _ret(name)
    if sfun != "compose_running":
        return _fail(ret, f"thumbnail_server.{sfun} does not support watch")
    if __opts__["test"]:
        written = _as_written(settings)
        try:
            running = written is not None and __salt__["thumbnail_server.compose_running"](written)
        except _ERRORS as err:
            return _fail(ret, err)
        if running:
            comment, old = "the thumbnail-server container would be recreated", "outdated"
        else:
            comment, old = "the thumbnail-server container would be started", "not running"
        new = "recreated" if running else "running"
        ret.update(result=None, comment=comment, changes={"container": {"old": old, "new": new}})
        return ret
    try:
        __salt__["thumbnail_server.compose_up"](settings, recreate=True)
        running = __salt__["thumbnail_server.compose_running"](settings)
    except _ERRORS as err:
        return _fail(ret, err)
    ret["changes"] = {"container": {"old": "outdated", "new": "recreated"}}
    if not running:
        return _fail(ret, f"compose up --force-recreate ran in {name} but nothing runs")
    ret["comment"] = "the thumbnail-server container was recreated"
    return ret


def _as_written(settings):
    """Test mode: ``settings`` whose compose command line names only the files that
    exist now (an apply writes the others before it runs compose); None when the compose
    file itself is not there yet (a new host), so there is no project to ask about."""
    dk = settings["docker"]
    if not os.path.isfile(dk["compose_file"]):
        return None
    argv, kept, i = dk["compose_argv"], [], 0
    while i < len(argv):
        if argv[i] == "-f" and i + 1 < len(argv):
            if os.path.isfile(argv[i + 1]):
                kept += argv[i : i + 2]
            i += 2
        else:
            kept.append(argv[i])
            i += 1
    return {**settings, "docker": {**dk, "compose_argv": kept}}


def compose_absent(name, settings, **kwargs):
    """
    ``docker compose ... down`` when the project's compose file exists (``name`` is the
    project directory); nothing to do without it.

    .. code-block:: yaml

        thumbnail-server-clean-compose-absent:
          thumbnail_server.compose_absent:
            - name: /opt/seafile-thumbnail
            - settings: {{ settings | json }}
    """
    ret = _ret(name)
    if not os.path.isfile(settings["docker"]["compose_file"]):
        ret["comment"] = f"no compose file in {name}; nothing to take down"
        return ret
    if __opts__["test"]:
        ret.update(result=None, comment=f"the compose project in {name} would be taken down")
        ret["changes"] = {"project": {"old": "up", "new": "down"}}
        return ret
    try:
        __salt__["thumbnail_server.compose_down"](settings)
    except _ERRORS as err:
        return _fail(ret, err)
    ret.update(changes={"project": {"old": "up", "new": "down"}}, comment="compose down ran")
    return ret


def _logs(unit: str) -> str:
    out = __salt__["cmd.run_all"](
        ["journalctl", "--unit", unit, "--lines", "15", "--no-pager", "--output", "cat"],
        python_shell=False,
        ignore_retcode=True,
    )
    return out.get("stdout") or out.get("stderr") or "(none)"


def healthy(  # noqa: PLR0917 - Salt passes state arguments by keyword
    name, url, timeout=60, expect="pong", jemalloc=False, systemd=True, **kwargs
):
    """
    Wait until the thumbnail server answers ``url`` with 200 and ``expect`` in the body
    (a check: it never changes anything).

    name
        The systemd unit (or, with ``systemd: false``, the container), for messages and
        its log lines on failure.
    url
        Health URL, e.g. ``http://127.0.0.1:8088/ping`` (upstream answers ``pong`` at
        ``<SITE_ROOT>ping``).
    timeout
        Seconds to wait (a restarted service needs a moment).
    jemalloc
        Also require jemalloc in the unit's main process (``/proc/<MainPID>/maps``), or,
        with ``systemd: false``, in the container's main process.

    With ``test=True`` the URL is queried once: a healthy service is reported as such;
    otherwise the result is ``None`` (an apply may still bring it up).
    """
    ret = _ret(name)
    if __opts__["test"]:
        answer = __salt__["thumbnail_server.health"](url, expect=expect)
        if answer["healthy"]:
            ret["comment"] = f"{name} is healthy ({answer['url']} answered {expect!r})"
        else:
            ret["result"] = None
            ret["comment"] = f"{url} does not answer {expect!r} now; an apply would wait {timeout}s"
        return ret
    answer = __salt__["thumbnail_server.wait_healthy"](url, timeout=timeout, expect=expect)
    if not answer["healthy"]:
        seen = answer.get("error") or f"status {answer['status']}: {answer['body'][:100]!r}"
        ret["result"] = False
        ret["comment"] = (
            f"{name} on {__grains__.get('id')} is not healthy: {answer['url']} did not answer "
            f"{expect!r} within {timeout}s (last: {seen})."
        )
        if systemd:
            ret["comment"] += f" Last log lines (journalctl -u {name}):\n{_logs(name)}"
        else:
            ret["comment"] += f" See docker logs {name}."
        return ret
    ret["comment"] = (
        f"{name} is healthy ({answer['url']} answered {expect!r} after {answer['waited']}s)"
    )
    if jemalloc:
        # A unit's MainPID, or the main process of the container (preloaded, like every
        # process in it, by the compose override's LD_PRELOAD).
        try:
            target = name if systemd else __salt__["thumbnail_server.container_pid"](name)
            loaded = __salt__["jemalloc.is_loaded"](target)
        except _ERRORS as err:
            loaded, ret["comment"] = False, f"{ret['comment']}; {err}"
        if not loaded:
            expected = (
                f"drop-in: systemctl show -p Environment {name}"
                if systemd
                else f"compose override: docker inspect --format '{{{{.Config.Env}}}}' {name}"
            )
            ret["result"] = False
            ret["comment"] += (
                f"; but jemalloc is not mapped into its main process (expected from its {expected})"
            )
            return ret
        ret["comment"] += "; jemalloc is mapped into its main process"
    return ret
