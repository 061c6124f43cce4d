"""Facts about the opskit extension itself, as loaded on this minion.

``opskit.info`` tells which opskit version a minion runs and how it got it: installed
with pip (the ``salt.loader`` entry point) or synced from ``file_roots``
(``saltutil.sync_all``). Useful when a fleet mixes both.

``opskit.targets`` is the one mine function of opskit: every scrape target this
minion runs, in Prometheus ``file_sd`` shape, published by the ``common`` formula.
"""

from __future__ import annotations

import pathlib
import re

from salt.exceptions import CommandExecutionError

__virtualname__ = "opskit"

# The single source of the version; setup.py reads it from here.
OPSKIT_VERSION = "0.1.0"


def __virtual__():
    return __virtualname__


def version() -> str:
    """
    Return the opskit version this minion runs.

    CLI Example:

    .. code-block:: bash

        salt '*' opskit.version
    """
    return OPSKIT_VERSION


# The areas that run scrape targets, each with a function returning its targets in
# file_sd shape ([{"targets": ["host:port"], "labels": {"job": ..., ...}}]).
TARGET_SOURCES = ("exporter.targets", "anubis.targets")
_ROLE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def targets() -> list:
    """
    Return every Prometheus scrape target opskit runs on this minion, in ``file_sd``
    shape: ``[{"targets": ["host:port"], "labels": {...}}]``, one group per target.

    Each area's own function (``exporter.targets``, ``anubis.targets``) supplies the
    address, ``job`` and hints Prometheus understands (``__scheme__``,
    ``__metrics_path__``) or the monitoring formula does (``__opskit_basic_auth__``,
    ``__opskit_client_cert__``: the target wants credentials); this function adds
    ``minion`` (this minion's id) and ``roles`` (the CMDB roles from pillar ``roles``,
    comma-separated with a comma at each end, so ``roles=~".*,database,.*"`` selects a
    role). The ``common`` formula publishes the result as the mine function
    ``opskit_targets``; the ``monitoring`` formula reads it from there.

    CLI Example:

    .. code-block:: bash

        salt '*' opskit.targets
        salt mon-01 mine.get '*' opskit_targets
    """
    minion = __opts__.get("id")
    roles = __pillar__.get("roles") or []
    if not isinstance(roles, list) or not all(
        isinstance(role, str) and _ROLE_RE.fullmatch(role) for role in roles
    ):
        raise CommandExecutionError(
            f"{minion}: pillar roles must be a list of role names (letters, digits, "
            f"'_.-'), not {roles!r}; fix the host's CMDB record"
        )
    common = {"minion": minion, "roles": ",".join(["", *sorted(set(roles)), ""])}
    groups = []
    for source in TARGET_SOURCES:
        if source not in __salt__:
            continue
        for group in __salt__[source]():
            groups.append(
                {"targets": list(group["targets"]), "labels": {**group["labels"], **common}}
            )
    return sorted(groups, key=lambda g: (g["labels"].get("job", ""), g["targets"]))


def info() -> dict:
    """
    Return the opskit version and where this minion loaded opskit from.

    ``route`` is ``pip`` when the package is installed (``salt.loader`` entry point),
    ``synced`` when the modules came from the master's ``file_roots`` through
    ``saltutil.sync_*``, and ``module_dirs`` when a ``module_dirs`` option points at a
    checkout.

    CLI Example:

    .. code-block:: bash

        salt '*' opskit.info
    """
    directory = pathlib.Path(__file__).resolve().parent
    extmods = pathlib.Path(__opts__.get("extension_modules") or "/nonexistent").resolve()
    if directory.parts[-3:] == ("saltext", "opskit", "modules"):
        route = "pip"
    elif directory.is_relative_to(extmods):
        route = "synced"
    else:
        route = "module_dirs"
    return {"version": OPSKIT_VERSION, "route": route, "loaded_from": str(directory)}
