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
import json
import pathlib
import re

from salt.exceptions import CommandExecutionError

try:
    import opskit_files  # synced from file_roots, or module_dirs
    import opskit_health
    import opskit_monitoring
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_files
    from saltext.opskit.utils import opskit_health
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
    """This host's labels for its own Prometheus and Alertmanager targets, as
    opskit.targets labels the published ones."""
    host = __salt__["opskit.settings"]("top", {"roles": __pillar__.get("roles") or []})
    return {"minion": _minion(), "roles": ",".join(["", *sorted(host["roles"]), ""])}


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


def site_rules(settings: dict) -> dict:
    """
    Return the site's rule file (``{"groups": [...]}``) from the formula's
    ``prometheus:rule_groups``, as data.

    CLI Example:

    .. code-block:: bash

        salt mon-01 monitoring.site_rules "$(salt-call --out=json pillar.get monitoring)"
    """
    return opskit_monitoring.site_rules(settings)


def render(kind: str, settings: dict) -> str:
    """
    Return one of the files the formula writes from its ``settings``, as YAML text from
    the shared renderer (``opskit_formats.yaml_document``): ``kind`` is ``prometheus``
    (prometheus.yml), ``alertmanager`` (alertmanager.yml) or ``site_rules`` (the site's
    rule file). A value the renderer refuses (a control character, say) raises with its
    pillar key path.

    CLI Example:

    .. code-block:: bash

        salt mon-01 monitoring.render prometheus "$(salt-call --out=json pillar.get monitoring)"
    """
    builders = {
        "prometheus": prometheus_config,
        "alertmanager": alertmanager_config,
        "site_rules": site_rules,
    }
    if kind not in builders:
        raise CommandExecutionError(
            f"{_minion()}: monitoring.render: unknown kind {kind!r}; use one of "
            + ", ".join(sorted(builders))
        )
    try:
        return opskit_monitoring.document(kind, builders[kind](settings))
    except ValueError as err:
        raise CommandExecutionError(f"{_minion()}: monitoring {kind} configuration: {err}") from err


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
    """Make ``directory`` hold exactly ``files`` (name -> groups), 0640 root:``group``;
    return ``{name: {"old": [...], "new": [...]}}`` for what changed (would change)."""
    present = {p.name for p in directory.glob("*.json")} if directory is not None else set()
    changes, texts = {}, {}
    for name in sorted(set(files) | present):
        path = str(directory / name) if directory is not None else None
        old = _groups_in(path) if name in present else None
        if name in files:
            texts[name] = json.dumps(files[name], indent=2, sort_keys=True) + "\n"
            if path and not opskit_files.needs_write(path, texts[name], 0o640, group=group):
                continue
        changes[name] = {
            "old": _summary(old) if isinstance(old, list) else old,
            "new": _summary(files[name]) if name in files else None,
        }
    if not test:
        for name in changes:
            path = str(directory / name)
            if name in files:
                opskit_files.write_atomic(path, texts[name], mode=0o640, group=group)
            else:
                opskit_files.remove(path)
    return changes


def _groups_in(path: str):
    """The groups a target file holds, or a note when it cannot be read as such."""
    try:
        return json.loads(opskit_files.read_text(path))
    except ValueError:
        return "unreadable (not JSON)"


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
    answer = opskit_health.probe(endpoint, timeout=float(timeout), body_limit=None)
    if not answer["healthy"]:
        why = answer.get("error") or f"HTTP {answer['status']}"
        raise CommandExecutionError(f"{_minion()}: cannot read {answer['url']}: {why}")
    values = dict(_METRIC_RE.findall(answer["body"]))
    names = (f"{metric}_last_reload_successful", f"{metric}_last_reload_success_timestamp_seconds")
    if not all(name in values for name in names):
        raise CommandExecutionError(
            f"{_minion()}: {endpoint} has no {names[0]}; is it the right daemon?"
        )
    return {"successful": float(values[names[0]]) == 1, "timestamp": float(values[names[1]])}
