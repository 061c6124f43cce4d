"""The monitoring host: Prometheus and Alertmanager configurations, and the file_sd
target files built from the Salt mine.

``monitoring.prometheus_config`` / ``monitoring.alertmanager_config`` turn the
formula's settings into the two daemons' configurations (data; the formula writes
them as YAML after ``promtool``/``amtool`` checked them). ``monitoring.refresh_targets``
reads every minion's ``opskit_targets`` from the mine, checks it (the mine is written by
minions, so it is untrusted) and rewrites the file_sd files Prometheus watches; it runs
in the formula and, through the reactor on ``opskit/targets/published``, whenever a
minion publishes new targets. ``monitoring.reload_status`` reads a daemon's own
"last reload" metrics, which the formula checks after every reload.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import json
import os
import pathlib
import re
import tempfile

import requests
from salt.exceptions import CommandExecutionError
from salt.exceptions import SaltInvocationError

try:
    import opskit_monitoring  # synced from file_roots, or module_dirs
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_monitoring

__virtualname__ = "monitoring"

# Where the formula records what refresh_targets needs (no secrets), for the reactor.
TARGETS_CONFIG = "/etc/prometheus/opskit-targets.json"
_METRIC_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*) ([-+0-9.eE]+|NaN)$", re.MULTILINE)


def __virtual__():
    return __virtualname__


def _minion() -> str:
    return __opts__.get("id", "this minion")


def _self_labels() -> dict:
    roles = __pillar__.get("roles") or []
    roles = roles if isinstance(roles, list) else []
    return {"minion": _minion(), "roles": ",".join(["", *sorted(map(str, roles)), ""])}


def settings(data: dict) -> dict:
    """
    Check the monitoring formula's merged settings (defaults, OS map, pillar) and
    return them; raise naming every problem. ``map.jinja`` calls it, so a bad value
    stops the render before any state exists.

    CLI Example:

    .. code-block:: bash

        salt mon-01 monitoring.settings "$(salt-call --out=json pillar.get monitoring)"
    """
    problems = opskit_monitoring.settings_problems(data)
    if problems:
        raise SaltInvocationError(
            f"{_minion()}: invalid monitoring settings, nothing was applied (fix the CMDB "
            "record or pillar):\n  " + "\n  ".join(problems)
        )
    return data


def prometheus_config(settings: dict) -> dict:
    """
    Return the Prometheus configuration for the monitoring formula's ``settings`` (the
    merged ``monitoring`` pillar), as data: scrape jobs for the file_sd target files,
    basic auth through password files, the rule files, this host's Alertmanager.

    CLI Example:

    .. code-block:: bash

        salt mon-01 monitoring.prometheus_config "$(salt-call --out=json pillar.get monitoring)"
    """
    return opskit_monitoring.prometheus_config(settings, _self_labels())


def alertmanager_config(settings: dict) -> dict:
    """
    Return the Alertmanager configuration (route tree and webhook receivers) for the
    monitoring formula's ``settings``, as data.

    CLI Example:

    .. code-block:: bash

        salt mon-01 monitoring.alertmanager_config "$(salt-call --out=json pillar.get monitoring)"
    """
    return opskit_monitoring.alertmanager_config(settings)


def targets_settings(settings: dict) -> dict:
    """
    Return what :py:func:`refresh_targets` needs from the formula's settings (no
    secrets): the target directory, its group, the jobs with basic-auth credentials
    and whether a client certificate is configured. The formula records it in
    ``/etc/prometheus/opskit-targets.json`` for runs started by the reactor.

    CLI Example:

    .. code-block:: bash

        salt mon-01 monitoring.targets_settings "$(salt-call --out=json pillar.get monitoring)"
    """
    scrape = settings["scrape"]
    tls = scrape.get("tls") or {}
    return {
        "dir": settings["targets"]["dir"],
        "group": settings["group"],
        "basic_auth_jobs": sorted(scrape.get("basic_auth") or {}),
        "client_cert": bool(tls.get("cert_file") and tls.get("key_file")),
    }


def secret_files(settings: dict) -> list:
    """
    Return the secret files the formula writes from pillar on this host (scrape
    passwords): for each, an id, its path and the pillar key it is read from (the
    secret itself is not returned).

    CLI Example:

    .. code-block:: bash

        salt mon-01 monitoring.secret_files "$(salt-call --out=json pillar.get monitoring)"
    """
    return opskit_monitoring.secret_files(settings)


def _write(path: pathlib.Path, text: str, gid: int) -> None:
    """Write ``text`` to ``path`` atomically, mode 0640 and group ``gid`` set before
    the file is visible (the owner is the writer: root when Salt runs it)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o640)
            os.fchown(handle.fileno(), -1, gid)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _summary(groups: list[dict]) -> list[str]:
    return [
        f"{t} ({g['labels']['job']}, {g['labels']['minion']})" for g in groups for t in g["targets"]
    ]


