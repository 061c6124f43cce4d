"""States for Seafile thumbnail-server hosts: the env file that holds the secrets, and
the health check after apply.

``thumbnail_server.env_file`` writes the service's environment file (mode 0600, root):
the settings come from the formula (no secrets), the secrets from pillar
``thumbnail_server:secrets``, read on the minion while the state runs, so they are
never part of the rendered states, the state's arguments, its ``changes`` or its
comment. ``changes`` name the variables that changed; secret values show as
``<secret>``.

``thumbnail_server.healthy`` waits (bounded) until the service answers its health URL
(``/ping`` -> ``pong``) and, for a systemd unit run under jemalloc, checks that
jemalloc is mapped into its main process.
"""

from __future__ import annotations

from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

__virtualname__ = "thumbnail_server"


def __virtual__():
    if "thumbnail_server.env_status" not in __salt__:
        return (False, "thumbnail_server: the thumbnail_server execution module is not available")
    return __virtualname__


def _ret(name):
    return {"name": name, "result": True, "changes": {}, "comment": ""}


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
    (the formula's validated settings, which hold no secrets) and pillar
    ``thumbnail_server:secrets``.

    .. code-block:: yaml

        thumbnail-server-config-env-thumbnail_server-env_file:
          thumbnail_server.env_file:
            - name: /etc/seafile-thumbnail/thumbnail-server.env
            - settings: {{ settings | json }}
    """
    ret = _ret(name)
    try:
        status = __salt__["thumbnail_server.env_status"](name, settings)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["result"] = False
        ret["comment"] = str(err)
        return ret
    if status["up_to_date"]:
        ret["comment"] = f"{name} is up to date ({settings['env_syntax']} syntax, mode 0600)"
        return ret
    changes = _changes(status)
    if __opts__["test"]:
        ret["result"] = None
        ret["changes"] = changes
        ret["comment"] = f"{name} would be written (mode 0600, root)"
        return ret
    try:
        __salt__["thumbnail_server.write_env"](name, settings)
        after = __salt__["thumbnail_server.env_status"](name, settings)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["result"] = False
        ret["comment"] = str(err)
        return ret
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
        Health URL, e.g. ``http://127.0.0.1:8088/ping`` (upstream answers ``pong``).
    timeout
        Seconds to wait (a restarted service needs a moment).
    jemalloc
        Also require jemalloc in the unit's main process (``/proc/<MainPID>/maps``).

    With ``test=True`` the URL is queried once: a healthy service is reported as such;
    otherwise the result is ``None`` (an apply may still bring it up).
    """
    ret = _ret(name)
    if __opts__["test"]:
        answer = __salt__["thumbnail_server.health"](url)
        if answer["status"] == 200 and expect in answer["body"]:
            ret["comment"] = f"{name} is healthy ({url} answered {expect!r})"
        else:
            ret["result"] = None
            ret["comment"] = f"{url} does not answer {expect!r} now; an apply would wait {timeout}s"
        return ret
    answer = __salt__["thumbnail_server.wait_healthy"](url, timeout=timeout, expect=expect)
    where = "journalctl -u " + name if systemd else f"docker logs {name}"
    if not answer["healthy"]:
        seen = answer.get("error") or f"status {answer['status']}: {answer['body'][:100]!r}"
        ret["result"] = False
        ret["comment"] = (
            f"{name} on {__grains__.get('id')} is not healthy: {url} did not answer "
            f"{expect!r} within {timeout}s (last: {seen})."
        )
        if systemd:
            ret["comment"] += f" Last log lines ({where}):\n{_logs(name)}"
        else:
            ret["comment"] += f" See {where}."
        return ret
    ret["comment"] = f"{name} is healthy ({url} answered {expect!r} after {answer['waited']}s)"
    if jemalloc:
        try:
            loaded = __salt__["jemalloc.is_loaded"](name)
        except (CommandExecutionError, SaltInvocationError) as err:
            loaded, ret["comment"] = False, f"{ret['comment']}; {err}"
        if not loaded:
            ret["result"] = False
            ret["comment"] += (
                f"; but jemalloc is not mapped into its main process (expected from its "
                f"drop-in: systemctl show -p Environment {name})"
            )
            return ret
        ret["comment"] += "; jemalloc is mapped into its main process"
    return ret
