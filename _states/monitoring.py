"""States of the monitoring formula: target files from the mine, verified reloads.

``monitoring.targets_written`` rewrites Prometheus's file_sd target files from every
minion's ``opskit_targets`` in the Salt mine (``monitoring.refresh_targets``).

``monitoring.reloaded`` makes Prometheus or Alertmanager re-read its configuration
when a watched state changed (``systemctl reload``: SIGHUP, never a restart), then
verifies that the daemon did: its ``*_config_last_reload_success_timestamp_seconds``
moved forward, ``*_last_reload_successful`` is 1, and its main PID is the same.
It also reloads when a configuration file is newer than the last successful reload
(an earlier run changed it but did not get to reload); otherwise it only checks that
the last reload succeeded.
"""

from __future__ import annotations

import os

from salt.exceptions import CommandExecutionError

try:  # synced from file_roots, or module_dirs
    import opskit_health
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_health

__virtualname__ = "monitoring"


def __virtual__():
    if "monitoring.reload_status" not in __salt__:
        return (False, "monitoring: the monitoring execution module is not available")
    return __virtualname__


def targets_written(name, settings, **kwargs):
    """
    Make the file_sd files in ``name`` (the target directory) hold every minion's
    published scrape targets.

    settings
        What ``monitoring.targets_settings`` returns for the formula's settings.

    .. code-block:: yaml

        monitoring-config-targets-monitoring-targets_written:
          monitoring.targets_written:
            - name: /etc/prometheus/file_sd
            - settings: {"dir": "/etc/prometheus/file_sd", "group": "prometheus",
                         "basic_auth_jobs": [], "client_cert": false}
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    try:
        changes = __salt__["monitoring.refresh_targets"](settings, test=__opts__["test"])
    except CommandExecutionError as err:
        ret["result"] = False
        ret["comment"] = str(err)
        return ret
    if not changes:
        ret["comment"] = f"The target files in {name} match the mine."
    elif __opts__["test"]:
        ret["result"] = None
        ret["comment"] = f"{len(changes)} target file(s) in {name} would change."
        ret["changes"] = changes
    else:
        ret["comment"] = f"Rewrote {len(changes)} target file(s) in {name}."
        ret["changes"] = changes
    return ret


def _main_pid(service):
    return __salt__["service.show"](service).get("MainPID")


def _status(url, metric, timeout, settled=None):
    """The daemon's reload metrics, waiting up to ``timeout`` seconds
    (``opskit_health.wait_until``) for it to answer and, when given, for
    ``settled(status)`` to hold. Raises the last ``CommandExecutionError`` when it never
    answered; returns ``(status, settled)``."""

    def look(left):
        try:
            status = __salt__["monitoring.reload_status"](url, metric, timeout=min(5.0, left))
        except CommandExecutionError as err:
            return False, err
        return settled is None or settled(status), status

    seen = opskit_health.wait_until(look, timeout=timeout, interval=0.2 if settled else 0.5)
    if isinstance(seen.value, CommandExecutionError):
        raise seen.value
    return seen.value, seen.done


def _newest(files):
    """(mtime, path) of the most recently modified existing file in ``files``."""
    found = [(os.stat(path).st_mtime, path) for path in files or () if os.path.exists(path)]
    return max(found) if found else (0.0, None)


def reloaded(name, url, metric, files=(), timeout=30, **kwargs):
    """
    Make the service ``name`` run with the configuration in ``files``: reload it
    (``systemctl reload``: SIGHUP, never a restart) when a watched state changed or
    when a file is newer than its last successful reload (a reload an earlier run did
    not get to), and verify the reload; otherwise check that it answers on ``url`` and
    that its last reload succeeded.

    url
        The daemon's HTTP address (``http://127.0.0.1:9090``).

    metric
        ``prometheus_config`` or ``alertmanager_config``: the prefix of its reload metrics.

    files
        The configuration files the daemon reads (configuration, rule files).

    timeout
        Seconds to wait for the daemon to answer and for a reload to take effect.

    .. code-block:: yaml

        monitoring-service-prometheus-monitoring-reloaded:
          monitoring.reloaded:
            - name: prometheus
            - url: http://127.0.0.1:9090
            - metric: prometheus_config
            - files: [/etc/prometheus/prometheus.yml, /etc/prometheus/rules/opskit.yml]
            - watch:
              - file: monitoring-config-prometheus-file-managed
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    try:
        status, _ = _status(url, metric, timeout)
    except CommandExecutionError as err:
        ret["result"] = False if not __opts__["test"] else None
        ret["comment"] = f"{name}: {err}"
        return ret
    mtime, newest = _newest(files)
    if mtime > status["timestamp"]:
        result = mod_watch(name, url, metric, timeout=timeout)
        result["comment"] = (
            f"{newest} changed after the last reload of {name}. " + result["comment"]
        )
        return result
    if not status["successful"]:
        ret["result"] = False
        ret["comment"] = (
            f"{name}: its last configuration reload failed ({url}/metrics: "
            f"{metric}_last_reload_successful 0); see journalctl -u {name}"
        )
        return ret
    ret["comment"] = f"{name} runs with its current configuration (last reload succeeded)."
    return ret


def _reload_failure(name, url, metric, timeout, before):
    """Why ``name`` did not take a reload after ``before`` (its earlier status) within
    ``timeout`` seconds, or None when its new configuration is live."""
    try:
        status, done = _status(
            url,
            metric,
            timeout,
            settled=lambda now: now["timestamp"] > before["timestamp"] and now["successful"],
        )
    except CommandExecutionError as err:
        return f"{name} stopped answering after its reload: {err}"
    if done:
        return None
    return (
        f"{name} did not reload its configuration within {timeout}s "
        f"({metric}_last_reload_successful {int(status['successful'])}); "
        f"see journalctl -u {name}"
    )


def mod_watch(name, url, metric, timeout=30, **kwargs):
    """Reload ``name`` (SIGHUP through ``systemctl reload``) and verify the reload."""
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    if __opts__["test"]:
        ret["result"] = None
        ret["comment"] = f"{name} would be reloaded (not restarted)."
        ret["changes"] = {name: {"old": "running", "new": "reloaded"}}
        return ret
    try:
        before, _ = _status(url, metric, timeout)
    except CommandExecutionError as err:
        ret["result"] = False
        ret["comment"] = f"{name} was not reloaded: {err}"
        return ret
    pid = _main_pid(name)
    if not __salt__["service.reload"](name):
        ret["result"] = False
        ret["comment"] = f"systemctl reload {name} failed; see journalctl -u {name}"
        return ret
    failure = _reload_failure(name, url, metric, timeout, before)
    if failure:
        ret["result"] = False
        ret["comment"] = failure
        return ret
    after = _main_pid(name)
    if after != pid:
        ret["result"] = False
        ret["comment"] = f"{name} was restarted (main PID {pid} -> {after}), not reloaded"
        return ret
    ret["changes"] = {name: {"old": f"running (PID {pid})", "new": f"reloaded (PID {after})"}}
    ret["comment"] = f"Reloaded {name}; its new configuration is live."
    return ret
