"""States for Anubis instances: the signing key file and the health check.

``anubis.key_managed`` keeps an instance's Ed25519 signing key: the key from pillar when
the CMDB provides one, otherwise a key generated once on the host and then kept. A new
key invalidates every visitor's pass cookie, so an existing valid key is never replaced
unless pillar says so, and an unreadable or malformed key file stops the run instead of
being overwritten. The key never appears in arguments, changes, comments or logs; the
changes show the Ed25519 public key.

The instances' scrape targets reach the Salt mine through ``opskit.targets`` (which
reads ``anubis.targets``), published by the ``common`` formula.

``anubis.env_managed`` keeps an instance's env file (written with the shared
``EnvironmentFile=`` quoting rule); its changes show the values the formula sets and
hide those that came from pillar ``env``.

``anubis.healthy`` waits for an instance's ``/healthz``; ``anubis.nginx_reloaded``
reloads a running nginx after ``nginx -t`` (for ``anubis.clean``, which removes sites).
"""

from __future__ import annotations

import os

from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

try:  # synced from file_roots, or module_dirs
    import opskit_redact
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_redact

__virtualname__ = "anubis"


def __virtual__():
    if "anubis.key_info" not in __salt__:
        return (False, "anubis: the anubis execution module is not available")
    return __virtualname__


def _ret(name):
    return {"name": name, "result": True, "changes": {}, "comment": ""}


def key_managed(name, pillar_path=None, owner=None, **kwargs):  # kwargs: state.single: pillar=
    """
    Keep the signing key file ``name`` (mode 0400, root or ``owner``, directory 0700).

    name
        Path of the key file, e.g. ``/etc/anubis/keys/gitlab.key``.

    pillar_path
        Pillar key (``:``-separated) that may hold the key as 64 hex characters. When it
        is set, the file holds exactly that key. When it is not set, an existing valid
        key is kept and a missing one is generated.

    owner
        ``[uid, gid]`` of the file (default root's): the docker runtime gives it to the
        container's user, which reads it through a read-only bind mount.

    .. code-block:: yaml

        anubis-config-key-gitlab-anubis-key_managed:
          anubis.key_managed:
            - name: /etc/anubis/keys/gitlab.key
            - pillar_path: anubis:instances:gitlab:ed25519_private_key_hex
    """
    ret = _ret(name)
    info = __salt__["anubis.key_info"](name)
    matches = __salt__["anubis.pillar_key_matches"](name, pillar_path) if pillar_path else None
    from_pillar = matches is not None

    if info["exists"] and not info["valid"] and not from_pillar:
        ret["result"] = False
        ret["comment"] = (
            f"{name} on {__grains__.get('id')} does not hold a 64-hex-character key. It is "
            "not replaced automatically: a new key re-challenges every visitor. Fix the "
            "file, delete it to have a new key generated, or put the key in pillar"
            + (f" {pillar_path}." if pillar_path else ".")
        )
        return ret

    if not info["exists"]:
        action = "written from pillar" if from_pillar else "generated"
    elif from_pillar and not matches:
        action = "replaced with the key from pillar"
    else:
        action = None

    uid, gid = (0, 0) if owner is None else (int(owner[0]), int(owner[1]))
    if action is None:
        if info["mode"] == "0400" and (info["uid"], info["gid"]) == (uid, gid):
            ret["comment"] = f"Signing key {name} is in place ({info['public_key']})."
            return ret
        want = f"{uid}:{gid}"
        changes = {}
        if info["mode"] != "0400":
            changes["mode"] = {"old": info["mode"], "new": "0400"}
        if f"{info['uid']}:{info['gid']}" != want:
            changes["owner"] = {"old": f"{info['uid']}:{info['gid']}", "new": want}
        if __opts__["test"]:
            ret["result"] = None
            ret["comment"] = f"The mode or owner of {name} would be set to 0400 {want}."
            ret["changes"] = changes
            return ret
        new = __salt__["anubis.fix_key_mode"](name, owner=[uid, gid])
        if "mode" in changes:
            changes["mode"]["new"] = new["mode"]
        ret["changes"] = changes
        ret["comment"] = f"Set {name} to mode 0400, owner {want}."
        return _verify(ret, new, uid, gid)

    if __opts__["test"]:
        ret["result"] = None
        ret["comment"] = f"The signing key {name} would be {action}."
        ret["changes"] = {"key": {"old": info.get("public_key"), "new": f"({action})"}}
        return ret
    new = __salt__["anubis.write_key"](
        name, pillar_path=pillar_path if from_pillar else None, owner=[uid, gid]
    )
    ret["changes"] = {"key": {"old": info.get("public_key"), "new": new["public_key"]}}
    ret["comment"] = f"The signing key {name} was {action}."
    return _verify(ret, new, uid, gid)


