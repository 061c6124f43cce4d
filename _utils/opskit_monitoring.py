"""What the monitoring formula makes of its settings and of the Salt mine.

Pure functions, no Salt and no I/O, used by ``_modules/monitoring.py``:

- :func:`mine_groups` checks the scrape targets every minion published
  (``opskit.targets``, mine entry ``opskit_targets``). The mine is written by minions
  and so is as untrusted as the CMDB: every group, address and label is checked and
  every problem is named (minion, group, label, value); nothing partial is used.
- :func:`target_files` splits the groups into the file_sd files the Prometheus
  configuration reads: ``opskit.json`` for targets scraped without credentials and
  ``basic-auth-<job>.json`` per job that has basic-auth credentials in pillar.
- :func:`prometheus_config` and :func:`alertmanager_config` build the two daemons'
  configurations as data; :func:`document` writes them (and the site's rule file) as
  YAML with the shared renderer (``opskit_formats.yaml_document``), which refuses
  control characters in every key and value. Secrets are never part of them: they
  name files (``password_file``) the formula writes apart.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import urllib.parse

try:
    import opskit_formats  # synced from file_roots, or module_dirs
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_formats

# The shared rules: which characters no configuration may carry; how values are shown.
unsafe_char = opskit_formats.unsafe_char
shown = opskit_formats.shorten

MINE_NAME = "opskit_targets"
NULL_RECEIVER = "opskit-none"
PLAIN_FILE = "opskit.json"
# Labels with a meaning for Prometheus or for this formula; other "__" labels are refused.
HINT_LABELS = {
    "__scheme__": re.compile(r"https?"),
    "__metrics_path__": re.compile(r"/[A-Za-z0-9._~/-]{0,255}"),
    "__opskit_basic_auth__": re.compile(r"true"),
    "__opskit_client_cert__": re.compile(r"true"),
}
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,127}")
JOB_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,63}")
_HOST_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_IPV4_RE = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1?[0-9]{1,2})\.){3}(?:25[0-5]|2[0-4][0-9]|1?[0-9]{1,2})"
)
_IPV6_RE = re.compile(r"\[[0-9A-Fa-f:.]{2,45}\]")
MAX_LABEL_VALUE = 512
MAX_GROUPS_PER_MINION = 256


def valid_address(text) -> bool:
    """``host:port`` with a DNS name, an IPv4 address or a bracketed IPv6 address."""
    if not isinstance(text, str) or len(text) > 260:
        return False
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or port != str(int(port)):
        return False
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
        except ValueError:
            return False
    with contextlib.suppress(ValueError):
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv4Address)
    labels = host.rstrip(".").split(".")
    return len(host) <= 253 and all(_HOST_LABEL_RE.fullmatch(label) for label in labels)


def _group_problems(where: str, group) -> list[str]:
    if not isinstance(group, dict) or set(group) != {"targets", "labels"}:
        return [f"{where}: must be a mapping with exactly targets and labels, got {shown(group)}"]
    problems = []
    targets, labels = group["targets"], group["labels"]
    if not isinstance(targets, list) or not targets:
        problems.append(f"{where}: targets must be a non-empty list, got {shown(targets)}")
    else:
        problems += [
            f"{where}: target {shown(t)} is not host:port (DNS name, IPv4 or [IPv6])"
            for t in targets
            if not valid_address(t)
        ]
    if not isinstance(labels, dict):
        return [*problems, f"{where}: labels must be a mapping, got {shown(labels)}"]
    for name, value in labels.items():
        if not isinstance(name, str) or not LABEL_NAME_RE.fullmatch(name):
            problems.append(f"{where}: {shown(name)} is not a Prometheus label name")
        elif not isinstance(value, str):
            problems.append(f"{where}: label {name} must be a string, got {shown(value)}")
        elif len(value) > MAX_LABEL_VALUE or unsafe_char(value) is not None:
            problems.append(
                f"{where}: label {name} = {shown(value)} is longer than {MAX_LABEL_VALUE} "
                "characters or holds control characters"
            )
        elif name.startswith("__") and name not in HINT_LABELS:
            problems.append(
                f"{where}: label {name} is reserved (allowed: {', '.join(HINT_LABELS)})"
            )
        elif name in HINT_LABELS and not HINT_LABELS[name].fullmatch(value):
            problems.append(f"{where}: label {name} = {shown(value)} is not a valid value")
    if not JOB_RE.fullmatch(str(labels.get("job", ""))):
        problems.append(
            f"{where}: label job = {shown(labels.get('job'))} must be a job name "
            "(letters, digits, _; starting with a letter or _)"
        )
    return problems


def mine_groups(mine) -> tuple[list[dict], list[str]]:
    """Check what ``mine.get '*' opskit_targets`` returned; return the groups, each with
    ``minion`` set to the id the master stored the entry under, and the problems found.
    """
    if not isinstance(mine, dict):
        return [], [f"the mine returned {shown(mine)}, not a mapping of minion to targets"]
    groups, problems = [], []
    for minion in sorted(mine, key=str):
        entry = mine[minion]
        if not isinstance(minion, str) or unsafe_char(minion) is not None:
            problems.append(f"minion id {shown(minion)} holds control characters")
            continue
        if not isinstance(entry, list):
            problems.append(
                f"{minion}: {MINE_NAME} must be a list of target groups, got {shown(entry)}; "
                f"re-apply the common formula there (salt {minion} state.apply common.mine)"
            )
            continue
        if len(entry) > MAX_GROUPS_PER_MINION:
            problems.append(
                f"{minion}: publishes {len(entry)} target groups (at most {MAX_GROUPS_PER_MINION})"
            )
            continue
        for index, group in enumerate(entry):
            found = _group_problems(f"{minion}: {MINE_NAME}[{index}]", group)
            if found:
                problems += found
                continue
            labels = {**group["labels"], "minion": minion}
            groups.append({"targets": sorted(group["targets"]), "labels": labels})
    return groups, problems


def basic_auth_file(job: str) -> str:
    return f"basic-auth-{job}.json"


def target_files(groups, basic_auth_jobs, client_cert: bool, monitor: str):
    """Split checked groups into file name -> groups; return (files, problems).

    ``basic_auth_jobs``: the jobs with basic-auth credentials on this monitoring host
    (each gets its own file, empty or not, since the configuration names it).
    ``client_cert``: whether a client certificate is configured for scraping.
    """
    files = {PLAIN_FILE: []}
    files.update({basic_auth_file(job): [] for job in sorted(basic_auth_jobs)})
    problems = []
    for group in groups:
        labels = group["labels"]
        job, where = (
            labels["job"],
            f"{labels['minion']}: {labels['job']} at {', '.join(group['targets'])}",
        )
        if labels.get("__opskit_client_cert__") == "true" and not client_cert:
            problems.append(
                f"{where} asks for a TLS client certificate, but {monitor} has none: set "
                "monitoring:scrape:tls:cert_file and key_file in its pillar"
            )
            continue
        if labels.get("__opskit_basic_auth__") != "true":
            files[PLAIN_FILE].append(group)
        elif job in basic_auth_jobs:
            files[basic_auth_file(job)].append(group)
        else:
            problems.append(
                f"{where} wants basic auth, but {monitor} has no credentials for job {job}: "
                f"set monitoring:scrape:basic_auth:{job}:username and password in its pillar"
            )
    for content in files.values():
        content.sort(key=lambda g: (g["labels"]["job"], g["labels"]["minion"], g["targets"]))
    return files, problems


def _hostport(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    return f"{host}:{parts.port or default}"


def _tls_config(tls: dict) -> dict:
    keys = ("ca_file", "cert_file", "key_file", "server_name", "insecure_skip_verify")
    return {key: tls[key] for key in keys if tls.get(key) not in (None, "", False)}


def prometheus_config(settings: dict, self_labels: dict) -> dict:
    """The Prometheus configuration (prometheus.yml) as data; ``self_labels`` (this
    host's ``minion`` and ``roles``) label its own Prometheus and Alertmanager."""
    prom, scrape = settings["prometheus"], settings["scrape"]
    targets_dir = settings["targets"]["dir"]
    global_cfg = {
        key: prom["global"][key]
        for key in ("scrape_interval", "scrape_timeout", "evaluation_interval")
    }
    if prom["global"].get("external_labels"):
        global_cfg["external_labels"] = dict(prom["global"]["external_labels"])
    scrape_configs = [
        {
            "job_name": "prometheus",
            "static_configs": [{"targets": [_hostport(prom["url"])], "labels": self_labels}],
        },
        {
            "job_name": "alertmanager",
            "static_configs": [
                {"targets": [_hostport(settings["alertmanager"]["url"])], "labels": self_labels}
            ],
        },
    ]
    tls = _tls_config(scrape.get("tls") or {})
    opskit = {
        "job_name": "opskit",
        "file_sd_configs": [{"files": [f"{targets_dir}/{PLAIN_FILE}"]}],
    }
    if tls:
        opskit["tls_config"] = tls
    scrape_configs.append(opskit)
    for job in sorted(scrape.get("basic_auth") or {}):
        config = {
            "job_name": f"opskit-basic-auth-{job}",
            "file_sd_configs": [{"files": [f"{targets_dir}/{basic_auth_file(job)}"]}],
            "basic_auth": {
                "username": scrape["basic_auth"][job]["username"],
                "password_file": password_file(settings, job),
            },
        }
        if tls:
            config["tls_config"] = tls
        scrape_configs.append(config)
    return {
        "global": global_cfg,
        "rule_files": [f"{prom['rules_dir']}/*.yml"],
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [_hostport(settings["alertmanager"]["url"])]}]}
            ]
        },
        "scrape_configs": scrape_configs,
    }


