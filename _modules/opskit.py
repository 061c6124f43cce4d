"""The opskit extension itself: its version, how this minion loaded it, and the
render-time settings check every formula's ``map.jinja`` calls.

``opskit.info`` tells which opskit version a minion runs and how it got it: installed
with pip (the ``salt.loader`` entry point) or synced from ``file_roots``
(``saltutil.sync_all``). Useful when a fleet mixes both.

``opskit.mapdata`` shows a formula's merged settings with secrets masked (the
formulas' ``_mapdata`` states).

``opskit.settings`` validates a formula's merged settings against the formula's schema
(``_utils/opskit_settings_<formula>.py``), so that a bad CMDB value stops the render
with a message naming the key before any state exists.

``opskit.targets`` is the one mine function of opskit: every scrape target this
minion runs, in Prometheus ``file_sd`` shape, published by the ``common`` formula.
"""

from __future__ import annotations

import importlib
import pathlib
import re
import sys

import salt.utils.yaml
from salt.exceptions import CommandExecutionError

try:
    import opskit_redact  # synced from file_roots, or module_dirs
    import opskit_schema
except ImportError:  # installed with pip
    from saltext.opskit.utils import opskit_redact
    from saltext.opskit.utils import opskit_schema

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
    # The roles as the top file reads them, checked by the same schema (opskit_settings_top).
    roles = settings("top", {"roles": __pillar__.get("roles") or []})["roles"]
    common = {"minion": minion, "roles": ",".join(["", *sorted(roles), ""])}
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


_FORMULA_RE = re.compile(r"[a-z][a-z0-9-]{0,62}")


def _settings_module(formula: str):
    """Import ``opskit_settings_<formula>`` from the synced ``_utils`` (or module_dirs
    checkout), or from the installed package."""
    name = "opskit_settings_" + formula.replace("-", "_")
    if name in sys.modules:
        return sys.modules[name]
    # Salt puts the utils directories on sys.path only while it loads modules: look
    # next to opskit_schema, which was imported then.
    utils_dir = str(pathlib.Path(opskit_schema.__file__).resolve().parent)
    added = utils_dir not in sys.path
    if added:
        sys.path.insert(0, utils_dir)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != name:
            raise
        try:
            return importlib.import_module(f"saltext.opskit.utils.{name}")
        except ModuleNotFoundError:
            raise CommandExecutionError(
                f"{__opts__.get('id', 'this minion')}: no settings schema for formula "
                f"{formula!r} ({name}.py in _utils); sync opskit's modules "
                "(saltutil.sync_all) or check the formula name"
            ) from err
    finally:
        if added:
            sys.path.remove(utils_dir)


def _schema_input(formula: str, data):
    """(the formula's schema module, its key path root, ``data`` as the schema reads it)."""
    if not isinstance(formula, str) or not _FORMULA_RE.fullmatch(formula):
        raise CommandExecutionError(f"{formula!r} is not a formula name")
    module = _settings_module(formula)
    root = getattr(module, "ROOT", formula)
    return module, root, getattr(module, "prepare", lambda settings: settings)(data)


def _validated(formula: str, data):
    """(normalised settings, None) or (None, SettingsError)."""
    module, root, data = _schema_input(formula, data)
    try:
        result = opskit_schema.validate(module.SCHEMA, data, root=root)
    except opskit_schema.SettingsError as err:
        return None, err
    problems = opskit_schema.Problems()
    for problem in getattr(module, "check", lambda _settings: ())(result) or ():
        path, *value, message = problem
        if value:
            problems.add(path, value[0], message)
        else:
            problems.items.append((path, "", message))
    if problems:
        return None, opskit_schema.SettingsError(root, problems.items)
    return result, None


def settings(formula: str, data) -> dict:
    """
    Validate a formula's merged settings (defaults, OS map, pillar) against its schema
    and return them normalised, with the schema's defaults applied. Raises
    ``CommandExecutionError`` listing every invalid key (``tuning:jemalloc:units:...``),
    its value (secrets masked) and what to do; called from ``map.jinja``, the render
    fails with that message before any state is compiled.

    The schema lives in ``_utils/opskit_settings_<formula>.py`` (``-`` written as
    ``_``): ``SCHEMA`` (an ``opskit_schema`` type, usually a ``Map``), optionally
    ``ROOT`` (the key path prefix in messages, default the formula name),
    ``prepare(settings)`` returning the settings as the schema checks them (e.g. shared
    options merged into each entry; values of the wrong type left for the schema to
    refuse) and ``check(settings)`` for rules across keys, which returns (or yields)
    ``(key_path, message)`` or ``(key_path, value, message)`` for what is wrong.

    CLI Example:

    .. code-block:: bash

        salt '*' opskit.settings tuning "$(salt-call --out=json pillar.get tuning)"
    """
    result, error = _validated(formula, data)
    if error is not None:
        raise CommandExecutionError(f"{__opts__.get('id', 'this minion')}: {error}") from error
    return result


def check(formula: str, data) -> list:
    """
    Return what is wrong with a formula's settings, one line per problem
    (``key:path = value: what to do``), or an empty list; never raises for invalid
    settings. For people checking a CMDB record before rolling it out.

    CLI Example:

    .. code-block:: bash

        salt '*' opskit.check tuning "$(salt-call --out=json pillar.get tuning)"
    """
    _, error = _validated(formula, data)
    if error is None:
        return []
    return [
        f"{path}{' = ' + shown if shown else ''}: {message}"
        for path, shown, message in error.problems
    ]


def deprecated(formula: str, data) -> list:
    """
    Return the keys of a formula's settings that are deprecated and ignored, one line
    each (``anubis:mine_name is deprecated and ignored: <what replaced it>``), or an
    empty list. Lines name the key path, never the value. Nothing else is checked
    (that is ``opskit.check``'s and ``opskit.settings``' business), so this is cheap to
    call next to ``opskit.settings``. The ``exporters`` and ``anubis`` formulas show
    these lines as the warnings of a state, so that ``salt '*' state.apply`` prints them.

    CLI Example:

    .. code-block:: bash

        salt '*' opskit.deprecated anubis "$(salt-call --out=json pillar.get anubis)"
    """
    module, root, data = _schema_input(formula, data)
    return opskit_schema.deprecations(module.SCHEMA, data, root)


def mapdata(formula: str, settings) -> str:
    """
    Return a formula's merged settings (what its ``map.jinja`` produced) as YAML, with
    every value its schema flags as secret, and every value under a secret-looking key
    (``password``, ``token``, ``*_key``, ...), masked. Each formula's ``_mapdata`` state
    shows this, as template-formula's ``_mapdata`` does, without writing a file.

    CLI Example:

    .. code-block:: bash

        salt '*' state.apply anubis._mapdata
        salt '*' opskit.mapdata tuning "$(salt-call --out=json pillar.get tuning)"
    """
    if not isinstance(formula, str) or not _FORMULA_RE.fullmatch(formula):
        raise CommandExecutionError(f"{formula!r} is not a formula name")
    shown = opskit_schema.masked(_settings_module(formula).SCHEMA, settings)
    shown = opskit_redact.redact_data(shown)
    return salt.utils.yaml.safe_dump({formula: shown}, default_flow_style=False)