def _verify(ret, info, uid=0, gid=0):
    owner = (info.get("uid"), info.get("gid"))
    if not (info.get("valid") and info["mode"] == "0400" and owner == (uid, gid)):
        ret["result"] = False
        ret["comment"] += f" Re-checking {ret['name']} failed: {info}"
    return ret


def env_managed(name, variables, extra=None, syntax="systemd", **kwargs):
    """
    Keep an instance's env file ``name`` (mode 0640, root:root): ``variables`` (set by
    the formula) and ``extra`` (pillar ``env``), each quoted for systemd's
    ``EnvironmentFile=``. Changes list each variable with its old and new value; the
    values of ``extra`` show as ``<hidden>`` / ``<hidden, changed>``.

    .. code-block:: yaml

        anubis-config-env-app-anubis-env_managed:
          anubis.env_managed:
            - name: /etc/anubis/app.env
            - variables: {BIND: "127.0.0.1:8923", METRICS_BIND: "0.0.0.0:9201"}
            - extra: {WEBMASTER_EMAIL: webmaster@example.org}
    """
    ret = _ret(name)
    diff = __salt__["anubis.env_diff"](name, variables, extra, syntax)
    if not diff["needs_write"]:
        ret["comment"] = f"{name} is in place."
        return ret
    ret["changes"] = diff["changes"]
    what = "changed" if diff["exists"] else "created"
    if __opts__["test"]:
        ret["result"] = None
        ret["comment"] = f"{name} would be {what}."
        return ret
    __salt__["anubis.write_env"](name, variables, extra, syntax)
    if __salt__["anubis.env_diff"](name, variables, extra, syntax)["needs_write"]:
        ret["result"] = False
        ret["comment"] = f"{name} was written but does not read back as intended."
        return ret
    ret["comment"] = f"{name} was {what}."
    return ret


def healthy(name, url, timeout=30, logs_argv=None, **kwargs):
    """
    Wait until an Anubis instance's ``/healthz`` answers 200 (a check; never changes
    anything). On failure the comment carries the unit's last log lines.

    name
        The instance's unit, e.g. ``anubis@gitlab.service``.

    url
        Its health URL on the metrics listener, e.g. ``http://127.0.0.1:9201/healthz``.

    timeout
        Seconds to wait (after a restart Anubis needs a moment).

    logs_argv
        The command (argv list) whose output shows the last log lines on failure
        (default ``journalctl --unit <name>``; the docker runtime passes
        ``docker compose ... logs``).

    With ``test=True`` the URL is queried once: healthy is reported as such; otherwise
    the result is ``None`` (an apply may still bring the instance up).

    .. code-block:: yaml

        anubis-service-healthz-gitlab-anubis-healthy:
          anubis.healthy:
            - name: anubis@gitlab.service
            - url: http://127.0.0.1:9201/healthz
    """
    ret = _ret(name)
    if __opts__["test"]:
        answer = __salt__["anubis.health"](url)
        if answer["status"] == 200:
            ret["comment"] = f"{name} is healthy ({answer['url']} answered 200)."
        else:
            ret["result"] = None
            ret["comment"] = (
                f"{answer['url']} does not answer 200 now; an apply would wait {timeout}s."
            )
        return ret
    answer = __salt__["anubis.wait_healthy"](url, timeout=timeout)
    if answer["healthy"]:
        ret["comment"] = (
            f"{name} is healthy ({answer['url']} answered 200 after {answer['waited']}s)."
        )
        return ret
    argv = list(logs_argv or ["journalctl", "--unit", name, "--lines", "15", "--no-pager"])
    if not logs_argv:
        argv += ["--output", "cat"]
    logs = __salt__["cmd.run_all"](argv, python_shell=False, ignore_retcode=True)
    seen = answer.get("error") or f"status {answer['status']}: {answer['body'][:100]!r}"
    ret["result"] = False
    ret["comment"] = opskit_redact.redact_text(
        f"{name} on {__grains__.get('id')} is not healthy: {answer['url']} did not answer "
        f"200 within {timeout}s (last: {seen}). Last log lines ({' '.join(argv)}):\n"
        + (logs.get("stdout") or logs.get("stderr") or "(none)")
    )
    return ret


