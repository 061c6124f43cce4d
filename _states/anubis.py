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


def key_managed(name, pillar_path=None, **kwargs):  # kwargs: state.single passes pillar=
    """
    Keep the signing key file ``name`` (mode 0400, root, directory 0700).

    name
        Path of the key file, e.g. ``/etc/anubis/keys/gitlab.key``.

    pillar_path
        Pillar key (``:``-separated) that may hold the key as 64 hex characters. When it
        is set, the file holds exactly that key. When it is not set, an existing valid
        key is kept and a missing one is generated.

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

    if action is None:
        if info["mode"] == "0400" and info["uid"] == 0 and info["gid"] == 0:
            ret["comment"] = f"Signing key {name} is in place ({info['public_key']})."
            return ret
        if __opts__["test"]:
            ret["result"] = None
            ret["comment"] = f"The mode or owner of {name} would be set to 0400 root:root."
            ret["changes"] = {"mode": {"old": info["mode"], "new": "0400"}}
            return ret
        new = __salt__["anubis.fix_key_mode"](name)
        ret["changes"] = {"mode": {"old": info["mode"], "new": new["mode"]}}
        ret["comment"] = f"Set {name} to mode 0400, owner root:root."
        return _verify(ret, new)

    if __opts__["test"]:
        ret["result"] = None
        ret["comment"] = f"The signing key {name} would be {action}."
        ret["changes"] = {"key": {"old": info.get("public_key"), "new": f"({action})"}}
        return ret
    new = __salt__["anubis.write_key"](name, pillar_path=pillar_path if from_pillar else None)
    ret["changes"] = {"key": {"old": info.get("public_key"), "new": new["public_key"]}}
    ret["comment"] = f"The signing key {name} was {action}."
    return _verify(ret, new)


def _verify(ret, info):
    if not (info.get("valid") and info["mode"] == "0400" and info["uid"] == 0):
        ret["result"] = False
        ret["comment"] += f" Re-checking {ret['name']} failed: {info}"
    return ret


def env_managed(name, variables, extra=None, **kwargs):
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
    diff = __salt__["anubis.env_diff"](name, variables, extra)
    if not diff["needs_write"]:
        ret["comment"] = f"{name} is in place."
        return ret
    ret["changes"] = diff["changes"]
    what = "changed" if diff["exists"] else "created"
    if __opts__["test"]:
        ret["result"] = None
        ret["comment"] = f"{name} would be {what}."
        return ret
    __salt__["anubis.write_env"](name, variables, extra)
    if __salt__["anubis.env_diff"](name, variables, extra)["needs_write"]:
        ret["result"] = False
        ret["comment"] = f"{name} was written but does not read back as intended."
        return ret
    ret["comment"] = f"{name} was {what}."
    return ret


def healthy(name, url, timeout=30, **kwargs):
    """
    Wait until an Anubis instance's ``/healthz`` answers 200 (a check; never changes
    anything). On failure the comment carries the unit's last log lines.

    name
        The instance's unit, e.g. ``anubis@gitlab.service``.

    url
        Its health URL on the metrics listener, e.g. ``http://127.0.0.1:9201/healthz``.

    timeout
        Seconds to wait (after a restart Anubis needs a moment).

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
    logs = __salt__["cmd.run_all"](
        ["journalctl", "--unit", name, "--lines", "15", "--no-pager", "--output", "cat"],
        python_shell=False,
        ignore_retcode=True,
    )
    seen = answer.get("error") or f"status {answer['status']}: {answer['body'][:100]!r}"
    ret["result"] = False
    ret["comment"] = opskit_redact.redact_text(
        f"{name} on {__grains__.get('id')} is not healthy: {answer['url']} did not answer "
        f"200 within {timeout}s (last: {seen}). Last log lines (journalctl -u {name}):\n"
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