def refresh_targets(settings: dict | None = None, test: bool = False) -> dict:
    """
    Rewrite the file_sd target files from every minion's ``opskit_targets`` in the mine.

    ``settings`` is what :py:func:`targets_settings` returns; by default it is read from
    ``/etc/prometheus/opskit-targets.json`` (written by the monitoring formula; without
    it, this host is not a monitoring host yet and nothing is done). Every published
    group is checked first; any problem (a malformed group, a target that wants
    credentials this host has no pillar for) raises with every problem named, and no
    file changes. Files whose content is unchanged are not touched; Prometheus picks up
    changed files by itself (no reload). Returns ``{file: {"old": [...], "new": [...]}}``
    for the files that changed (or would, with ``test=True``).

    CLI Example:

    .. code-block:: bash

        salt mon-01 monitoring.refresh_targets
    """
    if settings is None:
        try:
            settings = json.loads(pathlib.Path(TARGETS_CONFIG).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            raise CommandExecutionError(
                f"{_minion()}: cannot read {TARGETS_CONFIG}: {err}; re-apply the "
                "monitoring formula to rewrite it"
            ) from err
    directory = pathlib.Path(settings["dir"])
    if not directory.is_dir():
        if test:
            directory = None
        else:
            raise CommandExecutionError(
                f"{_minion()}: the target directory {settings['dir']} does not exist; "
                "apply the monitoring formula first"
            )
    with _locked(directory):
        mine = __salt__["mine.get"]("*", opskit_monitoring.MINE_NAME)
        groups, problems = opskit_monitoring.mine_groups(mine)
        files, more = opskit_monitoring.target_files(
            groups, set(settings["basic_auth_jobs"]), settings["client_cert"], _minion()
        )
        problems += more
        if problems:
            raise CommandExecutionError(
                f"{_minion()}: {len(problems)} problem(s) with the scrape targets in the "
                f"mine ({opskit_monitoring.MINE_NAME}); no target file was changed:\n  "
                + "\n  ".join(problems)
            )
        return _sync_files(directory, files, settings["group"], test)


@contextlib.contextmanager
def _locked(directory: pathlib.Path | None):
    """Serialise refreshes (formula run and reactor) on this host."""
    if directory is None:
        yield
        return
    with open(directory / ".opskit.lock", "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _sync_files(directory, files: dict, group: str, test: bool) -> dict:
    changes = {}
    current = {}
    if directory is not None:
        for path in directory.glob("*.json"):
            try:
                current[path.name] = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                current[path.name] = None  # unreadable: rewritten below
    for name in sorted(set(files) | set(current)):
        new, old = files.get(name), current.get(name)
        if name in current and new == old:
            continue
        changes[name] = {
            "old": _summary(old) if isinstance(old, list) else old,
            "new": _summary(new) if new is not None else None,
        }
    if test or not changes:
        return changes
    gid = grp.getgrnam(group).gr_gid
    for name in changes:
        path = directory / name
        if name in files:
            _write(path, json.dumps(files[name], indent=2, sort_keys=True) + "\n", gid)
        else:
            path.unlink()
    return changes


def reload_status(url: str, metric: str, timeout: float = 5) -> dict:
    """
    Read ``<metric>_last_reload_successful`` and ``..._success_timestamp_seconds`` from
    a Prometheus or Alertmanager ``/metrics`` (``metric``: ``prometheus_config`` or
    ``alertmanager_config``).

    CLI Example:

    .. code-block:: bash

        salt mon-01 monitoring.reload_status http://127.0.0.1:9090 prometheus_config
    """
    endpoint = f"{url.rstrip('/')}/metrics"
    try:
        response = requests.get(endpoint, timeout=timeout)
        response.raise_for_status()
    except requests.RequestException as err:
        raise CommandExecutionError(f"{_minion()}: cannot read {endpoint}: {err}") from err
    values = dict(_METRIC_RE.findall(response.text))
    names = (f"{metric}_last_reload_successful", f"{metric}_last_reload_success_timestamp_seconds")
    if not all(name in values for name in names):
        raise CommandExecutionError(
            f"{_minion()}: {endpoint} has no {names[0]}; is it the right daemon?"
        )
    return {"successful": float(values[names[0]]) == 1, "timestamp": float(values[names[1]])}
