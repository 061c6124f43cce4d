"""States for Prometheus exporters: ``exporter.installed``, ``exporter.absent`` and
``exporter.validated``.

Each state asks the execution module what differs, reports that in test mode before
touching anything, applies and checks again afterwards: ``exporter.installed`` with one
call of ``exporter.converge`` (one plan, built once, compared, applied and compared
again), ``exporter.absent`` with ``exporter.remove``. ``changes`` are keyed by thing
with old/new values and never contain secrets (secret files are reported by variable
names only).

.. code-block:: yaml

    node_exporter:
      exporter.installed:
        - version: 1.8.2
        - listen_address: 0.0.0.0:9100

    redis_exporter:
      exporter.installed:
        - version: 1.67.0
        - redis:
            addr: rediss://db1.example.com:6380
            tls:
              ca: /etc/ssl/redis-ca.pem
              cert: /etc/ssl/exporter.pem
              key: /etc/ssl/exporter.key
        # redis.password is read on the minion from this pillar mapping
        - secrets_from: exporters:redis_exporter

    old_exporter:
      exporter.absent:
        - name: dcgm_exporter
"""

from __future__ import annotations

from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

__virtualname__ = "exporter"


def __virtual__():
    if "exporter.converge" in __salt__:
        return __virtualname__
    return (False, "exporter: the exporter execution module is not available")


def _options(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if not str(k).startswith("__")}


def _ret(name: str) -> dict:
    return {"name": name, "result": True, "changes": {}, "comment": ""}


def installed(name, **kwargs):
    """
    Make sure exporter ``name`` is installed as configured and answers on ``/metrics``.

    name
        Catalog name: node_exporter, redis_exporter, postgres_exporter, nginx_exporter
        or dcgm_exporter.

    secrets_from
        Pillar keys (``exporters:defaults``, ``exporters:<name>``) the secret options
        (``env``, ``web.basic_auth_users``, ``redis.password``, ``postgres.password``,
        ``postgres.dsn``) are read from on the minion, so that they never appear as
        rendered state arguments.

    The other arguments are those of ``exporter.install`` (version, source, base_url,
    proxy, ca_bundle, sha256, listen_address, flags, env, web, verify_up, verify_timeout,
    target_host, and textfile_directory / redis / postgres / nginx / dcgm).

    The execution module builds the plan once (``exporter.converge``): the same plan is
    compared with the host, applied, and compared again afterwards.
    """
    ret = _ret(name)
    test = bool(__opts__["test"])
    try:
        result = __salt__["exporter.converge"](name, test=test, **_options(kwargs))
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err))
        return ret
    changes, remaining = result["changes"], result["remaining"]
    if not changes:
        ret["comment"] = f"{name} is installed, configured and running as asked"
        return ret
    if test:
        ret.update(
            result=None,
            changes=changes,
            comment=f"{name} would change: {', '.join(sorted(changes))}",
        )
        return ret
    ret["changes"] = changes
    if remaining:
        ret.update(
            result=False,
            comment=f"{name} still differs after installing: {', '.join(sorted(remaining))}",
        )
        return ret
    ret["comment"] = f"{name} installed and answering on /metrics"
    return ret


def absent(name):
    """
    Make sure exporter ``name`` is removed with everything opskit installed for it
    (unit, binaries, configuration and secrets, cache, package, system user).
    """
    ret = _ret(name)
    try:
        planned = __salt__["exporter.remove"](name, test=True)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err))
        return ret
    if not planned:
        ret["comment"] = f"{name} is not installed"
        return ret
    if __opts__["test"]:
        ret.update(result=None, changes=planned, comment=f"{name} would be removed")
        return ret
    try:
        ret["changes"] = __salt__["exporter.remove"](name)
        remaining = __salt__["exporter.remove"](name, test=True)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err))
        return ret
    if remaining:
        ret.update(result=False, comment=f"{name}: left behind: {', '.join(sorted(remaining))}")
        return ret
    ret["comment"] = f"{name} removed"
    return ret


def validated(name, exporters=None):
    """
    Check a whole ``exporters`` mapping (exporter -> options) before any exporter state
    runs, so that one bad value stops the run before anything is written. Changes
    nothing; fails with every problem found.
    """
    ret = _ret(name)
    try:
        __salt__["exporter.validate"](exporters or {})
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err))
        return ret
    ret["comment"] = f"{len(exporters or {})} exporter(s) configured validly"
    return ret