def nginx_reloaded(name, binary="/usr/sbin/nginx", **kwargs):
    """
    Reload the nginx service ``name`` after ``binary -t -q`` accepted the configuration,
    if nginx is running; do nothing when it is not. Meant to follow (``onchanges``) a
    state that removed sites, as ``anubis.clean`` does: the formula's own sites reload
    nginx through the nginx formula.

    .. code-block:: yaml

        anubis-clean-nginx-reload-anubis-nginx_reloaded:
          anubis.nginx_reloaded:
            - name: nginx
            - binary: /usr/sbin/nginx
            - onchanges:
              - file: anubis-clean-sites-file-absent
    """
    ret = _ret(name)
    if not __salt__["service.status"](name):
        ret["comment"] = f"{name} is not running; nothing to reload."
        return ret
    if __opts__["test"]:
        ret["result"] = None
        ret["comment"] = f"{name} would be reloaded after `{binary} -t -q`."
        ret["changes"] = {name: {"old": "running", "new": "reloaded"}}
        return ret
    tested = __salt__["cmd.run_all"]([binary, "-t", "-q"], python_shell=False, ignore_retcode=True)
    if tested["retcode"] != 0:
        ret["result"] = False
        ret["comment"] = (
            f"`{binary} -t -q` on {__grains__.get('id')} rejected the configuration, so "
            f"{name} was not reloaded (it keeps serving the old one):\n"
            + opskit_redact.redact_text(tested.get("stderr") or tested.get("stdout") or "")
        )
        return ret
    if not __salt__["service.reload"](name) or not __salt__["service.status"](name):
        ret["result"] = False
        ret["comment"] = f"Reloading {name} failed; see journalctl -u {name}."
        return ret
    ret["changes"] = {name: {"old": "running", "new": "reloaded"}}
    ret["comment"] = f"{name} was reloaded after `{binary} -t -q` passed."
    return ret


# ---------------------------------------------------------------------------------------
# Runtime docker
# ---------------------------------------------------------------------------------------
def store_dir_managed(name, owner, **kwargs):
    """
    Keep the directory ``name`` at mode 0700, owned by ``owner`` (``[uid, gid]``): the
    docker runtime's bbolt store, written by the container's user.

    .. code-block:: yaml

        anubis-config-store-app-anubis-store_dir_managed:
          anubis.store_dir_managed:
            - name: /var/lib/anubis/app
            - owner: [1000, 1000]
    """
    ret = _ret(name)
    want = f"{int(owner[0])}:{int(owner[1])}"
    info = __salt__["anubis.store_dir_info"](name)
    now = f"{info['uid']}:{info['gid']}" if info["exists"] else None
    if info["exists"] and info["directory"] and info["mode"] == "0700" and now == want:
        ret["comment"] = f"{name} is in place (0700, {want})."
        return ret
    changes = {"directory": {"old": None, "new": f"0700 {want}"}}
    if info["exists"]:
        changes = {"directory": {"old": f"{info['mode']} {now}", "new": f"0700 {want}"}}
    if __opts__["test"]:
        ret.update(result=None, changes=changes, comment=f"{name} would be set to 0700 {want}.")
        return ret
    try:
        new = __salt__["anubis.store_dir"](name, owner)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err))
        return ret
    ret["changes"] = changes
    if not (new["exists"] and new["mode"] == "0700" and f"{new['uid']}:{new['gid']}" == want):
        ret.update(result=False, comment=f"Re-checking {name} failed: {new}")
        return ret
    ret["comment"] = f"{name} was set to 0700 {want}."
    return ret