def site_rules(settings: dict) -> dict:
    """The site's rule file (``groups``) from ``prometheus:rule_groups``, without the
    keys the settings left empty (Prometheus takes ``record: null`` as set)."""
    groups = []
    for group in settings["prometheus"]["rule_groups"]:
        rules = [
            {key: value for key, value in rule.items() if value not in (None, {}, [])}
            for rule in group["rules"]
        ]
        out = {key: value for key, value in group.items() if value is not None}
        groups.append({**out, "rules": rules})
    return {"groups": groups}


def password_file(settings: dict, job: str) -> str:
    return f"{settings['scrape']['secrets_dir']}/basic-auth-{job}.password"


def secret_files(settings: dict) -> list[dict]:
    """The secret files the formula writes from pillar: id, path, pillar key path."""
    return [
        {
            "id": f"basic-auth-{job}",
            "path": password_file(settings, job),
            "pillar": f"monitoring:scrape:basic_auth:{job}:password",
        }
        for job in sorted(settings["scrape"].get("basic_auth") or {})
    ]


def alertmanager_config(settings: dict) -> dict:
    """The Alertmanager configuration (alertmanager.yml) as data: one route tree and
    webhook receivers; with no receiver in pillar, alerts go to a receiver that sends
    nothing (they stay visible in Alertmanager's UI and API)."""
    am = settings["alertmanager"]
    receivers = []
    for name in sorted(am.get("receivers") or {}):
        hooks = []
        for hook in am["receivers"][name].get("webhooks") or []:
            entry = {"url": hook["url"], "send_resolved": bool(hook.get("send_resolved", True))}
            if hook.get("max_alerts"):
                entry["max_alerts"] = int(hook["max_alerts"])
            hooks.append(entry)
        receiver = {"name": name}
        if hooks:
            receiver["webhook_configs"] = hooks
        receivers.append(receiver)
    if not receivers:
        receivers.append({"name": NULL_RECEIVER})
    route_in = am["route"]
    route = {
        "receiver": route_in.get("receiver") or receivers[0]["name"],
        "group_by": list(route_in["group_by"]),
        "group_wait": route_in["group_wait"],
        "group_interval": route_in["group_interval"],
        "repeat_interval": route_in["repeat_interval"],
    }
    children = []
    for child in route_in.get("routes") or []:
        entry = {"receiver": child["receiver"], "matchers": list(child["matchers"])}
        if child.get("continue"):
            entry["continue"] = True
        for key in ("group_by", "group_wait", "group_interval", "repeat_interval"):
            if child.get(key):
                entry[key] = child[key]
        children.append(entry)
    if children:
        route["routes"] = children
    return {"route": route, "receivers": receivers}


# Which pillar key each document comes from, for the renderer's error messages.
DOCUMENT_PATHS = {
    "prometheus": "monitoring:prometheus",
    "alertmanager": "monitoring:alertmanager",
    "site_rules": "monitoring:prometheus:rule_groups",
}


def document(kind: str, data: dict) -> str:
    """``data`` (one of :data:`DOCUMENT_PATHS`'s kinds) as the YAML file the formula
    installs, through the one YAML renderer of ``opskit_formats``."""
    return opskit_formats.yaml_document(
        data,
        header=f"Managed by Salt (opskit monitoring formula): {kind}. Local edits are lost.",
        path=DOCUMENT_PATHS[kind],
    )
