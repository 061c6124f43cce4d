"""Facts about the opskit extension itself, as loaded on this minion.

``opskit.info`` tells which opskit version a minion runs and how it got it: installed
with pip (the ``salt.loader`` entry point) or synced from ``file_roots``
(``saltutil.sync_all``). Useful when a fleet mixes both.
"""

from __future__ import annotations

import pathlib

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