def _container_state(name, compose_argv):
    try:
        return __salt__["anubis.container_status"](compose_argv, name), None
    except (CommandExecutionError, SaltInvocationError) as err:
        return None, err


def container_running(name, compose_argv, compose_file, **kwargs):
    """
    Keep the compose service ``name`` (an Anubis instance) running with the compose
    file as it is: ``docker compose ... up --detach <name>`` when its container is
    missing, stopped or made from an older configuration (its config-hash label differs
    from ``docker compose config --hash``). A watched state that changed (the
    instance's env file, policy or key, which compose does not hash) recreates it
    (``mod_watch``: ``--force-recreate``). Other instances' containers are not touched.

    .. code-block:: yaml

        anubis-service-container-app-anubis-container_running:
          anubis.container_running:
            - name: app
            - compose_argv: [docker, compose, --project-name, anubis, --project-directory,
                             /opt/anubis-docker, --file, /opt/anubis-docker/compose.yaml]
            - compose_file: /opt/anubis-docker/compose.yaml
    """
    ret = _ret(name)
    status, err = (None, None)
    if os.path.isfile(compose_file):
        status, err = _container_state(name, compose_argv)
    if err is not None and not __opts__["test"]:
        ret.update(result=False, comment=str(err))
        return ret
    status = status or {"exists": False, "running": False, "current": None}
    if status["running"] and status["current"]:
        ret["comment"] = f"The container of {name} is running with the current configuration."
        return ret
    old = "absent"
    if status["exists"]:
        old = "outdated" if status["running"] else "stopped"
    ret["changes"] = {"container": {"old": old, "new": "running"}}
    if __opts__["test"]:
        ret.update(result=None, comment=f"The container of {name} would be started ({old}).")
        return ret
    return _up(ret, name, compose_argv, recreate=False)


def _up(ret, name, compose_argv, recreate):
    try:
        __salt__["anubis.compose_up"](compose_argv, name, recreate=recreate)
        status = __salt__["anubis.container_status"](compose_argv, name)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err))
        return ret
    if not (status["running"] and status["current"]):
        ret.update(result=False, comment=f"docker compose up ran for {name}, but: {status}")
        return ret
    ret["comment"] = f"The container of {name} was {'recreated' if recreate else 'started'}."
    return ret


def mod_watch(name, sfun=None, compose_argv=None, **kwargs):
    """A watched file changed: recreate the instance's container (Anubis reads its
    environment, policy and key only when it starts)."""
    ret = _ret(name)
    if sfun != "container_running":
        ret.update(result=False, comment=f"anubis.{sfun} does not support watch")
        return ret
    ret["changes"] = {"container": {"old": "running", "new": "recreated"}}
    if __opts__["test"]:
        ret.update(result=None, comment=f"The container of {name} would be recreated.")
        return ret
    return _up(ret, name, compose_argv, recreate=True)


def compose_absent(name, compose_argv, compose_file, **kwargs):
    """
    ``docker compose ... down`` for the formula's project when its compose file exists
    (``name`` is the project directory); nothing to do without it.

    .. code-block:: yaml

        anubis-clean-compose-anubis-compose_absent:
          anubis.compose_absent:
            - name: /opt/anubis-docker
            - compose_argv: [docker, compose, --project-name, anubis, --file, ...]
            - compose_file: /opt/anubis-docker/compose.yaml
    """
    ret = _ret(name)
    if not os.path.isfile(compose_file):
        ret["comment"] = f"No compose file {compose_file}; nothing to take down."
        return ret
    ret["changes"] = {"project": {"old": "up", "new": "down"}}
    if __opts__["test"]:
        ret.update(result=None, comment=f"The compose project in {name} would be taken down.")
        return ret
    try:
        __salt__["anubis.compose_down"](compose_argv)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, changes={}, comment=str(err))
        return ret
    ret["comment"] = f"The compose project in {name} was taken down."
    return ret
